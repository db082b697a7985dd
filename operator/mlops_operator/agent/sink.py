"""The prediction log's writer: a buffer bounded in bytes, Parquet files through fsspec, nothing on the request path.

The request path calls `offer`, which only appends to a deque or counts a drop; it never waits. A background
task turns records into rows (protocols.py), groups them by hour and writes one Parquet file per group and batch
under a Hive-partitioned layout:

    <uri>/date=YYYY-MM-DD/hour=HH/<revision>-<pod>-<seq>.parquet             predictions
    <uri>/feedback/date=YYYY-MM-DD/hour=HH/<revision>-<pod>-<seq>.parquet    ground truth (POST /v1/feedback)

Writes run in one thread of their own (fsspec's file API blocks), each with a timeout, retried with doubling
back-off, then dropped with a counted reason. Only one write is ever in flight: a storage that hangs holds one
file in a stuck thread, whose records stay counted against the buffer until it returns, so memory stays bounded
by `buffer_bytes` (plus one file's Parquet framing) however long the storage stalls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import groupby
from typing import Any

from . import protocols
from .config import AgentConfig
from .metrics import AgentMetrics

log = logging.getLogger("mlops_operator.agent")

PREDICTION = "prediction"
FEEDBACK = "feedback"
RECORD_OVERHEAD = 256  # bytes a record costs beyond its bodies (its object, header values, the deque slot)
CONVERT_SLICE = 8  # records turned into rows between two yields to the event loop (about a millisecond)


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


def now() -> tuple[int, datetime]:
    """The time as the log stores it (microseconds since the epoch) and as it partitions it."""
    micros = time.time_ns() // 1000
    return micros, datetime.fromtimestamp(micros / 1e6, timezone.utc)


def to_table(rows: list[dict[str, Any]]) -> Any:
    """An Arrow table of rows whose keys may differ: the union of columns, missing values null. A column whose
    values Arrow cannot type together (a number here, a string there) is kept as JSON text."""
    import pyarrow as pa

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    arrays = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if name == "timestamp":
            # Microseconds since the epoch, cast: converting tz-aware datetimes costs pyarrow ~0.4 ms each.
            arrays[name] = pa.array(values, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
            continue
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            arrays[name] = pa.array([None if v is None else json.dumps(v, default=str) for v in values],
                                    type=pa.string())
    return pa.table(arrays)


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = pa.BufferOutputStream()
    pq.write_table(to_table(rows), out, compression="zstd")
    return bytes(out.getvalue())


class Sink:
    def __init__(self, config: AgentConfig, metrics: AgentMetrics) -> None:
        import fsspec

        # pyarrow's import and its first conversion take about 2 s and 60 MB (without pandas: app.without_pandas),
        # once: at start, not under the first batch (where they held the event loop for a second).
        parquet_bytes([{"timestamp": 0, "x": 0.5}])
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
        """Files per partition of at most batch_rows rows (a record's rows stay in one file). Rows are made per
        file, just before it is encoded, so only one file's rows exist as Python objects at a time."""

        def partition(record: Record) -> tuple[str, str, int]:
            return record.kind, record.time.strftime("%Y-%m-%d"), record.time.hour

        for key, group in groupby(sorted(batch, key=partition), key=partition):
            records: list[Record] = []
            rows: list[dict[str, Any]] = []
            for i, record in enumerate(group):
                try:
                    rows.extend(self._rows(record))
                    records.append(record)
                except Exception:  # noqa: BLE001  (a body the extraction trips on costs its record, nothing more)
                    log.exception("could not turn a %s record into rows", record.kind)
                    self._settle([record], dropped="encode_error")
                if len(rows) >= self.config.batch_rows:
                    await self._write_file(key, records, rows)
                    records, rows = [], []
                elif i % CONVERT_SLICE == CONVERT_SLICE - 1:
                    await asyncio.sleep(0)
            if records:
                await self._write_file(key, records, rows)

    def _rows(self, record: Record) -> list[dict[str, Any]]:
        if record.kind == FEEDBACK:
            return [{**row, **record.base} for row in record.rows]
        assert record.protocol is not None
        found = protocols.rows(record.protocol, record.request, record.response,
                               columns=list(self.config.columns) or None, log_payloads=self.config.log_payloads,
                               streamed=record.streamed)
        return [{**row, **record.base} for row in found]

    def _path(self, kind: str, date: str, hour: int) -> str:
        self._seq += 1
        prefix = f"{self.root}/feedback" if kind == FEEDBACK else self.root
        name = f"{self.config.revision}-{self.config.pod}-{self._boot}{self._seq:06d}.parquet"
        return f"{prefix}/date={date}/hour={hour:02d}/{name}"

    async def _write_file(self, key: tuple[str, str, int], records: list[Record], rows: list[dict[str, Any]]) -> None:
        kind, date, hour = key
        path = self._path(kind, date, hour)
        data: bytes | None = None
        delay = 0.5
        for attempt in range(1, self.config.write_attempts + 1):
            if self._in_flight is not None and not self._in_flight.done():
                # Encoding is the costly part: not while the storage still holds the last write.
                error: str | None = "the previous write has not returned yet"
            else:
                if data is None:
                    try:
                        data = await asyncio.to_thread(parquet_bytes, rows)
                    except Exception:  # noqa: BLE001
                        log.exception("could not encode %d %s rows as Parquet", len(rows), kind)
                        self._settle(records, dropped="encode_error")
                        return
                error = await self._attempt(path, data)
            if error is None:
                self._settle(records)
                self.metrics.written[kind].inc(len(records))
                self.metrics.files.inc()
                return
            self.metrics.write_failures.inc()
            remaining = self._deadline - time.monotonic()
            if attempt == self.config.write_attempts or remaining <= 0:
                break
            log.warning("writing %s failed (attempt %d of %d, next in %.1fs): %s", path, attempt,
                        self.config.write_attempts, delay, error)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 30.0)
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
        """One write with a timeout; the error as text, or None when written."""
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
