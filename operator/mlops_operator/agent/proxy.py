"""The request path: every request to the agent goes to the model server on 127.0.0.1 and back, unchanged.

What it adds: an `X-Request-Id` (the caller's, or a new one) on the way up and on the answer, the request
metrics, and for a sampled inference call one record offered to the sink. It never waits for the sink and never
parses a body (the sink does that later); unsampled requests are not even copied. Answers without a length
(chunked, server-sent events) are relayed chunk by chunk as they arrive.
"""

from __future__ import annotations

import random
import time
import uuid

from aiohttp import ClientError, ClientSession, web
from multidict import CIMultiDict
from yarl import URL

from . import protocols
from .config import AgentConfig
from .metrics import AgentMetrics
from .sink import PREDICTION, Record, Sink, now

REQUEST_ID = "X-Request-Id"
# RFC 9110 section 7.6.1, plus the length and host that aiohttp sets for each side itself.
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
))
CAPTURE_LIMIT = 1 << 20  # bytes of a sampled streamed answer kept for its row; the client gets every byte anyway


def end_to_end(headers: object) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)  # type: ignore[attr-defined]


class Proxy:
    def __init__(self, config: AgentConfig, metrics: AgentMetrics, session: ClientSession,
                 sink: Sink | None) -> None:
        self.config = config
        self.metrics = metrics
        self.session = session
        self.sink = sink if config.sample_rate > 0 else None
        self.upstream = f"http://127.0.0.1:{config.upstream_port}"
        self._every = config.sample_rate >= 1

    def _sampled(self) -> bool:
        return self.sink is not None and (self._every or random.random() < self.config.sample_rate)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight.inc()
        status, sent, body = 502, 0, b""
        answer: web.StreamResponse | None = None
        request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
        protocol = protocols.detect(request.method, request.path) if self._sampled() else None
        try:
            body = await request.read()
            headers = end_to_end(request.headers)
            headers[REQUEST_ID] = request_id
            try:
                async with self.session.request(request.method, URL(self.upstream + request.raw_path, encoded=True),
                                                headers=headers, data=body or None,
                                                allow_redirects=False) as upstream:
                    status = upstream.status
                    answer_headers = end_to_end(upstream.headers)
                    answer_headers[REQUEST_ID] = request_id
                    streamed = (upstream.content_length is None
                                or upstream.content_type == "text/event-stream")
                    if not streamed:
                        data = await upstream.read()
                        sent = len(data)
                        self._offer(protocol, request_id, started, status, body, data, streamed=False)
                        return web.Response(status=status, headers=answer_headers, body=data)
                    answer = web.StreamResponse(status=status, headers=answer_headers)
                    await answer.prepare(request)
                    captured = bytearray() if protocol else None
                    async for chunk in upstream.content.iter_any():
                        await answer.write(chunk)
                        sent += len(chunk)
                        if captured is not None and len(captured) < CAPTURE_LIMIT:
                            captured += chunk
                    await answer.write_eof()
                    self._offer(protocol, request_id, started, status, body, bytes(captured or b""), streamed=True)
                    return answer
            except ClientError as err:
                if answer is not None and answer.prepared:
                    raise  # the model server broke off mid-stream: so does the client's connection, unterminated
                status = 502
                return web.Response(status=502, headers={REQUEST_ID: request_id},
                                    text=f"model server on 127.0.0.1:{self.config.upstream_port}: {err}\n")
        finally:
            metrics.in_flight.dec()
            metrics.answered(status, time.perf_counter() - started, len(body), sent)

    def _offer(self, protocol: str | None, request_id: str, started: float, status: int, request: bytes,
               response: bytes, *, streamed: bool) -> None:
        if protocol is None or self.sink is None:
            return
        self.metrics.sampled.inc()
        self.sink.offer([self.record(protocol, request_id, started, status, request, response, streamed=streamed)])

    def record(self, protocol: str, request_id: str, started: float, status: int, request: bytes, response: bytes,
               *, streamed: bool) -> Record:
        """What the log keeps of one answered request: its bodies as they were, parsed later by the sink."""
        micros, at = now()
        base = {"timestamp": micros, "request_id": request_id, "revision": self.config.revision,
                "model_uri": self.config.model_uri, "status_code": status,
                "latency_seconds": time.perf_counter() - started, "protocol": protocol}
        return Record(PREDICTION, at, base, protocol, request, response, streamed)
