"""Large-sample sanity: on large windows p-value tests flag tiny, harmless shifts; `test: auto` switches to a
distance above 1000 reference rows, so the same shift is not drift (docs/driftmonitor.md, "Large windows")."""

import numpy as np

from mlops_operator.drift import FeatureSpec, build_profile, compute_drift


def test_auto_does_not_flag_a_harmless_shift_on_a_large_window_where_ks_does():
    rng = np.random.default_rng(0)
    reference = {"x": rng.standard_normal(200_000)}
    current = {"x": rng.standard_normal(200_000) + 0.03}  # 3% of a standard deviation
    profile = build_profile(reference)
    ks = compute_drift(profile, current, [FeatureSpec("x", test="ks")]).features[0]
    auto = compute_drift(profile, current, [FeatureSpec("x")]).features[0]
    assert ks.drifted and ks.p_value < 1e-6
    assert auto.test == "wasserstein" and not auto.drifted
    big = {"x": rng.standard_normal(200_000) + 0.3}
    assert compute_drift(profile, big, [FeatureSpec("x")]).features[0].drifted  # a real shift still is
