"""Data-quality counts against the same counts computed with pandas (isna, between, isin, to_numeric), on NannyML's
bundled data-quality dataset (missing values) and on generated windows with out-of-range values, unseen categories
and type errors; and the verdict against the thresholds."""

import numpy as np
import pandas as pd
import pytest
from nannyml_anchor import DATASETS

from mlops_operator.drift.profile import build_profile
from mlops_operator.drift.quality import QualityThresholds, data_quality


def pandas_counts(reference: pd.Series, current: pd.Series) -> dict:
    missing = int(current.isna().sum())
    present = current.dropna()
    if pd.api.types.is_numeric_dtype(reference) or pd.api.types.is_bool_dtype(reference):
        ref = reference.replace([np.inf, -np.inf], np.nan).dropna().astype(float)
        numbers = pd.to_numeric(present.map(lambda v: None if isinstance(v, str) else float(v)),
                                errors="coerce")
        type_errors = int(numbers.isna().sum())
        numbers = numbers.dropna().astype(float)
        return {"missing": missing, "typeErrors": type_errors, "newCategories": 0,
                "outOfRange": int((~numbers.between(ref.min(), ref.max())).sum())}
    ref = reference.dropna()
    strings = present.map(lambda v: isinstance(v, str))
    return {"missing": missing, "typeErrors": int((~strings).sum()), "outOfRange": 0,
            "newCategories": int((~present.isin(set(ref))).sum())}


def ours(reference: pd.DataFrame, current: pd.DataFrame, **limits) -> dict:
    profile = build_profile({c: reference[c].to_numpy() for c in reference.columns})
    result = data_quality(profile, {c: current[c].to_numpy() for c in current.columns}, list(reference.columns),
                          QualityThresholds(**limits))
    return {c.name: c for c in result.columns}


def test_counts_equal_pandas_on_nannyml_quality_dataset():
    load, _, features = DATASETS["car_loan_quality"]
    reference, analysis = load()[:2]
    assert analysis[features].isna().sum().sum() > 0  # the dataset does carry missing values
    result = ours(reference[features], analysis[features])
    for name in features:
        got = result[name].to_status()
        assert {k: got[k] for k in ("missing", "typeErrors", "outOfRange", "newCategories")} == \
            pandas_counts(reference[name], analysis[name]), name


def test_counts_equal_pandas_on_a_bad_window():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"amount": rng.normal(100, 10, 5000), "country": rng.choice(["de", "fr", "nl"], 5000),
                              "count": rng.integers(0, 50, 5000)})
    amount = rng.normal(100, 20, 2000).astype(object)  # wider: some values out of range
    amount[:30] = None
    amount[30:40] = "n/a"  # text in a numerical column
    amount[40:45] = np.inf
    country = rng.choice(["de", "fr", "nl", "be", "lu"], 2000).astype(object)  # two unseen categories
    country[:7] = np.nan
    country[7:9] = 42  # a number among strings
    count = rng.integers(-5, 60, 2000).astype(float)
    count[:3] = np.nan
    current = pd.DataFrame({"amount": amount, "country": country, "count": count})
    result = ours(reference, current)
    for name in reference.columns:
        got = result[name].to_status()
        assert {k: got[k] for k in ("missing", "typeErrors", "outOfRange", "newCategories")} == \
            pandas_counts(reference[name], current[name]), name
    assert set(result["country"].new_category_examples) == {"be", "lu", "42"}  # a number is unseen too


def test_verdict_follows_the_thresholds():
    reference = pd.DataFrame({"x": np.arange(100.0)})
    current = pd.DataFrame({"x": np.r_[np.full(10, np.nan), np.arange(90.0)]})
    assert ours(reference, current)["x"].failed == ("missing",)  # 10% missing > 5% default
    assert ours(reference, current, missing=0.1)["x"].failed == ()
    profile = build_profile({"x": reference["x"].to_numpy()})
    result = data_quality(profile, {"other": np.zeros(3)}, ["x"])
    assert result.failed and result.columns[0].failed == ("missing",)  # a column gone from the window
    with pytest.raises(ValueError, match="column 'y'"):
        data_quality(profile, {"y": np.zeros(3)}, ["y"])
