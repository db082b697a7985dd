"""The compiled per-window loops (drift/kernels.py) against the numpy they replace, including the ways out to it."""

from collections import Counter

import numpy as np
import pytest

from mlops_operator.drift import kernels
from mlops_operator.drift.cbpe import CBPE_AUC_TOLERANCE, estimate_cbpe, expected_roc_auc, fit_cbpe
from mlops_operator.drift.multivariate import _encode, _row_errors, fit_reconstruction, reconstruction_error


def text_column(rng, rows, values=("aa", "bb", "cc"), nan_share=0.1):
    # two letters: CPython keeps one object per one-letter string, and the tests need equal strings apart
    column = np.array(values, dtype=object)[rng.integers(0, len(values), rows)]
    column[rng.random(rows) < nan_share] = np.nan
    column[rng.random(rows) < nan_share / 2] = None
    return column


def test_distinct_objects_counts_each_object_as_counter_does():
    rng = np.random.default_rng(0)
    column = text_column(rng, 5000)
    column[7] = ("aa" + " ")[:-1]  # equal to "aa", another object
    distinct = kernels.distinct_objects(column, codes=True)
    assert distinct is not None and distinct.codes is not None
    by_identity = Counter(id(v) for v in column.tolist())
    assert {id(column[r]): c for r, c in zip(distinct.rows, distinct.counts)} == by_identity
    assert list(distinct.rows) == sorted(distinct.rows)  # in order of first appearance
    slot_of = dict(zip(distinct.slots.tolist(), distinct.rows.tolist()))
    assert all(column[slot_of[code]] is value for code, value in zip(distinct.codes.tolist(), column.tolist()))


def test_distinct_objects_gives_up_on_many_objects_and_other_columns():
    many = np.array([str(i) for i in range(kernels.DISTINCT_OBJECTS + 1)], dtype=object)
    assert kernels.distinct_objects(many) is None
    assert kernels.distinct_objects(many[:-1]) is not None
    assert kernels.distinct_objects(np.arange(10.0)) is None
    assert kernels.distinct_objects(np.array([["a"]], dtype=object)) is None
    strided = text_column(np.random.default_rng(1), 1000)[::3]  # a view with a stride of its own
    distinct = kernels.distinct_objects(strided)
    assert distinct is not None and int(distinct.counts.sum()) == strided.size


def test_number_counts_equal_numpy():
    rng = np.random.default_rng(2)
    values = rng.standard_normal(10_001)
    values[::7] = np.nan
    values[:3] = [np.inf, -np.inf, 5.0]
    lo, hi = -1.5, 1.0
    assert kernels.number_counts(values, lo, hi) == (
        int(np.isnan(values).sum()), int((values < lo).sum()), int((values > hi).sum()))
    assert kernels.number_counts(values, -np.inf, np.inf) == (int(np.isnan(values).sum()), 0, 0)


def exact(model, scores, predicted):
    """The sorting path of estimate_cbpe, written out."""
    calibrate = model.calibrated
    tp = float(calibrate(scores[predicted == 1]).sum())
    fn = float(calibrate(scores[predicted == 0]).sum())
    return tp, fn, expected_roc_auc(calibrate(np.sort(scores))[::-1])


@pytest.mark.parametrize("calibration", ["isotonic", "none"])
@pytest.mark.parametrize("ties", [False, True])
def test_cbpe_cells_equal_the_sorting_path_within_their_bound(calibration, ties):
    rng = np.random.default_rng(3)
    ref = rng.random(20_000)
    model = fit_cbpe(ref, (rng.random(ref.size) < ref ** 2).astype(int), (ref > 0.5).astype(int), calibration)
    scores = rng.beta(2, 3, 200_000)
    if calibration == "isotonic":  # scores beyond the knots, where the map is flat (an infinite one too)
        scores = np.concatenate((scores, [-0.5, 1.5, np.inf]))
    if ties:  # many rows on one value: the bound counts a cell's width, so it may pass the tolerance
        scores = np.round(scores, 3)
    predicted = (scores > 0.4).astype(np.int64)
    calibrator = model.calibrator
    if calibrator is None:
        sums = kernels.cbpe_cells(scores, predicted, *kernels.segments(None, None))
    else:  # as estimate_cbpe: cells between the knots; scores beyond them (there are) in the flat outer cells
        assert scores.min() < calibrator.x[0] or scores.max() > calibrator.x[-1]
        sums = kernels.cbpe_cells(scores, predicted, *kernels.segments(calibrator.x, calibrator.y),
                                  span=(calibrator.x[0], calibrator.x[-1]))
    assert sums is not None
    tp, fn, auc = exact(model, scores, predicted)
    assert sums.tp == pytest.approx(tp, rel=1e-12) and sums.fn == pytest.approx(fn, rel=1e-12)
    assert sums.positives == int(predicted.sum())
    assert ties or sums.bound < CBPE_AUC_TOLERANCE
    # the cells' area lies under the exact one by at most the bound (NannyML's 5-decimal rounding aside)
    assert -1e-10 <= auc - sums.roc_auc <= sums.bound + 1e-10
    estimate = estimate_cbpe(model, scores, predicted)["roc_auc"].value
    assert estimate == (sums.roc_auc if sums.bound <= CBPE_AUC_TOLERANCE else auc)


def test_cbpe_cells_bound_is_honest_where_rows_bunch():
    """Ten rows spread over the whole range, the rest within one cell: the bound is wide and holds."""
    rng = np.random.default_rng(4)
    scores = np.concatenate((np.linspace(0, 1, 10), 0.5 + 1e-6 * rng.random(50_000)))
    predicted = (scores > 0.5).astype(np.int64)
    sums = kernels.cbpe_cells(scores, predicted, *kernels.segments(None, None), cells=64)
    assert sums is not None and sums.bound > CBPE_AUC_TOLERANCE
    auc = expected_roc_auc(np.sort(scores)[::-1])
    assert 0 <= auc - sums.roc_auc <= sums.bound + 1e-12


def test_estimate_cbpe_takes_the_exact_path_when_the_bound_is_wide(monkeypatch):
    rng = np.random.default_rng(5)
    ref = rng.random(5000)
    model = fit_cbpe(ref, (rng.random(ref.size) < ref).astype(int), (ref > 0.5).astype(int), "isotonic")
    scores = rng.random(30_000)
    predicted = (scores > 0.5).astype(np.int64)
    monkeypatch.setattr("mlops_operator.drift.cbpe.CBPE_AUC_TOLERANCE", 0.0)
    assert estimate_cbpe(model, scores, predicted)["roc_auc"].value == exact(model, scores, predicted)[2]


def test_cbpe_cells_with_a_span_decline_a_nan_score():
    scores, predicted = np.array([0.2, np.nan, 0.9]), np.array([0, 1, 1])
    assert kernels.cbpe_cells(scores, predicted, *kernels.segments(np.array([0.0, 1.0]), np.array([0.1, 0.8])),
                              span=(0.0, 1.0)) is None


@pytest.mark.parametrize("case", ["nan score", "class 2", "empty", "one value"])
def test_cbpe_cells_decline_what_they_cannot_count(case):
    scores, predicted = np.array([0.2, 0.7, 0.9]), np.array([0, 1, 1])
    if case == "nan score":
        scores[1] = np.nan
    elif case == "class 2":
        predicted[1] = 2
    elif case == "empty":
        scores, predicted = scores[:0], predicted[:0]
    else:
        scores[:] = 0.4
        sums = kernels.cbpe_cells(scores, predicted, *kernels.segments(None, None))
        assert sums is not None and sums.bound == 0.0
        assert sums.roc_auc == pytest.approx(expected_roc_auc(scores[::-1]), abs=1e-12)
        return
    assert kernels.cbpe_cells(scores, predicted, *kernels.segments(None, None)) is None


def pca_data(rng, rows):
    a = rng.standard_normal(rows)
    return {"a": a, "b": 0.8 * a + 0.6 * rng.standard_normal(rows), "c": rng.standard_normal(rows),
            "d": rng.integers(0, 5, rows).astype(np.float64), "t": text_column(rng, rows, ("xx", "yy", "zz", "ww"))}


def test_residual_norms_equal_the_numpy_errors():
    rng = np.random.default_rng(6)
    names = ["a", "b", "c", "d", "t"]
    model = fit_reconstruction(pca_data(rng, 4000), names)
    window = pca_data(rng, 3001)  # not a multiple of the block
    window["a"][::11] = np.nan
    window["t"][5] = "never seen"
    centred = _encode(model, window)
    centred -= model.mean
    centred /= model.scale
    centred -= model.pca_mean
    errors = _row_errors(model, centred)
    result = reconstruction_error(model, window)
    assert result.value == pytest.approx(errors.mean(), rel=1e-12)
    assert result.sampling_error == pytest.approx(np.std(errors, ddof=1) / np.sqrt(errors.size), rel=1e-9)
    # a text column of more distinct objects than the table holds takes numpy's path to the same answer
    many = window["t"].copy()
    many[:] = [(v + " ")[:-1] if isinstance(v, str) else v for v in many.tolist()]  # a new object per row
    assert kernels.distinct_objects(many) is None
    assert reconstruction_error(model, {**window, "t": many}).value == pytest.approx(result.value, rel=1e-12)


def test_worker_count_follows_the_setting(monkeypatch):
    monkeypatch.setenv("MLOPS_DRIFT_THREADS", "3")
    assert kernels.worker_count() == 3
    monkeypatch.setenv("MLOPS_DRIFT_THREADS", "99")
    assert kernels.worker_count() == kernels.MAX_WORKERS
    for wrong in ("0", "two", "-1"):
        monkeypatch.setenv("MLOPS_DRIFT_THREADS", wrong)
        with pytest.raises(ValueError, match="MLOPS_DRIFT_THREADS"):
            kernels.worker_count()
    monkeypatch.setenv("MLOPS_DRIFT_THREADS", "1")
    assert kernels.worker_count() == 1
    assert kernels.row_ranges(10**6) == [(0, 10**6)]
    monkeypatch.delenv("MLOPS_DRIFT_THREADS")
    assert 1 <= kernels.worker_count() <= kernels.MAX_WORKERS


def test_row_ranges_cover_the_window_once(monkeypatch):
    monkeypatch.setenv("MLOPS_DRIFT_THREADS", "3")
    assert kernels.row_ranges(kernels.PARALLEL_ROWS - 1) == [(0, kernels.PARALLEL_ROWS - 1)]
    ranges = kernels.row_ranges(100_003)
    assert len(ranges) == 3 and ranges[0][0] == 0 and ranges[-1][1] == 100_003
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_threads_give_the_answers_of_one_thread(monkeypatch):
    """The same window checked on one thread and split over three (rows, columns): equal results."""
    from mlops_operator.drift.profile import build_profile
    from mlops_operator.drift.quality import data_quality

    monkeypatch.setattr(kernels, "PARALLEL_ROWS", 1000)
    rng = np.random.default_rng(7)
    names = ["a", "b", "c", "d", "t"]
    model = fit_reconstruction(pca_data(rng, 4000), names)
    profile = build_profile(pca_data(rng, 4000))
    window = pca_data(rng, 5003)
    window["t"][17] = "new one"
    ref_scores = rng.random(5000)
    cbpe = fit_cbpe(ref_scores, (rng.random(5000) < ref_scores).astype(int), (ref_scores > 0.5).astype(int),
                    "isotonic")
    scores = rng.random(5003)
    predicted = (scores > 0.5).astype(np.int64)
    results = []
    for threads in ("1", "3"):
        monkeypatch.setenv("MLOPS_DRIFT_THREADS", threads)
        results.append((reconstruction_error(model, window), data_quality(profile, window).to_status(),
                        {k: v.value for k, v in estimate_cbpe(cbpe, scores, predicted).items()}))
    one, three = results
    assert three[0].value == pytest.approx(one[0].value, rel=1e-12)
    assert three[0].sampling_error == pytest.approx(one[0].sampling_error, rel=1e-9)
    assert three[1] == one[1]
    assert three[2] == pytest.approx(one[2], rel=1e-12)
