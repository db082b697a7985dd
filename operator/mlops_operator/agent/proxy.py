"""The request path: every request to the agent goes to the model server on 127.0.0.1 and back, unchanged.

What it adds: an `X-Request-Id` (the caller's, or a new one) on the way up and on the answer, the request
metrics, and for a sampled inference call one record offered to the sink. It never waits for the sink and never
parses a body (the sink does that later); unsampled requests are not even copied. Answers without a length
(chunked, server-sent events) are relayed chunk by chunk as they arrive.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from typing import TypeVar

from aiohttp import web
from multidict import CIMultiDict

from . import protocols
from .config import AgentConfig
from .metrics import AgentMetrics
from .sink import PREDICTION, Record, Sink, now
from .upstream import Upstream, UpstreamError

REQUEST_ID = "X-Request-Id"
# RFC 9110 section 7.6.1, plus the length and host that each hop's sender sets itself (upstream.py on the way up,
# aiohttp's server on the way down).
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
))
# Not sent up either: the agent sets the request id, and it holds the whole body (no 100-continue to wait for).
NOT_SENT_UP = frozenset(h.encode("ascii") for h in (*HOP_BY_HOP, REQUEST_ID.lower(), "expect"))
_Text = TypeVar("_Text", str, bytes)
CAPTURE_LIMIT = 1 << 20  # bytes of a sampled streamed answer kept for its row; the client gets every byte anyway


def header_lines(raw: tuple[tuple[bytes, bytes], ...], request_id: str) -> bytes:
    """The request's end-to-end header lines as they came, and the request id. Headers that `Connection` names are
    hop-by-hop too (RFC 9110, 7.6.1)."""
    skip = NOT_SENT_UP
    for k, v in raw:
        if len(k) == 10 and k.lower() == b"connection":
            skip = _with_listed(skip, v.lower(), b",")
    lines = [b"%s: %s\r\n" % (k, v) for k, v in raw if k.lower() not in skip]
    lines.append(b"X-Request-Id: %s\r\n" % request_id.encode("utf-8", "surrogateescape"))
    return b"".join(lines)


def end_to_end(headers: list[tuple[str, str]]) -> CIMultiDict[str]:
    """The answer's headers less the hop-by-hop ones, those its `Connection` names included."""
    skip: frozenset[str] = HOP_BY_HOP
    for k, v in headers:
        if len(k) == 10 and k.lower() == "connection":
            skip = _with_listed(skip, v.lower(), ",")
    return CIMultiDict([(k, v) for k, v in headers if k.lower() not in skip])


@functools.lru_cache(maxsize=64)
def _with_listed(skip: frozenset[_Text], value: _Text, comma: _Text) -> frozenset[_Text]:
    """`skip` and the header names a Connection header's value lists (lower case). The same few values come again
    and again (`keep-alive`, `close`), so the answer is kept."""
    listed = frozenset(t.strip() for t in value.split(comma))
    return skip if listed <= skip else skip | listed


class Proxy:
    def __init__(self, config: AgentConfig, metrics: AgentMetrics, upstream: Upstream,
                 sink: Sink | None) -> None:
        self.config = config
        self.metrics = metrics
        self.upstream = upstream
        self.sink = sink if config.sample_rate > 0 else None
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
            try:
                async with self.upstream.request(request.method, request.raw_path,
                                                 header_lines(request.raw_headers, request_id), body) as upstream:
                    status = upstream.status
                    answer_headers = end_to_end(upstream.headers)
                    answer_headers[REQUEST_ID] = request_id
                    streamed = upstream.length is None or upstream.content_type == "text/event-stream"
                    if not streamed:
                        data = await upstream.read()
                        sent = len(data)
                        self._offer(protocol, request_id, started, status, body, data, streamed=False)
                        return web.Response(status=status, headers=answer_headers, body=data)
                    answer = web.StreamResponse(status=status, headers=answer_headers)
                    await answer.prepare(request)
                    captured = bytearray() if protocol else None
                    async for chunk in upstream.chunks():
                        await answer.write(chunk)
                        sent += len(chunk)
                        if captured is not None and len(captured) < CAPTURE_LIMIT:
                            captured += chunk
                    await answer.write_eof()
                    self._offer(protocol, request_id, started, status, body, bytes(captured or b""), streamed=True)
                    return answer
            except UpstreamError as err:
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
