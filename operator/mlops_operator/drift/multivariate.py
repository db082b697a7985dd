"""Multivariate drift: one verdict for the whole window from PCA reconstruction error, as NannyML defines it.

    model = fit_reconstruction(reference_columns)            # once per reference
    result = reconstruction_error(model, current_columns)    # per window: mean error, its sampling error, verdict

Fit (NannyML 0.13.1 ``DataReconstructionDriftCalculator``): missing values imputed (mean for numerical columns, most
frequent value for categorical ones), categories replaced by their share in the reference (unknown ones by 0),
every column standardised, PCA keeping the fewest components that explain 65% of the variance.  A row's error is
the Euclidean distance between it and its projection back from those components; the window's value is the mean
error.  When the relations between columns change, rows leave the reference's subspace and the error rises, even
if no column drifts on its own.  Parity: tests/unit/test_multivariate_parity.py.  numpy for the fit; a window
is one compiled pass (kernels.residual_norms).

The verdict: drift when the mean error exceeds ``upper`` (absolute), or, by default, the reference's mean error by
more than 3 sampling errors of a window this size *and* by at least ``min_increase`` (relative, default 5%), so a
huge window does not flag a harmless shift (docs/driftmonitor.md, "Large windows").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_operator.drift.codes import split_text, text_counts
from mlops_operator.drift.engine import DriftInputError
from mlops_operator.drift.kernels import TextColumn, distinct_objects, parallel_map, residual_norms
from mlops_operator.drift.quality import missing_mask

VARIANCE_KEPT = 0.65  # NannyML's default n_components
SAMPLING_ERROR_RANGE = 3
DEFAULT_MIN_INCREASE = 0.05


@dataclass(frozen=True)
class ReconstructionModel:
    numerical: tuple[str, ...]  # sorted, as NannyML orders them
    categorical: tuple[str, ...]
    columns: tuple[str, ...]  # encoding order (the caller's column order)
    fill: dict[str, Any]  # imputed value per column
    frequencies: dict[str, dict[object, float]]  # category -> share in the reference
    mean: np.ndarray  # standardisation
    scale: np.ndarray
    pca_mean: np.ndarray
    components: np.ndarray  # (k, columns)
    residual: np.ndarray  # (columns - k, columns): the rest of the orthonormal basis, what the components leave out
    reference_error: float  # mean error over the reference rows
    reference_std: float  # std (ddof=1) of the per-row error over the reference


@dataclass(frozen=True)
class MultivariateResult:
    value: float
    sampling_error: float
    lower: float
    upper_band: float
    reference_value: float
    threshold: float
    drifted: bool
    components: int

    def to_status(self) -> dict:
        return {"method": "pcaReconstruction", "value": self.value, "samplingError": self.sampling_error,
                "lower": self.lower, "upper": self.upper_band, "reference": self.reference_value,
                "threshold": self.threshold, "drifted": self.drifted, "components": self.components}


def fit_reconstruction(reference: Mapping[str, np.ndarray], names: Sequence[str] | None = None,
                       variance: float = VARIANCE_KEPT) -> ReconstructionModel:
    names = tuple(names if names is not None else reference)
    if len(names) < 2:
        raise DriftInputError("multivariate drift needs at least two columns")
    numerical: list[str] = []
    categorical: list[str] = []
    fill: dict[str, Any] = {}
    freqs: dict[str, dict[object, float]] = {}
    for name in names:
        if name not in reference:
            raise DriftInputError(f"column '{name}': not in the reference data")
        col = np.asarray(reference[name])
        if col.dtype.kind in "iuf":
            numerical.append(name)
            values = col.astype(np.float64)
            fill[name] = float(np.nanmean(values))
        else:
            categorical.append(name)
            text = text_counts(col)
            if text is not None:  # strings: counted by hashing (codes.py)
                cats, counts, present_rows = text.categories, text.counts, col.size - text.missing
            else:
                present = col[~missing_mask(col)]
                cats, counts = np.unique(present, return_counts=True)
                present_rows = present.size
            if present_rows == 0:
                raise DriftInputError(f"column '{name}': no values in the reference")
            fill[name] = cats[np.argmax(counts)]  # the smallest of the most frequent, as SimpleImputer
            filled_counts = counts.copy()
            filled_counts[np.argmax(counts)] += col.size - present_rows
            freqs[name] = {c: n / col.size for c, n in zip(cats.tolist(), filled_counts.tolist())}
    partial = ReconstructionModel(
        numerical=tuple(sorted(numerical)), categorical=tuple(sorted(categorical)), columns=names, fill=fill,
        frequencies=freqs, mean=np.zeros(0), scale=np.zeros(0), pca_mean=np.zeros(0), components=np.zeros((0, 0)),
        residual=np.zeros((0, 0)), reference_error=0.0, reference_std=0.0)
    x = _encode(partial, reference)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # StandardScaler leaves constant columns at 0
    z = x  # standardised, then centred, in place: a copy of a million rows costs as much as the step itself
    z -= mean
    z /= scale
    pca_mean = z.mean(axis=0)
    z -= pca_mean
    cov = z.T @ z / (z.shape[0] - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    ratio = np.cumsum(eigenvalues / eigenvalues.sum())
    k = int(np.searchsorted(ratio, variance, side="right")) + 1
    components = eigenvectors[:, order[:k]].T
    residual = np.ascontiguousarray(eigenvectors[:, order[k:]].T)
    model = ReconstructionModel(**{**partial.__dict__, "mean": mean, "scale": scale, "pca_mean": pca_mean,
                                   "components": components, "residual": residual})
    errors = _row_errors(model, z)
    return ReconstructionModel(**{**model.__dict__, "reference_error": float(errors.mean()),
                                  "reference_std": float(np.std(errors, ddof=1))})


def reconstruction_error(model: ReconstructionModel, current: Mapping[str, np.ndarray], upper: float | None = None,
                         min_increase: float = DEFAULT_MIN_INCREASE) -> MultivariateResult:
    for name in model.columns:
        if name not in current:
            raise DriftInputError(f"column '{name}': not in the current data")
    rows = len(np.asarray(current[model.columns[0]]))
    if rows < 2:
        raise DriftInputError(f"multivariate drift needs at least 2 rows in the window, got {rows}")
    # z = (x - mean) / scale - pca_mean = x * multiply + add, applied row by row in one compiled pass (kernels.py):
    # numbers as they are (NaN -> fill), text as codes into a table of its standardised shares.
    multiply = 1.0 / model.scale
    add = -(model.mean * multiply + model.pca_mean)
    numbers: list[tuple[np.ndarray, float, int]] = []
    text: list[TextColumn] = []
    columns = [np.asarray(current[name]) for name in model.columns]
    for name, col in zip(model.columns, columns):
        if col.shape != (rows,):
            raise DriftInputError(f"column '{name}': {col.size} values in a window of {rows} rows")
    categorical = [j for j, name in enumerate(model.columns) if name in model.frequencies]
    found = parallel_map(lambda j: _coded_shares(model, model.columns[j], columns[j]), categorical, rows)
    coded_at = dict(zip(categorical, found))
    for j, (name, col) in enumerate(zip(model.columns, columns)):
        coded = coded_at.get(j)
        if coded is not None:
            codes, table = coded
            text.append(TextColumn(codes=codes, table=table * multiply[j] + add[j], position=j))
        elif name in model.frequencies:
            numbers.append((_encode_column(model, name, col, None), 0.0, j))
        else:
            numbers.append((np.asarray(col, dtype=np.float64), float(model.fill[name]), j))
    total, squares = residual_norms(rows, numbers, text, multiply, add, model.residual)
    value = total / rows
    sampling_error = float(np.sqrt(max(squares - total * value, 0.0) / (rows - 1)) / np.sqrt(rows))
    if upper is None:
        reference_error = model.reference_std / np.sqrt(rows)
        upper = max(model.reference_error + SAMPLING_ERROR_RANGE * reference_error,
                    model.reference_error * (1 + min_increase))
    return MultivariateResult(
        value=value, sampling_error=sampling_error,
        lower=max(value - SAMPLING_ERROR_RANGE * sampling_error, 0.0),
        upper_band=value + SAMPLING_ERROR_RANGE * sampling_error,
        reference_value=model.reference_error, threshold=float(upper), drifted=bool(value > upper),
        components=int(model.components.shape[0]))


def _encode(model: ReconstructionModel, data: Mapping[str, np.ndarray]) -> np.ndarray:
    """Columns in ``model.columns`` order: numbers with the mean imputed, categories as their reference share."""
    rows = len(np.asarray(data[model.columns[0]]))
    out = np.empty((rows, len(model.columns)), order="F")  # a column at a time, each contiguous
    for j, name in enumerate(model.columns):
        col = np.asarray(data[name])
        if name in model.frequencies:
            out[:, j] = _encode_column(model, name, col, _coded_shares(model, name, col))
        else:
            numbers = out[:, j]
            numbers[:] = col
            numbers[np.isnan(numbers)] = model.fill[name]
    return out


def _encode_column(model: ReconstructionModel, name: str, col: np.ndarray,
                   coded: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """A categorical column as the reference share of each row's value (missing: the fill's share); ``coded``: the
    column's `_coded_shares`."""
    shares = model.frequencies[name]
    if coded is not None:
        codes, table = coded
        return np.asarray(table[codes], dtype=np.float64)
    items = col.tolist() if col.dtype.kind == "O" and col.ndim == 1 else None
    lookup = None if items is None else _text_shares(items, shares, shares.get(model.fill[name], 0.0))
    if items is not None and lookup is not None:  # strings of many distinct objects: each row looked up by hashing
        return np.fromiter(map(lookup.__getitem__, items), dtype=np.float64, count=len(items))
    missing = missing_mask(col)
    if missing.any():
        col = col.copy()
        col[missing] = model.fill[name]
    values, inverse = np.unique(col, return_inverse=True)
    return np.asarray([shares.get(v, 0.0) for v in values.tolist()], dtype=np.float64)[inverse.ravel()]


def _coded_shares(model: ReconstructionModel, name: str, col: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A text column as (per row, the slot of its object; slot -> reference share), from its distinct objects
    (kernels.distinct_objects); None unless it is a column of strings and missing values of few distinct objects."""
    distinct = distinct_objects(col, codes=True)
    if distinct is None or distinct.codes is None:
        return None
    shares = model.frequencies[name]
    values = col[distinct.rows].tolist()
    lookup = _text_shares(values, shares, shares.get(model.fill[name], 0.0))
    if lookup is None:
        return None
    table = np.zeros(distinct.size)
    table[distinct.slots] = [lookup[v] for v in values]
    return distinct.codes, table


def _text_shares(items: list, shares: Mapping[object, float], missing: float) -> dict[object, float] | None:
    """Each distinct value of a column of strings and missing values -> its reference share (0 for a category the
    reference never had, ``missing`` for None and NaN); None for any other column."""
    try:
        distinct = set(items)
    except TypeError:  # an unhashable value
        return None
    split = split_text(distinct)
    if split is None:
        return None
    text, missing_values = split
    table: dict[object, float] = {v: shares.get(v, 0.0) for v in text}
    table.update(dict.fromkeys(missing_values, missing))
    return table


def _row_errors(model: ReconstructionModel, centred: np.ndarray) -> np.ndarray:
    """Each row's distance to its projection on the components (`centred`: standardised, less the PCA mean).

    The components and the residual basis together are orthonormal, so the distance is the norm of the row's
    coordinates on the residual basis: the projection back, a pass over the window as large as it, is never formed,
    and no digits are lost to a difference of squares."""
    off = centred @ model.residual.T
    return np.asarray(np.sqrt(np.einsum("ij,ij->i", off, off)), dtype=np.float64)
