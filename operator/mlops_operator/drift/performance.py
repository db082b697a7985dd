"""Model performance from labelled rows: classification and regression metrics, and the join of labels to predictions.

    labels = join_labels(request_ids, feedback_ids, feedback_labels)        # aligned with the predictions
    scores = classification_metrics(labels.values[labels.found], predicted[labels.found], scores=...)
    scores = regression_metrics(y_true, y_pred)

Each metric equals scikit-learn's with its defaults (binary average on the positive label; macro average when there
are more than two classes; zero_division gives 0): tests/unit/test_performance_parity.py.  Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse", "mape")
# Metrics where a larger value is worse (errors); everything else is a score.
LOWER_IS_BETTER = frozenset(REGRESSION_METRICS)


class PerformanceInputError(ValueError):
    """Labels and predictions cannot be scored (lengths differ, no labelled rows, no scores for ROC AUC)."""


@dataclass(frozen=True)
class JoinedLabels:
    values: np.ndarray  # one label per prediction row; meaningless where ``found`` is False
    found: np.ndarray  # bool: the prediction row has a label
    delays: np.ndarray | None  # seconds from prediction to label for the labelled rows, when both times are known

    @property
    def count(self) -> int:
        return int(self.found.sum())


def join_labels(request_ids: np.ndarray, label_ids: np.ndarray, labels: np.ndarray,
                prediction_times: np.ndarray | None = None, label_times: np.ndarray | None = None) -> JoinedLabels:
    """Labels (feedback rows keyed by request id) aligned with prediction rows; the last label of an id wins.

    Times are seconds (float) or numpy datetime64; the delay is label time - prediction time.
    """
    request_ids = np.asarray(request_ids)
    label_ids = np.asarray(label_ids)
    labels = np.asarray(labels)
    if label_ids.shape != labels.shape:
        raise PerformanceInputError(f"feedback: {label_ids.size} request ids but {labels.size} labels")
    # np.unique keeps the first of equal ids: reverse so that the last feedback row wins.
    unique_ids, first = np.unique(label_ids[::-1], return_index=True)
    last = label_ids.size - 1 - first
    if unique_ids.size == 0:
        return JoinedLabels(np.empty(request_ids.size, dtype=labels.dtype), np.zeros(request_ids.size, bool), None)
    try:
        pos = np.searchsorted(unique_ids, request_ids)
    except TypeError as exc:
        raise PerformanceInputError(f"request ids ({request_ids.dtype}) and feedback ids ({label_ids.dtype}) "
                                    "cannot be compared") from exc
    pos = np.minimum(pos, unique_ids.size - 1)
    found = unique_ids[pos] == request_ids
    rows = last[pos]
    values = labels[rows]
    delays = None
    if prediction_times is not None and label_times is not None:
        delta = np.asarray(label_times)[rows[found]] - np.asarray(prediction_times)[found]
        delays = delta / np.timedelta64(1, "s") if delta.dtype.kind == "m" else delta.astype(np.float64)
    return JoinedLabels(values=values, found=np.asarray(found, dtype=bool), delays=delays)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray | None = None,
                           positive: Any = 1, metrics: tuple[str, ...] = CLASSIFICATION_METRICS) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (binary on ``positive``, macro over classes otherwise) and ROC AUC (binary,
    from ``scores`` = the model's probability of ``positive``)."""
    y_true, y_pred = _paired(y_true, y_pred)
    classes = _classes(y_true, y_pred)
    out: dict[str, float] = {}
    binary = classes.size <= 2
    for name in metrics:
        if name == "accuracy":
            out[name] = float(np.mean(y_true == y_pred))
        elif name in ("precision", "recall", "f1"):
            labels = [positive] if binary else list(classes)
            out[name] = float(np.mean([_prf(y_true, y_pred, label)[name] for label in labels]))
        elif name == "roc_auc":
            if scores is None:
                raise PerformanceInputError("roc_auc needs the model's scores (a probability column)")
            out[name] = roc_auc(y_true == positive, np.asarray(scores, dtype=np.float64))
        else:
            raise PerformanceInputError(f"unknown classification metric {name!r}")
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                       metrics: tuple[str, ...] = REGRESSION_METRICS) -> dict[str, float]:
    """MAE, RMSE and MAPE (a fraction, as scikit-learn: |y - p| / max(|y|, machine epsilon))."""
    y_true, y_pred = _paired(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64))
    error = y_true - y_pred
    out: dict[str, float] = {}
    for name in metrics:
        if name == "mae":
            out[name] = float(np.mean(np.abs(error)))
        elif name == "rmse":
            out[name] = float(np.sqrt(np.mean(error**2)))
        elif name == "mape":
            out[name] = float(np.mean(np.abs(error) / np.maximum(np.abs(y_true), np.finfo(np.float64).eps)))
        else:
            raise PerformanceInputError(f"unknown regression metric {name!r}")
    return out


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic, a tie counting one half (equal to the trapezoid
    area scikit-learn integrates); NaN when only one class is present or a score is NaN.

    Each class's scores are sorted on their own and each positive is placed among the negatives: two sorts of
    halves and a merge, not a ranking of the whole (a quarter of the time at a million rows).
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.sort(scores[is_positive])
    negatives = np.sort(scores[~is_positive])
    if positives.size == 0 or negatives.size == 0 or np.isnan(positives[-1]) or np.isnan(negatives[-1]):
        return float("nan")  # NaN sorts last
    # For each positive the negatives below it, plus half of those equal to it (looked up for tied ones only).
    below = np.searchsorted(negatives, positives, "left")
    tied = negatives[np.minimum(below, negatives.size - 1)] == positives
    ties = int((np.searchsorted(negatives, positives[tied], "right") - below[tied]).sum())
    return (2 * int(below.sum()) + ties) / 2.0 / (positives.size * negatives.size)


def _classes(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """The sorted classes present in either array; small integer ranges are counted, not sorted."""
    if y_true.dtype.kind in "biu" and y_pred.dtype.kind in "biu":
        low = min(int(y_true.min()), int(y_pred.min()))
        high = max(int(y_true.max()), int(y_pred.max()))
        if high - low <= 1 << 16 and high < 1 << 62:  # a uint64 beyond int64 is left to np.unique
            seen = np.bincount(y_true.astype(np.int64) - low, minlength=high - low + 1)
            seen += np.bincount(y_pred.astype(np.int64) - low, minlength=high - low + 1)
            return np.flatnonzero(seen) + low
    return np.unique(np.concatenate((y_true, y_pred)))


def _prf(y_true: np.ndarray, y_pred: np.ndarray, label: Any) -> dict[str, float]:
    predicted = y_pred == label
    actual = y_true == label
    tp = int(np.count_nonzero(predicted & actual))
    fp = int(np.count_nonzero(predicted)) - tp
    fn = int(np.count_nonzero(actual)) - tp
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
    }


def _paired(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise PerformanceInputError(f"labels {y_true.shape} and predictions {y_pred.shape} must be 1-d of one length")
    if y_true.size == 0:
        raise PerformanceInputError("no labelled rows")
    return y_true, y_pred
