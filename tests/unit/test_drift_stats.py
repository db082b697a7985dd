"""Drift statistics: each test against scipy / a direct formula, plus the edges the engine must survive."""

import json
import math

import numpy as np
import pytest
from scipy import stats as ss
from scipy.spatial import distance

from mlops_operator.drift import (
    DriftInputError,
    FeatureSpec,
    InsufficientData,
    ReferenceProfile,
    build_profile,
    compute_drift,
    infer_type,
    stats,
)

RTOL = 1e-9


def one(ref, cur, **spec):
    """Drift of a single feature 'x'."""
    result = compute_drift(build_profile({"x": np.asarray(ref)}), {"x": np.asarray(cur)}, [FeatureSpec("x", **spec)])
    return result.features[0]


# --- Kolmogorov-Smirnov --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n1,n2,shift,decimals",
    [(1, 1, 0.0, None), (1, 3, 1.0, None), (2, 3, 0.0, None), (3, 3, 5.0, None), (7, 7, 0.3, 1),
     (40, 55, 0.5, None), (200, 200, 0.2, 0), (300, 1000, 0.1, None), (1000, 10_000, 0.05, None),
     (900, 10_001, 0.1, None), (12_000, 500, 0.0, 2)],
)
def test_ks_matches_scipy(n1, n2, shift, decimals):
    rng = np.random.default_rng(n1 * 7 + n2)
    a, b = rng.normal(size=n1), rng.normal(shift, 1, size=n2)
    if decimals is not None:  # ties
        a, b = np.round(a, decimals), np.round(b, decimals)
    want = ss.ks_2samp(a, b)
    d, p = stats.ks_2samp_sorted(np.sort(a), np.sort(b))
    assert d == pytest.approx(want.statistic, rel=RTOL, abs=0)
    assert p == pytest.approx(want.pvalue, rel=RTOL, abs=0)


def test_ks_exact_numpy_recursion_equals_scipy_compiled():
    rng = np.random.default_rng(3)
    for _ in range(60):
        n1, n2 = (int(v) for v in rng.integers(1, 120, size=2))
        if n1 == n2:
            continue
        g = math.gcd(n1, n2)
        h = int(rng.integers(1, (n1 // g) * n2 + 1))
        want = ss._stats_pythran._compute_outer_prob_inside_method(n1, n2, g, h)
        assert stats.ks_exact_unequal_numpy(n1, n2, g, h) == pytest.approx(want, rel=RTOL, abs=0)


def test_ks_drift_uses_less_or_equal():
    # identical samples: D = 0, p = 1 -> never drift; threshold 1.0 with p = 1 -> drift (p <= threshold)
    x = np.arange(10.0)
    f = one(x, x, test="ks")
    assert (f.statistic, f.p_value, f.drifted) == (0.0, 1.0, False)
    assert one(x, x, test="ks", threshold=1.0).drifted


# --- Wasserstein -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n1,n2", [(1, 1), (1, 4), (5, 3), (100, 100), (1000, 777), (2001, 3000)])
def test_wasserstein_matches_scipy(n1, n2):
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.gamma(2.0, size=n1), rng.gamma(2.5, size=n2)
    want = ss.wasserstein_distance(a, b)
    assert stats.wasserstein_sorted(np.sort(a), np.sort(b)) == pytest.approx(want, rel=RTOL, abs=0)
    f = one(a, b, test="wasserstein")
    assert f.statistic == pytest.approx(want / max(np.std(a), 0.001), rel=RTOL, abs=0)
    assert f.p_value is None


def test_wasserstein_constant_reference_norm_floor():
    f = one(np.full(50, 3.0), np.full(40, 3.5), test="wasserstein")
    assert f.statistic == pytest.approx(0.5 / 0.001, rel=RTOL)  # std 0 -> divided by 0.001
    assert f.drifted


def test_wasserstein_threshold_is_inclusive():
    ref = np.array([0.0, 1.0] * 10)  # std 0.5
    cur = ref + 0.05  # W1 = 0.05 -> normed exactly 0.1
    f = one(ref, cur, test="wasserstein")
    assert f.statistic == pytest.approx(0.1, rel=1e-12)
    assert f.drifted == (f.statistic >= 0.1)


# --- binning, PSI and Jensen-Shannon ---------------------------------------------------------------


def reference_percents(ref, cur, numerical=True):
    """Evidently's get_binned_data written independently with np.histogram / dict counting."""
    ref, cur = np.asarray(ref), np.asarray(cur)
    if numerical and np.unique(ref).size > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        return np.histogram(ref, edges)[0] / ref.size, np.histogram(cur, edges)[0] / cur.size
    keys = sorted(set(ref.tolist()) | set(cur.tolist()))
    r = {k: 0 for k in keys} | dict(zip(*np.unique(ref, return_counts=True)))
    c = {k: 0 for k in keys} | dict(zip(*np.unique(cur, return_counts=True)))
    return np.array([r[k] for k in keys]) / ref.size, np.array([c[k] for k in keys]) / cur.size


def filled(p):
    p = p.copy()
    nz = p[p != 0].min()
    p[p == 0] = nz / 1e6 if nz <= 1e-4 else 1e-4
    return p


@pytest.mark.parametrize("kind", ["continuous", "int", "few"])
def test_psi_and_js_match_direct_formula(kind):
    rng = np.random.default_rng(11)
    if kind == "continuous":
        ref, cur = rng.normal(size=500), rng.normal(0.4, 1.3, size=300)
    elif kind == "int":
        ref, cur = rng.integers(0, 60, 500), rng.integers(10, 90, 300)
    else:
        ref, cur = rng.integers(0, 4, 500).astype(float), rng.integers(1, 6, 300).astype(float)
    rp, cp = reference_percents(ref, cur)
    want_psi = np.sum((filled(rp) - filled(cp)) * np.log(filled(rp) / filled(cp)))
    want_js = distance.jensenshannon(rp, cp)
    assert one(ref, cur, test="psi", type="numerical").statistic == pytest.approx(want_psi, rel=RTOL)
    assert one(ref, cur, test="jensenshannon", type="numerical").statistic == pytest.approx(want_js, rel=RTOL)


def test_sturges_edges_and_histograms_equal_numpy():
    rng = np.random.default_rng(5)
    for dtype in (np.float64, np.int64):
        for _ in range(30):
            n, m = int(rng.integers(2, 400)), int(rng.integers(1, 400))
            if dtype is np.int64:
                a, b = rng.integers(-50, 50, n), rng.integers(-70, 40, m)
            else:
                a, b = rng.normal(size=n) * 1e4, rng.normal(size=m)
            pooled = np.concatenate([a, b])
            want = np.histogram_bin_edges(pooled, bins="sturges")
            got = stats.sturges_edges(pooled.min(), pooled.max(), pooled.size, pooled.dtype)
            assert got.dtype == want.dtype and np.array_equal(got, want)
            assert np.array_equal(stats.histogram_sorted(np.sort(a), want), np.histogram(a, want)[0])
            assert np.array_equal(stats.histogram_unsorted(b, want), np.histogram(b, want)[0])


def test_fill_zeroes_rule():
    assert np.array_equal(stats.fill_zeroes(np.array([0.5, 0.0, 0.5])), [0.5, 1e-4, 0.5])
    got = stats.fill_zeroes(np.array([0.99995, 0.00005, 0.0]))
    assert got[2] == 0.00005 / 10**6


def test_category_only_in_current():
    ref = np.array(["a", "b"] * 30)
    cur = np.array(["a", "b", "c"] * 20)
    chi = one(ref, cur, test="chisquare")
    assert chi.statistic == math.inf and chi.p_value == 0.0 and chi.drifted
    js = one(ref, cur, test="jensenshannon")
    rp, cp = np.array([0.5, 0.5, 0.0]), np.array([1 / 3, 1 / 3, 1 / 3])
    assert js.statistic == pytest.approx(distance.jensenshannon(rp, cp), rel=RTOL)
    psi = one(ref, cur, test="psi")
    want = np.sum((filled(rp) - cp) * np.log(filled(rp) / cp))
    assert psi.statistic == pytest.approx(want, rel=RTOL)
    assert one(ref, cur).test == "chisquare"  # auto: 3 values in ref + cur


# --- chi-square and Z-test ----------------------------------------------------------------------------


def test_chisquare_matches_scipy():
    rng = np.random.default_rng(2)
    ref, cur = rng.choice(list("abcd"), 400, p=[0.4, 0.3, 0.2, 0.1]), rng.choice(list("abcd"), 250)
    keys = ["a", "b", "c", "d"]
    rc = np.array([np.sum(ref == k) for k in keys])
    cc = np.array([np.sum(cur == k) for k in keys])
    want = ss.chisquare(cc, rc * (cur.size / ref.size))
    f = one(ref, cur, test="chisquare")
    assert f.statistic == pytest.approx(want.statistic, rel=RTOL)
    assert f.p_value == pytest.approx(want.pvalue, rel=RTOL)


def test_chisquare_single_category_has_no_p_value():
    f = one(np.array(["a"] * 5), np.array(["a"] * 3), test="chisquare")
    assert math.isnan(f.p_value) and not f.drifted  # 0 degrees of freedom, like scipy
    assert f.to_status()["pValue"] is None


def test_ztest_matches_formula():
    ref = np.array([0] * 70 + [1] * 30)
    cur = np.array([0] * 40 + [1] * 40)
    p1, p2 = 0.3, 0.5
    pooled = (p1 * 100 + p2 * 80) / 180
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 80))
    f = one(ref, cur)
    assert f.test == "ztest"
    assert f.statistic == pytest.approx(z, rel=RTOL)
    assert f.p_value == pytest.approx(2 * (1 - ss.norm.cdf(abs(z))), rel=RTOL)
    assert f.drifted


def test_ztest_same_constant_is_p_one():
    f = one(np.array(["x"] * 4), np.array(["x"] * 9))
    assert (f.test, f.statistic, f.p_value, f.drifted) == ("ztest", 0.0, 1.0, False)


def test_ztest_different_constants():
    f = one(np.array(["x"] * 4), np.array(["y"] * 9))
    assert f.test == "ztest" and f.p_value < 0.05 and f.drifted


# --- auto selection ------------------------------------------------------------------------------------


def test_auto_switches_at_1000_reference_rows():
    rng = np.random.default_rng(8)
    cur = rng.normal(size=500)
    assert one(rng.normal(size=1000), cur).test == "ks"
    assert one(rng.normal(size=1001), cur).test == "wasserstein"
    cats = np.array(list("abc"))
    assert one(rng.choice(cats, 1000), rng.choice(cats, 50)).test == "chisquare"
    assert one(rng.choice(cats, 1001), rng.choice(cats, 50)).test == "jensenshannon"


def test_auto_counts_reference_rows_after_cleaning():
    rng = np.random.default_rng(9)
    ref = rng.normal(size=1005)
    ref[:5] = np.nan  # 1000 finite values left -> still the small-reference rules
    assert one(ref, rng.normal(size=100)).test == "ks"


def test_auto_numerical_with_few_values():
    ref = np.array([0.0, 1.0, 2.0] * 100)
    assert one(ref, np.array([0.0, 1.0, 2.0, 3.0] * 10)).test == "chisquare"  # 4 values in total
    assert one(np.array([0.0, 1.0] * 100), np.array([1.0, 0.0] * 10)).test == "ztest"
    assert one(ref, np.arange(10.0)).test == "ks"  # 10 values in ref + cur
    big = np.array([0.0, 1.0, 2.0] * 500)
    assert one(big, np.array([0.0, 1.0] * 10)).test == "jensenshannon"


def test_infer_type_follows_evidently():
    assert infer_type(np.array([1.0, 2.0])) == "numerical"
    assert infer_type(np.arange(10)) == "categorical"
    assert infer_type(np.arange(11)) == "numerical"
    assert infer_type(np.array([True, False])) == "categorical"
    assert infer_type(np.array(["a", "b"])) == "categorical"


# --- cleaning and errors ---------------------------------------------------------------------------------


def test_nan_and_inf_are_dropped():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=60), rng.normal(0.5, 1, size=40)
    dirty_a = np.concatenate([a, [np.nan, np.inf, -np.inf]])
    dirty_b = np.concatenate([[np.nan, np.inf], b, [-np.inf]])
    want = ss.ks_2samp(a, b)
    f = one(dirty_a, dirty_b)
    assert f.test == "ks"
    assert f.p_value == pytest.approx(want.pvalue, rel=RTOL)
    obj = np.array(["a", None, "b", float("nan"), "a"], dtype=object)
    assert one(obj, np.array(["a", "b"], dtype=object)).test == "ztest"


def test_all_nan_reference_names_the_feature():
    with pytest.raises(DriftInputError, match="feature 'x'.*reference"):
        one(np.full(10, np.nan), np.arange(5.0))


def test_empty_current_names_the_feature():
    with pytest.raises(DriftInputError, match="feature 'x'.*current"):
        one(np.arange(5.0), np.array([], dtype=float))
    with pytest.raises(DriftInputError, match="feature 'x'.*current"):
        one(np.arange(5.0), np.array([np.nan, np.inf]))
    text = np.array(["a", "b", "a"], dtype=object)
    with pytest.raises(DriftInputError, match="feature 'x'.*current.*no values left"):
        one(text, np.array([None, np.nan, float("nan")], dtype=object))  # text counted, none present


def test_missing_feature_and_wrong_test_type():
    profile = build_profile({"x": np.arange(5.0)})
    with pytest.raises(DriftInputError, match="feature 'y'"):
        compute_drift(profile, {"x": np.arange(5.0)}, [FeatureSpec("y")])
    with pytest.raises(DriftInputError, match="'ks' does not apply to categorical"):
        one(np.array(["a", "b"]), np.array(["a"]), test="ks")
    with pytest.raises(DriftInputError, match="numerical"):
        one(np.array(["a", "b"]), np.array(["a"]), type="numerical")


def test_tiny_and_constant_samples_do_not_crash():
    for test in ("ks", "psi", "jensenshannon", "wasserstein"):
        f = one(np.array([1.0]), np.array([1.0]), test=test)
        assert not f.drifted
    assert one(np.array([2.0, 2.0]), np.array([2.0, 2.0, 2.0])).test == "ztest"


def test_identical_samples_show_no_drift():
    rng = np.random.default_rng(6)
    x = rng.normal(size=2000)
    for test in ("ks", "psi", "jensenshannon", "wasserstein"):
        f = one(x, x.copy(), test=test)
        assert f.statistic == 0.0 and not f.drifted


# --- dataset level, profile round trips ------------------------------------------------------------


def test_dataset_drift_share_is_inclusive():
    ref = {"a": np.zeros(50), "b": np.zeros(50)}
    cur = {"a": np.ones(50), "b": np.zeros(50)}
    result = compute_drift(build_profile(ref), cur)
    assert (result.drifted_count, result.share, result.dataset_drift) == (1, 0.5, True)
    assert not compute_drift(build_profile(ref), cur, drift_share=0.6).dataset_drift
    status = result.to_status()
    assert status["rows"] == {"reference": 50, "current": 50}
    json.dumps(status, allow_nan=False)


def test_profile_round_trips(tmp_path):
    rng = np.random.default_rng(7)
    ref = {"f": rng.normal(size=300), "i": rng.integers(0, 50, 300), "s": rng.choice(["u", "v", "w"], 300),
           "b": rng.random(300) > 0.5}
    cur = {"f": rng.normal(0.2, 1, 200), "i": rng.integers(0, 60, 200), "s": rng.choice(["u", "w"], 200),
           "b": rng.random(200) > 0.3}
    profile = build_profile(ref)
    want = compute_drift(profile, cur)
    from_dict = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    profile.save(tmp_path / "ref.npz")
    from_npz = ReferenceProfile.load(tmp_path / "ref.npz")
    assert compute_drift(from_dict, cur) == want
    assert compute_drift(from_npz, cur) == want


def test_a_window_below_min_rows_gives_no_verdict():
    rng = np.random.default_rng(3)
    profile = build_profile({"x": rng.normal(0, 1, 3000), "c": rng.choice(["a", "b", "c"], 3000)})
    small = {"x": rng.normal(0, 1, 34), "c": rng.choice(["a", "b", "c"], 34)}
    with pytest.raises(InsufficientData, match=r"34 rows, fewer than minRows \(100\)"):
        compute_drift(profile, small, min_rows=100)
    assert issubclass(InsufficientData, DriftInputError)  # callers that know only DriftInputError still stop
    assert compute_drift(profile, small, min_rows=34).rows_current == 34
