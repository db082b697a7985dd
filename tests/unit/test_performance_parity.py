"""Performance metrics against scikit-learn's to 1e-12 (binary, multiclass, string labels, tied scores,
regression), and the join of feedback labels to predictions by request id."""

import numpy as np
import pytest
from sklearn import metrics as skm

from mlops_operator.drift.performance import (
    PerformanceInputError,
    classification_metrics,
    join_labels,
    regression_metrics,
    roc_auc,
)

TOL = 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 5000))
    y_true = rng.integers(0, 2, n)
    scores = np.round(rng.random(n), int(rng.integers(1, 4)))  # few decimals: many tied scores
    y_pred = (scores >= 0.5).astype(int)
    ours = classification_metrics(y_true, y_pred, scores)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
    assert ours["precision"] == pytest.approx(skm.precision_score(y_true, y_pred), abs=TOL)
    assert ours["recall"] == pytest.approx(skm.recall_score(y_true, y_pred), abs=TOL)
    assert ours["f1"] == pytest.approx(skm.f1_score(y_true, y_pred), abs=TOL)
    assert ours["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, scores), abs=TOL)


def test_string_labels_with_a_positive_label():
    rng = np.random.default_rng(7)
    y_true = rng.choice(["fraud", "ok"], 999)
    y_pred = np.where(rng.random(999) < 0.8, y_true, rng.choice(["fraud", "ok"], 999))
    ours = classification_metrics(y_true, y_pred, positive="fraud", metrics=("precision", "recall", "f1"))
    assert ours["precision"] == pytest.approx(skm.precision_score(y_true, y_pred, pos_label="fraud"), abs=TOL)
    assert ours["recall"] == pytest.approx(skm.recall_score(y_true, y_pred, pos_label="fraud"), abs=TOL)
    assert ours["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, pos_label="fraud"), abs=TOL)


def test_multiclass_is_the_macro_average():
    rng = np.random.default_rng(8)
    y_true = rng.integers(0, 4, 3000)
    y_pred = np.where(rng.random(3000) < 0.6, y_true, rng.integers(0, 5, 3000))  # class 4 is only ever predicted
    ours = classification_metrics(y_true, y_pred, metrics=("accuracy", "precision", "recall", "f1"))
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert ours[name] == pytest.approx(fn(y_true, y_pred, average="macro", zero_division=0), abs=TOL)


def test_no_positive_prediction_gives_zero_like_scikit_learn():
    y_true, y_pred = np.array([1, 0, 1, 0]), np.zeros(4, dtype=int)
    ours = classification_metrics(y_true, y_pred, metrics=("precision", "f1"))
    assert ours == {"precision": skm.precision_score(y_true, y_pred, zero_division=0),
                    "f1": skm.f1_score(y_true, y_pred, zero_division=0)}


@pytest.mark.parametrize("seed", range(3))
def test_regression_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.normal(10, 5, 10_000)
    y_true[:10] = 0.0  # MAPE divides by max(|y|, eps)
    y_pred = y_true + rng.normal(0, 1, y_true.size)
    ours = regression_metrics(y_true, y_pred)
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred), abs=TOL)
    assert ours["rmse"] == pytest.approx(skm.root_mean_squared_error(y_true, y_pred), abs=TOL)
    assert ours["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y_true, y_pred), rel=TOL)


@pytest.mark.parametrize("scores", [np.full(6, 0.5), np.array([0.1, 0.4, 0.4, 0.4, 0.8, 0.8]),
                                    np.array([0.9, 0.9, 0.2, 0.2, 0.2, 0.7])])
def test_roc_auc_with_ties_across_the_classes_equals_scikit_learn(scores):
    is_positive = np.array([True, False, True, False, True, False])
    assert roc_auc(is_positive, scores) == pytest.approx(skm.roc_auc_score(is_positive, scores), abs=TOL)


def test_roc_auc_of_one_class_or_a_nan_score_is_nan_and_bad_input_names_the_problem():
    assert np.isnan(roc_auc(np.ones(5, bool), np.arange(5.0)))
    assert np.isnan(roc_auc(np.array([True, False, True]), np.array([0.2, np.nan, 0.7])))
    assert np.isnan(roc_auc(np.array([True, False, True]), np.array([0.2, 0.1, np.nan])))
    with pytest.raises(PerformanceInputError, match="scores"):
        classification_metrics(np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(PerformanceInputError, match="no labelled rows"):
        regression_metrics(np.array([]), np.array([]))
    with pytest.raises(PerformanceInputError, match="one length"):
        regression_metrics(np.array([1.0]), np.array([1.0, 2.0]))


def test_join_labels_by_request_id_last_label_wins():
    requests = np.array(["a", "b", "c", "d"])
    feedback_ids = np.array(["c", "a", "x", "c"])
    labels = np.array([0, 1, 1, 1])
    joined = join_labels(requests, feedback_ids, labels,
                         prediction_times=np.array([0.0, 1.0, 2.0, 3.0]), label_times=np.array([10.0, 5.0, 0.0, 20.0]))
    np.testing.assert_array_equal(joined.found, [True, False, True, False])
    np.testing.assert_array_equal(joined.values[joined.found], [1, 1])
    np.testing.assert_array_equal(joined.delays, [5.0, 18.0])
    assert joined.count == 2
    assert join_labels(requests, np.array([], dtype=str), np.array([])).count == 0
