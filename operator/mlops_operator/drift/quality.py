"""Data quality of one current window against the reference profile, per column.

    result = data_quality(profile, {"age": cur_age, "country": cur_country}, thresholds)
    result.to_status()  # -> status.lastRun.quality

Per column: the share of missing values (None, NaN), of values outside the reference's [min, max] (numerical
columns), of categories the reference never had (categorical columns), and of type errors (a value that is not a
number in a numerical column, or a number in a column whose reference values are strings).  A column fails when a
share exceeds its threshold; the window fails when any column does.  Counts equal a pandas computation
(tests/unit/test_quality_parity.py).  numpy and compiled passes (kernels.py), no I/O.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mlops_operator.drift.codes import text_counts
from mlops_operator.drift.kernels import number_counts, parallel_map
from mlops_operator.drift.profile import FeatureProfile, ReferenceProfile, is_numeric_dtype

DEFAULT_QUALITY_THRESHOLDS = {"missing": 0.05, "outOfRange": 0.05, "newCategories": 0.05, "typeErrors": 0.0}
NEW_CATEGORY_EXAMPLES = 5  # unseen categories named in the status, most frequent first


@dataclass(frozen=True)
class QualityThresholds:
    """Largest acceptable share (0 to 1) of each kind of bad value in a column."""

    missing: float = DEFAULT_QUALITY_THRESHOLDS["missing"]
    out_of_range: float = DEFAULT_QUALITY_THRESHOLDS["outOfRange"]
    new_categories: float = DEFAULT_QUALITY_THRESHOLDS["newCategories"]
    type_errors: float = DEFAULT_QUALITY_THRESHOLDS["typeErrors"]


@dataclass(frozen=True)
class ColumnQuality:
    name: str
    rows: int
    missing: int
    out_of_range: int  # numerical columns; 0 otherwise
    new_categories: int  # rows whose category the reference never had (categorical columns)
    type_errors: int
    new_category_examples: tuple[str, ...]
    failed: tuple[str, ...]  # which shares exceeded their threshold: missing, outOfRange, newCategories, typeErrors

    def share(self, count: int) -> float:
        return count / self.rows if self.rows else 0.0

    def to_status(self) -> dict:
        out = {
            "name": self.name,
            "rows": self.rows,
            "missing": self.missing,
            "missingShare": self.share(self.missing),
            "outOfRange": self.out_of_range,
            "newCategories": self.new_categories,
            "typeErrors": self.type_errors,
            "failed": list(self.failed),
        }
        if self.new_category_examples:
            out["newCategoryExamples"] = list(self.new_category_examples)
        return out


@dataclass(frozen=True)
class QualityResult:
    columns: tuple[ColumnQuality, ...]

    @property
    def failed(self) -> bool:
        return any(c.failed for c in self.columns)

    def to_status(self) -> dict:
        return {
            "failed": self.failed,
            "failedColumns": [c.name for c in self.columns if c.failed],
            "columns": [c.to_status() for c in self.columns],
        }


def data_quality(profile: ReferenceProfile, current: Mapping[str, np.ndarray], names: Sequence[str] | None = None,
                 thresholds: QualityThresholds | Mapping[str, QualityThresholds] | None = None) -> QualityResult:
    """Quality of every column in ``names`` (default: every reference column present in the window).

    ``thresholds`` is one QualityThresholds for all columns or a mapping column -> QualityThresholds (columns not in
    it get the defaults).  A column missing from the window counts as all missing.
    """
    names = list(names) if names is not None else [n for n in profile.names if n in current]
    for name in names:
        if name not in profile:
            raise ValueError(f"column '{name}': not in the reference data")

    def check(name: str) -> ColumnQuality:
        column = np.asarray(current[name]) if name in current else None
        return column_quality(profile[name], column, _limits(thresholds, name))

    rows = max((len(current[n]) for n in names if n in current), default=0)
    return QualityResult(columns=tuple(parallel_map(check, names, rows)))  # columns side by side on large windows


def column_quality(ref: FeatureProfile, column: np.ndarray | None, limits: QualityThresholds) -> ColumnQuality:
    if column is None:  # the column is gone from the window: every row lacks it
        return _verdict(ref.name, 0, 0, 0, 0, 0, (), limits, gone=True)
    if column.ndim != 1:
        raise ValueError(f"column '{ref.name}': expected a 1-d column, got shape {column.shape}")
    rows = column.size
    if ref.numeric:
        ref_values = ref.values
        assert ref_values is not None, "a numeric profile keeps its sorted values"
        # The reference's sample is finite, so +/-inf falls outside its range; NaN compares false both ways.
        lo, hi = (ref_values[0], ref_values[-1]) if ref_values.size else (-np.inf, np.inf)
        if is_numeric_dtype(column.dtype):  # missing (NaN) and out of range in one compiled pass (kernels.py)
            missing, below, above = number_counts(column, lo, hi)
            type_errors = 0
        else:  # objects or text: each value converted, then the same pass over the numbers
            values, missing, type_errors = _as_numbers(column)
            _, below, above = number_counts(values, lo, hi)
        return _verdict(ref.name, rows, missing, below + above, 0, type_errors, (), limits)
    categories, _ = ref.category_counts()
    text = text_counts(column)
    if text is not None and _all_strings(categories):  # strings and missing values only: no type error
        new, examples = _unseen(text.categories, text.counts, categories)
        return _verdict(ref.name, rows, text.missing, 0, new, 0, examples, limits)
    present, missing = _present(column)
    type_errors = _numbers_among_strings(present, ref)
    if type_errors == 0 and present.dtype.kind == "O" and categories.dtype.kind in "OU" and _all_strings(categories):
        present = present.astype(str)  # fixed-width text sorts in C, Python objects one comparison at a time
        categories = categories.astype(str)
    new, examples = _new_categories(present, categories)
    return _verdict(ref.name, rows, missing, 0, new, type_errors, examples, limits)


# --- per kind of value ----------------------------------------------------------------------------------------


def _as_numbers(column: np.ndarray) -> tuple[np.ndarray, int, int]:
    """A column of objects or text as (float values with NaN where missing or not a number, missing count,
    type-error count)."""
    if column.dtype.kind in "US":  # every value is text: numeric text converts, the rest are type errors
        column = column.astype(object)
    values = np.full(column.size, np.nan)
    missing = type_errors = 0
    for i, v in enumerate(column):
        if v is None or (isinstance(v, float) and v != v):
            missing += 1
        elif isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            type_errors += 1
        else:
            values[i] = float(v)
    return values, missing, type_errors


def missing_mask(column: np.ndarray) -> np.ndarray:
    """True where a value is missing: None or NaN (pandas' isna, without pandas)."""
    if column.dtype.kind == "f":
        return np.asarray(np.isnan(column), dtype=bool)
    if column.dtype.kind == "O":
        # elementwise in numpy's object loop: NaN is the value unequal to itself
        return np.asarray(~np.equal(column, column) | np.equal(column, np.array(None, dtype=object)), dtype=bool)
    return np.zeros(column.size, dtype=bool)


def _present(column: np.ndarray) -> tuple[np.ndarray, int]:
    """Values that are not None/NaN, and how many were."""
    if column.dtype.kind not in "fO":
        return column, 0
    missing = missing_mask(column)
    return column[~missing], int(np.count_nonzero(missing))


def _numbers_among_strings(present: np.ndarray, ref: FeatureProfile) -> int:
    """In a column whose reference holds strings, values that are numbers (or booleans) are type errors."""
    if np.dtype(ref.dtype).kind not in "OUS":
        return 0
    categories, _ = ref.category_counts()
    if not all(isinstance(c, str) for c in categories):
        return 0
    if present.dtype.kind in "US":
        return 0
    if present.dtype.kind != "O":
        return int(present.size)
    return sum(1 for v in present if not isinstance(v, str))


def _all_strings(values: np.ndarray) -> bool:
    return all(isinstance(v, str) for v in values.tolist())


def _new_categories(present: np.ndarray, categories: np.ndarray) -> tuple[int, tuple[str, ...]]:
    try:
        values, counts = np.unique(present, return_counts=True)
        known = np.isin(values, categories)
    except TypeError:  # mixed types (a type error is also reported): compare one by one
        seen = set(categories.tolist())
        tally: dict[object, int] = {}
        for v in present:
            tally[v] = tally.get(v, 0) + 1
        unknown = sorted(((c, str(v)) for v, c in tally.items() if v not in seen), key=lambda t: (-t[0], t[1]))
        return sum(c for c, _ in unknown), tuple(name for _, name in unknown[:NEW_CATEGORY_EXAMPLES])
    return _unseen(values, counts, categories, known)


def _unseen(values: np.ndarray, counts: np.ndarray, categories: np.ndarray,
            known: np.ndarray | None = None) -> tuple[int, tuple[str, ...]]:
    """Rows whose value is not among the reference's categories, and the most frequent such values."""
    if known is None:
        known = np.isin(values, categories)
    new_values, new_counts = values[~known], counts[~known]
    order = np.lexsort((new_values.astype(str), -new_counts))[:NEW_CATEGORY_EXAMPLES]
    return int(new_counts.sum()), tuple(str(v) for v in new_values[order])


def _verdict(name: str, rows: int, missing: int, out_of_range: int, new: int, type_errors: int,
             examples: tuple[str, ...], limits: QualityThresholds, gone: bool = False) -> ColumnQuality:
    def over(count: int, limit: float) -> bool:
        return rows > 0 and count / rows > limit

    failed = tuple(kind for kind, bad in (
        ("missing", gone or over(missing, limits.missing)),
        ("outOfRange", over(out_of_range, limits.out_of_range)),
        ("newCategories", over(new, limits.new_categories)),
        ("typeErrors", over(type_errors, limits.type_errors)),
    ) if bad)
    return ColumnQuality(name=name, rows=rows, missing=missing, out_of_range=out_of_range, new_categories=new,
                         type_errors=type_errors, new_category_examples=examples, failed=failed)


def _limits(thresholds: QualityThresholds | Mapping[str, QualityThresholds] | None, name: str) -> QualityThresholds:
    if thresholds is None:
        return QualityThresholds()
    if isinstance(thresholds, QualityThresholds):
        return thresholds
    return thresholds.get(name, QualityThresholds())
