"""The DriftMonitor's data as a dataset: partition pruning (proven by the files a read opens), window edges,
columns, the feedback partition and stray files left out, revision selection, and what an empty window says."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from mlops_operator import datasets as data
from mlops_operator.agent.parquet import parquet_bytes
from mlops_operator.monitoring import runner

NOW = datetime(2026, 11, 26, 12, 30, tzinfo=timezone.utc)
DAY = date(2026, 11, 26)


def runner_md(log_uri: str) -> dict:
    """A ModelDeployment as the runner reads it, logging its predictions at `log_uri`."""
    return {"spec": {"monitoring": {"predictionLog": {"uri": log_uri}}}}


class CountingFS(LocalFileSystem):
    """The local filesystem, recording every file opened and every folder listed."""

    cachable = False  # fsspec would otherwise hand every test the same instance

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []
        self.listed: list[str] = []

    def _open(self, path, mode="rb", **kwargs):
        self.opened.append(self._strip_protocol(path))
        return super()._open(path, mode, **kwargs)

    def ls(self, path, detail=False, **kwargs):
        self.listed.append(self._strip_protocol(path))
        return super().ls(path, detail=detail, **kwargs)


def log_file(root: Path, start: datetime, rows: int, revision: str = "stable", pod: str = "p0", seq: int = 1,
             step: timedelta = timedelta(seconds=1), **columns: object) -> Path:
    """One file of the agent's layout holding `rows` requests from `start` on, `step` apart, made by the agent's
    own Parquet writer."""
    path = root / f"date={start:%Y-%m-%d}" / f"hour={start:%H}" / f"{revision}-{pod}-{seq:06d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    micros = int(start.timestamp() * 1e6)
    data = parquet_bytes([{"timestamp": micros + i * int(step.total_seconds() * 1e6), "request_id": f"r{i}",
                           "revision": revision, "model_uri": "s3://m/1", "status_code": 200, "latency_seconds": 0.01,
                           "protocol": "v2", "x": float(i), "y": "a" if i % 2 else "b",
                           **{k: (v[i] if isinstance(v, list) else v) for k, v in columns.items()}}
                          for i in range(rows)])
    path.write_bytes(data)
    return path


def hourly_log(root: Path, hours: int, rows: int = 10) -> dict[datetime, Path]:
    """`hours` hours of stable rows ending with the hour of NOW, one file an hour, `rows` a minute apart."""
    last = NOW.replace(minute=0)
    return {h: log_file(root, h, rows, step=timedelta(minutes=1))
            for h in (last - timedelta(hours=n) for n in range(hours))}


def source(root: Path, window: data.Window, fs: CountingFS | None = None) -> data.Source:
    return data.open_source(f"file://{root}", window=window, now=NOW, filesystem=fs)


def test_a_window_opens_only_the_hours_it_overlaps_and_lists_no_older_day(tmp_path):
    files = hourly_log(tmp_path, hours=72)
    fs = CountingFS()
    window = data.Window(duration_seconds=3600)
    table = source(tmp_path, window, fs).read(["x"], window, NOW)
    in_window = {str(files[NOW.replace(minute=0) - timedelta(hours=n)]) for n in (0, 1)}  # 11:30 to 12:30
    assert set(fs.opened) == in_window
    assert not [p for p in fs.listed if "date=2026-11-24" in p or "date=2026-11-25" in p]
    # 11:30-11:39 and 12:00-12:09 of the two files' minutes (the 11:00-11:29 rows are filtered by timestamp)
    minutes = sorted(t.minute for t in table.column("timestamp").to_pylist())
    assert table.num_rows == 10 and minutes[:3] == [0, 1, 2]


def test_a_longer_window_opens_more_partitions_and_no_window_opens_all(tmp_path):
    hourly_log(tmp_path, hours=30)
    for seconds, expected in ((3 * 3600, 4), (86400, 25), (None, 30)):
        fs = CountingFS()
        window = data.Window(duration_seconds=seconds)
        source(tmp_path, window, fs).read(["x"], window, NOW)
        assert len(set(fs.opened)) == expected, seconds


@pytest.mark.parametrize("name, day, since, holds", [
    ("hour=10", DAY, datetime(2026, 11, 26, 11, tzinfo=timezone.utc), False),  # ends exactly at the start
    ("hour=10", DAY, datetime(2026, 11, 26, 10, 59, 59, 999999, tzinfo=timezone.utc), True),
    ("hour=23", DAY, datetime(2026, 11, 27, 0, tzinfo=timezone.utc), False),
    ("hour=23", date(2026, 11, 25), datetime(2026, 11, 26, 0, tzinfo=timezone.utc), False),
    ("hour=11", DAY, datetime(2026, 11, 26, 10, tzinfo=timezone.utc), True),  # later than the start
    ("date=2026-11-25", None, datetime(2026, 11, 26, 0, tzinfo=timezone.utc), False),
    ("date=2026-11-25", None, datetime(2026, 11, 25, 23, 59, tzinfo=timezone.utc), True),
    ("hour=10", None, datetime(2027, 1, 1, tzinfo=timezone.utc), True),  # no date known: cannot rule out
    ("date=latest", None, datetime(2027, 1, 1, tzinfo=timezone.utc), True),  # unparsable: kept, never lost
    ("hour=99", DAY, datetime(2027, 1, 1, tzinfo=timezone.utc), True),
    ("region=eu", DAY, datetime(2027, 1, 1, tzinfo=timezone.utc), True),
])
def test_partition_edges(name, day, since, holds):
    assert data.may_hold(name, day, since) is holds


def test_rows_inside_a_kept_partition_are_filtered_on_the_timestamp_to_the_microsecond(tmp_path):
    start = datetime(2026, 11, 26, 11, 29, 59, 999998, tzinfo=timezone.utc)
    log_file(tmp_path, start, 4, step=timedelta(microseconds=1))  # ...998, ...999, 11:30:00.000000, ...001
    window = data.Window(duration_seconds=3600)
    table = source(tmp_path, window).read(["x"], window, NOW)
    assert table.column("x").to_pylist() == [2.0, 3.0]


def test_only_the_asked_columns_are_read(tmp_path):
    hourly_log(tmp_path, hours=2)
    window = data.Window(duration_seconds=3600)
    table = source(tmp_path, window).read(["y"], window, NOW)
    assert table.column_names == ["y", "timestamp"]
    with pytest.raises(data.DataError) as err:
        source(tmp_path, window).read(["absent"], window, NOW)
    assert err.value.reason == "MissingColumn" and "'absent'" in err.value.message


def test_feedback_hidden_and_foreign_files_are_never_opened(tmp_path):
    files = hourly_log(tmp_path, hours=1)
    hour = NOW.replace(minute=0)
    feedback = tmp_path / "feedback" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}" / "stable-p0-1.parquet"
    feedback.parent.mkdir(parents=True)
    pq.write_table(pa.table({"timestamp": [NOW], "request_id": ["r1"], "label": [1]}), feedback)
    folder = next(iter(files.values())).parent
    (folder / ".stable-p0-000002.parquet.tmp").write_bytes(b"half a file")
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "README.txt").write_text("not data")
    fs = CountingFS()
    window = data.Window(duration_seconds=3600)
    src = source(tmp_path, window, fs)
    assert src.read(["x"], window, NOW).num_rows == 10
    assert set(fs.opened) == {str(p) for p in files.values()}
    assert str(tmp_path / "feedback") not in fs.listed
    assert "label" not in src.schema.names


def test_the_stable_revision_by_default_the_canary_or_all_on_request(tmp_path):
    hour = NOW.replace(minute=0)
    log_file(tmp_path, hour, 30, "stable", "p0")
    log_file(tmp_path, hour, 10, "canary", "p1")
    window = data.Window(duration_seconds=3600)
    src = source(tmp_path, window)
    assert src.read(["x"], window, NOW, "stable").num_rows == 30
    assert src.read(["x"], window, NOW, "canary").num_rows == 10
    assert src.read(["x"], window, NOW, data.ALL_REVISIONS).num_rows == 40


def test_data_without_a_revision_column_is_read_whole(tmp_path):
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0]}), tmp_path / "cur.parquet")
    assert data.open_source(f"file://{tmp_path}/cur.parquet").read(["x"], revision="stable").num_rows == 3


def test_an_empty_window_says_no_rows_and_why(tmp_path):
    hourly_log(tmp_path, hours=3)
    later = NOW + timedelta(days=2)
    window = data.Window(duration_seconds=3600)
    with pytest.raises(data.DataError) as err:
        data.open_source(f"file://{tmp_path}", window=window, now=later)
    assert err.value.reason == "EmptyWindow"
    assert "no rows in the current window (the last 3600s by 'timestamp')" in err.value.message
    # a partition that overlaps the window but holds no row of the revision asked for
    with pytest.raises(data.DataError) as err:
        source(tmp_path, window).read(["x"], window, NOW, "canary")
    assert err.value.reason == "EmptyWindow" and "of revision 'canary'" in err.value.message


def test_a_prefix_without_data_files_or_a_missing_uri_is_unreadable(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing")
    for uri in (f"file://{tmp_path}", f"file://{tmp_path}/absent"):
        with pytest.raises(data.DataError) as err:
            data.open_source(uri)
        assert err.value.reason == "DataUnreadable" and uri in err.value.message


def test_a_feature_typed_int_in_one_file_and_double_in_another_reads_as_numbers(tmp_path):
    hour = NOW.replace(minute=0)
    log_file(tmp_path, hour, 3, seq=1, amount=[1, 2, 3])
    log_file(tmp_path, hour, 3, seq=2, amount=[0.5, 1.5, 2.5])
    table = data.open_source(f"file://{tmp_path}").read(["amount"])
    assert sorted(table.column("amount").to_pylist()) == [0.5, 1, 1.5, 2, 2.5, 3]


def test_last_rows_are_the_latest_by_time_across_pods(tmp_path):
    hour = NOW.replace(minute=0)
    log_file(tmp_path, hour + timedelta(minutes=1), 3, pod="a", x=[10.0, 11.0, 12.0])  # the latest
    log_file(tmp_path, hour, 3, pod="b", x=[0.0, 1.0, 2.0])
    window = data.Window(last_rows=2)
    assert data.open_source(f"file://{tmp_path}").read(["x"], window, NOW).column("x").to_pylist() == [11.0, 12.0]


def test_a_single_csv_file_with_text_times_still_reads(tmp_path):
    times = [(NOW - timedelta(hours=h)).isoformat() for h in (3, 0.5, 0.1)]
    pacsv.write_csv(pa.table({"timestamp": times, "x": [1.0, 2.0, 3.0]}), tmp_path / "cur.csv")
    window = data.Window(duration_seconds=3600)
    table = data.open_source(f"file://{tmp_path}/cur.csv", window=window, now=NOW).read(["x"], window, NOW)
    assert table.column("x").to_pylist() == [2.0, 3.0]


def test_a_cached_reference_profile_is_not_read_again_until_a_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_PROFILE_CACHE", str(tmp_path / "cache"))
    ref = tmp_path / "ref"
    ref.mkdir()
    pq.write_table(pa.table({"x": np.arange(100.0)}), ref / "part-0.parquet")

    def profile() -> list[str]:
        fs = CountingFS()
        runner._profile(data.open_source(f"file://{ref}", filesystem=fs), ["x"])
        return fs.opened

    assert profile() != []
    assert profile() == []
    pq.write_table(pa.table({"x": np.arange(50.0)}), ref / "part-1.parquet")
    assert len(set(profile())) == 2


def test_the_runner_reads_the_prediction_log_window_of_the_stable_revision(tmp_path):
    rng = np.random.default_rng(1)
    pq.write_table(pa.table({"x": rng.normal(0, 1, 2000), "y": rng.choice(["a", "b"], 2000)}),
                   tmp_path / "ref.parquet")
    log = tmp_path / "log"
    hour = NOW.replace(minute=0)
    for h in range(48):  # two days of history, each hour's first half; the window holds 12:00-12:30
        log_file(log, hour - timedelta(hours=h), 120, step=timedelta(seconds=15), x=list(rng.normal(0, 1, 120)))
    log_file(log, hour, 500, "canary", "p1", step=timedelta(seconds=1), x=list(rng.normal(5, 1, 500)))
    dm = {"spec": {"modelDeployment": {"name": "fraud"}, "reference": {"uri": f"file://{tmp_path}/ref.parquet"},
                   "current": {"window": "30m"}, "schedule": "0 * * * *"}}
    status = runner.check(dm, runner_md(f"file://{log}"), NOW)
    assert status["lastAttempt"]["succeeded"] is True, status
    last = status["lastRun"]
    assert last["rows"]["current"] == 120 and {f["name"] for f in last["features"]} == {"x", "y"}
    assert last["datasetDrift"] is False  # the canary's shifted inputs stay out of the stable check
    dm["spec"]["current"]["revision"] = "canary"
    canary = runner.check(dm, runner_md(f"file://{log}"), NOW)["lastRun"]
    assert canary["rows"]["current"] == 500 and [f["drifted"] for f in canary["features"] if f["name"] == "x"] == [True]


def test_labels_posted_as_feedback_join_the_log_and_a_label_flip_with_unchanged_inputs_fails_performance(tmp_path):
    """The runner reads `<log>/feedback/` (the agent's /v1/feedback rows) and the model checks; inputs do not
    drift, the labels say the predictions became wrong: `performance` fails and the operator raises the alarm."""
    from mlops_operator.monitoring import reactions

    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, 2000)
    truth = (x > 0).astype(float)
    pq.write_table(pa.table({"x": x, "prediction": truth, "label": truth}), tmp_path / "ref.parquet")
    log = tmp_path / "log"
    rows, start = 400, NOW.replace(minute=0)
    live_x = list(rng.normal(0, 1, rows))
    log_file(log, start, rows, x=live_x, prediction=[float(v > 0) for v in live_x])
    (log / "feedback").mkdir()
    dm = {"metadata": {"name": "fraud", "namespace": "ml"},
          "spec": {"modelDeployment": {"name": "fraud"}, "reference": {"uri": f"file://{tmp_path}/ref.parquet"},
                   "current": {"window": "1h"}, "schedule": "0 * * * *", "features": [{"name": "x"}],
                   "performance": {"task": "classification", "labelColumn": "label",
                                   "predictionColumn": "prediction", "minLabelledRows": 100,
                                   "metrics": [{"name": "accuracy", "min": 0.9}]}}}

    def check_with_labels(flip: bool) -> dict:
        labels = [float((v > 0) != flip) for v in live_x]  # a flipped world: the same inputs, the other class
        posted = int(start.timestamp() * 1e6) + 30_000_000  # each label 30 s after its prediction (1 s apart)
        (log / "feedback" / "stable-p0-000001.parquet").write_bytes(parquet_bytes(
            [{"timestamp": posted + i * 1_000_000, "request_id": f"r{i}", "label": labels[i]} for i in range(rows)]
            + [{"timestamp": int((start - timedelta(hours=2)).timestamp() * 1e6),  # posted before the window:
                "request_id": "r0", "label": 1 - labels[0]}]))  # never read
        status = runner.check(dm, runner_md(f"file://{log}"), NOW)
        assert status["lastAttempt"]["succeeded"] is True, status
        return status["lastRun"]

    good = check_with_labels(flip=False)
    assert good["failedChecks"] == [] and good["performance"]["labelledRows"] == rows
    assert good["performance"]["metrics"][0]["value"] == 1.0
    assert good["performance"]["labelDelaySeconds"] == 30.0  # the median time from prediction to label
    flipped = check_with_labels(flip=True)
    assert flipped["datasetDrift"] is False  # input drift alone misses it
    assert flipped["failedChecks"] == ["performance"] and flipped["performance"]["metrics"][0]["value"] == 0.0
    assert reactions.alarming(flipped) and not reactions.alarming(good)
    assert "model checks failed: performance" in reactions.drift_summary(flipped)


def test_columns_come_out_as_numpy_the_checks_read_numbers_as_floats_the_rest_as_python_values():
    table = pa.table({
        "n": pa.array([1, None, 3], pa.int32()),
        "s": pa.chunked_array([pa.array(["a", None]), pa.array(["é"])]),
        "l": pa.array(["x", "y", None], pa.large_string()),
        "b": pa.array([True, None, False]),
        "b2": pa.array([True, True, False]),
        "t": pa.array([1, None, 3], pa.timestamp("us")),
        "e": pa.array(["p", "q", "r"]).dictionary_encode(),
    })
    arrays = data.to_arrays(table, list(table.column_names))
    assert arrays["n"].dtype == np.float64 and np.isnan(arrays["n"][1]) and arrays["n"][2] == 3.0
    for name in ("s", "l", "b", "b2", "t", "e"):
        assert arrays[name].dtype == object, name
        assert arrays[name].tolist() == table.column(name).to_pylist(), name
        assert [type(v) for v in arrays[name]] == [type(v) for v in table.column(name).to_pylist()], name
    empty = data.to_arrays(pa.table({"s": pa.chunked_array([], pa.string())}), ["s"])["s"]
    assert empty.dtype == object and empty.size == 0
