"""DriftMonitor over a long prediction log: a window reads only its own hours, in about the time of those hours.

    python -m bench dataset [--hours 1000] [--rows-per-file 10000] [--repeat 9] [--no-write]

Generates (once per run, in a temporary folder) a prediction log in the inference agent's layout:
`date=YYYY-MM-DD/hour=HH/stable-<pod>-<seq>.parquet`, one file an hour, `--hours` hours ending at NOW's hour,
columns timestamp, revision and three float features, plus a `feedback/` partition. Then, per window (1 hour and
24 hours, ending at NOW, an hour's end, so that they cover exactly 1 and 24 partitions):

- the DriftMonitor's read (`datasets.open_source` + `Source.read`: listing with partition pruning, the
  timestamp and revision filter, the three feature columns) through a filesystem that counts the files opened;
- the same hours' files alone: pyarrow reading exactly those paths (no listing, nothing to prune), same columns;
- a scan of the whole log by pyarrow's own dataset discovery with the same timestamp filter (what a reader
  without partition pruning does), once, for scale.

Times are the best of `--repeat`, the window read and its files alone taking turns. Writes
"## DriftMonitor over a prediction log" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from bench.report import machine, publish
from mlops_operator import datasets as data

HEADING = "## DriftMonitor over a prediction log"
NOW = datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)  # an hour's end: a window of N hours is N partitions
FEATURES = ["f0", "f1", "f2"]
TARGET = 2.0  # the window's read against reading its hours alone


class CountingFS(LocalFileSystem):
    cachable = False

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    def _open(self, path, mode="rb", **kwargs):  # type: ignore[no-untyped-def]
        self.opened.append(self._strip_protocol(path))
        return super()._open(path, mode, **kwargs)


def hour_folder(root: Path, start: datetime) -> Path:
    return root / f"date={start:%Y-%m-%d}" / f"hour={start:%H}"


def generate(root: Path, hours: int, rows: int) -> float:
    """The log; returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    step = 3_600_000_000 // rows  # microseconds between rows: each file spans its hour
    revision = pa.array(["stable"] * rows)
    for n in range(hours):
        start = NOW - timedelta(hours=hours - n)
        first = int(start.timestamp() * 1e6)
        table = pa.table({"timestamp": pa.array(np.arange(first, first + rows * step, step)).cast(
                              pa.timestamp("us", tz="UTC")),
                          "revision": revision,
                          **{name: rng.standard_normal(rows) for name in FEATURES}})
        folder = hour_folder(root, start)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"stable-bench-{n:06d}.parquet", compression="zstd")
        if n % 24 == 0:
            feedback = hour_folder(root / "feedback", start)
            feedback.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"timestamp": table.column("timestamp").slice(0, 10),
                                     "request_id": [f"r{i}" for i in range(10)], "label": list(range(10))}),
                           feedback / "stable-bench-0.parquet")
    return time.perf_counter() - started


def best_of_alternating(first, second, repeat: int):  # type: ignore[no-untyped-def]
    """The best time of each of two calls, run in turns so that both meet the same load on a shared machine."""
    times: tuple[list[float], list[float]] = ([], [])
    outs = [None, None]
    for _ in range(repeat):
        for i, fn in enumerate((first, second)):
            started = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - started)
    return min(times[0]), outs[0], min(times[1]), outs[1]


def monitor_read(root: Path, hours: int, fs: CountingFS | None = None) -> pa.Table:
    window = data.Window(duration_seconds=hours * 3600)
    source = data.open_source(f"file://{root}", window=window, now=NOW, filesystem=fs)
    return source.read(FEATURES, window, NOW, "stable")


def files_opened(root: Path, hours: int) -> list[str]:
    """The same read through a filesystem that counts (timed without it: file:// reads use pyarrow's own)."""
    fs = CountingFS()
    monitor_read(root, hours, fs)
    return sorted(set(fs.opened))


def alone(paths: list[str]) -> pa.Table:
    return pa.concat_tables(pq.read_table(p, columns=[*FEATURES, "timestamp"]) for p in paths)


def whole_log_scan(root: Path, hours: int) -> pa.Table:
    since = pa.scalar(NOW - timedelta(hours=hours), type=pa.timestamp("us", tz="UTC"))
    dataset = ds.dataset(root, format="parquet", partitioning="hive", ignore_prefixes=["feedback", ".", "_"])
    return dataset.to_table(columns=[*FEATURES, "timestamp"], filter=ds.field("timestamp") >= since)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=int, default=1000, help="hourly files in the log")
    parser.add_argument("--rows-per-file", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    results = []
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with tempfile.TemporaryDirectory(prefix="mlops-dataset-bench-") as tmp:
        root = Path(tmp)
        generated = generate(root, args.hours, args.rows_per_file)
        total = args.hours * args.rows_per_file
        print(f"generated {args.hours} files, {total:,} rows in {generated:.1f} s", flush=True)
        for hours in (1, 24):
            expected = sorted(str(p) for n in range(hours) for p in hour_folder(
                root, NOW - timedelta(hours=n + 1)).glob("*.parquet"))
            opened = files_opened(root, hours)
            t_window, table, t_alone, baseline = best_of_alternating(
                lambda h=hours: monitor_read(root, h), lambda e=expected: alone(e), args.repeat)
            assert table.num_rows == baseline.num_rows, (table.num_rows, baseline.num_rows)
            started = time.perf_counter()
            scanned = whole_log_scan(root, hours)
            t_scan = time.perf_counter() - started
            assert scanned.num_rows == table.num_rows
            results.append((hours, len(opened), opened == expected, table.num_rows, t_window,
                            t_alone, t_scan))
            print(f"{hours:>3} h window: {len(opened)} files opened (only its hours: {opened == expected}), "
                  f" {table.num_rows:,} rows, {t_window * 1000:.1f} ms; "
                  f"its files alone {t_alone * 1000:.1f} ms ({t_window / t_alone:.2f}x); "
                  f"whole-log scan {t_scan * 1000:.0f} ms", flush=True)
    lines = [
        f"A DriftMonitor's read of a prediction log of {args.hours:,} hourly files holding {total:,} rows "
        f"({args.rows_per_file:,} rows, 3 float features, timestamp and revision a file; a `feedback/` partition "
        "beside them), generated in the inference agent's layout `date=/hour=` in "
        f"{generated:.0f} s. \"window read\" is `datasets` (list with partition pruning, filter on "
        "timestamp and revision, the 3 features; the files it opens counted in a separate run through an fsspec "
        "filesystem that counts); "
        "\"its files alone\" reads exactly those hours' files with pyarrow, same columns, nothing listed; "
        "\"whole-log scan\" is pyarrow's dataset discovery over the whole log with the same timestamp filter "
        f"(no partition pruning). Best of {args.repeat}, the two reads taking turns (the scan: one run); load "
        f"average {load}. Target: the window read within "
        f"{TARGET:g}x of its files alone, opening only its hours' files.",
        "Produced by `python -m bench dataset`; a shared, noisy machine.",
        "",
        *machine("pyarrow", "fsspec"),
        "",
        "| window | files opened | only its hours' files | rows | window read | its files alone | ratio | "
        "whole-log scan |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for hours, opened_count, exact, rows, t_window, t_alone, t_scan in results:
        lines.append(f"| {hours} h | {opened_count} of {args.hours} | {'yes' if exact else 'NO'} | {rows:,} | "
                     f"{t_window * 1000:.1f} ms | {t_alone * 1000:.1f} ms | {t_window / t_alone:.2f}x | "
                     f"{t_scan * 1000:.0f} ms |")
    publish(HEADING, lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
