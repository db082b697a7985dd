"""The model checks of one DriftMonitor run, beyond input drift: data quality, prediction drift, performance with
labels, performance estimated without labels (CBPE) and multivariate drift.

    reference_cols, current_cols = needed_columns(spec, feature_names)   # what to read
    fields = evaluate(spec, reference, current, feedback, profile)       # -> merged into status.lastRun

Pure apart from numpy: columns in, status fields out.  Each check runs only when its spec field is set; a check
that breaks a bound is named in ``failedChecks``, which the operator's reactions read like input drift.  Bad data
raises DriftInputError or PerformanceInputError with a message naming the column (the runner's InvalidData).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..api.driftmonitor import DriftMonitorSpec, EstimatedPerformanceCheck, MetricThreshold, PerformanceCheck
from ..drift.cbpe import estimate_cbpe, fit_cbpe
from ..drift.engine import DriftInputError, compute_drift, feature_specs
from ..drift.multivariate import fit_reconstruction, reconstruction_error
from ..drift.performance import (
    LOWER_IS_BETTER,
    PerformanceInputError,
    classification_metrics,
    join_labels,
    regression_metrics,
)
from ..drift.profile import ReferenceProfile, build_profile
from ..drift.quality import QualityThresholds, data_quality, missing_mask

Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Feedback:
    """Labels that arrived after the predictions, keyed by request id (the prediction log's feedback rows)."""

    request_ids: np.ndarray
    labels: np.ndarray
    times: np.ndarray | None = None  # when each label arrived, for the label delay


def needed_columns(spec: DriftMonitorSpec, features: Sequence[str]) -> tuple[set[str], set[str]]:
    """Columns the checks read from the reference and from the current window, besides the input features."""
    reference: set[str] = set(features)
    current: set[str] = set(features)
    if spec.quality is not None:
        reference.update(spec.quality.columns)
        current.update(spec.quality.columns)
    if spec.multivariate is not None:
        reference.update(spec.multivariate.columns)
        current.update(spec.multivariate.columns)
    if spec.prediction_drift is not None:
        names = {f.name for f in spec.prediction_drift.columns}
        reference.update(names)
        current.update(names)
    if (perf := spec.performance) is not None:
        used = {perf.label_column, perf.prediction_column} | ({perf.score_column} if perf.score_column else set())
        if any(m.max_drop is not None for m in perf.metrics):  # only a bound relative to the reference reads it:
            reference.update(used)  # absolute bounds need no predictions in the reference (training data has none)
        current.update(used - {perf.label_column} | {perf.request_id_column})
    if (est := spec.estimated_performance) is not None:
        used = {est.score_column} | ({est.prediction_column} if est.prediction_column else set())
        reference.update(used | {est.label_column})
        current.update(used)
    return reference, current


def evaluate(spec: DriftMonitorSpec, reference: Columns, current: Columns, features: Sequence[str],
             feedback: Feedback | None = None, profile: ReferenceProfile | None = None,
             timestamp_column: str | None = None) -> dict[str, Any]:
    """The ``status.lastRun`` fields of the model checks set in ``spec`` (camelCase, JSON-safe).

    ``features`` are the input drift's columns (the default columns of quality and multivariate checks);
    ``profile`` the reference profile already built for them (built here when absent or lacking a column).
    Labels come from ``feedback`` joined by request id, or else from the current window's label column.
    """
    out: dict[str, Any] = {}
    failed: list[str] = []
    if spec.quality is not None:
        names = spec.quality.columns or list(features)
        q = spec.quality
        limits = QualityThresholds(missing=q.max_missing_share, out_of_range=q.max_out_of_range_share,
                                   new_categories=q.max_new_category_share, type_errors=q.max_type_error_share)
        result = data_quality(_profile(profile, reference, names), current, names, limits)
        out["quality"] = result.to_status()
        if result.failed:
            failed.append("quality")
    if spec.prediction_drift is not None:
        names = [f.name for f in spec.prediction_drift.columns]
        drift = compute_drift(_profile(profile, reference, names), current,
                              feature_specs([f.to_dict() for f in spec.prediction_drift.columns]), drift_share=0.0)
        drifted = drift.drifted_count > 0
        out["predictionDrift"] = {"drifted": drifted, "features": [f.to_status() for f in drift.features]}
        if drifted:
            failed.append("predictionDrift")
    if spec.performance is not None:
        out["performance"] = measured_performance(spec.performance, reference, current, feedback, timestamp_column)
        if out["performance"]["failed"]:
            failed.append("performance")
    if spec.estimated_performance is not None:
        out["estimatedPerformance"] = estimated_performance(spec.estimated_performance, reference, current)
        if out["estimatedPerformance"]["failed"]:
            failed.append("estimatedPerformance")
    if spec.multivariate is not None:
        names = spec.multivariate.columns or list(features)
        model = fit_reconstruction(reference, names)
        mv = reconstruction_error(model, current, spec.multivariate.max_error, spec.multivariate.min_increase)
        out["multivariate"] = _json(mv.to_status())
        if mv.drifted:
            failed.append("multivariate")
    out["failedChecks"] = failed
    return out


def measured_performance(check: PerformanceCheck, reference: Columns, current: Columns, feedback: Feedback | None,
                         timestamp_column: str | None = None) -> dict[str, Any]:
    predicted = _column(current, check.prediction_column, "current")
    delay = None
    if feedback is not None:
        times = current.get(timestamp_column) if timestamp_column else None
        joined = join_labels(_column(current, check.request_id_column, "current"), feedback.request_ids,
                             feedback.labels, times, feedback.times)
        found, labels = joined.found, joined.values
        if joined.delays is not None and joined.delays.size:
            delay = float(np.median(joined.delays))
    else:
        labels = _column(current, check.label_column, "current")
        found = ~missing_mask(labels)
    labelled = int(found.sum())
    status: dict[str, Any] = {"labelledRows": labelled, "failed": False, "metrics": []}
    if delay is not None:
        status["labelDelaySeconds"] = delay
    if labelled < check.min_labelled_rows:
        status["skipped"] = "InsufficientLabels"
        return status
    names = tuple(m.name for m in check.metrics)
    scores = _column(current, check.score_column, "current")[found] if check.score_column else None
    values = _score(check, labels[found], predicted[found], scores, names)
    baseline = None
    if any(m.max_drop is not None for m in check.metrics):
        ref_scores = _column(reference, check.score_column, "reference") if check.score_column else None
        baseline = _score(check, _column(reference, check.label_column, "reference"),
                          _column(reference, check.prediction_column, "reference"), ref_scores, names)
    status["metrics"] = [_judge(m, values[m.name], baseline) for m in check.metrics]
    status["failed"] = any(m["failed"] for m in status["metrics"])
    result: dict[str, Any] = _json(status)
    return result


def estimated_performance(check: EstimatedPerformanceCheck, reference: Columns, current: Columns) -> dict[str, Any]:
    def classes(data: Columns, where: str) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(_column(data, check.score_column, where), dtype=np.float64)
        if check.prediction_column:
            predicted = _column(data, check.prediction_column, where)
            return scores, _is_positive(predicted, check.positive_label)
        return scores, (scores >= check.decision_threshold).astype(np.int64)

    ref_scores, ref_predicted = classes(reference, "reference")
    ref_labels = _is_positive(_column(reference, check.label_column, "reference"), check.positive_label)
    model = fit_cbpe(ref_scores, ref_labels, ref_predicted, check.calibration)
    scores, predicted = classes(current, "current")
    names = tuple(m.name for m in check.metrics)
    estimates = estimate_cbpe(model, scores, predicted, names)
    metrics = []
    for m in check.metrics:
        e = estimates[m.name]
        judged = _judge(m, e.value, model.reference)
        metrics.append({**judged, "samplingError": e.sampling_error, "lower": e.lower, "upper": e.upper})
    result: dict[str, Any] = _json({"rows": int(scores.size), "failed": any(m["failed"] for m in metrics),
                                    "metrics": metrics})
    return result


# --- helpers ----------------------------------------------------------------------------------------------------


def _score(check: PerformanceCheck, labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None,
           names: tuple[str, ...]) -> dict[str, float]:
    if check.task == "regression":
        return regression_metrics(labels, predicted, names)
    labels, predicted = _comparable(labels, predicted, check.positive_label)
    positive = _like(check.positive_label, labels)
    return classification_metrics(labels, predicted, scores, positive=positive, metrics=names)


def _judge(threshold: MetricThreshold, value: float, baseline: Mapping[str, float] | None) -> dict[str, Any]:
    """The metric's status entry: failed when outside [min, max] or worse than the reference by more than maxDrop."""
    reference = baseline.get(threshold.name) if baseline is not None else None
    reason = None
    if not math.isfinite(value):
        reason = "the metric is undefined for this window (one class only)"
    elif threshold.min is not None and value < threshold.min:
        reason = f"below min {threshold.min}"
    elif threshold.max is not None and value > threshold.max:
        reason = f"above max {threshold.max}"
    elif threshold.max_drop is not None and reference is not None and math.isfinite(reference):
        worse_by = value - reference if threshold.name in LOWER_IS_BETTER else reference - value
        if worse_by > threshold.max_drop:
            reason = f"worse than the reference ({reference:.4g}) by {worse_by:.4g} > maxDrop {threshold.max_drop}"
    entry: dict[str, Any] = {"name": threshold.name, "value": value, "failed": reason is not None}
    if reference is not None:
        entry["reference"] = reference
    if reason is not None:
        entry["reason"] = reason
    return entry


def _comparable(labels: np.ndarray, predicted: np.ndarray, positive: int | str) -> tuple[np.ndarray, np.ndarray]:
    """Labels from feedback may be text while predictions are numbers (or the reverse): compare as text then."""
    if (labels.dtype.kind in "OUS") != (predicted.dtype.kind in "OUS"):
        return labels.astype(str), predicted.astype(str)
    return labels, predicted


def _like(positive: int | str, labels: np.ndarray) -> Any:
    if labels.dtype.kind in "OUS":
        return str(positive)
    if labels.dtype.kind == "b":
        return bool(positive) if not isinstance(positive, str) else positive.lower() == "true"
    return positive


def _is_positive(values: np.ndarray, positive: int | str) -> np.ndarray:
    values = np.asarray(values)
    return np.asarray(values == _like(positive, values), dtype=np.int64)


def _profile(profile: ReferenceProfile | None, reference: Columns, names: Sequence[str]) -> ReferenceProfile:
    if profile is not None and all(n in profile for n in names):
        return profile
    missing = [n for n in names if n not in reference]
    if missing:
        raise DriftInputError(f"column '{missing[0]}': not in the reference data")
    return build_profile({n: np.asarray(reference[n]) for n in names})


def _column(data: Columns, name: str, where: str) -> np.ndarray:
    if name not in data:
        raise PerformanceInputError(f"column '{name}': not in the {where} data")
    return np.asarray(data[name])


def _json(value: Any) -> Any:
    """Kubernetes status is JSON: NaN and inf become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
