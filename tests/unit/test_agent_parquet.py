"""The agent's Parquet writer (agent/parquet.py) against pyarrow: pyarrow reads every file back, and the types
and values it sees are those of pyarrow's own inference from the same Python values."""

from __future__ import annotations

import datetime as dt
import io
import json
import random

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from mlops_operator.agent.parquet import parquet_bytes

UTC = dt.timezone.utc


def read(rows: list[dict]) -> pa.Table:
    return pq.read_table(io.BytesIO(parquet_bytes(rows)))


def inferred(values: list) -> pa.Array:
    """pyarrow's inference, and the agent's rule where it refuses: JSON text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else json.dumps(v) for v in values], type=pa.string())


def test_each_kind_of_value_reads_back_as_pyarrow_infers_it():
    rows = [
        {"timestamp": 1_764_547_200_000_000, "request_id": "a", "f0": 0.5, "n": 3, "ok": True, "probs": [0.1, 0.9],
         "mixed": 1, "obj": {"k": [1]}, "big": 2**70, "none": None, "text": "é ✓"},
        {"timestamp": 1_764_547_200_000_001, "request_id": None, "f0": 2, "n": None, "ok": False, "probs": [],
         "mixed": "x", "obj": None, "big": 1, "none": None},
        {"f0": None, "probs": None, "ok": None},
        {"probs": [None, 3], "extra": "only here"},
    ]
    table = read(rows)
    assert table.num_rows == 4
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.column("timestamp").to_pylist() == [
        dt.datetime(2025, 12, 1, tzinfo=UTC), dt.datetime(2025, 12, 1, 0, 0, 0, 1, tzinfo=UTC), None, None]
    for name in ["request_id", "f0", "n", "ok", "probs", "mixed", "obj", "big", "none", "text", "extra"]:
        values = [row.get(name) for row in rows]
        if name == "obj":  # pyarrow makes a struct of an object; the agent keeps objects as JSON text
            want = pa.array([None if v is None else json.dumps(v) for v in values])
        else:
            want = inferred(values)
        got = table.column(name)
        if pa.types.is_list(want.type):  # the same values; pyarrow names a list's item "item", Parquet "element"
            assert got.type.value_type == want.type.value_type, name
        else:
            assert got.type == want.type, name
        assert got.to_pylist() == want.to_pylist(), name
    assert table.column_names[:3] == ["timestamp", "request_id", "f0"]  # the order they first appear in


def test_random_rows_read_back_as_pyarrow_infers_them():
    rng = random.Random(7)
    scalars = [lambda: None, rng.random, lambda: rng.randrange(-10**15, 10**15), lambda: f"s{rng.randrange(9)}",
               lambda: rng.random() < 0.5, lambda: [rng.random() for _ in range(rng.randrange(4))],
               lambda: [rng.choice([None, 1, 2]) for _ in range(rng.randrange(3))], lambda: 2**64]
    for _ in range(200):
        kinds = {f"c{i}": rng.randrange(len(scalars)) for i in range(rng.randrange(1, 6))}
        rows = []
        for _ in range(rng.randrange(1, 50)):
            row = {}
            for name, kind in kinds.items():
                if rng.random() < 0.85:  # else missing from this row: null
                    row[name] = scalars[kind if rng.random() < 0.9 else rng.randrange(len(scalars))]()
            rows.append(row)
        table = read(rows)
        assert table.num_rows == len(rows)
        for name in table.column_names:
            values = [row.get(name) for row in rows]
            kinds_seen = {type(x) for v in values for x in (v if isinstance(v, list) else [v])}
            if bool in kinds_seen and kinds_seen & {int, float}:
                continue  # pyarrow's own answer there depends on which value comes first
            want = inferred(values)
            assert table.column(name).to_pylist() == want.to_pylist(), (name, values)
            want_type = want.type.value_type if pa.types.is_list(want.type) else want.type
            got_type = table.column(name).type
            assert (got_type.value_type if pa.types.is_list(got_type) else got_type) == want_type, (name, values)


def test_a_reader_skips_a_file_by_its_timestamps(tmp_path):
    # The DriftMonitor reads a window by filtering on `timestamp`: the file's min and max let pyarrow skip it.
    start = 1_764_547_200_000_000
    (tmp_path / "a.parquet").write_bytes(parquet_bytes([{"timestamp": start + i, "x": i} for i in range(10)]))
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata.row_group(0).column(0).statistics
    assert (meta.has_min_max, meta.min, meta.max, meta.null_count) == (
        True, dt.datetime(2025, 12, 1, tzinfo=UTC), dt.datetime(2025, 12, 1, 0, 0, 0, 9, tzinfo=UTC), 0)
    after = pa.scalar(dt.datetime(2025, 12, 2, tzinfo=UTC), type=pa.timestamp("us", tz="UTC"))
    fragment = next(ds.dataset(tmp_path, format="parquet").get_fragments())
    assert fragment.subset(ds.field("timestamp") >= after).row_groups == []
    assert ds.dataset(tmp_path, format="parquet").to_table(filter=ds.field("timestamp") < after).num_rows == 10


@pytest.mark.parametrize("rows", [1, 10_000])
def test_many_rows_and_columns(rows):
    data = [{"timestamp": i, **{f"f{j}": i * 0.5 + j for j in range(16)}, "request_id": f"{i:032x}"}
            for i in range(rows)]
    table = read(data)
    assert table.num_rows == rows and table.num_columns == 18
    assert table.column("f15").to_pylist()[-1] == (rows - 1) * 0.5 + 15
    assert table.column("request_id").to_pylist()[-1] == f"{rows - 1:032x}"


def test_the_sink_writes_files_of_at_most_batch_rows_a_row_group_at_a_time(tmp_path):
    # Row groups of GROUP_ROWS (1,000) rows, or what is left to batch_rows (2,500) in the file. From the 4,500th
    # request on, rows bring a column more (`c`): the group holding them starts a file of its own. No row lost or
    # doubled.
    import asyncio

    from mlops_operator.agent.config import AgentConfig
    from mlops_operator.agent.metrics import AgentMetrics
    from mlops_operator.agent.sink import GROUP_ROWS, PREDICTION, Record, Sink, now

    assert GROUP_ROWS == 1000
    config = AgentConfig(upstream_port=1, log_uri=tmp_path.as_uri(), sample_rate=1.0, pod="p", batch_rows=2500,
                         batch_seconds=3600, buffer_bytes=1 << 30)

    async def scenario() -> None:
        sink = Sink(config, AgentMetrics(config))
        sink.start()
        for i in range(5650):
            micros, at = now()
            instance = {"a": i, "b": 0.5} if i < 4500 else {"a": i, "b": 0.5, "c": "new"}
            request = json.dumps({"instances": [instance]}).encode()
            assert sink.offer([Record(PREDICTION, at, {"timestamp": micros, "request_id": f"r{i}"}, "v1", request,
                                      b'{"predictions": [1]}')])
        await sink.close(60)
        assert sink.held_bytes == 0

    asyncio.run(scenario())
    metas = [pq.ParquetFile(f).metadata for f in sorted(tmp_path.rglob("*.parquet"), key=lambda p: p.name)]
    groups = [[m.row_group(g).num_rows for g in range(m.num_row_groups)] for m in metas]
    assert groups == [[1000, 1000, 500], [1000, 1000], [500, 650]], groups
    assert ["c" in m.schema.names for m in metas] == [False, False, True]
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("request_id").to_pylist()) == sorted(f"r{i}" for i in range(5650))
    assert sorted(table.column("a").to_pylist()) == list(range(5650))


def test_text_columns_of_one_value_one_length_or_many_read_back():
    # The encoder's short cuts (one value all along, one length all along, no nulls) and the general way.
    ids = [f"{i:032x}" for i in range(300)]
    rows = [{"same": "stable", "ids": ids[i], "sizes": "é" * (i % 4), "holes": None if i % 7 == 0 else ids[i],
             "surrogate": "\ud800" if i % 2 else "a", "ints": i, "floats": i / 3} for i in range(300)]
    table = read(rows)
    for name in rows[0]:
        want = [row[name] for row in rows]
        if name == "surrogate":
            want = ["?" if v == "\ud800" else v for v in want]  # not UTF-8: replaced, as pyarrow cannot hold it
        assert table.column(name).to_pylist() == want, name


def test_rows_extended_by_columns_equal_rows_added_one_by_one():
    from mlops_operator.agent.parquet import Rows

    calls = [({"a": [1, 2], "b": ["x", "y"]}, 2, {"t": 5, "r": "s"}),
             ({"a": [3], "c": [True]}, 1, {"t": 6, "r": "s"}),
             ({"t": [9, 9], "d": [None, 1.5]}, 2, {"t": 7, "r": "s"}),  # a column named as a shared one loses
             ({}, 1, {"t": 8, "r": "s"})]
    by_columns, by_rows = Rows(), Rows()
    for columns, n, shared in calls:
        by_columns.extend(columns, n, shared)
        for i in range(n):
            by_rows.add({**{k: v[i] for k, v in columns.items() if k not in shared}, **shared})
    assert len(by_columns) == len(by_rows) == 6
    assert by_columns.columns == by_rows.columns
    assert parquet_bytes(by_columns) == parquet_bytes(by_rows)
