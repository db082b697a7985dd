"""Text columns counted without sorting.

A categorical column arrives as a numpy object array of Python strings, with None or NaN where a value is missing.
`np.unique` sorts it, one Python comparison at a time: about 0.4 s per million rows. `text_counts` counts the
column's distinct objects in one compiled pass (kernels.distinct_objects, about 3 ms per million rows: a column read
from Parquet shares one object per value), then merges equal values among those few; a column of more distinct
objects is tallied with a Counter (about 0.03 s per million). Only the distinct values are sorted. Categories come out
sorted, as `np.unique` gives them, so callers get the same answer either way.

Only columns whose every value is a str or missing take this path: `text_counts` returns None for anything else
(numbers among strings, booleans, other objects), and the caller keeps its numpy path for those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mlops_operator.drift.kernels import distinct_objects


@dataclass(frozen=True)
class TextCounts:
    categories: np.ndarray  # the distinct strings, sorted (object array)
    counts: np.ndarray  # rows per category (int64), aligned with `categories`
    missing: int  # rows that are None or NaN


def text_counts(column: np.ndarray) -> TextCounts | None:
    """Rows per distinct string, and the missing rows; None unless it is an object column of strings and missing
    values."""
    if column.dtype.kind != "O" or column.ndim != 1:
        return None
    try:
        tally = _tally(column)
    except TypeError:  # an unhashable value (a list): not a text column
        return None
    split = split_text(tally)
    if split is None:
        return None
    text, missing_values = split
    missing = sum(tally[v] for v in missing_values)
    text.sort()
    categories = np.empty(len(text), dtype=object)
    categories[:] = text
    counts = np.fromiter((tally[v] for v in text), dtype=np.int64, count=len(text))
    return TextCounts(categories=categories, counts=counts, missing=missing)


def _tally(column: np.ndarray) -> Counter[object]:
    """Rows per distinct value of an object column."""
    distinct = distinct_objects(column)
    if distinct is None:
        return Counter(column.tolist())
    tally: Counter[object] = Counter()
    for value, count in zip(column[distinct.rows].tolist(), distinct.counts.tolist()):
        tally[value] += count  # equal values held by different objects add up; each NaN object stays its own
    return tally


def split_text(distinct: Iterable[object]) -> tuple[list[str], list[object]] | None:
    """The strings and the missing values (None, NaN) among a column's distinct values; None when any is something
    else (a number, a boolean, another object): then it is not a text column."""
    text: list[str] = []
    missing: list[object] = []
    for value in distinct:
        if isinstance(value, str):
            text.append(value)
        elif value is None or (isinstance(value, float) and value != value):
            missing.append(value)  # each NaN object is its own key: NaN is unequal to itself
        else:
            return None
    return text, missing
