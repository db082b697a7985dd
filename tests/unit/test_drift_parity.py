"""Parity of the drift engine with Evidently's DataDriftPreset and with scipy, on datasets bundled with
scikit-learn (no downloads) with injected shifts.  Statistics and p-values to rtol 1e-9, identical drift
flags and dataset verdict, for references of at most 1000 rows and above 1000 rows.

Evidently and scikit-learn are test dependencies (imported here only); pin pandas<3 next to Evidently.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from evidently import Report
from evidently.presets import DataDriftPreset
from scipy import stats as ss
from sklearn import datasets

from mlops_operator.drift import FeatureSpec, build_profile, compute_drift

RTOL = 1e-9
# Evidently's display names -> ours
EVIDENTLY_TESTS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "ztest",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}
OUR_TO_EVIDENTLY_METHOD = {"ztest": "z"}
EVIDENTLY_OUR_NAMES = {"z": "ztest"}


def evidently_drift(reference: pd.DataFrame, current: pd.DataFrame, per_column_method=None):
    """Per column (test, score, drifted) and (share, dataset drift) from one DataDriftPreset run."""
    preset = DataDriftPreset(per_column_method=per_column_method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([preset], include_tests=True).run(current, reference).dict()
    columns, share, dataset_drift = {}, None, None
    scores = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            scores[config["column"]] = float(metric["value"])
        elif config["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    for test in snapshot["tests"]:
        params = test["metric_config"]["params"]
        drifted = test["status"].value == "FAIL"
        if params["type"].endswith("ValueDrift"):
            method = EVIDENTLY_TESTS.get(params["method"], params["method"])  # display name, or name if given
            columns[params["column"]] = (EVIDENTLY_OUR_NAMES.get(method, method), scores[params["column"]], drifted)
        else:
            dataset_drift = drifted
    return columns, share, dataset_drift


def assert_parity(reference: pd.DataFrame, current: pd.DataFrame, tests: dict[str, str] | None = None):
    method = {k: OUR_TO_EVIDENTLY_METHOD.get(v, v) for k, v in tests.items()} if tests else None
    want, want_share, want_dataset = evidently_drift(reference, current, method)
    specs = [FeatureSpec(name, test=(tests or {}).get(name, "auto")) for name in reference.columns]
    profile = build_profile({c: reference[c].to_numpy() for c in reference.columns})
    got = compute_drift(profile, {c: current[c].to_numpy() for c in current.columns}, specs)
    assert set(want) == {f.name for f in got.features}
    for f in got.features:
        test, score, drifted = want[f.name]
        ours = f.p_value if f.p_value is not None else f.statistic
        assert (f.name, f.test) == (f.name, test)
        assert ours == pytest.approx(score, rel=RTOL, abs=0), f.name
        assert (f.name, f.drifted) == (f.name, drifted)
    assert got.share == pytest.approx(want_share, rel=RTOL)
    assert got.dataset_drift == want_dataset
    return got


def shifted(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Shift a third of the columns by half a std, scale another third by 1.5, leave the rest."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    numeric = [c for c in frame.columns if frame[c].dtype.kind == "f"]
    for i, col in enumerate(numeric):
        std = frame[col].std()
        if i % 3 == 0:
            out[col] = frame[col] + 0.5 * std
        elif i % 3 == 1:
            mean = frame[col].mean()
            out[col] = mean + (frame[col] - mean) * 1.5 + rng.normal(0, 0.01 * std, len(frame))
    return out


def bundled(loader, n_features: int) -> pd.DataFrame:
    data = loader(as_frame=True)
    frame = data.frame.iloc[:, :n_features].astype(float).copy()
    frame["label"] = np.asarray(data.target_names)[data.target] if hasattr(data, "target_names") else data.target
    return frame


# --- references with at most 1000 rows: KS, chi-square, Z-test ---------------------------------------


@pytest.mark.parametrize(
    "loader,n_features,explicit",
    [(datasets.load_breast_cancer, 6, True), (datasets.load_wine, 5, False)],
)
def test_small_reference_matches_evidently(loader, n_features, explicit):
    frame = bundled(loader, n_features).sample(frac=1.0, random_state=0).reset_index(drop=True)
    half = len(frame) // 2
    reference = frame.iloc[:half].reset_index(drop=True)
    current = shifted(frame.iloc[half:].reset_index(drop=True), seed=1)
    # a binary column (Z-test) and an integer code with a value only in current (chi-square)
    reference["flag"] = np.where(reference.iloc[:, 0] > reference.iloc[:, 0].median(), "hi", "lo")
    current["flag"] = np.where(current.iloc[:, 0] > reference.iloc[:, 0].median(), "hi", "lo")
    reference["code"] = (reference.index % 4).astype(np.int64)
    current["code"] = (current.index % 5).astype(np.int64)
    # missing and infinite values, dropped by both.  Infinities go with a NaN in the same column: Evidently's
    # DriftedColumnsCount only cleans columns where isna() finds something, and isna() ignores inf
    # (see docs/drift-statistics.md, "Known differences"); its per-column ValueDrift always cleans.
    reference.iloc[::17, 1] = np.nan
    current.iloc[::13, 2] = np.inf
    current.iloc[5, 2] = np.nan
    current.iloc[7, 3] = -np.inf
    current.iloc[8, 3] = np.nan
    # explicitly chosen tests on a few columns (the others stay auto)
    cols = reference.columns
    tests = {cols[0]: "psi", cols[1]: "jensenshannon", cols[2]: "wasserstein"} if explicit else None
    got = assert_parity(reference, current, tests)
    assert {"ks", "chisquare", "ztest"} <= {f.test for f in got.features}


def test_diabetes_ks_and_wasserstein_match_scipy():
    frame = datasets.load_diabetes(as_frame=True).frame
    reference, current = frame.iloc[:221], shifted(frame.iloc[221:], seed=2)
    profile = build_profile({c: reference[c].to_numpy() for c in frame.columns})
    got = compute_drift(profile, {c: current[c].to_numpy() for c in frame.columns})
    for f in got.features:
        want = ss.ks_2samp(reference[f.name], current[f.name])
        assert f.test == "ks"
        assert f.statistic == pytest.approx(want.statistic, rel=RTOL, abs=0)
        assert f.p_value == pytest.approx(want.pvalue, rel=RTOL, abs=0)
    specs = [FeatureSpec(c, test="wasserstein") for c in frame.columns]
    for f in compute_drift(profile, {c: current[c].to_numpy() for c in frame.columns}, specs).features:
        want = ss.wasserstein_distance(reference[f.name], current[f.name]) / max(np.std(reference[f.name]), 0.001)
        assert f.statistic == pytest.approx(want, rel=RTOL, abs=0)


# --- references above 1000 rows: Wasserstein, Jensen-Shannon --------------------------------------


def resampled(n_rows: int, seed: int) -> pd.DataFrame:
    """Breast-cancer rows resampled with replacement plus 1% noise, with a low-cardinality column."""
    base = bundled(datasets.load_breast_cancer, 6)
    rng = np.random.default_rng(seed)
    frame = base.sample(n=n_rows, replace=True, random_state=seed).reset_index(drop=True)
    for col in frame.columns[:6]:
        frame[col] = frame[col] + rng.normal(0, 0.01 * base[col].std(), n_rows)
    frame["grade"] = np.round(frame.iloc[:, 0] / base.iloc[:, 0].std()).clip(2, 5)  # 4 float values
    return frame


def test_large_reference_matches_evidently():
    reference = resampled(1100, seed=3)
    current = shifted(resampled(700, seed=4), seed=5)
    current.loc[::50, "label"] = "borderline"  # a category the reference never saw
    reference.iloc[::40, 3] = np.nan
    cols = reference.columns
    tests = {cols[0]: "psi", cols[1]: "ks", cols[2]: "jensenshannon"}  # the rest stays auto
    got = assert_parity(reference, current, tests)
    assert {f.name: f.test for f in got.features if f.name in tests} == tests
    assert {"wasserstein", "jensenshannon"} <= {f.test for f in got.features if f.name not in tests}
