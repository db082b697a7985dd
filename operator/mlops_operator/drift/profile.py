"""Reference profile: everything the drift tests need from the reference data, computed once.

A DriftMonitor compares many current windows against one reference.  The profile keeps, per column, the
cleaned values sorted (numerical data) or the category counts (anything else), plus the unique count and
the population std, so a window only pays for its own side.  Histogram edges are not stored: Evidently
derives them from the pooled reference + current range, so they are rebuilt per window from min/max.

Cleaning follows Evidently: NaN, None and +/-inf are dropped before anything else.
Profiles round-trip through ``to_dict``/``from_dict`` (plain lists, JSON-safe) and ``save``/``load`` (npz).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops_operator.drift.codes import text_counts

FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeatureProfile:
    """One reference column after cleaning.

    ``values`` is the sorted finite sample for numeric columns (int, uint, float, bool as int) and None
    otherwise; ``categories``/``counts`` are the sorted unique values and their counts (for numeric
    columns they are derived from ``values`` on first use and not serialised).
    """

    name: str
    dtype: str  # numpy dtype of the raw column, e.g. "float64", "int64", "bool", "<U5", "object"
    rows: int  # raw length, NaN/inf included
    count: int  # values left after cleaning
    n_unique: int
    std: float | None  # population std (ddof=0) of the cleaned values; None when not numeric or empty
    values: np.ndarray | None = None
    categories: np.ndarray | None = field(default=None, repr=False)
    counts: np.ndarray | None = field(default=None, repr=False)

    @property
    def numeric(self) -> bool:
        return self.values is not None

    @property
    def is_bool(self) -> bool:
        return self.dtype == "bool"

    def category_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique values and their counts (computed from the sorted values once, then cached)."""
        if self.categories is None:
            assert self.values is not None, "a column without categories is numeric"
            cats, counts = sorted_value_counts(self.values)
            object.__setattr__(self, "categories", cats)
            object.__setattr__(self, "counts", counts)
            return cats, counts
        assert self.counts is not None, "categories come with their counts"
        return self.categories, self.counts


@dataclass(frozen=True)
class ReferenceProfile:
    """All reference columns, keyed by name, in the reference's column order."""

    features: dict[str, FeatureProfile]
    rows: int  # reference row count (longest column)

    def __getitem__(self, name: str) -> FeatureProfile:
        return self.features[name]

    def __contains__(self, name: object) -> bool:
        return name in self.features

    @property
    def names(self) -> list[str]:
        return list(self.features)

    # --- serialisation ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-safe dict (lists, not arrays).  Compact for small references; use ``save`` for big ones."""
        return {
            "version": FORMAT_VERSION,
            "rows": self.rows,
            "features": [_feature_meta(f) | _feature_arrays_as_lists(f) for f in self.features.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ReferenceProfile:
        _check_version(data)
        features = {}
        for item in data["features"]:
            values = categories = counts = None
            if item.get("values") is not None:
                values = np.asarray(item["values"], dtype=_numeric_storage(item["dtype"]))
            else:
                categories = _categories_array(item["categories"], item["dtype"])
                counts = np.asarray(item["counts"], dtype=np.int64)
            features[item["name"]] = _feature_from_meta(item, values, categories, counts)
        return cls(features=features, rows=int(data["rows"]))

    def save(self, path: str | Path) -> None:
        """Write an .npz: one JSON metadata entry plus one array per stored column (no pickling)."""
        arrays: dict[str, np.ndarray] = {}
        meta = []
        for i, f in enumerate(self.features.values()):
            meta.append(_feature_meta(f))
            if f.values is not None:  # numeric
                arrays[f"v{i}"] = f.values
            else:
                assert f.counts is not None, "a column that is not numeric has its categories and counts"
                arrays[f"c{i}"] = _categories_for_npz(f)
                arrays[f"n{i}"] = f.counts
        header = {"version": FORMAT_VERSION, "rows": self.rows, "features": meta}
        arrays["meta"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub takes **arrays for allow_pickle

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["meta"].tobytes().decode())
            _check_version(header)
            features = {}
            for i, item in enumerate(header["features"]):
                if f"v{i}" in z:
                    feat = _feature_from_meta(item, z[f"v{i}"], None, None)
                else:
                    cats = _categories_array(z[f"c{i}"].tolist(), item["dtype"])
                    feat = _feature_from_meta(item, None, cats, z[f"n{i}"].astype(np.int64))
                features[item["name"]] = feat
        return cls(features=features, rows=int(header["rows"]))


def build_profile(reference: Mapping[str, np.ndarray]) -> ReferenceProfile:
    """Profile every column of the reference data (name -> 1-d array)."""
    features = {name: profile_column(name, np.asarray(col)) for name, col in reference.items()}
    rows = max((f.rows for f in features.values()), default=0)
    return ReferenceProfile(features=features, rows=rows)


def profile_column(name: str, column: np.ndarray) -> FeatureProfile:
    if column.ndim != 1:
        raise ValueError(f"feature '{name}': expected a 1-d column, got shape {column.shape}")
    text = text_counts(column)
    if text is not None:  # strings and missing values: counted by hashing, not by sorting (codes.py)
        counts = text.counts
        return FeatureProfile(name=name, dtype=column.dtype.str, rows=column.size, count=int(counts.sum()),
                              n_unique=text.categories.size, std=None, categories=text.categories, counts=counts)
    clean = clean_column(column)
    if is_numeric_dtype(column.dtype):
        values = np.sort(clean)
        std = float(np.std(clean)) if clean.size else None  # unsorted, as Evidently sums it
        return FeatureProfile(
            name=name,
            dtype=column.dtype.str if column.dtype.kind in "OUS" else column.dtype.name,
            rows=column.size,
            count=values.size,
            n_unique=count_unique_sorted(values),
            std=std,
            values=values,
        )
    try:
        categories, counts = np.unique(clean, return_counts=True)
    except TypeError as exc:
        raise ValueError(f"feature '{name}': categorical values must be mutually comparable ({exc})") from exc
    return FeatureProfile(
        name=name,
        dtype=column.dtype.str if column.dtype.kind in "OUS" else column.dtype.name,
        rows=column.size,
        count=int(counts.sum()),
        n_unique=categories.size,
        std=None,
        categories=categories,
        counts=counts.astype(np.int64),
    )


# --- cleaning helpers shared with the engine ---------------------------------------------------------


def is_numeric_dtype(dtype: np.dtype) -> bool:
    return dtype.kind in "biuf"


def clean_column(column: np.ndarray) -> np.ndarray:
    """Drop NaN, None and +/-inf (Evidently: ``replace([-inf, inf], nan).dropna()``).

    Numeric columns come back as int64 (bool, signed, unsigned ints) or float64; others keep their dtype.
    """
    kind = column.dtype.kind
    if kind == "b":
        return column.astype(np.int64)
    if kind in "iu":
        return column.astype(np.int64, copy=False) if column.dtype != np.uint64 else column
    if kind == "f":
        column = column.astype(np.float64, copy=False)
        finite = np.isfinite(column)
        return column if finite.all() else column[finite]
    if kind == "O":
        keep = np.fromiter((_present(v) for v in column), dtype=bool, count=column.size)
        return column if keep.all() else column[keep]
    return column


def _present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return True


def count_unique_sorted(sorted_values: np.ndarray) -> int:
    if sorted_values.size == 0:
        return 0
    return int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1])) + 1


def sorted_value_counts(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique values and counts of a sorted array in O(n)."""
    if sorted_values.size == 0:
        return sorted_values[:0], np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    counts = np.diff(np.append(starts, sorted_values.size)).astype(np.int64)
    return sorted_values[starts], counts


# --- serialisation helpers -----------------------------------------------------------------------------


def _feature_meta(f: FeatureProfile) -> dict:
    return {"name": f.name, "dtype": f.dtype, "rows": f.rows, "count": f.count, "n_unique": f.n_unique, "std": f.std}


def _feature_arrays_as_lists(f: FeatureProfile) -> dict:
    if f.values is not None:  # numeric
        return {"values": f.values.tolist()}
    assert f.categories is not None and f.counts is not None, "a column that is not numeric has its categories"
    return {"categories": f.categories.tolist(), "counts": f.counts.tolist()}


def _feature_from_meta(item: Mapping, values: np.ndarray | None, categories: np.ndarray | None,
                       counts: np.ndarray | None) -> FeatureProfile:
    return FeatureProfile(
        name=item["name"],
        dtype=item["dtype"],
        rows=int(item["rows"]),
        count=int(item["count"]),
        n_unique=int(item["n_unique"]),
        std=None if item["std"] is None else float(item["std"]),
        values=values,
        categories=categories,
        counts=counts,
    )


def _numeric_storage(dtype: str) -> np.dtype:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return np.dtype(np.float64)
    if dtype == "uint64":
        return np.dtype(np.uint64)
    return np.dtype(np.int64)


def _categories_for_npz(f: FeatureProfile) -> np.ndarray:
    cats = f.categories
    assert cats is not None, "a column that is not numeric has its categories"
    if cats.dtype.kind != "O":
        return cats
    if all(isinstance(v, str) for v in cats):
        return cats.astype(str)
    raise ValueError(f"feature '{f.name}': only string object categories can be saved to npz")


def _categories_array(items: list[Any], dtype: str) -> np.ndarray:
    if np.dtype(dtype).kind == "O":
        out = np.empty(len(items), dtype=object)
        out[:] = list(items)
        return out
    return np.asarray(items, dtype=dtype)


def _check_version(data: Mapping) -> None:
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported drift profile version {data.get('version')!r}, expected {FORMAT_VERSION}")
