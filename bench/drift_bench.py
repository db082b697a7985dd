"""Drift statistics benchmark: this engine vs Evidently's DataDriftPreset vs per-column scipy calls.

    python -m bench drift [--quick] [--sizes 100000x20,1000000x20] [--evidently-budget 480]

Data: reference and current windows of the same size, all numerical (standard normal; every other current
column shifted by 0.15 std), so ``test: auto`` picks the normed Wasserstein distance everywhere (> 1000
reference rows).  Per cell: our profile build (once) and per-window time, Evidently's full report, and a
loop of ``scipy.stats.wasserstein_distance`` / ``np.std`` per column.  Statistics and drift flags are
checked to be identical (rtol 1e-9) between engines in the same run.  Writes the section
"## Drift statistics" of docs/benchmarks.md (created if absent, only that section replaced).
Evidently cells whose estimated time does not fit the remaining budget are skipped and reported so.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings

import numpy as np
from scipy import stats as ss

from bench.report import machine, publish
from mlops_operator.drift import build_profile, compute_drift

HEADING = "## Drift statistics"
RTOL = 1e-9
DEFAULT_SIZES = "100000x20,1000000x20,100000x100,1000000x100"
QUICK_SIZES = "100000x20"


def make_data(rows: int, cols: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    ref = {f"f{i}": rng.standard_normal(rows) for i in range(cols)}
    cur = {f"f{i}": rng.standard_normal(rows) + (0.15 if i % 2 else 0.0) for i in range(cols)}
    return ref, cur


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run_ours(ref: dict, cur: dict, repeat: int) -> tuple[float, float, dict]:
    t_profile, profile = best_of(lambda: build_profile(ref), 1)
    t_window, result = best_of(lambda: compute_drift(profile, cur), repeat)
    return t_profile, t_window, {f.name: (f.test, f.statistic, f.drifted) for f in result.features}


def run_scipy(ref: dict, cur: dict) -> tuple[float, dict]:
    def loop():
        out = {}
        for name, r in ref.items():
            r = r[np.isfinite(r)]
            c = cur[name][np.isfinite(cur[name])]
            value = ss.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001)
            out[name] = ("wasserstein", value, value >= 0.1)
        return out

    return best_of(loop, 1)


def run_evidently(ref: dict, cur: dict) -> tuple[float, dict]:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref_df, cur_df = pd.DataFrame(ref), pd.DataFrame(cur)
    names = {"Wasserstein distance (normed)": "wasserstein"}

    def report():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Report([DataDriftPreset()], include_tests=True).run(cur_df, ref_df).dict()

    elapsed, snap = best_of(report, 1)
    scores = {
        m["config"]["column"]: float(m["value"])
        for m in snap["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    out = {}
    for t in snap["tests"]:
        p = t["metric_config"]["params"]
        if p["type"].endswith("ValueDrift"):
            out[p["column"]] = (names.get(p["method"], p["method"]), scores[p["column"]], t["status"].value == "FAIL")
    return elapsed, out


def compare(ours: dict, other: dict) -> str:
    """'identical' or a short description of the first mismatch."""
    if set(ours) != set(other):
        return "different columns"
    worst = 0.0
    for name, (test, value, drifted) in ours.items():
        o_test, o_value, o_drifted = other[name]
        if (test, drifted) != (o_test, o_drifted):
            return f"{name}: {test}/{drifted} vs {o_test}/{o_drifted}"
        if value != o_value:
            worst = max(worst, abs(value - o_value) / abs(o_value))
    if worst > RTOL:
        return f"max rel diff {worst:.2e} > {RTOL}"
    return f"equal to rtol 1e-9, flags identical (max rel diff {worst:.1e})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_SIZES}")
    parser.add_argument("--sizes", default=None, help=f"comma list of ROWSxCOLS (default {DEFAULT_SIZES})")
    parser.add_argument("--evidently-budget", type=float, default=480.0, help="seconds for all Evidently runs")
    parser.add_argument("--repeat", type=int, default=3, help="per-window repetitions of our engine (best kept)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    cells = [tuple(int(v) for v in s.lower().split("x")) for s in sizes.split(",")]

    try:
        import evidently  # noqa: F401
        have_evidently = True
    except ImportError:
        have_evidently = False

    budget = args.evidently_budget
    ev_rate = None  # seconds per (row * column), from the last measured Evidently cell
    rows_out = []
    for rows, cols in cells:
        ref, cur = make_data(rows, cols)
        t_prof, t_win, ours = run_ours(ref, cur, args.repeat)
        t_scipy, sp = run_scipy(ref, cur)
        check = [f"scipy: {compare(ours, sp)}"]
        t_ev, note = None, ""
        if not have_evidently:
            note = "evidently not installed"
        else:
            estimate = None if ev_rate is None else ev_rate * rows * cols
            if estimate is not None and estimate > budget:
                note = f"skipped: estimated {estimate:.0f} s > remaining budget {budget:.0f} s"
            else:
                t_ev, ev = run_evidently(ref, cur)
                budget -= t_ev
                ev_rate = t_ev / (rows * cols)
                check.append(f"Evidently: {compare(ours, ev)}")
        rows_out.append((rows, cols, t_prof, t_win, t_scipy, t_ev, note, "; ".join(check)))
        ev_txt = f"{t_ev:.2f} s" if t_ev is not None else note
        print(
            f"{rows:>8} x {cols:<3} ours profile {t_prof:.3f} s, window {t_win:.3f} s | scipy {t_scipy:.2f} s | "
            f"evidently {ev_txt} | {'; '.join(check)}",
            flush=True,
        )
        del ref, cur
        gc.collect()

    lines = [
        "Per-feature drift statistics for a DriftMonitor window (`mlops_operator.drift`), all columns numerical,",
        "reference and current of equal size, `test: auto` (normed Wasserstein distance, > 1000 reference rows).",
        "\"window\" is one `compute_drift` call against a prebuilt reference profile (best of "
        f"{args.repeat}); \"profile\" is the one-off `build_profile`. \"scipy loop\" calls "
        "`scipy.stats.wasserstein_distance` and `np.std` per column. Evidently: `Report([DataDriftPreset()])`.",
        "Produced by `python -m bench drift`; single run each on a shared, noisy machine.",
        "",
        *machine("numpy", "scipy", "pandas", "evidently"),
        "",
        "| rows | cols | ours: window | ours: profile (once) | scipy loop | Evidently DataDriftPreset | "
        "Evidently / ours (window) | Evidently / ours (profile + window) | statistics |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rows, cols, t_prof, t_win, t_scipy, t_ev, note, check in rows_out:
        if t_ev is not None:
            ev, r1, r2 = f"{t_ev:.2f} s", f"{t_ev / t_win:.0f}x", f"{t_ev / (t_win + t_prof):.0f}x"
        else:
            ev, r1, r2 = note, "-", "-"
        lines.append(
            f"| {rows:,} | {cols} | {t_win:.3f} s | {t_prof:.3f} s | {t_scipy:.2f} s | {ev} | {r1} | {r2} | {check} |"
        )
    publish(HEADING, lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
