"""PCA reconstruction error against NannyML 0.13.1's DataReconstructionDriftCalculator on its bundled synthetic
datasets (one with missing values): the number of components, and per chunk of 5000 rows the mean error and its
sampling error to 1e-6."""

import warnings

import numpy as np
import pytest
from nannyml_anchor import DATASETS, chunks, nannyml

from mlops_operator.drift.engine import DriftInputError
from mlops_operator.drift.multivariate import fit_reconstruction, reconstruction_error

TOL = 1e-6


@pytest.mark.parametrize("dataset", ["car_loan", "work_from_home", "car_loan_quality"])
def test_reconstruction_error_equals_nannyml(dataset):
    load, _, features = DATASETS[dataset]
    reference, analysis = load()[:2]
    calculator = nannyml.DataReconstructionDriftCalculator(column_names=features, chunk_size=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calculator.fit(reference)
        expected = calculator.calculate(analysis).filter(period="analysis").to_df()

    model = fit_reconstruction({c: reference[c].to_numpy() for c in features}, features)
    assert model.components.shape[0] == calculator._pca.n_components_
    for i, (start, end) in enumerate(chunks(expected)):
        ours = reconstruction_error(model, {c: analysis[c].to_numpy()[start:end] for c in features})
        assert ours.value == pytest.approx(expected[("reconstruction_error", "value")][i], abs=TOL), (dataset, i)
        assert ours.sampling_error == pytest.approx(expected[("reconstruction_error", "sampling_error")][i],
                                                    abs=TOL), (dataset, i)


def correlated(rng, rows, rho):
    x = rng.standard_normal(rows)
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(rows)
    return {"x": x, "y": y, "z": rng.standard_normal(rows)}


def test_a_broken_correlation_is_drift_that_no_single_column_shows():
    rng = np.random.default_rng(0)
    model = fit_reconstruction(correlated(rng, 20_000, 0.9))
    assert not reconstruction_error(model, correlated(rng, 5000, 0.9)).drifted
    broken = reconstruction_error(model, correlated(rng, 5000, -0.9))  # same marginals, opposite relation
    assert broken.drifted and broken.value > broken.threshold


def test_a_huge_window_does_not_flag_a_harmless_shift():
    """Large-sample sanity: 3 sampling errors shrink with the window, the 5% least increase does not."""
    rng = np.random.default_rng(1)
    model = fit_reconstruction(correlated(rng, 50_000, 0.9))
    huge = reconstruction_error(model, correlated(rng, 1_000_000, 0.895))
    assert huge.value > model.reference_error + 3 * huge.sampling_error  # statistically different...
    assert not huge.drifted  # ...but not by 5%
    assert reconstruction_error(model, correlated(rng, 1_000_000, 0.895), min_increase=0.0).drifted


def test_absolute_threshold_and_missing_columns():
    rng = np.random.default_rng(2)
    model = fit_reconstruction(correlated(rng, 1000, 0.5))
    window = correlated(rng, 1000, 0.5)
    assert reconstruction_error(model, window, upper=0.0).drifted
    with pytest.raises(DriftInputError, match="column 'z'"):
        reconstruction_error(model, {"x": window["x"], "y": window["y"]})
    with pytest.raises(DriftInputError, match="two columns"):
        fit_reconstruction({"x": window["x"]})
