"""Model-quality checks benchmark: each check of drift/ against the library it is checked against, on the same data.

    python -m bench quality [--quick] [--rows 1000000] [--cols 20] [--no-write]

Data: reference and current windows of ROWS x COLS (three quarters numerical, normal, one in five shifted; the
rest categorical with 5 values, one window with an unseen one and 2% missing), plus a binary model's score,
prediction and label.  Per check, the time of ours (reference fitting separate from the per-window step where
there is one) and of the anchor doing the same: pandas (quality counts), scikit-learn (metrics with labels),
NannyML (CBPE, PCA reconstruction error, one chunk = the window).  Values are compared in the same run (quality
counts equal, metrics to 1e-9, CBPE and reconstruction error to 1e-6) and the line says so.  Writes the section
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

from bench.report import write_section
from mlops_operator.drift.cbpe import estimate_cbpe, fit_cbpe
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


def bench_quality(ref: dict, cur: dict, names: list[str]) -> dict:
    import pandas as pd

    t_profile, profile = timed(lambda: build_profile({n: ref[n] for n in names}))
    t_ours, result = timed(lambda: data_quality(profile, cur, names))
    ref_df, cur_df = pd.DataFrame({n: ref[n] for n in names}), pd.DataFrame({n: cur[n] for n in names})

    def with_pandas():
        out = {}
        for n in names:
            r, c = ref_df[n], cur_df[n]
            if pd.api.types.is_numeric_dtype(r):
                out[n] = (int(c.isna().sum()), int((~c.dropna().between(r.min(), r.max())).sum()), 0)
            else:
                present = c.dropna()
                out[n] = (int(c.isna().sum()), 0, int((~present.isin(set(r.dropna()))).sum()))
        return out

    t_theirs, theirs = timed(with_pandas)
    ours = {c.name: (c.missing, c.out_of_range, c.new_categories) for c in result.columns}
    return {"check": "data quality (missing, out of range, unseen categories)", "fit": t_profile, "ours": t_ours,
            "anchor": "pandas", "theirs": t_theirs, "same": "counts equal" if ours == theirs else "COUNTS DIFFER"}


def bench_performance(cur: dict) -> dict:
    from sklearn import metrics as skm

    y, p, s = cur["label"], cur["pred"], cur["score"]
    t_ours, ours = timed(lambda: classification_metrics(y, p, s))

    def with_sklearn():
        return {"accuracy": skm.accuracy_score(y, p), "precision": skm.precision_score(y, p),
                "recall": skm.recall_score(y, p), "f1": skm.f1_score(y, p), "roc_auc": skm.roc_auc_score(y, s)}

    t_theirs, theirs = timed(with_sklearn)
    same = all(abs(ours[k] - theirs[k]) <= 1e-9 for k in theirs)
    return {"check": "performance with labels (5 classification metrics)", "fit": None, "ours": t_ours,
            "anchor": "scikit-learn", "theirs": t_theirs, "same": "equal to 1e-9" if same else "VALUES DIFFER"}


def bench_cbpe(ref: dict, cur: dict) -> dict | None:
    import pandas as pd

    t_fit, model = timed(lambda: fit_cbpe(ref["score"], ref["label"], ref["pred"]))
    t_ours, ours = timed(lambda: estimate_cbpe(model, cur["score"], cur["pred"]))
    nannyml = _nannyml()
    if nannyml is None:
        return {"check": "CBPE (accuracy, F1, ROC AUC)", "fit": t_fit, "ours": t_ours, "anchor": "NannyML",
                "theirs": None, "same": "NannyML not installed"}
    ref_df = pd.DataFrame({k: ref[k] for k in ("score", "pred", "label")})
    cur_df = pd.DataFrame({k: cur[k] for k in ("score", "pred")})
    metrics = ["accuracy", "f1", "roc_auc"]

    def with_nannyml():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = nannyml.CBPE(y_pred_proba="score", y_pred="pred", y_true="label", metrics=metrics, chunk_number=1,
                               problem_type="classification_binary")
            est.fit(ref_df)
            return est.estimate(cur_df).filter(period="analysis").to_df()

    t_theirs, theirs = timed(with_nannyml)
    same = all(abs(ours[m].value - theirs[(m, "value")][0]) <= 1e-6 for m in metrics)
    return {"check": "CBPE (accuracy, F1, ROC AUC)", "fit": t_fit, "ours": t_ours, "anchor": "NannyML 0.13.1",
            "theirs": t_theirs, "same": "estimates equal to 1e-6" if same else "ESTIMATES DIFFER"}


def bench_multivariate(ref: dict, cur: dict, names: list[str]) -> dict:
    import pandas as pd

    t_fit, model = timed(lambda: fit_reconstruction(ref, names))
    t_ours, ours = timed(lambda: reconstruction_error(model, cur))
    nannyml = _nannyml()
    if nannyml is None:
        return {"check": "PCA reconstruction error", "fit": t_fit, "ours": t_ours, "anchor": "NannyML",
                "theirs": None, "same": "NannyML not installed"}
    ref_df, cur_df = pd.DataFrame({n: ref[n] for n in names}), pd.DataFrame({n: cur[n] for n in names})

    def with_nannyml():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calc = nannyml.DataReconstructionDriftCalculator(column_names=names, chunk_number=1).fit(ref_df)
            return calc.calculate(cur_df).filter(period="analysis").to_df()

    t_theirs, theirs = timed(with_nannyml)
    same = abs(ours.value - theirs[("reconstruction_error", "value")][0]) <= 1e-6
    return {"check": "PCA reconstruction error", "fit": t_fit, "ours": t_ours, "anchor": "NannyML 0.13.1",
            "theirs": t_theirs, "same": "error equal to 1e-6" if same else "ERROR DIFFERS"}


def _nannyml():
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nannyml
    except ImportError:
        return None
    return nannyml


def report(rows: int, cols: int, cells: list[dict]) -> list[str]:
    lines = [
        f"`python -m bench quality` on {rows:,} rows x {cols} columns per window (reference the same size), "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other work (load {os.getloadavg()[0]:.1f}), "
        f"Python {platform.python_version()}, numpy {np.__version__}. One run; times in seconds. "
        "\"fit\" is ours once per reference; \"ours\" the per-window step; the anchor does both.",
        "",
        "| check | ours: fit | ours: window | anchor | anchor: fit + window | speed-up (fit + window) | values |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for c in cells:
        total = c["ours"] + (c["fit"] or 0.0)
        fit = "-" if c["fit"] is None else f"{c['fit']:.3f}"
        theirs = "-" if c["theirs"] is None else f"{c['theirs']:.2f}"
        speed = "-" if c["theirs"] is None else f"{c['theirs'] / total:.1f}x"
        lines.append(f"| {c['check']} | {fit} | {c['ours']:.3f} | {c['anchor']} | {theirs} | {speed} | {c['same']} |")
    lines += ["", "Where the time goes: the reference fit (profiles of text columns sort Python strings; CBPE's "
              "calibration test fits 10 isotonic regressions; PCA standardises and encodes every row) is paid once "
              "per reference, the anchors pay it on every run. Per window, text columns are still walked in Python "
              "(missing values, type errors), which is why pandas is as fast on the quality counts."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows
    ref, cur = make_data(rows, args.cols)
    names = [f"f{i}" for i in range(args.cols)]
    cells = []
    for step in (lambda: bench_quality(ref, cur, names), lambda: bench_performance(cur),
                 lambda: bench_cbpe(ref, cur), lambda: bench_multivariate(ref, cur, names)):
        cell = step()
        if cell is not None:
            print(cell, flush=True)
            cells.append(cell)
    lines = report(rows, args.cols, cells)
    print("\n".join(lines))
    if not args.no_write:
        write_section(HEADING, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
