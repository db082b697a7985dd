"""The prediction log's file format: rows of Python values to a Parquet file, in the standard library alone.

Why not pyarrow: loaded and warmed, it costs the agent's process about 60 MB before the first request (42 MB
without it), and the agent's memory target is "the configured buffer + 50 MB" for the whole process. The agent
writes flat rows of a few known kinds of value, which need a small part of the format: row groups of one data
page (v1) per column, PLAIN values, RLE levels, GZIP pages (zlib), an INT64 column's min and max. pyarrow (what
the DriftMonitor reads with; tests/unit/test_agent_parquet.py) sees the types its own inference gives the values:

    bool -> BOOLEAN                          int -> INT64                 float, or int mixed with float -> DOUBLE
    str -> BYTE_ARRAY STRING                 None only -> null (UNKNOWN)  the `timestamp` column -> TIMESTAMP(us, UTC)
    lists of one of those -> LIST            anything else (objects, mixed kinds, ints past 64 bits) -> JSON text

Every column is optional (None is null). Owns the encoding only; the sink decides what goes in a file.
The format: https://github.com/apache/parquet-format (parquet.thrift; Thrift's compact protocol).
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAGIC = b"PAR1"
CREATED_BY = "mlops-operator agent"
TIMESTAMP = "timestamp"
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# parquet.thrift enums
BOOLEAN, INT32, INT64, DOUBLE, BYTE_ARRAY = 0, 1, 2, 5, 6
OPTIONAL, REPEATED = 1, 2
UTF8, LIST, TIMESTAMP_MICROS = 0, 3, 10  # ConvertedType
PLAIN, RLE = 0, 3
GZIP = 2
DATA_PAGE = 0

# Thrift compact protocol types
T_TRUE, T_FALSE, T_I32, T_I64, T_BINARY, T_LIST, T_STRUCT = 1, 2, 5, 6, 8, 9, 12


# -- Thrift compact protocol: just what the footer and page headers use ----------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


class Struct:
    """A Thrift struct being written: fields in increasing id order, then `end()`."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._last = 0

    def _header(self, fid: int, ttype: int) -> None:
        delta = fid - self._last
        if 0 < delta <= 15:
            self.out.append(delta << 4 | ttype)
        else:
            self.out.append(ttype)
            self.out += _zigzag(fid)
        self._last = fid

    def i32(self, fid: int, value: int) -> Struct:
        self._header(fid, T_I32)
        self.out += _zigzag(value)
        return self

    def i64(self, fid: int, value: int) -> Struct:
        self._header(fid, T_I64)
        self.out += _zigzag(value)
        return self

    def boolean(self, fid: int, value: bool) -> Struct:
        self._header(fid, T_TRUE if value else T_FALSE)
        return self

    def binary(self, fid: int, value: bytes | str) -> Struct:
        data = value.encode() if isinstance(value, str) else value
        self._header(fid, T_BINARY)
        self.out += _varint(len(data)) + data
        return self

    def struct(self, fid: int, value: Struct) -> Struct:
        self._header(fid, T_STRUCT)
        self.out += value.end()
        return self

    def list(self, fid: int, etype: int, items: Sequence[bytes]) -> Struct:
        """`items` already encoded: zigzag varints for i32, length-prefixed for binary, ended structs."""
        self._header(fid, T_LIST)
        n = len(items)
        self.out += bytes([n << 4 | etype]) if n < 15 else bytes([0xF0 | etype]) + _varint(n)
        for item in items:
            self.out += item
        return self

    def end(self) -> bytes:
        return bytes(self.out) + b"\x00"


def _string(value: str) -> bytes:
    data = value.encode()
    return _varint(len(data)) + data


# -- columns -----------------------------------------------------------------------------------------------------

@dataclass
class Column:
    """One column's values cast to their Parquet kind: `kind` is the leaf's physical type (None for a null
    column), `values` the leaf values (lists flattened), with their definition and repetition levels."""

    name: str
    kind: int | None
    is_list: bool
    text: bool  # BYTE_ARRAY holding UTF-8 text (strings, or JSON text of what fits no other kind)
    values: list[Any]
    defs: list[int]
    reps: list[int]


KINDS = (bool, int, float, str)  # bool before int: a bool is an int too


def _scalar_kind(values: Iterable[Any]) -> tuple[int | None, bool] | None:
    """The kind of non-null scalars taken together: (physical type, is text), or None when they do not share one.
    Each distinct type is placed once, by isinstance (numpy's float64 is a float)."""
    seen: set[type] = set()
    for found in set(map(type, values)) - {type(None)}:
        kind = next((k for k in KINDS if issubclass(found, k)), None)
        if kind is None:
            return None
        seen.add(kind)
    if not seen:
        return None, False
    if seen == {bool}:
        return BOOLEAN, False
    if seen == {str}:
        return BYTE_ARRAY, True
    if seen <= {int, float}:
        return (INT64 if seen == {int} else DOUBLE), False
    return None


def _fits_int64(present: list[Any], kind: int | None) -> bool:
    """No int past 64 bits among the non-null values (pyarrow refuses those too, even beside floats)."""
    if kind == DOUBLE and int in set(map(type, present)):
        present = [v for v in present if type(v) is int]
    elif kind != INT64:
        return True
    return not present or (INT64_MIN <= min(present) and max(present) <= INT64_MAX)


def column(name: str, values: list[Any]) -> Column:
    """A column of rows' values: its kind as pyarrow would infer it, else JSON text."""
    n = len(values)
    if all(v is None or type(v) is list for v in values) and any(v is not None for v in values):
        flat = [item for v in values if v for item in v]
        kind = _scalar_kind(flat)
        if kind is not None and _fits_int64([v for v in flat if v is not None], kind[0]):
            physical, text = kind
            leaves, defs, reps = [], [], []
            for v in values:
                if not v:  # a null list (0) or an empty one (1)
                    defs.append(0 if v is None else 1)
                    reps.append(0)
                else:
                    for i, item in enumerate(v):
                        reps.append(1 if i else 0)
                        defs.append(2 if item is None else 3)
                        if item is not None:
                            leaves.append(item)  # array('d') takes ints as they are
            return Column(name, physical, True, text, leaves, defs, reps)
    kind = _scalar_kind(values)
    complete = None not in values  # the usual column: no list to filter, one run of levels
    present = values if complete else [v for v in values if v is not None]
    if kind is not None and _fits_int64(present, kind[0]):
        physical, text = kind
        defs = [1] * n if complete else [0 if v is None else 1 for v in values]
        return Column(name, physical, False, text, present, defs, [0] * n)
    texts = [json.dumps(v, default=str) for v in values if v is not None]
    return Column(name, BYTE_ARRAY, False, True, texts, [0 if v is None else 1 for v in values], [0] * n)


def _levels(levels: list[int], max_level: int) -> bytes:
    """Levels in the RLE / bit-packing hybrid, as RLE runs only, prefixed by their length (data page v1)."""
    width = (max_level.bit_length() + 7) // 8
    i, n = 0, len(levels)
    if n and levels.count(levels[0]) == n:  # one run: the usual column, with no nulls
        run = _varint(n << 1) + levels[0].to_bytes(width, "little")
        return struct.pack("<I", len(run)) + run
    out = bytearray()
    while i < n:
        value, j = levels[i], i + 1
        while j < n and levels[j] == value:
            j += 1
        out += _varint((j - i) << 1) + value.to_bytes(width, "little")
        i = j
    return struct.pack("<I", len(out)) + bytes(out)


def _little_endian(values: array) -> bytes:
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def _plain(col: Column) -> bytes:
    if col.kind == INT64:
        return _little_endian(array("q", col.values))
    if col.kind == DOUBLE:
        return _little_endian(array("d", col.values))
    if col.kind == BOOLEAN:
        bits = bytearray((len(col.values) + 7) // 8)
        for i, value in enumerate(col.values):
            if value:
                bits[i >> 3] |= 1 << (i & 7)
        return bytes(bits)
    if col.kind == BYTE_ARRAY:
        # Each value is its length (4 bytes) and its UTF-8 bytes. A lone surrogate from JSON is not UTF-8: replaced.
        if len(set(col.values)) == 1:  # one value all along (revision, model URI, protocol)
            data: bytes = col.values[0].encode("utf-8", "replace")
            return (struct.pack("<I", len(data)) + data) * len(col.values)
        encoded = [v.encode("utf-8", "replace") for v in col.values]
        if len(set(map(len, encoded))) == 1:  # one length all along (request ids): one join
            prefix = struct.pack("<I", len(encoded[0]))
            return prefix + prefix.join(encoded)
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    return b""  # a null column has no values


def _schema(col: Column) -> list[bytes]:
    """The column's schema elements (after the root), depth first."""
    kind = INT32 if col.kind is None else col.kind

    def leaf(name: str) -> bytes:
        s = Struct().i32(1, kind).i32(3, OPTIONAL).binary(4, name)
        if col.name == TIMESTAMP and kind == INT64 and not col.is_list:
            micros = Struct().struct(2, Struct())
            logical = Struct().boolean(1, True).struct(2, micros)
            s.i32(6, TIMESTAMP_MICROS).struct(10, Struct().struct(8, logical))
        elif col.text:
            s.i32(6, UTF8).struct(10, Struct().struct(1, Struct()))
        elif col.kind is None:
            s.struct(10, Struct().struct(11, Struct()))
        return s.end()

    if not col.is_list:
        return [leaf(col.name)]
    list_type = Struct().struct(3, Struct())
    outer = Struct().i32(3, OPTIONAL).binary(4, col.name).i32(5, 1).i32(6, LIST).struct(10, list_type)
    middle = Struct().i32(3, REPEATED).binary(4, "list").i32(5, 1)
    return [outer.end(), middle.end(), leaf("element")]


def _statistics(col: Column) -> Struct | None:
    """Min and max of an INT64 column (the timestamp's among them), so readers can skip a file by its window."""
    if col.kind != INT64 or not col.values:
        return None
    stats = Struct()
    if not col.is_list:
        stats.i64(3, len(col.defs) - len(col.values))  # null count
    return stats.binary(5, struct.pack("<q", max(col.values))).binary(6, struct.pack("<q", min(col.values)))


class Rows:
    """Rows gathered as columns, the way the file stores them: a list of values per column (missing values None)
    instead of a dict per row, about a third of the memory for the agent's rows of a few dozen columns."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {}
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        columns = self.columns
        if row.keys() == columns.keys():  # the usual case: the columns of the rows before
            for name, value in row.items():
                columns[name].append(value)
            self.count += 1
            return
        for name, value in row.items():
            values = columns.get(name)
            if values is None:
                values = columns[name] = [None] * self.count
            values.append(value)
        self.count += 1
        for values in columns.values():
            if len(values) < self.count:
                values.append(None)

    def extend(self, columns: Mapping[str, Sequence[Any]], n: int, shared: Mapping[str, Any]) -> None:
        """`n` rows given as columns (each of `n` values), every one of them also holding `shared`'s values, which
        take the place of a column of the same name: a call's table and its record's timestamp, request id and the
        rest, without a dict per row."""
        cols = self.columns
        count = self.count
        touched = len(shared)
        for name, values in columns.items():
            if name in shared:
                continue
            touched += 1
            column = cols.get(name)
            if column is None:
                column = cols[name] = [None] * count
            column.extend(values)
        for name, value in shared.items():
            column = cols.get(name)
            if column is None:
                column = cols[name] = [None] * count
            column.extend([value] * n)
        self.count = count = count + n
        if touched < len(cols):  # columns of earlier rows that these rows do not have
            for column in cols.values():
                if len(column) < count:
                    column.extend([None] * (count - len(column)))

    def __len__(self) -> int:
        return self.count


class Writer:
    """A Parquet file written a row group at a time: only one group's Python values exist at once, the file grows as
    bytes. Every group of a file has the same columns of the same kinds; `add` refuses a group that differs (a new
    column, a null column now typed), which then starts a file of its own."""

    def __init__(self) -> None:
        self.out = bytearray(MAGIC)
        self.rows = 0
        self._signature: list[tuple[str, int | None, bool, bool]] | None = None
        self._schema: list[bytes] = []
        self._groups: list[bytes] = []

    def add(self, rows: Rows, *, level: int = 1) -> bool:
        """Appends `rows` as a row group; False (and nothing written) when their columns differ from the file's."""
        steps = self.adding(rows, level=level)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return bool(done.value)

    def adding(self, rows: Rows, *, level: int = 1) -> Generator[None, None, bool]:
        """`add` a column at a time: it yields after each column's values are typed and after each column's page
        is made (a fraction of a millisecond for the agent's groups), so an event loop can run between the steps
        instead of waiting on a thread that holds the GIL for the whole group."""
        cols = []
        for name, values in rows.columns.items():
            cols.append(column(name, values))
            yield
        signature = [(c.name, c.kind, c.is_list, c.text) for c in cols]
        if self._signature is not None and signature != self._signature:
            return False
        pages, chunks, total = bytearray(), [], 0
        for col in cols:
            body = (_levels(col.reps, 1) if col.is_list else b"") + _levels(col.defs, 3 if col.is_list else 1)
            body += _plain(col)
            packed = zlib.compress(body, level, wbits=31)  # wbits 31: the gzip framing Parquet's GZIP means
            page = DataPage(len(col.defs), len(body), len(packed)).header() + packed
            offset = len(self.out) + len(pages)
            pages += page
            total += len(page) - len(packed) + len(body)
            path = [col.name, "list", "element"] if col.is_list else [col.name]
            meta = (Struct().i32(1, INT32 if col.kind is None else col.kind)
                    .list(2, T_I32, [_zigzag(e) for e in (PLAIN, RLE)])
                    .list(3, T_BINARY, [_string(p) for p in path])
                    .i32(4, GZIP).i64(5, len(col.defs))
                    .i64(6, len(page) - len(packed) + len(body)).i64(7, len(page)).i64(9, offset))
            stats = _statistics(col)
            if stats is not None:
                meta.struct(12, stats)
            chunks.append(Struct().i64(2, offset).struct(3, meta).end())
            yield
        # Nothing of the group is in the file until all of it is: an error above leaves the file as it was.
        if self._signature is None:
            self._signature = signature
            self._schema = [Struct().binary(4, "schema").i32(5, len(cols)).end()]
            for col in cols:
                self._schema += _schema(col)
        self.out += pages
        self._groups.append(Struct().list(1, T_STRUCT, chunks).i64(2, total).i64(3, len(rows)).end())
        self.rows += len(rows)
        return True

    def finish(self) -> bytes:
        """The whole file: its row groups and the footer."""
        footer = (Struct().i32(1, 1).list(2, T_STRUCT, self._schema).i64(3, self.rows)
                  .list(4, T_STRUCT, self._groups).binary(6, CREATED_BY)
                  # ColumnOrder TYPE_ORDER for each column: without it readers ignore min_value / max_value
                  .list(7, T_STRUCT, [Struct().struct(1, Struct()).end()] * len(self._signature or ())).end())
        return bytes(self.out + footer + struct.pack("<I", len(footer)) + MAGIC)


def parquet_bytes(rows: list[dict[str, Any]] | Rows, *, level: int = 1) -> bytes:
    """One Parquet file of `rows` (dicts whose keys may differ: the union of their columns, missing values null),
    columns in the order they first appear, in one row group."""
    if not isinstance(rows, Rows):
        gathered = Rows()
        for row in rows:
            gathered.add(row)
        rows = gathered
    writer = Writer()
    writer.add(rows, level=level)
    return writer.finish()


@dataclass
class DataPage:
    values: int  # level entries, nulls included
    size: int
    compressed: int

    def header(self) -> bytes:
        page = Struct().i32(1, self.values).i32(2, PLAIN).i32(3, RLE).i32(4, RLE)
        return Struct().i32(1, DATA_PAGE).i32(2, self.size).i32(3, self.compressed).struct(5, page).end()
