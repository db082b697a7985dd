"""Reading drift data: a Parquet or CSV dataset (one file, or a prefix of files under Hive partitions) through
pyarrow and fsspec, narrowed to a time window, a serving revision and the monitored columns, and the columns as
numpy arrays for the statistics engine.

A prediction log is laid out by the inference agent (agent/sink.py) as

    <uri>/date=YYYY-MM-DD/hour=HH/<revision>-<pod>-<seq>.parquet             predictions
    <uri>/feedback/date=YYYY-MM-DD/hour=HH/...                               ground truth, never read here

so a window is pushed down twice: to the partition names, while listing (a `date=` or `hour=` folder that ends
before the window starts is neither listed nor opened, so time and memory grow with the window, not with the log's
history), then to the timestamp column (pyarrow skips row groups by their statistics and filters the rest).

Every failure is a DataError whose reason says which kind it is (a person fixes each differently):
DataUnreadable (the URI or the file), MissingColumn, EmptyWindow, SchemaChanged (a column's kind differs
between reference and current), InvalidData.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

FEEDBACK = "feedback"
"""The agent's ground-truth partition under the log's root: other rows, other columns."""

LOG_COLUMNS = ("request_id", "revision", "model_uri", "status_code", "latency_seconds", "protocol")
"""What the agent writes beside the features: never compared unless a feature names one."""

REVISION_COLUMN = "revision"
ALL_REVISIONS = "all"

EXTENSIONS = {"parquet": (".parquet", ".parq"), "csv": (".csv", ".csv.gz")}
HIDDEN = (".", "_")  # a writer's temporary files (the agent's `.<name>.tmp`), _SUCCESS, _metadata


class DataError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclasses.dataclass(frozen=True)
class Window:
    duration_seconds: int | None = None
    timestamp_column: str = "timestamp"
    last_rows: int | None = None

    def since(self, now: datetime) -> datetime | None:
        return None if self.duration_seconds is None else now - timedelta(seconds=self.duration_seconds)

    def describe(self) -> str:
        return (f" (the last {self.duration_seconds}s by {self.timestamp_column!r})"
                if self.duration_seconds is not None else "")


def _format(uri: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    path = urlsplit(uri).path.lower()
    if path.endswith((".csv", ".csv.gz")):
        return "csv"
    return "parquet"


def _local_path(uri: str) -> str | None:
    parts = urlsplit(uri)
    return parts.path if parts.scheme in ("", "file") else None


# -- which files: partition pruning while listing -------------------------------------------------------------


def _partition(name: str) -> tuple[str, str] | None:
    key, sep, value = name.partition("=")
    return (key, value) if sep else None


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def may_hold(name: str, day: date | None, since: datetime) -> bool:
    """Whether folder `name` (under a `date=` folder of `day`, if any) may hold rows at or after `since` (UTC).
    Only `date=YYYY-MM-DD` and `hour=HH` folders can be ruled out; anything unparsable is kept, never dropped."""
    partition = _partition(name)
    if partition is None:
        return True
    key, value = partition
    if key == "date" and (start := _day(value)) is not None:
        end = datetime(start.year, start.month, start.day, tzinfo=timezone.utc) + timedelta(days=1)
        return end > since
    if key == "hour" and day is not None and value.isdigit() and int(value) < 24:
        end = datetime(day.year, day.month, day.day, int(value), tzinfo=timezone.utc) + timedelta(hours=1)
        return end > since
    return True


def _walk(fs: Any, folder: str, extensions: tuple[str, ...], since: datetime | None, day: date | None,
          top: bool) -> Iterator[dict]:
    # Names first, pruned by name; only what is kept is looked at further (a stat on a local disk; object
    # stores answer from the listing they just made).
    for path in sorted(fs.ls(folder, detail=False)):
        name = path.rstrip("/").rpartition("/")[2]
        if name.startswith(HIDDEN) or (top and name == FEEDBACK):
            continue
        if since is not None and not may_hold(name, day, since):
            continue
        entry = fs.info(path)
        if entry["type"] == "directory":
            partition = _partition(name)
            inner_day = _day(partition[1]) if partition and partition[0] == "date" else day
            yield from _walk(fs, entry["name"], extensions, since, inner_day, top=False)
        elif name.lower().endswith(extensions):
            yield entry


# -- a dataset: its files, its schema, reading a window of it -------------------------------------------------


@dataclasses.dataclass
class Source:
    """The files of one dataset at `uri` that a read may need (after partition pruning), and how to read them."""

    uri: str
    fmt: str
    fs: Any  # an fsspec filesystem
    files: list[dict]  # fsspec info dicts: name, size, and mtime or ETag when the storage tells

    @functools.cached_property
    def _format(self) -> ds.FileFormat:
        return ds.ParquetFileFormat() if self.fmt == "parquet" else ds.CsvFileFormat()

    @functools.cached_property
    def _filesystem(self) -> Any:
        """pyarrow's own local filesystem for local files (no Python in each read), else the fsspec one."""
        from fsspec.implementations.local import LocalFileSystem
        from pyarrow.fs import FSSpecHandler, PyFileSystem
        from pyarrow.fs import LocalFileSystem as ArrowLocalFileSystem

        if type(self.fs) is LocalFileSystem:
            return ArrowLocalFileSystem()
        return PyFileSystem(FSSpecHandler(self.fs))

    @functools.cached_property
    def _fragments(self) -> list[ds.Fragment]:
        return [self._format.make_fragment(f["name"], self._filesystem, file_size=f.get("size") or None)
                for f in self.files]

    def _dataset(self, schema: pa.Schema) -> ds.FileSystemDataset:
        return ds.FileSystemDataset(self._fragments, schema, self._format, self._filesystem)

    @functools.cached_property
    def schema(self) -> pa.Schema:
        """The newest file's schema: it is what the log looks like now, and a window reads that file anyway."""
        with _unreadable(self.uri):
            schema: pa.Schema = self._fragments[-1].physical_schema
            return schema

    def fingerprint(self) -> str:
        """Changes when any file of the dataset is added, removed or rewritten (by size, mtime or ETag)."""
        digest = hashlib.sha256(self.uri.encode())
        for f in self.files:
            stamp = f.get("mtime") or f.get("ETag") or f.get("LastModified") or f.get("updated") or ""
            digest.update(f"|{f['name']}|{f.get('size')}|{stamp}".encode())
        return digest.hexdigest()

    def read(self, columns: list[str], window: Window = Window(), now: datetime | None = None,
             revision: str = ALL_REVISIONS) -> pa.Table:
        """The named columns (and the timestamp column, when the data has it) of the rows in `window` from
        `revision` (when the data has a revision column). Raises EmptyWindow when no row is left."""
        with _unreadable(self.uri):
            schema = self.schema
            ts = window.timestamp_column
            wanted = list(dict.fromkeys([*columns, *([ts] if ts in schema.names else [])]))
            for name in wanted:
                if name not in schema.names:
                    raise DataError("MissingColumn", f"column {name!r} is not in {self.uri}")
            dataset = self._dataset(_numbers_as_float(schema, wanted))
            condition = _condition(schema, window, now, revision)
            try:
                table = dataset.to_table(columns=wanted, filter=condition)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
                raise DataError("InvalidData", f"{self.uri}: the files disagree on a column's type: {err}") from None
        return apply_window(table, window, now or utcnow(), what=_revision_note(schema, revision))


def open_source(uri: str, fmt: str | None = None, window: Window = Window(), now: datetime | None = None,
                filesystem: Any = None) -> Source:
    """The dataset at `uri`: one file, or every data file under the prefix (Hive partitions `date=`/`hour=`
    pruned to the window; the `feedback/` partition, hidden files and other formats' files left out).
    `filesystem` (an fsspec filesystem) replaces the one the URI names."""
    import fsspec

    kind = _format(uri, fmt)
    with _unreadable(uri):
        if filesystem is None:
            filesystem, root = fsspec.core.url_to_fs(uri)
        else:
            root = filesystem._strip_protocol(uri)
        info = filesystem.info(root)
        if info["type"] != "directory":
            return Source(uri, kind, filesystem, [info])
        since = window.since(now or utcnow())
        files = list(_walk(filesystem, info["name"], EXTENSIONS[kind], since, None, top=True))
    if not files:
        if since is not None:
            raise DataError("EmptyWindow", f"no rows in the current window{window.describe()}: no partition of "
                                           f"{uri} reaches past {since.isoformat()}")
        raise DataError("DataUnreadable", f"{uri}: no {kind} files under this prefix")
    return Source(uri, kind, filesystem, files)


def read_table(uri: str, fmt: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """All rows at uri (file://, http(s)://, s3://, gs:// with their fsspec backends): the named columns, or all."""
    source = open_source(uri, fmt)
    return source.read(columns if columns is not None else source.schema.names)


@contextlib.contextmanager
def _unreadable(uri: str) -> Iterator[None]:
    """Storage and format errors as DataUnreadable naming the URI."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("DataUnreadable", f"{uri}: not found") from None
    except (OSError, ValueError, ImportError, pa.ArrowException) as err:
        raise DataError("DataUnreadable", f"{uri}: {err}") from None


def _numbers_as_float(schema: pa.Schema, names: list[str]) -> pa.Schema:
    """Number columns as float64: the agent types each file from its own rows, so a feature can be int64 in one
    file and double in the next; the statistics take float64 anyway."""
    fields = [pa.field(f.name, pa.float64()) if f.name in names and _kind(f.type) == "number" else f for f in schema]
    return pa.schema(fields)


def _condition(schema: pa.Schema, window: Window, now: datetime | None, revision: str) -> ds.Expression | None:
    """The filter pyarrow applies while scanning: the revision, and the window's start when the timestamp column
    is typed as time (text times are filtered after reading, by apply_window)."""
    condition = None
    if revision != ALL_REVISIONS and REVISION_COLUMN in schema.names:
        condition = ds.field(REVISION_COLUMN) == revision
    since = window.since(now or utcnow())
    if since is not None and window.timestamp_column in schema.names:
        kind = schema.field(window.timestamp_column).type
        if pa.types.is_timestamp(kind):
            start = since if kind.tz else since.astimezone(timezone.utc).replace(tzinfo=None)
            after = ds.field(window.timestamp_column) >= pa.scalar(start, type=kind)
            condition = after if condition is None else condition & after
    return condition


def _revision_note(schema: pa.Schema, revision: str) -> str:
    return f" of revision {revision!r}" if revision != ALL_REVISIONS and REVISION_COLUMN in schema.names else ""


def apply_window(table: pa.Table, window: Window, now: datetime, what: str = "") -> pa.Table:
    column = window.timestamp_column
    if window.duration_seconds is not None:
        if column not in table.column_names:
            raise DataError("MissingColumn", f"timestamp column {column!r} (for the window) is not in the data")
        times = _times(table, column)
        since = pa.scalar(window.since(now), type=pa.timestamp("us", tz="UTC"))
        table = table.filter(pc.greater_equal(times, since))
    if window.last_rows is not None and table.num_rows > window.last_rows:
        if column in table.column_names:  # the last rows by time: files of several pods interleave
            table = table.take(pc.sort_indices(_times(table, column)))
        table = table.slice(table.num_rows - window.last_rows)
    if table.num_rows == 0:
        raise DataError("EmptyWindow", f"no rows{what} in the current window{window.describe()}")
    return table


def _times(table: pa.Table, column: str) -> pa.ChunkedArray:
    times = table.column(column)
    if not pa.types.is_timestamp(times.type):
        try:  # RFC 3339 strings ("2026-11-26T10:00:00Z") cast directly
            times = pc.cast(times, pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise DataError("InvalidData", f"column {column!r} does not hold times: {err}") from None
    if times.type.tz is None:
        times = pc.assume_timezone(times, "UTC")
    return times


def epoch_seconds(table: pa.Table, column: str) -> np.ndarray:
    """A time column (timestamps, or RFC 3339 strings) as float seconds since the epoch."""
    times = pc.cast(_times(table, column), pa.timestamp("us", tz="UTC"))
    micros: np.ndarray = pc.cast(times, pa.int64()).to_numpy(zero_copy_only=False)
    return micros / 1e6


def _kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "time"
    return "text"


def to_arrays(table: pa.Table, names: list[str]) -> dict[str, np.ndarray]:
    """Columns as numpy: numbers as float64 with NaN for nulls, everything else as object arrays of Python values
    (None for nulls)."""
    out = {}
    for name in names:
        column = table.column(name)
        if _kind(column.type) == "number":
            out[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_boolean(
                column.type):
            # converted in Arrow's C++, not row by row through a list: a third of the time for text
            out[name] = np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
        else:  # times, lists, dictionaries: the Python values, as to_pylist makes them
            out[name] = np.asarray(column.to_pylist(), dtype=object)
    return out


def feature_columns(reference: pa.Schema | pa.Table, current: pa.Schema | pa.Table, wanted: list[str] | None,
                    skip: tuple[str, ...] = ()) -> list[str]:
    """The columns to compare: the named ones (each must be in both), or every shared column but `skip` and the
    prediction log's own columns. Raises MissingColumn, or SchemaChanged when a column's kind differs between the
    two. Takes schemas (nothing read yet) or tables."""
    ref = reference if isinstance(reference, pa.Schema) else reference.schema
    cur = current if isinstance(current, pa.Schema) else current.schema
    if wanted:
        for name in wanted:
            for label, schema in (("reference", ref), ("current", cur)):
                if name not in schema.names:
                    raise DataError("MissingColumn", f"feature {name!r} is not in the {label} data")
        names = list(wanted)
    else:
        names = [n for n in ref.names if n in cur.names and n not in skip and n not in LOG_COLUMNS]
        if not names:
            raise DataError("MissingColumn", "the reference and current data share no columns")
    for name in names:
        ref_kind, cur_kind = _kind(ref.field(name).type), _kind(cur.field(name).type)
        if ref_kind != cur_kind:
            raise DataError("SchemaChanged", f"column {name!r} is {ref_kind} in the reference data but "
                                             f"{cur_kind} in the current data")
    return names


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
