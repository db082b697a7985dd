"""The prediction log's writer: a buffer bounded in bytes, Parquet files through fsspec, nothing on the request path.

The request path calls `offer`, which only appends to a deque or counts a drop; it never waits. A background
task turns records into rows (protocols.py), groups them by hour and writes one Parquet file per group and batch
under a Hive-partitioned layout:

    <uri>/date=YYYY-MM-DD/hour=HH/<revision>-<pod>-<seq>.parquet             predictions
    <uri>/feedback/date=YYYY-MM-DD/hour=HH/<revision>-<pod>-<seq>.parquet    ground truth (POST /v1/feedback)

Rows are made and encoded (parquet.py) on the event loop in steps of under a millisecond. Writes run in one
thread of their own (fsspec's file API blocks), each with a timeout, retried with doubling back-off, then dropped
with a counted reason. Only one write is ever in flight: a storage that hangs holds one file in a stuck thread,
whose records stay counted against the buffer until it returns, and no rows are made while it does, so memory
stays bounded by `buffer_bytes` (plus one file's bytes) however long the storage stalls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import groupby
from operator import itemgetter
from typing import Any

from . import protocols
from .config import AgentConfig
from .metrics import AgentMetrics
from .parquet import Rows, Writer

log = logging.getLogger("mlops_operator.agent")

PREDICTION = "prediction"
FEEDBACK = "feedback"
# Bytes a record costs beyond its bodies: its object, the bodies' objects, the base dict and its values, the
# deque slot. Measured with tracemalloc: 1,123 bytes for a KServe v1 request of 343 bytes and its 80-byte answer.
RECORD_OVERHEAD = 700
CONVERT_SLICE = 8  # records turned into rows between two yields to the event loop (about a millisecond)
GROUP_ROWS = 1000  # rows of a Parquet row group: the most rows that exist as Python objects at once


@dataclass
class Record:
    """One logged request (or one feedback item), as the request path saw it: raw bodies, parsed later."""

    kind: str
    time: datetime
    base: dict[str, Any]
    protocol: str | None = None
    request: bytes = b""
    response: bytes = b""
    streamed: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)
    rows_size: int = 0  # bytes of the body `rows` came from

    @property
    def size(self) -> int:
        return len(self.request) + len(self.response) + self.rows_size + RECORD_OVERHEAD


@dataclass
class File:
    """A Parquet file being made: its row groups so far, as bytes, and the records whose rows they hold."""

    writer: Writer
    records: list[Record] = field(default_factory=list)


async def _stepped(steps: Generator[None, None, bool]) -> bool:
    """Runs a generator's steps on the event loop, letting it run between them; returns what the generator returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return bool(done.value)
        await asyncio.sleep(0)


def now() -> tuple[int, datetime]:
    """The time as the log stores it (microseconds since the epoch) and as it partitions it."""
    micros = time.time_ns() // 1000
    return micros, datetime.fromtimestamp(micros / 1e6, timezone.utc)


class Sink:
    def __init__(self, config: AgentConfig, metrics: AgentMetrics) -> None:
        import fsspec

        self.config = config
        self.metrics = metrics
        self.fs, self.root = fsspec.core.url_to_fs(config.log_uri)
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self._pending: deque[Record] = deque()
        self.held_bytes = 0  # waiting, being converted or written, or stuck in a hung write
        self._wake = asyncio.Event()
        self._closing = False
        self._deadline = float("inf")
        self._taken: dict[int, Record] = {}  # out of the deque, not yet written or dropped
        self._in_flight: concurrent.futures.Future[None] | None = None
        self._in_flight_path = ""
        self._boot = int(time.time())
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    # -- the request path: O(1), never awaits --------------------------------------------------------------

    def offer(self, records: list[Record]) -> bool:
        """Takes all the records or none (counted as dropped for a full buffer or a closing agent)."""
        size = sum(r.size for r in records)
        if self._closing or self.held_bytes + size > self.config.buffer_bytes:
            self.metrics.dropped["shutdown" if self._closing else "buffer_full"].inc(len(records))
            return False
        self._hold(size)
        self._pending.extend(records)
        if len(self._pending) >= self.config.batch_rows:
            self._wake.set()
        return True

    # -- the background task ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mlops-agent-sink")

    async def close(self, grace_seconds: float) -> None:
        """Writes what is buffered within `grace_seconds`; what is still unwritten then is dropped as shutdown."""
        self._closing = True
        self._deadline = time.monotonic() + grace_seconds
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace_seconds)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:  # noqa: BLE001  (stopping goes on: what is left is counted below)
                log.exception("the log writer failed while stopping")
        unwritten = [*self._taken.values(), *self._pending]
        self._pending.clear()
        if unwritten:
            log.error("dropping %d records not written within the %.0fs grace period", len(unwritten), grace_seconds)
            self._settle(unwritten, dropped="shutdown")

    async def _run(self) -> None:
        while True:
            if not self._closing:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.config.batch_seconds)
                except TimeoutError:
                    pass
            self._wake.clear()
            if self._pending:
                batch = [self._pending.popleft() for _ in range(len(self._pending))]
                self._taken.update((id(r), r) for r in batch)
                try:
                    await self._write_batch(batch)
                except Exception:  # noqa: BLE001  (the writer must outlive any one batch)
                    log.exception("writing a batch of %d records failed", len(batch))
                    self._settle([r for r in batch if id(r) in self._taken], dropped="sink_error")
            elif self._closing:
                return

    async def _write_batch(self, batch: list[Record]) -> None:
        """Files per partition of at most batch_rows rows (a record's rows stay in one file), each written a row
        group of GROUP_ROWS rows at a time: rows are made just before their group is encoded, so only one group's
        rows exist as Python objects at a time, and a file waits as bytes."""

        def partition(record: Record) -> tuple[str, str, int]:
            return record.kind, record.time.date().isoformat(), record.time.hour

        keyed = sorted(((partition(r), i) for i, r in enumerate(batch)))  # stable; each record's key made once
        for key, grouped in groupby(keyed, key=itemgetter(0)):
            group = [batch[i] for _, i in grouped]
            file = File(Writer())
            records: list[Record] = []
            rows = Rows()
            for i, record in enumerate(group):
                if not file.records and not records and not await self._writable():  # before a file's first rows
                    log.error("dropping %d %s records: the storage still holds the last write", len(group) - i,
                              key[0])
                    self._settle(group[i:], dropped="sink_error")
                    break
                try:
                    columns, n = self._table(record)
                    rows.extend(columns, n, record.base)
                    records.append(record)
                except Exception:  # noqa: BLE001  (a body the extraction trips on costs its record, nothing more)
                    log.exception("could not turn a %s record into rows", record.kind)
                    self._settle([record], dropped="encode_error")
                if len(rows) >= min(GROUP_ROWS, self.config.batch_rows - file.writer.rows) or i == len(group) - 1:
                    file = await self._encode(key, file, records, rows)
                    if file.writer.rows >= self.config.batch_rows:
                        await self._write_file(key, file)
                        file = File(Writer())
                    records, rows = [], Rows()
                elif i % CONVERT_SLICE == CONVERT_SLICE - 1:
                    await asyncio.sleep(0)
            if file.records:
                await self._write_file(key, file)

    async def _encode(self, key: tuple[str, str, int], file: File, records: list[Record], rows: Rows) -> File:
        """The rows as the file's next row group; when their columns differ from the file's, the file is written
        as it is and they start the next one. Returns the file they are in."""
        if not records:
            return file
        for _ in range(2):
            try:
                added = await _stepped(file.writer.adding(rows))
            except Exception:  # noqa: BLE001
                log.exception("could not encode %d %s rows as Parquet", len(rows), key[0])
                self._settle(records, dropped="encode_error")
                return file
            if added:
                file.records += records
                return file
            await self._write_file(key, file)
            file = File(Writer())
        raise AssertionError("a new file takes any row group")

    async def _writable(self) -> bool:
        """Whether the last write has returned, waiting for it with the writes' back-off and attempts: no rows are
        made (the costly part, in memory too) for a storage that still holds the last write."""

        async def returned() -> str | None:
            return f"the last write ({self._in_flight_path}) has not returned" if self._writing() else None

        return await self._retried(returned)

    async def _retried(self, attempt: Callable[[], Awaitable[str | None]]) -> bool:
        """Awaits `attempt()` until it returns None (done), at most write_attempts times. Each failure (the text it
        returned) is counted and logged, then followed by a doubling back-off (0.5 s to 30 s) that the closing
        deadline cuts short. Whether an attempt succeeded."""
        delay = 0.5
        for number in range(1, self.config.write_attempts + 1):
            error = await attempt()
            if error is None:
                return True
            self.metrics.write_failures.inc()
            remaining = self._deadline - time.monotonic()
            if number == self.config.write_attempts or remaining <= 0:
                break
            log.warning("%s (attempt %d of %d, next in %.1fs)", error, number, self.config.write_attempts, delay)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 30.0)
        return False

    def _writing(self) -> bool:
        """Whether a write is in flight (or stuck in its thread)."""
        return self._in_flight is not None and not self._in_flight.done()

    def _table(self, record: Record) -> protocols.Table:
        if record.kind == FEEDBACK:
            return protocols.table_of(record.rows)
        assert record.protocol is not None
        return protocols.table(record.protocol, record.request, record.response,
                               columns=list(self.config.columns) or None, log_payloads=self.config.log_payloads,
                               streamed=record.streamed)

    def _path(self, kind: str, date: str, hour: int) -> str:
        self._seq += 1
        prefix = f"{self.root}/feedback" if kind == FEEDBACK else self.root
        name = f"{self.config.revision}-{self.config.pod}-{self._boot}{self._seq:06d}.parquet"
        return f"{prefix}/date={date}/hour={hour:02d}/{name}"

    async def _write_file(self, key: tuple[str, str, int], file: File) -> None:
        kind, date, hour = key
        records = file.records
        path = self._path(kind, date, hour)
        data = file.writer.finish()

        async def write() -> str | None:
            error = await self._attempt(path, data)
            return None if error is None else f"writing {path} failed: {error}"

        if await self._retried(write):
            self._settle(records)
            self.metrics.written[kind].inc(len(records))
            self.metrics.files.inc()
            return
        log.error("dropping %d %s records: %s could not be written", len(records), kind, path)
        stuck = self._in_flight if self._in_flight_path == path else None
        if stuck is not None and stuck.done():
            stuck = None
        self._settle(records, dropped="sink_error", release=stuck is None)
        if stuck is not None:
            # A thread still holds this file's bytes in a storage call: they stay counted until it returns.
            loop, size = asyncio.get_running_loop(), sum(r.size for r in records)
            stuck.add_done_callback(lambda _: loop.call_soon_threadsafe(self._hold, -size))

    async def _attempt(self, path: str, data: bytes) -> str | None:
        """One write with a timeout; the error as text, or None when written. Never a second write while a thread
        is still in the last one: a hung storage holds one file's bytes, not one per attempt."""
        if self._writing():
            return "the previous write has not returned yet"
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._in_flight, self._in_flight_path = future, path

        def put() -> None:
            try:
                self._put(path, data)
            except BaseException as err:  # noqa: BLE001  (handed to the waiting task)
                future.set_exception(err)
            else:
                future.set_result(None)

        # A daemon thread, not an executor's: a storage call that never returns must not keep the process alive.
        threading.Thread(target=put, name="mlops-agent-sink-write", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.config.write_timeout)
        except TimeoutError:
            return f"no answer in {self.config.write_timeout:g}s"
        except Exception as err:  # noqa: BLE001  (any storage error is retried, then dropped and counted)
            return f"{type(err).__name__}: {err}"
        return None

    def _put(self, path: str, data: bytes) -> None:
        parent = path.rpartition("/")[0]
        if self._local:
            # A reader never sees a half-written file: write beside it under a hidden name, then rename.
            self.fs.makedirs(parent, exist_ok=True)
            hidden = f"{parent}/.{path.rpartition('/')[2]}.tmp"
            self.fs.pipe_file(hidden, data)
            self.fs.mv(hidden, path)
        else:
            self.fs.pipe_file(path, data)  # one PUT: object stores show it whole or not at all

    def _hold(self, size: int) -> None:
        self.held_bytes += size
        self.metrics.buffer_bytes.set(self.held_bytes)

    def _settle(self, records: list[Record], dropped: str | None = None, release: bool = True) -> None:
        """Records written or dropped: their bytes leave the buffer (unless a stuck write still holds them)."""
        for record in records:
            self._taken.pop(id(record), None)
        if release:
            self._hold(-sum(r.size for r in records))
        if dropped:
            self.metrics.dropped[dropped].inc(len(records))
