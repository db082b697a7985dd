"""Dataset-level drift: one reference profile + one current window -> per-feature verdicts and a total.

Owns test selection (``test: auto`` follows Evidently 0.7's defaults), thresholds, the drift comparison
for each test, and the dataset verdict (share of drifted features >= driftShare).  Calls only
``profile`` (reference side) and ``stats`` (the numbers).  Rules and sources: docs/drift-statistics.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_operator.drift import stats
from mlops_operator.drift.codes import text_counts
from mlops_operator.drift.profile import (
    FeatureProfile,
    ReferenceProfile,
    clean_column,
    is_numeric_dtype,
    sorted_value_counts,
)

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
TESTS = ("ks", "psi", "chisquare", "ztest", "wasserstein", "jensenshannon")
DEFAULT_THRESHOLDS = {
    "ks": 0.05,
    "chisquare": 0.05,
    "ztest": 0.05,
    "wasserstein": 0.1,
    "psi": 0.1,
    "jensenshannon": 0.1,
}
# Evidently's allowed_feature_types per stat test (applies to explicitly requested tests only).
ALLOWED_TYPES = {
    "ks": (NUMERICAL,),
    "wasserstein": (NUMERICAL,),
    "chisquare": (CATEGORICAL,),
    "ztest": (CATEGORICAL,),
    "psi": (NUMERICAL, CATEGORICAL),
    "jensenshannon": (NUMERICAL, CATEGORICAL),
}
SMALL_REFERENCE_ROWS = 1000  # reference size (after cleaning) up to which p-value tests are used
FEW_VALUES = 5  # numerical columns with at most this many distinct values are treated as discrete
BINARY_VALUES = 2  # at most this many distinct values: Z-test instead of chi-square
HISTOGRAM_MIN_UNIQUE = 20  # PSI/JS bin numerical data by Sturges only above this many reference values
INT_CATEGORICAL_LIMIT = 10  # Evidently infers int columns with at most 10 distinct values as categorical


class DriftInputError(ValueError):
    """The data cannot be compared (missing or empty column, wrong type); the message names the feature."""


class InsufficientData(DriftInputError):
    """The current window has fewer rows than a verdict needs (`min_rows`): no verdict either way."""


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    type: str | None = None  # numerical | categorical | None (infer from the current column, as Evidently)
    test: str = "auto"
    threshold: float | None = None


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    type: str
    test: str
    statistic: float
    p_value: float | None  # None for distance tests (wasserstein, psi, jensenshannon)
    threshold: float
    drifted: bool

    def to_status(self) -> dict:
        return {
            "name": self.name,
            "test": self.test,
            "statistic": _json_number(self.statistic),
            "pValue": _json_number(self.p_value),
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftResult:
    features: tuple[FeatureDrift, ...]
    drifted_count: int
    share: float  # drifted_count / number of features
    drift_share: float  # configured threshold on ``share``
    dataset_drift: bool  # share >= drift_share
    rows_reference: int
    rows_current: int

    def to_status(self) -> dict:
        """The ``status.lastRun`` fields of a DriftMonitor (time is the caller's)."""
        return {
            "rows": {"reference": self.rows_reference, "current": self.rows_current},
            "datasetDrift": self.dataset_drift,
            "driftShare": self.share,
            "features": [f.to_status() for f in self.features],
        }


def compute_drift(
    profile: ReferenceProfile,
    current: Mapping[str, np.ndarray],
    features: Sequence[FeatureSpec] | None = None,
    drift_share: float = 0.5,
    min_rows: int = 1,
) -> DriftResult:
    """Compare one current window with the reference profile.

    ``features`` None means every column present in both, ``test: auto``.  Raises DriftInputError when
    a feature is missing, empty after dropping NaN/inf, or of the wrong type for its test, and its subclass
    InsufficientData when the window has fewer than ``min_rows`` rows.
    """
    specs = list(features) if features is not None else [FeatureSpec(n) for n in profile.names if n in current]
    if not specs:
        raise DriftInputError("no features to compare: the reference and current data share no columns")
    rows = max((len(current[s.name]) for s in specs if s.name in current), default=0)
    if 0 < rows < min_rows:  # an empty window is named per feature below
        raise InsufficientData(f"the current window has {rows} rows, fewer than minRows ({min_rows}) for a verdict")
    results = tuple(feature_drift(_reference(profile, s.name), _current(current, s.name), s) for s in specs)
    drifted = sum(r.drifted for r in results)
    share = drifted / len(results)
    return DriftResult(
        features=results,
        drifted_count=drifted,
        share=share,
        drift_share=drift_share,
        dataset_drift=bool(share >= drift_share),
        rows_reference=profile.rows,
        rows_current=max((len(current[s.name]) for s in specs), default=0),
    )


def feature_drift(ref: FeatureProfile, raw_current: np.ndarray, spec: FeatureSpec) -> FeatureDrift:
    """Drift verdict for one feature (reference profile vs raw current column)."""
    name = spec.name
    cur = _CurrentColumn(name, raw_current)
    ftype = _resolve_type(spec, cur)
    if ref.count == 0:
        raise DriftInputError(
            f"feature '{name}': the reference has no values left after dropping NaN/inf ({ref.rows} rows)"
        )
    if cur.present == 0:
        raise DriftInputError(
            f"feature '{name}': the current window has no values left after dropping NaN/inf ({cur.raw.size} rows)"
        )
    if ftype == NUMERICAL and not ref.numeric:
        raise DriftInputError(f"feature '{name}': numerical, but the reference column holds {ref.dtype} values")
    if ftype == NUMERICAL and not cur.numeric:
        raise DriftInputError(f"feature '{name}': numerical, but the current column holds {cur.raw.dtype} values")

    test = _select_test(ref, cur, ftype) if spec.test in (None, "auto") else _check_test(spec.test, ftype, name)
    threshold = DEFAULT_THRESHOLDS[test] if spec.threshold is None else float(spec.threshold)
    statistic, p_value = _run_test(test, ref, cur, ftype)
    return FeatureDrift(
        name=name,
        type=ftype,
        test=test,
        statistic=statistic,
        p_value=p_value,
        threshold=threshold,
        drifted=_is_drift(test, statistic, p_value, threshold),
    )


def infer_type(column: np.ndarray) -> str:
    """Evidently 0.7 ``infer_column_type``: float -> numerical; int -> categorical when it has at most
    10 distinct values, else numerical; bool, strings and anything else -> categorical."""
    kind = column.dtype.kind
    if kind == "f":
        return NUMERICAL
    if kind in "iu":
        return CATEGORICAL if np.unique(column).size <= INT_CATEGORICAL_LIMIT else NUMERICAL
    return CATEGORICAL


# --- test selection and dispatch -------------------------------------------------------------------------


def _select_test(ref: FeatureProfile, cur: _CurrentColumn, ftype: str) -> str:
    """Evidently ``_get_default_stattest``: by cleaned reference size, type and distinct values in
    reference + current together."""
    small = ref.count <= SMALL_REFERENCE_ROWS
    if ftype == NUMERICAL:
        few = ref.n_unique <= FEW_VALUES and _n_union(ref, cur) <= FEW_VALUES
        if small:
            if not few:
                return "ks"
            return "chisquare" if _n_union(ref, cur) > BINARY_VALUES else "ztest"
        return "jensenshannon" if few else "wasserstein"
    if small:
        binary = ref.n_unique <= BINARY_VALUES and _n_union(ref, cur) <= BINARY_VALUES
        return "ztest" if binary else "chisquare"
    return "jensenshannon"


def _check_test(test: str, ftype: str, name: str) -> str:
    if test not in TESTS:
        raise DriftInputError(f"feature '{name}': unknown test '{test}', expected auto or one of {', '.join(TESTS)}")
    if ftype not in ALLOWED_TYPES[test]:
        raise DriftInputError(f"feature '{name}': test '{test}' does not apply to {ftype} features")
    return test


def _run_test(test: str, ref: FeatureProfile, cur: _CurrentColumn, ftype: str) -> tuple[float, float | None]:
    if test == "ks":
        assert ref.values is not None, "the KS test applies to numeric features"
        return stats.ks_2samp_sorted(ref.values, cur.sorted)
    if test == "wasserstein":
        assert ref.values is not None and ref.std is not None, "the Wasserstein distance applies to numeric features"
        return stats.wasserstein_normed(ref.values, cur.sorted, ref.std), None
    if test == "psi":
        ref_p, cur_p = _binned_percents(ref, cur, ftype)
        return stats.psi(stats.fill_zeroes(ref_p), stats.fill_zeroes(cur_p)), None
    if test == "jensenshannon":
        ref_p, cur_p = _binned_percents(ref, cur, ftype)
        return stats.jensenshannon(ref_p, cur_p), None
    keys, ref_counts, cur_counts = _aligned_counts(ref, cur)
    if test == "chisquare":
        return stats.chisquare_counts(ref_counts, cur_counts)
    return _ztest(keys, ref_counts, cur_counts)


def _is_drift(test: str, statistic: float, p_value: float | None, threshold: float) -> bool:
    # Evidently's comparisons differ per test: KS uses <=, chi-square and Z use <, distances use >=.
    if test == "ks":
        assert p_value is not None, "the KS test gives a p-value"
        return bool(p_value <= threshold)
    if test in ("chisquare", "ztest"):
        assert p_value is not None, "chi-square and Z tests give a p-value"
        return bool(p_value < threshold)
    return bool(statistic >= threshold)


def _ztest(keys: np.ndarray, ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Evidently's Z-test: the smallest value is "0", everything else "1"; one shared value -> p = 1."""
    ref_present = np.flatnonzero(ref_counts)
    cur_present = np.flatnonzero(cur_counts)
    if ref_present.size == 1 and cur_present.size == 1 and ref_present[0] == cur_present[0]:
        return 0.0, 1.0
    n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
    # keys are sorted ascending, so index 0 is the value Evidently maps to 0
    return stats.ztest_proportions(n_ref - int(ref_counts[0]), n_ref, n_cur - int(cur_counts[0]), n_cur)


# --- binning and counting ----------------------------------------------------------------------------


def _binned_percents(ref: FeatureProfile, cur: _CurrentColumn, ftype: str) -> tuple[np.ndarray, np.ndarray]:
    """Evidently ``get_binned_data`` without zero filling: Sturges bins over the pooled range when the
    feature is numerical with more than 20 distinct reference values, else one bin per value seen."""
    if ftype == NUMERICAL and ref.n_unique > HISTOGRAM_MIN_UNIQUE:
        ref_values = ref.values
        assert ref_values is not None, "a numerical feature has its sorted values"
        pooled = np.result_type(ref_values.dtype, cur.clean.dtype)
        lo = min(ref_values[0], cur.min)
        hi = max(ref_values[-1], cur.max)
        edges = stats.sturges_edges(lo, hi, ref.count + cur.present, pooled)
        ref_counts = stats.histogram_sorted(ref_values, edges)
        if cur.has_sorted:
            cur_counts = stats.histogram_sorted(cur.sorted, edges)
        else:
            cur_counts = stats.histogram_unsorted(cur.clean, edges)
    else:
        _, ref_counts, cur_counts = _aligned_counts(ref, cur)
    return ref_counts / ref.count, cur_counts / cur.present


def _aligned_counts(ref: FeatureProfile, cur: _CurrentColumn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of every value seen in reference or current, over the sorted union of values."""
    ref_cats, ref_counts = ref.category_counts()
    cur_cats, cur_counts = cur.category_counts()
    try:
        keys = np.union1d(ref_cats, cur_cats)
    except (TypeError, np.exceptions.DTypePromotionError) as exc:
        raise DriftInputError(
            f"feature '{ref.name}': reference values ({ref_cats.dtype}) and current values "
            f"({cur_cats.dtype}) cannot be compared"
        ) from exc
    ref_full = np.zeros(keys.size, dtype=np.int64)
    cur_full = np.zeros(keys.size, dtype=np.int64)
    ref_full[np.searchsorted(keys, ref_cats)] = ref_counts
    cur_full[np.searchsorted(keys, cur_cats)] = cur_counts
    return keys, ref_full, cur_full


def _n_union(ref: FeatureProfile, cur: _CurrentColumn) -> int:
    return _aligned_counts(ref, cur)[0].size


# --- current column ----------------------------------------------------------------------------------


class _CurrentColumn:
    """The current side of one feature, cleaned once; sort and counts computed at most once, on demand."""

    def __init__(self, name: str, raw: np.ndarray):
        self.name = name
        self.raw = raw
        self.numeric = is_numeric_dtype(raw.dtype)
        self._sorted: np.ndarray | None = None
        self._counts: tuple[np.ndarray, np.ndarray] | None = None
        self._clean: np.ndarray | None = None
        text = text_counts(raw)
        if text is None:
            self._clean = clean_column(raw)
            self.present = self._clean.size
        else:  # strings: counted by hashing, not by sorting (codes.py); the values themselves only if asked for
            self.present = raw.size - text.missing
            self._counts = (text.categories, text.counts)

    @property
    def clean(self) -> np.ndarray:
        """The values left after dropping None, NaN and +/-inf."""
        if self._clean is None:
            self._clean = clean_column(self.raw)
        return self._clean

    @property
    def has_sorted(self) -> bool:
        return self._sorted is not None

    @property
    def sorted(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.sort(self.clean)
        return self._sorted

    @property
    def min(self) -> Any:
        return self._sorted[0] if self._sorted is not None else self.clean.min()

    @property
    def max(self) -> Any:
        return self._sorted[-1] if self._sorted is not None else self.clean.max()

    def category_counts(self) -> tuple[np.ndarray, np.ndarray]:
        if self._counts is None:
            if self.numeric:
                self._counts = sorted_value_counts(self.sorted)
            else:
                try:
                    cats, counts = np.unique(self.clean, return_counts=True)
                except TypeError as exc:
                    raise DriftInputError(f"feature '{self.name}': current values are not mutually comparable") from exc
                self._counts = (cats, counts.astype(np.int64))
        return self._counts


def _resolve_type(spec: FeatureSpec, cur: _CurrentColumn) -> str:
    if spec.type in (None, "auto"):
        return infer_type(cur.raw)
    if spec.type not in (NUMERICAL, CATEGORICAL):
        raise DriftInputError(f"feature '{spec.name}': unknown type '{spec.type}', expected numerical or categorical")
    return spec.type


def _reference(profile: ReferenceProfile, name: str) -> FeatureProfile:
    if name not in profile:
        raise DriftInputError(f"feature '{name}': not in the reference data")
    return profile[name]


def _current(current: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in current:
        raise DriftInputError(f"feature '{name}': not in the current data")
    column = np.asarray(current[name])
    if column.ndim != 1:
        raise DriftInputError(f"feature '{name}': expected a 1-d column, got shape {column.shape}")
    return column


def _json_number(value: float | None) -> float | None:
    """Kubernetes status is JSON: NaN and inf have no representation, report them as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def feature_specs(items: Iterable[Mapping]) -> list[FeatureSpec]:
    """FeatureSpecs from the DriftMonitor ``spec.features`` list ({name, type, test, threshold})."""
    return [
        FeatureSpec(
            name=item["name"],
            type=item.get("type"),
            test=item.get("test") or "auto",
            threshold=item.get("threshold"),
        )
        for item in items
    ]
