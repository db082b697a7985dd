"""Model performance from labelled rows: classification and regression metrics, and the join of labels to predictions.

    labels = join_labels(request_ids, feedback_ids, feedback_labels)        # aligned with the predictions
    scores = classification_metrics(labels.values[labels.found], predicted[labels.found], scores=...)
    scores = regression_metrics(y_true, y_pred)

Each metric equals scikit-learn's with its defaults (binary average on the positive label; macro average when there
are more than two classes; zero_division gives 0): tests/unit/test_performance_parity.py.  Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

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
    classes = np.unique(np.concatenate((y_true, y_pred)))
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
    """Area under the ROC curve as the Mann-Whitney U statistic with average ranks for ties (equal to the trapezoid
    area scikit-learn integrates); NaN when only one class is present."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


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
