"""Reading drift data: Parquet or CSV through pyarrow and fsspec, a time window and a row window, and the
columns as numpy arrays for the statistics engine.

Every failure is a DataError whose reason says which kind it is (a person fixes each differently):
DataUnreadable (the URI or the file), MissingColumn, EmptyWindow, SchemaChanged (a column's kind differs
between reference and current).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import IO
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class DataError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclasses.dataclass(frozen=True)
class Window:
    duration_seconds: int | None = None
    timestamp_column: str = "timestamp"
    last_rows: int | None = None


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


def read_table(uri: str, fmt: str | None = None) -> pa.Table:
    """The whole table at uri (file://, http(s)://, s3://, gs:// with their fsspec backends)."""
    kind = _format(uri, fmt)
    try:
        local = _local_path(uri)
        if local is not None:
            source = local
            return _read(source, kind)
        import fsspec

        with fsspec.open(uri, "rb") as handle:
            return _read(handle, kind)
    except DataError:
        raise
    except (OSError, ValueError, ImportError, pa.ArrowException) as err:
        raise DataError("DataUnreadable", f"{uri}: {err}") from None


def _read(source: str | IO[bytes], kind: str) -> pa.Table:
    if kind == "csv":
        import pyarrow.csv as pacsv

        return pacsv.read_csv(source)
    import pyarrow.parquet as pq

    return pq.read_table(source)


def apply_window(table: pa.Table, window: Window, now: datetime) -> pa.Table:
    if window.duration_seconds is not None:
        column = window.timestamp_column
        if column not in table.column_names:
            raise DataError("MissingColumn", f"timestamp column {column!r} (for the window) is not in the data")
        times = table.column(column)
        if not pa.types.is_timestamp(times.type):
            try:  # RFC 3339 strings ("2026-11-26T10:00:00Z") cast directly
                times = pc.cast(times, pa.timestamp("us", tz="UTC"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise DataError("InvalidData", f"column {column!r} does not hold times: {err}") from None
        if times.type.tz is None:
            times = pc.assume_timezone(times, "UTC")
        since = pa.scalar(now - timedelta(seconds=window.duration_seconds), type=pa.timestamp("us", tz="UTC"))
        table = table.filter(pc.greater_equal(times, since))
    if window.last_rows is not None and table.num_rows > window.last_rows:
        table = table.slice(table.num_rows - window.last_rows)
    if table.num_rows == 0:
        raise DataError("EmptyWindow", "no rows in the current window"
                        + (f" (the last {window.duration_seconds}s by {window.timestamp_column!r})"
                           if window.duration_seconds is not None else ""))
    return table


def _kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "time"
    return "text"


def to_arrays(table: pa.Table, names: list[str]) -> dict[str, np.ndarray]:
    """Columns as numpy: numbers as float64 with NaN for nulls, everything else as object arrays."""
    out = {}
    for name in names:
        column = table.column(name)
        if _kind(column.type) == "number":
            out[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            out[name] = np.asarray(column.to_pylist(), dtype=object)
    return out


def feature_columns(reference: pa.Table, current: pa.Table, wanted: list[str] | None,
                    skip: tuple[str, ...] = ()) -> list[str]:
    """The columns to compare: the named ones (each must be in both), or every shared column but `skip`.
    Raises MissingColumn, or SchemaChanged when a column's kind differs between the two."""
    if wanted:
        for name in wanted:
            for label, table in (("reference", reference), ("current", current)):
                if name not in table.column_names:
                    raise DataError("MissingColumn", f"feature {name!r} is not in the {label} data")
        names = list(wanted)
    else:
        names = [n for n in reference.column_names if n in current.column_names and n not in skip]
        if not names:
            raise DataError("MissingColumn", "the reference and current data share no columns")
    for name in names:
        ref_kind, cur_kind = _kind(reference.column(name).type), _kind(current.column(name).type)
        if ref_kind != cur_kind:
            raise DataError("SchemaChanged", f"column {name!r} is {ref_kind} in the reference data but "
                                             f"{cur_kind} in the current data")
    return names


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
