"""The agent's hop to the model server (agent/upstream.py) against raw asyncio servers on 127.0.0.1.

Each server writes answers byte for byte as a test scripts them, so every framing (length, chunks, the
connection's end, none) and every way of breaking off is what a real peer sends, not what a library makes of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from mlops_operator.agent.proxy import header_lines
from mlops_operator.agent.upstream import Upstream, UpstreamError

Answer = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Reads requests (head and Content-Length body) and hands each to `answer`, which writes the answer and says
    whether to keep the connection. Counts connections and keeps the requests it read."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.partition(b":")[2])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.answer(request, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()


@asynccontextmanager
async def serving(answer: Answer, limit: int = 4, **options: float) -> AsyncIterator[tuple[Server, Upstream]]:
    """A server answering with `answer`, and an Upstream to it that is closed afterwards."""
    async with Server(answer) as server:
        upstream = Upstream("127.0.0.1", server.port, limit=limit, **options)
        try:
            yield server, upstream
        finally:
            await upstream.close()


def fixed(body: bytes = b'{"predictions":[1]}', extra: bytes = b"") -> Answer:
    async def answer(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                     % (len(body), extra, body))
        return True
    return answer


async def call(upstream: Upstream, method: str = "POST", body: bytes = b'{"instances":[[1]]}',
               head: bytes = b"") -> tuple[int, list[tuple[str, str]], bytes]:
    async with upstream.request(method, "/v1/models/m:predict", head, body) as answer:
        return answer.status, answer.headers, await answer.read()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_requests_share_one_kept_alive_connection_and_carry_host_length_and_headers():
    async def scenario() -> None:
        async with serving(fixed()) as (server, upstream):
            raw = ((b"Content-Type", b"application/json"), (b"Connection", b"keep-alive"),
                   (b"X-Request-Id", b"theirs"), (b"Expect", b"100-continue"), (b"X-Tenant", b"a"))
            for _ in range(3):
                status, headers, body = await call(upstream, head=header_lines(raw, "abc"))
                assert (status, body) == (200, b'{"predictions":[1]}')
                assert ("Content-Type", "application/json") in headers
        assert server.connections == 1
        head = server.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
        assert head[0] == b"POST /v1/models/m:predict HTTP/1.1"
        assert sorted(head[1:]) == sorted([
            b"Host: 127.0.0.1:%d" % server.port, b"Content-Type: application/json", b"X-Tenant: a",
            b"X-Request-Id: abc", b"Content-Length: 19"])  # hop-by-hop, Expect and the caller's id not sent up
    run(scenario)


def test_a_chunked_answer_arrives_chunk_by_chunk_and_its_connection_is_reused():
    release = asyncio.Event()

    async def chunked(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"6;ext=1\r\ndata 1\r\n")
        await asyncio.wait_for(release.wait(), 10)  # the second chunk only once the client has the first
        writer.write(b"6\r\ndata 2\r\n0\r\nX-Trailer: t\r\n\r\n")
        return True

    async def scenario() -> None:
        async with serving(chunked) as (server, upstream):
            for _ in range(2):
                got = []
                async with upstream.request("POST", "/v1/completions", b"", b"{}") as answer:
                    assert (answer.length, answer.chunked, answer.content_type) == (None, True, "text/event-stream")
                    async for chunk in answer.chunks():
                        got.append(chunk)
                        release.set()
                release.clear()
                assert got == [b"data 1", b"data 2"]
        assert server.connections == 1
    run(scenario)


def test_an_answer_framed_by_the_connections_end_is_read_whole_and_the_connection_not_reused():
    async def till_close(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"part two")
        return False

    async def scenario() -> None:
        async with serving(till_close) as (server, upstream):
            for _ in range(2):
                assert (await call(upstream))[2] == b"part one, part two"
        assert server.connections == 2
    run(scenario)


def test_no_body_is_awaited_for_head_204_and_304_and_an_interim_100_is_skipped():
    async def answers(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if request.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        elif b"X-Status: 204" in request:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif b"X-Status: 304" in request:
            writer.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        return True

    async def scenario() -> None:
        async with serving(answers, limit=1) as (server, upstream):
            assert (await call(upstream, "HEAD", b""))[::2] == (200, b"")
            assert (await call(upstream, head=b"X-Status: 204\r\n"))[::2] == (204, b"")
            assert (await call(upstream, head=b"X-Status: 304\r\n"))[::2] == (304, b"")
            assert (await call(upstream))[::2] == (201, b"ok")
        assert server.connections == 1
        assert server.requests[0].startswith(b"HEAD ") and b"Content-Length" not in server.requests[0]
    run(scenario)


def test_a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_once_more():
    async def once(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await fixed()(_, __, writer)
        await writer.drain()
        writer.transport.abort()  # says keep-alive, then drops the connection: the client learns it on reuse
        return False

    async def scenario() -> None:
        async with serving(once) as (server, upstream):
            for _ in range(3):
                assert (await call(upstream))[0] == 200
        assert server.connections == 3
        assert len(server.requests) == 3  # no request answered twice
    run(scenario)


def test_a_kept_connection_idle_too_long_is_not_reused():
    async def scenario() -> None:
        async with serving(fixed(), idle_seconds=0.05) as (server, upstream):
            await call(upstream)
            await asyncio.sleep(0.1)
            await call(upstream)
            await call(upstream)
        assert server.connections == 2
    run(scenario)


def test_requests_beyond_the_limit_wait_for_a_connection():
    started = 0

    async def slow(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        nonlocal started
        started += 1
        await asyncio.sleep(0.05)
        return await fixed()(request, reader, writer)

    async def scenario() -> None:
        async with serving(slow, limit=2) as (server, upstream):
            results = await asyncio.gather(*(call(upstream) for _ in range(6)))
        assert [r[0] for r in results] == [200] * 6
        assert server.connections == 2
    run(scenario)


@pytest.mark.parametrize("answer, error", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "broke off"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "broke off"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "broke off"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
    (b"", "broke before the answer"),
])
def test_a_broken_or_foreign_answer_is_an_upstream_error_and_the_connection_is_dropped(answer, error):
    async def broken(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        return False

    async def scenario() -> None:
        async with serving(broken, limit=1) as (server, upstream):
            with pytest.raises(UpstreamError, match=error):
                await call(upstream)
            with pytest.raises(UpstreamError, match=error):  # the slot was given back; the body relayed this time
                async with upstream.request("POST", "/", b"", b"") as relayed:
                    async for _ in relayed.chunks():
                        pass
            assert upstream._idle == []
    run(scenario)


def test_no_server_is_an_upstream_error():
    async def scenario() -> None:
        async with Server(fixed()) as server:
            port = server.port
        upstream = Upstream("127.0.0.1", port, limit=1)
        with pytest.raises(UpstreamError, match="cannot connect"):
            await call(upstream)
    run(scenario)


def test_large_bodies_cross_both_ways_whole():
    big = bytes(range(256)) * 40_000  # 10 MB

    async def echo(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        body = request.partition(b"\r\n\r\n")[2]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        return True

    async def scenario() -> None:
        async with serving(echo, limit=1) as (server, upstream):
            assert (await call(upstream, body=big))[2] == big
            async with upstream.request("POST", "/", b"", big) as answer:
                got = b"".join([chunk async for chunk in answer.chunks()])
            assert got == big
        assert server.connections == 1
    run(scenario)
