"""Confidence-based performance estimation (CBPE) for binary classification: performance before labels arrive.

    model = fit_cbpe(ref_scores, ref_labels, ref_predicted)        # once per reference (which has labels)
    estimate = estimate_cbpe(model, scores, predicted)             # per window, no labels needed

A calibrated probability p of the positive class says the row is a true positive with chance p when predicted
positive (a false positive with 1 - p), so the expected confusion matrix of a window, and from it accuracy and F1,
follow from the scores alone; ROC AUC is the area under the curve of expected true and false positive counts.
This holds only while P(label | score) stays as it was in the reference: no concept drift (docs/driftmonitor.md).

Follows NannyML 0.13.1's CBPE (``performance_estimation/confidence_based``): isotonic calibration fitted on the
reference when it lowers the expected calibration error in 10 stratified 90/10 splits (``needs_calibration``,
same splits as scikit-learn's StratifiedShuffleSplit(random_state=42)), its sampling errors
(``sampling_error/binary_classification``) and a band of 3 sampling errors clipped to [0, 1].
Parity: tests/unit/test_cbpe_parity.py.  numpy/scipy, and one compiled pass per window (kernels.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import isotonic_regression

from mlops_operator.drift.kernels import cbpe_cells, segments
from mlops_operator.drift.performance import PerformanceInputError, classification_metrics, roc_auc

CBPE_METRICS = ("accuracy", "f1", "roc_auc")
SAMPLING_ERROR_RANGE = 3  # NannyML's band: estimate +/- 3 sampling errors
CALIBRATION_SPLITS, CALIBRATION_BINS, CALIBRATION_TEST_SHARE, CALIBRATION_SEED = 10, 10, 0.1, 42
ALREADY_CALIBRATED_AUC = 0.999  # NannyML skips calibration above this reference ROC AUC
ROUND_DECIMALS = 5  # NannyML rounds the expected TP/FP counts before the ROC curve
CBPE_AUC_TOLERANCE = 1e-8  # the compiled pass's ROC AUC is used when it is surely this close to the exact one


@dataclass(frozen=True)
class Calibrator:
    """Isotonic regression (scikit-learn's IsotonicRegression(out_of_bounds="clip")): a piecewise linear map."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        # np.interp holds the end values beyond the ends: the clip of out_of_bounds="clip" without a pass of its own
        return np.asarray(np.interp(scores, self.x, self.y), dtype=np.float64)


@dataclass(frozen=True)
class CBPEModel:
    calibrator: Calibrator | None  # None: the reference scores are calibrated well enough as they are
    # sampling error components per metric (NannyML's *_sampling_error_components)
    accuracy_std: float
    f1_std: float
    f1_fraction: float
    auc_std: float
    auc_fraction: float
    reference: dict[str, float]  # realized metrics on the reference
    reference_rows: int

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        """The scores as calibrated probabilities (as they are when the reference needed no calibration)."""
        return self.calibrator(scores) if self.calibrator is not None else scores


@dataclass(frozen=True)
class MetricEstimate:
    name: str
    value: float
    sampling_error: float
    lower: float  # value - 3 sampling errors, at least 0
    upper: float  # value + 3 sampling errors, at most 1

    def to_status(self) -> dict:
        return {"name": self.name, "value": self.value, "samplingError": self.sampling_error,
                "lower": self.lower, "upper": self.upper}


def fit_cbpe(scores: np.ndarray, labels: np.ndarray, predicted: np.ndarray, calibration: str = "auto") -> CBPEModel:
    """Calibrate on the reference and keep what the sampling errors need.

    ``labels`` and ``predicted`` are 0/1 (1 = positive), ``scores`` the model's probability of the positive class.
    ``calibration``: auto (NannyML's test), isotonic (always) or none.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    predicted = np.asarray(predicted).astype(np.int64)
    if not (scores.shape == labels.shape == predicted.shape) or scores.ndim != 1 or scores.size == 0:
        raise PerformanceInputError("CBPE reference: scores, labels and predictions must be 1-d, non-empty, one length")
    if np.isnan(scores).any():
        raise PerformanceInputError("CBPE reference: scores contain NaN")
    if calibration == "none":
        calibrator = None
    elif calibration == "isotonic" or needs_calibration(labels, scores):
        calibrator = fit_isotonic(scores, labels)
    else:
        calibrator = None
    auc_std, auc_fraction = _auc_components(labels, scores)
    f1_std, f1_fraction = _f1_components(labels, predicted)
    return CBPEModel(
        calibrator=calibrator,
        accuracy_std=float(np.std((labels == predicted).astype(np.int64))),
        f1_std=f1_std,
        f1_fraction=f1_fraction,
        auc_std=auc_std,
        auc_fraction=auc_fraction,
        reference=classification_metrics(labels, predicted, scores, positive=1, metrics=CBPE_METRICS),
        reference_rows=int(scores.size),
    )


def estimate_cbpe(model: CBPEModel, scores: np.ndarray, predicted: np.ndarray,
                  metrics: tuple[str, ...] = CBPE_METRICS) -> dict[str, MetricEstimate]:
    """Expected metrics of a window from its scores and predicted classes (0/1)."""
    raw = np.asarray(scores, dtype=np.float64)
    predicted = np.asarray(predicted).astype(np.int64, copy=False)
    if raw.shape != predicted.shape or raw.size == 0:
        raise PerformanceInputError("CBPE: scores and predictions must be non-empty and of one length")
    # One compiled pass gives the expected counts and, within CBPE_AUC_TOLERANCE, the expected ROC AUC (kernels.py).
    # Otherwise (a NaN score, a class other than 0/1, or scores bunched so that the bound is wider) the scores are
    # sorted: the calibration map then looks them up ten times faster, and the ROC AUC walks them in that order.
    calibrator = model.calibrator
    if calibrator is None:
        sums = cbpe_cells(raw, predicted, *segments(None, None))
    else:  # cells between the first and last knot, beyond which the map is flat: no pass for the window's range
        sums = cbpe_cells(raw, predicted, *segments(calibrator.x, calibrator.y),
                          span=(float(calibrator.x[0]), float(calibrator.x[-1])))
    calibrate = model.calibrated
    if sums is not None:
        tp, fn = sums.tp, sums.fn
        fp = float(sums.positives) - tp
        tn = float(raw.size - sums.positives) - fn
    else:
        positive, negative = predicted == 1, predicted == 0
        tp = float(calibrate(np.sort(raw[positive])).sum())  # a predicted positive is true with chance p
        fn = float(calibrate(np.sort(raw[negative])).sum())
        fp = float(np.count_nonzero(positive)) - tp
        tn = float(np.count_nonzero(negative)) - fn
    n = raw.size
    out = {}
    for name in metrics:
        if name == "accuracy":
            value = (tp + tn) / n
            error = model.accuracy_std / np.sqrt(n)
        elif name == "f1":
            denominator = tp + 0.5 * (fp + fn)
            value = float(tp / denominator) if denominator != 0 else 0.0
            error = model.f1_std / np.sqrt(n * model.f1_fraction)
        elif name == "roc_auc":
            if sums is not None and sums.bound <= CBPE_AUC_TOLERANCE:
                value = sums.roc_auc
            else:
                value = expected_roc_auc(calibrate(np.sort(raw))[::-1])
            error = model.auc_std / np.sqrt(n * model.auc_fraction)
        else:
            raise PerformanceInputError(f"CBPE estimates {', '.join(CBPE_METRICS)}, not {name!r}")
        error = float(error)
        out[name] = MetricEstimate(name=name, value=value, sampling_error=error,
                                   lower=float(max(value - SAMPLING_ERROR_RANGE * error, 0.0)),
                                   upper=float(min(value + SAMPLING_ERROR_RANGE * error, 1.0)))
    return out


def expected_roc_auc(descending: np.ndarray) -> float:
    """NannyML's ``estimate_roc_auc`` of calibrated probabilities in descending order of the raw score: expected
    TP = cumulative probability, FP = rows so far - TP, both rounded to 5 decimals, trapezoid area of (FP rate, TP
    rate)."""
    p = descending
    expected_tp = np.cumsum(p)
    expected_fp = 1 + np.arange(p.size) - expected_tp
    tps = np.round(np.concatenate(([0.0], expected_tp)), ROUND_DECIMALS)
    fps = np.round(np.concatenate(([0.0], expected_fp)), ROUND_DECIMALS)
    if tps[-1] == 0 or fps[-1] == 0:
        return float("nan")
    tpr, fpr = tps / tps[-1], fps / fps[-1]
    # scikit-learn's auc: trapezoids, negated when x decreases throughout; fpr only rises here up to rounding
    return float(np.trapezoid(tpr, fpr))


# --- calibration ------------------------------------------------------------------------------------------------


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> Calibrator:
    """scikit-learn's IsotonicRegression(increasing=True, out_of_bounds="clip").fit: mean label per distinct score,
    pool-adjacent-violators (scipy), keep the ends and the points where the fitted value changes."""
    order = np.lexsort((labels, scores))
    return _isotonic_sorted(scores[order], labels[order].astype(np.float64))


def _isotonic_sorted(x: np.ndarray, y: np.ndarray) -> Calibrator:
    """`fit_isotonic` of rows already sorted by score, then label."""
    starts = _group_starts(x)
    weights = np.diff(np.append(starts, x.size)).astype(np.float64)
    ux, uy = x[starts], np.add.reduceat(y, starts) / weights
    fitted = isotonic_regression(uy, weights=weights, increasing=True).x
    keep = np.ones(fitted.size, dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return Calibrator(x=ux[keep], y=fitted[keep])


def _group_starts(sorted_x: np.ndarray) -> np.ndarray:
    """Where a new distinct value starts; as scikit-learn, values within 1e-15 of a group's first value join it."""
    eps = np.finfo(np.float64).resolution
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] - sorted_x[:-1] >= eps])
    gaps = np.diff(sorted_x)
    if np.any((gaps > 0) & (gaps < eps)):  # near-equal values chain off a group's first value: walk them
        kept, first = [0], sorted_x[0]
        for i in range(1, sorted_x.size):
            if sorted_x[i] - first >= eps:
                kept.append(i)
                first = sorted_x[i]
        starts = np.asarray(kept)
    return starts


def needs_calibration(labels: np.ndarray, scores: np.ndarray) -> bool:
    """NannyML's test: calibrate when isotonic calibration lowers the expected calibration error over 10
    stratified 90/10 splits of the reference (not when one class only, or ROC AUC > 0.999)."""
    if np.unique(labels).size == 1:
        return False
    if roc_auc(labels == 1, scores) > ALREADY_CALIBRATED_AUC:
        return False
    tests = []
    # Sorted once: a split's training rows, taken in this order, are sorted as fit_isotonic would sort them (rows
    # equal in score and label are interchangeable), so each split costs a pass instead of a sort.
    order = np.lexsort((labels, scores))
    member = np.zeros(labels.size, dtype=bool)
    for train, test in stratified_shuffle_split(labels, CALIBRATION_SPLITS, CALIBRATION_TEST_SHARE, CALIBRATION_SEED):
        member[:] = False
        member[train] = True
        rows = order[member[order]]
        calibrator = _isotonic_sorted(scores[rows], labels[rows].astype(np.float64))
        tests.append((labels[test], scores[test], calibrator(scores[test])))
    y_true = np.concatenate([t[0] for t in tests])
    raw = np.concatenate([t[1] for t in tests])
    calibrated = np.concatenate([t[2] for t in tests])
    edges = _bin_edges(y_true.size, CALIBRATION_BINS)
    before = _expected_calibration_error(y_true, raw, edges)
    return bool(before > _expected_calibration_error(y_true, calibrated, edges))


def stratified_shuffle_split(labels: np.ndarray, n_splits: int, test_share: float,
                             seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's StratifiedShuffleSplit(n_splits, test_size=test_share, random_state=seed).split: the same
    legacy RandomState draws in the same order, so the same indices."""
    rng = np.random.RandomState(seed)
    n = labels.size
    n_test = int(np.ceil(test_share * n))
    n_train = n - n_test
    classes, inverse, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    class_indices = np.split(np.argsort(inverse, kind="stable"), np.cumsum(class_counts)[:-1])
    splits = []
    for _ in range(n_splits):
        n_i = _approximate_mode(class_counts, n_train, rng)
        t_i = _approximate_mode(class_counts - n_i, n_test, rng)
        train: list[np.ndarray] = []
        test: list[np.ndarray] = []
        for i in range(classes.size):
            permuted = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
            train.append(permuted[: n_i[i]])
            test.append(permuted[n_i[i] : n_i[i] + t_i[i]])
        splits.append((rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))))
    return splits


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """scikit-learn's ``_approximate_mode``: floor of the proportional share, the rest to the largest remainders
    (ties drawn at random)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need -= add_now
            if need == 0:
                break
    return np.asarray(floored, dtype=np.int64)


def _bin_edges(length: int, bins: int) -> list[tuple[int, int]]:
    if length <= 2 * bins:
        bins = length // 2
        if bins < 2:
            raise PerformanceInputError(f"CBPE: {length} reference rows are too few to test calibration")
    width = length // bins
    edges = np.asarray(range(0, length + 1, width))
    edges[-1] = length
    return list(zip(edges[:-1], edges[1:]))


def _expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, edges: list[tuple[int, int]]) -> float:
    order = proba.argsort()  # NannyML's default (quicksort) order among ties, which bins the labels
    proba, y_true = proba[order], y_true[order]
    terms = [(hi - lo) / proba.size * abs(np.mean(proba[lo:hi]) - np.mean(y_true[lo:hi])) for lo, hi in edges]
    return float(np.sum(terms))


# --- sampling error components (NannyML) ------------------------------------------------------------------------


def _auc_components(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Std of the per-positive share of negatives ranked below it (AUC as a Mann-Whitney U), and the positive share;
    the minority class is taken as positive.  As NannyML, a positive at rank 0 is left out."""
    y, s = labels, scores
    if np.mean(y) > 0.5:
        y, s = np.abs(y - 1), 1 - s
    order = np.argsort(s)
    y = y[order]
    positive_ranks = y * np.arange(y.size)
    indexes = np.unique(positive_ranks)[1:]
    n_pos = int(np.sum(y))
    n_neg = y.size - n_pos
    below = (indexes - np.arange(indexes.size)) / n_neg
    return float(np.std(below)), n_pos / y.size


def _f1_components(labels: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Std of per-row F1 contributions (TP rows 1, FP and FN rows 0, scaled) and the share of such rows."""
    tp = int(np.count_nonzero((labels == predicted) & (predicted == 1)))
    fp = int(np.count_nonzero((labels != predicted) & (predicted == 1)))
    fn = int(np.count_nonzero((labels != predicted) & (predicted == 0)))
    relevant = tp + fp + fn
    if relevant == 0:
        return float("nan"), 0.0
    factor = relevant / ((fn + fp) * 0.5 + tp)
    contributions = np.concatenate((np.full(tp, factor), np.zeros(fn + fp)))
    return float(np.std(contributions)), relevant / predicted.size
