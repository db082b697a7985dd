"""CBPE against NannyML 0.13.1 on its bundled synthetic binary datasets: the calibration decision, and per chunk of
5000 rows the estimated accuracy, F1 and ROC AUC, their sampling errors and confidence bands, to 1e-6."""

import warnings

import numpy as np
import pytest
from nannyml_anchor import DATASETS, chunks, nannyml
from sklearn.model_selection import StratifiedShuffleSplit

from mlops_operator.drift.cbpe import estimate_cbpe, fit_cbpe, fit_isotonic, needs_calibration, stratified_shuffle_split

TOL = 1e-6
METRICS = ["roc_auc", "accuracy", "f1"]
NANNYML_FIELDS = {"value": "value", "sampling_error": "sampling_error", "upper": "upper_confidence_boundary",
                  "lower": "lower_confidence_boundary"}


@pytest.mark.parametrize("dataset", ["car_loan", "work_from_home"])
def test_estimates_equal_nannyml(dataset):
    load, label, _ = DATASETS[dataset]
    reference, analysis, _ = load()
    estimator = nannyml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true=label, metrics=METRICS,
                             chunk_size=5000, problem_type="classification_binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(reference)
        expected = estimator.estimate(analysis).filter(period="analysis").to_df()

    model = fit_cbpe(reference["y_pred_proba"].to_numpy(), reference[label].to_numpy(), reference["y_pred"].to_numpy())
    assert (model.calibrator is not None) == estimator.needs_calibration
    scores, predicted = analysis["y_pred_proba"].to_numpy(), analysis["y_pred"].to_numpy()
    ranges = chunks(expected)
    assert len(ranges) == 10
    for i, (start, end) in enumerate(ranges):
        ours = estimate_cbpe(model, scores[start:end], predicted[start:end])
        for metric in METRICS:
            for field, theirs in NANNYML_FIELDS.items():
                assert getattr(ours[metric], field) == pytest.approx(expected[(metric, theirs)][i], abs=TOL), \
                    (dataset, i, metric, field)


def test_estimate_follows_a_drop_that_shows_in_the_scores():
    """A window of less confident scores is estimated to perform worse (the estimate is not the reference's)."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 20_000)
    scores = np.clip(np.where(labels == 1, rng.beta(6, 2, labels.size), rng.beta(2, 6, labels.size)), 0, 1)
    model = fit_cbpe(scores, labels, (scores >= 0.5).astype(int))
    confident = estimate_cbpe(model, scores[:5000], (scores[:5000] >= 0.5).astype(int))
    unsure = rng.beta(5, 5, 5000)
    hesitant = estimate_cbpe(model, unsure, (unsure >= 0.5).astype(int))
    assert confident["accuracy"].lower > hesitant["accuracy"].upper


def test_isotonic_calibration_equals_scikit_learn():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    scores = np.round(rng.random(5000), 3)  # ties, which are averaged
    labels = (rng.random(5000) < scores**2).astype(int)
    theirs = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(scores, labels)
    probe = np.linspace(-0.5, 1.5, 1001)
    np.testing.assert_allclose(fit_isotonic(scores, labels)(probe), theirs.predict(probe), rtol=0, atol=1e-12)


def test_stratified_splits_equal_scikit_learn():
    labels = np.random.default_rng(1).integers(0, 2, 1003)
    theirs = StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=42).split(np.zeros(labels.size), labels)
    for (train, test), (their_train, their_test) in zip(stratified_shuffle_split(labels, 10, 0.1, 42), theirs):
        np.testing.assert_array_equal(train, their_train)
        np.testing.assert_array_equal(test, their_test)


def test_well_calibrated_scores_are_left_alone():
    rng = np.random.default_rng(2)
    scores = rng.random(20_000)
    labels = (rng.random(scores.size) < scores).astype(int)  # calibrated by construction
    theirs = nannyml.calibration.needs_calibration(labels, scores, nannyml.calibration.IsotonicCalibrator())
    assert needs_calibration(labels, scores) is bool(theirs) is False
    assert fit_cbpe(scores, labels, (scores >= 0.5).astype(int), calibration="none").calibrator is None
