"""The agent's hop to the model server on 127.0.0.1: HTTP/1.1 over pooled keep-alive connections.

Only what a same-pod hop needs: one known peer, requests whose bodies the agent already holds whole, answers framed
by a length, by chunks or by the connection's end. Why not aiohttp's client, which the agent used before: for a
small inference call its request and answer objects cost about a quarter of the agent's CPU (docs/benchmarks.md,
"Inference agent"); this costs a write, a read of the head and a read of the body.

A connection idle for `idle_seconds` is closed rather than reused, below the keep-alive timeout of the servers the
runtime presets run (uvicorn's 5 s). If a reused connection still turns out closed (no byte of an answer), the
request is sent once more on a new connection: the server never answered it, and an inference call has no effect
but its answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType

HEAD_LIMIT = 1 << 16  # bytes of an answer's status line and headers
READ_SIZE = 1 << 16  # bytes read at a time from an answer framed by the connection's end
NO_BODY_STATUS = frozenset((204, 304))


class UpstreamError(Exception):
    """The model server could not be reached, did not answer, or broke off (or answered what is not HTTP/1.x)."""


class Connection:
    __slots__ = ("reader", "writer", "idle_since", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.reused = False

    @property
    def closed(self) -> bool:
        return self.writer.is_closing() or self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Upstream:
    """At most `limit` connections to host:port; requests beyond them wait for one."""

    def __init__(self, host: str, port: int, limit: int, connect_timeout: float = 10.0,
                 idle_seconds: float = 4.0) -> None:
        self.host, self.port = host, port
        self.authority = f"{host}:{port}"
        self.connect_timeout = connect_timeout
        self.idle_seconds = idle_seconds
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[Connection] = []  # the most recently used last

    def request(self, method: str, target: str, head: bytes, body: bytes) -> Exchange:
        """`async with upstream.request(...) as answer`. `head` holds the request's header lines, each ending in
        CRLF, without Host and Content-Length (set here)."""
        return Exchange(self, method, target, head, body)

    async def _connection(self) -> Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_seconds:
                conn.reused = True
                return conn
            conn.close()
        return await self._connect()

    async def _connect(self) -> Connection:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port, limit=HEAD_LIMIT),
                                                    self.connect_timeout)
        except (OSError, TimeoutError) as err:
            raise UpstreamError(f"cannot connect: {err or type(err).__name__}") from None
        return Connection(reader, writer)

    def _release(self, conn: Connection | None, reusable: bool) -> None:
        if conn is not None:
            if reusable and not conn.closed:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
        self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Exchange:
    """One request and its answer. Entered, the answer's status and headers are read; its body is read with
    `read()` or relayed with `chunks()`. Leaving returns the connection to the pool when the answer was read to
    its end and the server keeps it open; otherwise the connection is closed."""

    __slots__ = ("upstream", "method", "request_bytes", "conn", "status", "headers", "length", "chunked",
                 "content_type", "_keep_alive", "_done")

    def __init__(self, upstream: Upstream, method: str, target: str, head: bytes, body: bytes) -> None:
        self.upstream = upstream
        self.method = method
        length = b"" if not body and method in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE") \
            else b"Content-Length: %d\r\n" % len(body)
        self.request_bytes = b"".join((method.encode("ascii"), b" ", target.encode("utf-8", "surrogateescape"),
                                       b" HTTP/1.1\r\nHost: ", upstream.authority.encode("ascii"), b"\r\n",
                                       head, length, b"\r\n", body))
        self.conn: Connection | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.length: int | None = None  # None: chunked, or until the connection's end
        self.chunked = False
        self.content_type = ""
        self._keep_alive = False
        self._done = False

    async def __aenter__(self) -> Exchange:
        upstream = self.upstream
        await upstream._slots.acquire()
        try:
            self.conn = await upstream._connection()
            while True:
                try:
                    await self._send_and_read_head(self.conn)
                    return self
                except (ConnectionError, asyncio.IncompleteReadError) as err:
                    stale = self.conn.reused and (not isinstance(err, asyncio.IncompleteReadError) or not err.partial)
                    self.conn.close()
                    self.conn = None
                    if not stale:
                        raise UpstreamError(f"the connection broke before the answer: {err or type(err).__name__}") \
                            from None
                # The server closed it while it was kept (likely every kept one: a restart): once more, on a new one.
                await upstream.close()
                self.conn = await upstream._connect()
        except BaseException:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            upstream._slots.release()
            raise

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.upstream._release(self.conn, kind is None and self._done and self._keep_alive)
        self.conn = None

    async def _send_and_read_head(self, conn: Connection) -> None:
        conn.writer.write(self.request_bytes)
        if conn.writer.transport.get_write_buffer_size():
            await conn.writer.drain()
        while True:
            try:
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise UpstreamError(f"the answer's head is over {HEAD_LIMIT} bytes") from None
            if self._parse(head):
                return

    def _parse(self, head: bytes) -> bool:
        """Takes the answer's head; False for an interim (1xx) answer, to be followed by the real one."""
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit():
            raise UpstreamError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        self.status = status = int(code)
        if 100 <= status < 200 and status != 101:
            return False
        headers: list[tuple[str, str]] = []
        length: int | None = None
        encoding: str | None = None
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or b"\n" in line or b"\r" in line or name != name.strip():
                raise UpstreamError(f"a malformed header line in the answer: {line[:80]!r}")
            key = name.decode("ascii", "surrogateescape")
            text = value.strip().decode("utf-8", "surrogateescape")
            lower = key.lower()
            if lower == "content-length":
                if not text.isdigit() or (length is not None and int(text) != length):
                    raise UpstreamError(f"a bad Content-Length in the answer: {text[:40]!r}")
                length = int(text)
            elif lower == "transfer-encoding":
                encoding = text.lower()
            elif lower == "connection":
                tokens = {t.strip().lower() for t in text.split(",")}
                close = "close" in tokens or (close and "keep-alive" not in tokens)
            elif lower == "content-type":
                self.content_type = text.partition(";")[0].strip().lower()
            headers.append((key, text))
        self.headers = headers
        chunked = False
        if self.method == "HEAD" or status in NO_BODY_STATUS:
            length = 0
        elif encoding is not None:  # it overrides any Content-Length (RFC 9112, section 6.3)
            length = None
            chunked = encoding.rsplit(",", 1)[-1].strip() == "chunked"
            close = close or not chunked  # otherwise framed by the connection's end
        elif length is None:
            close = True
        self.chunked = chunked
        self.length = length
        self._keep_alive = not close
        return True

    async def read(self) -> bytes:
        """The whole body."""
        if self.length is not None:
            reader = self._reader()
            try:
                data = await reader.readexactly(self.length) if self.length else b""
            except (ConnectionError, asyncio.IncompleteReadError) as err:
                raise UpstreamError(f"the answer broke off: {err or type(err).__name__}") from None
            self._done = True
            return data
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each chunk of a chunked answer, or what each read returns."""
        reader = self._reader()
        try:
            if self.length is not None:
                left = self.length
                while left:
                    data = await reader.read(min(left, READ_SIZE))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(data)
                    yield data
            elif self.chunked:
                while True:
                    line = await reader.readuntil(b"\r\n")
                    size = int(line.partition(b";")[0].strip(), 16)
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers: not relayed
                            pass
                        break
                    data = await reader.readexactly(size + 2)
                    if data[-2:] != b"\r\n":
                        raise UpstreamError("a chunk of the answer does not end in CRLF")
                    yield data[:-2]
            else:
                while data := await reader.read(READ_SIZE):
                    yield data
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as err:
            raise UpstreamError(f"the answer broke off: {err or type(err).__name__}") from None
        self._done = True

    def _reader(self) -> asyncio.StreamReader:
        assert self.conn is not None, "the exchange is not entered"
        return self.conn.reader
