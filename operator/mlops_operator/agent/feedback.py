"""POST /v1/feedback: ground truth for earlier predictions, joined to them later by request id.

Body: `{"feedback": [{"request_id": "...", "label": ...}, ...]}` (or one such object). The items go to the
sink as records of their own kind, written under `<uri>/feedback/`. Unlike a prediction, a feedback post is
the caller's own data: when it cannot be kept (no log configured, a full buffer) the caller is told so.
"""

from __future__ import annotations

import json

from aiohttp import web

from . import protocols
from .sink import FEEDBACK, Record, Sink, now

PATH = "/v1/feedback"


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def handler(sink: Sink | None):  # type: ignore[no-untyped-def]
    async def feedback(request: web.Request) -> web.Response:
        if sink is None:
            return _error(404, "no prediction log is configured (--log-uri), so feedback cannot be kept")
        body = await request.read()
        try:
            items = protocols.feedback_rows(json.loads(body))
        except ValueError as err:  # json's errors are ValueErrors too
            return _error(400, str(err))
        micros, at = now()
        share = len(body) // len(items)
        records = [Record(FEEDBACK, at, {"timestamp": micros}, rows=[item], rows_size=share) for item in items]
        if not sink.offer(records):
            return _error(503, "the log buffer is full or the agent is stopping; retry later", **{"Retry-After": "1"})
        return web.json_response({"accepted": len(records)}, status=202)

    return feedback
