"""Model-quality checks benchmark: each check of drift/ against the library it is checked against, on the same data.

    python -m bench quality [--quick] [--rows 1000000] [--cols 20] [--no-write]

Data: reference and current windows of ROWS x COLS (three quarters numerical, normal, one in five shifted; the
rest categorical with 5 values, one window with an unseen one and 2% missing), plus a binary model's score,
prediction and label.  Per check, the time of ours (reference fitting separate from the per-window step where
there is one) and of the anchor doing the same, also in its two steps: Evidently (quality counts, metrics with
labels), NannyML (CBPE, PCA reconstruction error, one chunk = the window); each window step, ours and the anchor's,
is the best of three calls, each fit one call.  Values are compared in the same run
(quality counts equal to Evidently's and to pandas', metrics to scikit-learn's and Evidently's to 1e-9, CBPE and
reconstruction error to NannyML's to 1e-6) and the line says so.  Per check, also 1/50 of the anchor's window time
and the floor: the passes over the window the check's method needs, each timed in bare numpy.  Before timing, each
of our checks runs once on a small window: the first call in a process loads the compiled loops (drift/kernels.py)
from numba's cache, or compiles them on a new machine; that time is printed apart ("first call").  Writes the section
"## Model quality checks" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
import warnings

import numpy as np

from bench.report import publish
from mlops_operator.drift.cbpe import estimate_cbpe, fit_cbpe
from mlops_operator.drift.kernels import worker_count
from mlops_operator.drift.multivariate import fit_reconstruction, reconstruction_error
from mlops_operator.drift.performance import classification_metrics
from mlops_operator.drift.profile import build_profile
from mlops_operator.drift.quality import data_quality

HEADING = "## Model quality checks"


def make_data(rows: int, cols: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    numerical = max(2, cols * 3 // 4)
    ref, cur = {}, {}
    for i in range(cols):
        name = f"f{i}"
        if i < numerical:
            ref[name] = rng.standard_normal(rows)
            cur[name] = rng.standard_normal(rows) + (0.3 if i % 5 == 0 else 0.0)
        else:
            cats = np.array(["a", "b", "c", "d", "e"], dtype=object)
            ref[name] = cats[rng.integers(0, 5, rows)]
            current = np.array(["a", "b", "c", "d", "e", "new"], dtype=object)[rng.integers(0, 6, rows)]
            current[rng.random(rows) < 0.02] = np.nan  # NannyML imputes NaN, not None (docs/driftmonitor.md)
            cur[name] = current
    for data in (ref, cur):
        data["score"] = 1 / (1 + np.exp(-2 * (data["f0"] + 0.5 * data["f1"])))
        data["pred"] = (data["score"] >= 0.5).astype(np.int64)
        data["label"] = (rng.random(rows) < data["score"]).astype(np.int64)
    return ref, cur


def timed(fn):
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def one_thread(fn) -> float:
    """Our window step on one thread (MLOPS_DRIFT_THREADS=1), best of three: what a pod limited to one CPU gets."""
    before = os.environ.get("MLOPS_DRIFT_THREADS")
    os.environ["MLOPS_DRIFT_THREADS"] = "1"
    try:
        return best(fn)[0]
    finally:
        if before is None:
            del os.environ["MLOPS_DRIFT_THREADS"]
        else:
            os.environ["MLOPS_DRIFT_THREADS"] = before


def best(fn, repeat: int = 3):
    """The best of ``repeat`` timed calls, and the last call's result: each side's window step is timed so."""
    runs = [timed(fn) for _ in range(repeat)]
    return min(t for t, _ in runs), runs[-1][1]


def floor(*passes) -> float:
    """Best of three of the passes over the window that the check's method needs (each check's docstring says
    which), each in bare numpy: no numpy implementation checks a window faster on this machine."""
    return min(sum(timed(p)[0] for p in passes) for _ in range(3))


def cell(check: str, anchor: str, fit: float | None, ours: float, anchor_fit: float | None,
         anchor_window: float | None, same: str, least: float | None = None, single: float | None = None) -> dict:
    return {"check": check, "anchor": anchor, "fit": fit, "ours": ours, "anchor_fit": anchor_fit,
            "anchor_window": anchor_window, "same": same, "floor": least, "single": single}


def _evidently():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import evidently
    except ImportError:
        return None
    return evidently


def _report(metrics: list, frame, definition) -> dict:
    """An Evidently report of `metrics` on one dataset: metric name -> value."""
    from evidently import Dataset, Report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report(metrics).run(Dataset.from_pandas(frame, data_definition=definition), None)
        return {m["metric_name"]: m["value"] for m in snapshot.dict()["metrics"]}


def bench_quality(ref: dict, cur: dict, names: list[str]) -> dict:
    """Ours: the reference profile (once), then the window's counts. Evidently: the reference's ranges and
    categories (MinValue, MaxValue, UniqueValueCount), then the window's MissingValueCount, OutRangeValueCount and
    OutListValueCount per column. The counts are also checked against a plain pandas computation.
    Floor: each number column's NaN count, and one set() of each text column (every Python object hashed once)."""
    import pandas as pd

    t_profile, profile = timed(lambda: build_profile({n: ref[n] for n in names}))
    t_ours, result = best(lambda: data_quality(profile, cur, names))
    t_single = one_thread(lambda: data_quality(profile, cur, names))
    ours = {c.name: (c.missing, c.out_of_range, c.new_categories) for c in result.columns}
    ref_df, cur_df = pd.DataFrame({n: ref[n] for n in names}), pd.DataFrame({n: cur[n] for n in names})
    numerical = [n for n in names if pd.api.types.is_numeric_dtype(ref_df[n])]
    categorical = [n for n in names if n not in numerical]

    def with_pandas():
        out = {}
        for n in names:
            r, c = ref_df[n], cur_df[n]
            if n in numerical:
                out[n] = (int(c.isna().sum()), int((~c.dropna().between(r.min(), r.max())).sum()), 0)
            else:
                present = c.dropna()
                out[n] = (int(c.isna().sum()), 0, int((~present.isin(set(r.dropna()))).sum()))
        return out

    same = ["counts equal to pandas" if with_pandas() == ours else "COUNTS DIFFER FROM PANDAS"]
    least = floor(*(lambda n=n: np.count_nonzero(np.isnan(cur[n])) for n in numerical),
                  *(lambda n=n: set(cur[n].tolist()) for n in categorical))
    if _evidently() is None:
        return cell("data quality (missing, out of range, unseen categories)", "Evidently", t_profile, t_ours,
                    None, None, same[0] + "; Evidently not installed", least, t_single)
    from evidently import DataDefinition
    from evidently.metrics import (
        MaxValue,
        MinValue,
        MissingValueCount,
        OutListValueCount,
        OutRangeValueCount,
        UniqueValueCount,
    )

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)

    def evidently_fit():
        found = _report([*(MinValue(column=n) for n in numerical), *(MaxValue(column=n) for n in numerical),
                         *(UniqueValueCount(column=n) for n in categorical)], ref_df, definition)
        return ({n: (found[f"MinValue(column={n})"], found[f"MaxValue(column={n})"]) for n in numerical},
                {n: sorted(found[f"UniqueValueCount(column={n})"]["counts"]) for n in categorical})

    t_fit, (ranges, lists) = timed(evidently_fit)

    def evidently_window():
        return _report([*(MissingValueCount(column=n) for n in names),
                        *(OutRangeValueCount(column=n, left=ranges[n][0], right=ranges[n][1]) for n in numerical),
                        *(OutListValueCount(column=n, values=lists[n]) for n in categorical)], cur_df, definition)

    t_window, found = best(evidently_window)
    theirs = {}
    for n in names:
        missing = int(found[f"MissingValueCount(column={n})"]["count"])
        if n in numerical:
            key = next(k for k in found if k.startswith(f"OutRangeValueCount(column={n},"))
            theirs[n] = (missing, int(found[key]["count"]), 0)
        else:
            key = next(k for k in found if k.startswith(f"OutListValueCount(column={n},"))
            theirs[n] = (missing, 0, int(found[key]["count"]))
    same.append("equal to Evidently's" if theirs == ours else "COUNTS DIFFER FROM EVIDENTLY")
    return cell("data quality (missing, out of range, unseen categories)", "Evidently 0.7.23", t_profile, t_ours,
                t_fit, t_window, "; ".join(same), least, t_single)


def bench_performance(cur: dict) -> dict:
    """Five classification metrics from labels: ours, Evidently's report of the same five (no fit on either side);
    values checked against scikit-learn's. Floor: one sort of the scores (ROC AUC needs their order)."""
    import pandas as pd
    from sklearn import metrics as skm

    y, p, s = cur["label"], cur["pred"], cur["score"]
    least = floor(lambda: np.sort(s))
    t_ours, ours = best(lambda: classification_metrics(y, p, s))
    t_single = t_ours  # numpy on the calling thread: no threads of ours
    theirs = {"accuracy": skm.accuracy_score(y, p), "precision": skm.precision_score(y, p),
              "recall": skm.recall_score(y, p), "f1": skm.f1_score(y, p), "roc_auc": skm.roc_auc_score(y, s)}
    same = ["equal to scikit-learn's to 1e-9" if all(abs(ours[k] - theirs[k]) <= 1e-9 for k in theirs)
            else "VALUES DIFFER FROM SCIKIT-LEARN"]
    if _evidently() is None:
        return cell("performance with labels (5 classification metrics)", "Evidently", None, t_ours, None, None,
                    same[0] + "; Evidently not installed", least, t_single)
    from evidently import BinaryClassification, DataDefinition
    from evidently.metrics import Accuracy, F1Score, Precision, Recall, RocAuc

    frame = pd.DataFrame({"label": y, "pred": p, "score": s})
    definition = DataDefinition(classification=[BinaryClassification(target="label", prediction_labels="pred",
                                                                     prediction_probas="score")],
                                numerical_columns=["score"], categorical_columns=["label", "pred"])
    t_window, found = best(lambda: _report([Accuracy(), Precision(), Recall(), F1Score(), RocAuc()], frame,
                                            definition))
    values = {name.split("(")[0]: value for name, value in found.items()}
    evidently = {"accuracy": values["Accuracy"], "precision": values["Precision"], "recall": values["Recall"],
                 "f1": values["F1Score"], "roc_auc": values["RocAuc"]}
    same.append("Evidently's to 1e-9" if all(abs(ours[k] - evidently[k]) <= 1e-9 for k in evidently)
                else "VALUES DIFFER FROM EVIDENTLY")
    return cell("performance with labels (5 classification metrics)", "Evidently 0.7.23", None, t_ours, None,
                t_window, " and ".join(same), least, t_single)


def bench_cbpe(ref: dict, cur: dict) -> dict:
    """Floor: one sort of the window's scores (the expected ROC AUC walks them in order) and the calibration map
    applied to them once sorted (np.interp, at its fastest)."""
    import pandas as pd

    t_fit, model = timed(lambda: fit_cbpe(ref["score"], ref["label"], ref["pred"]))
    t_ours, ours = best(lambda: estimate_cbpe(model, cur["score"], cur["pred"]))
    t_single = one_thread(lambda: estimate_cbpe(model, cur["score"], cur["pred"]))
    least = floor(lambda: model.calibrated(np.sort(cur["score"])))
    nannyml = _nannyml()
    if nannyml is None:
        return cell("CBPE (accuracy, F1, ROC AUC)", "NannyML", t_fit, t_ours, None, None, "NannyML not installed",
                    least, t_single)
    ref_df = pd.DataFrame({k: ref[k] for k in ("score", "pred", "label")})
    cur_df = pd.DataFrame({k: cur[k] for k in ("score", "pred")})
    metrics = ["accuracy", "f1", "roc_auc"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = nannyml.CBPE(y_pred_proba="score", y_pred="pred", y_true="label", metrics=metrics, chunk_number=1,
                           problem_type="classification_binary")
        t_their_fit, _ = timed(lambda: est.fit(ref_df))
        t_their_window, theirs = best(lambda: est.estimate(cur_df).filter(period="analysis").to_df())
    same = all(abs(ours[m].value - theirs[(m, "value")][0]) <= 1e-6 for m in metrics)
    return cell("CBPE (accuracy, F1, ROC AUC)", "NannyML 0.13.1", t_fit, t_ours, t_their_fit, t_their_window,
                "estimates equal to 1e-6" if same else "ESTIMATES DIFFER", least, t_single)


def bench_multivariate(ref: dict, cur: dict, names: list[str]) -> dict:
    """Floor: the number columns copied into one matrix, one set() of each text column, and one product of a
    window-sized matrix with the components."""
    import pandas as pd

    t_fit, model = timed(lambda: fit_reconstruction(ref, names))
    t_ours, ours = best(lambda: reconstruction_error(model, cur))
    t_single = one_thread(lambda: reconstruction_error(model, cur))
    numerical = [n for n in names if cur[n].dtype.kind == "f"]
    matrix = np.zeros((len(cur[names[0]]), len(names)), order="F")

    def copy_numbers():
        for j, n in enumerate(numerical):
            matrix[:, j] = cur[n]

    least = floor(copy_numbers, *(lambda n=n: set(cur[n].tolist()) for n in names if n not in numerical),
                  lambda: matrix @ model.components.T)
    nannyml = _nannyml()
    if nannyml is None:
        return cell("PCA reconstruction error", "NannyML", t_fit, t_ours, None, None, "NannyML not installed", least,
                    t_single)
    ref_df, cur_df = pd.DataFrame({n: ref[n] for n in names}), pd.DataFrame({n: cur[n] for n in names})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = nannyml.DataReconstructionDriftCalculator(column_names=names, chunk_number=1)
        t_their_fit, _ = timed(lambda: calc.fit(ref_df))
        t_their_window, theirs = best(lambda: calc.calculate(cur_df).filter(period="analysis").to_df())
    same = abs(ours.value - theirs[("reconstruction_error", "value")][0]) <= 1e-6
    return cell("PCA reconstruction error", "NannyML 0.13.1", t_fit, t_ours, t_their_fit, t_their_window,
                "error equal to 1e-6" if same else "ERROR DIFFERS", least, t_single)


def _nannyml():
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nannyml
    except ImportError:
        return None
    return nannyml


def _ratio(theirs: float | None, ours: float | None) -> str:
    return "-" if theirs is None or ours is None or ours <= 0 else f"{theirs / ours:.0f}x"


def report(rows: int, cols: int, cells: list[dict]) -> list[str]:
    lines = [
        f"`python -m bench quality` on {rows:,} rows x {cols} columns per window (reference the same size), "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other work (load {os.getloadavg()[0]:.1f}), "
        f"Python {platform.python_version()}, numpy {np.__version__}. One run; times in seconds. Each side is "
        "timed in its two steps: \"fit\" once per reference (ours: the profile or model a monitor keeps; the "
        "anchor's: `fit`, or the reference's ranges and categories), one call; \"window\" per checked window, "
        f"the best of three calls. Ours split a window over {worker_count()} threads here (drift/kernels.py); "
        "\"1 thread\" is ours with MLOPS_DRIFT_THREADS=1, as in a pod limited to one CPU. \"50x "
        "needs\" is the anchor's window time over 50; \"floor\" is the best of three of the passes over the window "
        "that the check's method needs (its docstring in bench/quality_bench.py names them), each in bare numpy: "
        "no numpy implementation checks a window faster here.",
        "",
        "| check | anchor | ours: fit | ours: window | ours: window, 1 thread | anchor: fit | anchor: window | "
        "speed-up: window | speed-up: window, 1 thread | speed-up: fit | speed-up: fit + window | 50x needs | floor "
        "| values |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        fit = "-" if c["fit"] is None else f"{c['fit']:.3f}"
        their_fit = "-" if c["anchor_fit"] is None else f"{c['anchor_fit']:.2f}"
        their_window = "-" if c["anchor_window"] is None else f"{c['anchor_window']:.2f}"
        ours_total = c["ours"] + (c["fit"] or 0.0)
        theirs_total = None if c["anchor_window"] is None else c["anchor_window"] + (c["anchor_fit"] or 0.0)
        needs = "-" if c["anchor_window"] is None else f"{c['anchor_window'] / 50 * 1000:.1f} ms"
        least = "-" if c["floor"] is None else f"{c['floor'] * 1000:.1f} ms"
        single = "-" if c["single"] is None else f"{c['single']:.3f}"
        lines.append(f"| {c['check']} | {c['anchor']} | {fit} | {c['ours']:.3f} | {single} | {their_fit} | "
                     f"{their_window} | {_ratio(c['anchor_window'], c['ours'])} | "
                     f"{_ratio(c['anchor_window'], c['single'])} | {_ratio(c['anchor_fit'], c['fit'])} | "
                     f"{_ratio(theirs_total, ours_total)} | {needs} | {least} | {c['same']} |")
    return lines


def warm_up(names: list[str]) -> float:
    """Each of our window steps once on 2,000 rows; the seconds it took."""
    ref, cur = make_data(2000, len(names), seed=1)
    start = time.perf_counter()
    data_quality(build_profile({n: ref[n] for n in names}), cur, names)
    estimate_cbpe(fit_cbpe(ref["score"], ref["label"], ref["pred"]), cur["score"], cur["pred"])
    reconstruction_error(fit_reconstruction(ref, names), cur)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows
    names = [f"f{i}" for i in range(args.cols)]
    first = warm_up(names)
    print(f"first call (compiled loops loaded or compiled): {first:.2f} s", flush=True)
    ref, cur = make_data(rows, args.cols)
    cells = []
    for step in (lambda: bench_quality(ref, cur, names), lambda: bench_performance(cur),
                 lambda: bench_cbpe(ref, cur), lambda: bench_multivariate(ref, cur, names)):
        cells.append(step())
        print(cells[-1], flush=True)
    publish(HEADING, report(rows, args.cols, cells), not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
