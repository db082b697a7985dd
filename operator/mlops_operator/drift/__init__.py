"""Drift statistics for the DriftMonitor: profile the reference once, then score each current window.

    profile = build_profile({"age": ref_age, "country": ref_country})     # once per reference
    result = compute_drift(profile, {"age": cur_age, "country": cur_country})
    result.to_status()  # -> status.lastRun fields

Tests and their selection mirror Evidently 0.7's data drift defaults; see docs/drift-statistics.md.
Pure numpy/scipy, no I/O.
"""

from mlops_operator.drift.engine import (
    DEFAULT_THRESHOLDS,
    TESTS,
    DriftInputError,
    DriftResult,
    FeatureDrift,
    FeatureSpec,
    InsufficientData,
    compute_drift,
    feature_drift,
    feature_specs,
    infer_type,
)
from mlops_operator.drift.profile import FeatureProfile, ReferenceProfile, build_profile

__all__ = [
    "DEFAULT_THRESHOLDS",
    "TESTS",
    "DriftInputError",
    "DriftResult",
    "FeatureDrift",
    "FeatureProfile",
    "FeatureSpec",
    "InsufficientData",
    "ReferenceProfile",
    "build_profile",
    "compute_drift",
    "feature_drift",
    "feature_specs",
    "infer_type",
]
