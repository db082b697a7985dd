"""Text columns counted by hashing (drift/codes.py) give what numpy's sorting gives: the same sorted categories and
counts, missing values (None, NaN, each NaN its own object) apart; anything but strings is left to numpy."""

import numpy as np
import pytest

from mlops_operator.drift.codes import text_counts


def objects(values):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def test_counts_match_numpys_unique_with_missing_values_apart():
    rng = np.random.default_rng(3)
    column = objects(list(np.array(["b", "a", "c", "é", "a b", ""], dtype=object)[rng.integers(0, 6, 5000)]))
    column[rng.random(5000) < 0.05] = None
    column[rng.random(5000) < 0.05] = np.nan
    for i in np.flatnonzero(rng.random(5000) < 0.02):
        column[i] = float("nan")  # NaN objects of their own, as a Parquet reader makes them
    column[7] = np.str_("b")  # numpy's str is a str
    missing = np.array([v is None or (isinstance(v, float) and v != v) for v in column])
    categories, counts = np.unique(column[~missing].astype(str), return_counts=True)
    tally = text_counts(column)
    assert tally is not None
    assert tally.categories.tolist() == categories.tolist() and tally.categories.dtype == object
    assert tally.counts.tolist() == counts.tolist() and tally.counts.dtype == np.int64
    assert tally.missing == int(missing.sum()) > 0


@pytest.mark.parametrize("values", [[1, "a"], ["a", True], ["a", 1.5], ["a", float("inf")], [["a"], "b"], [b"a"]])
def test_anything_but_strings_and_missing_values_is_left_to_numpy(values):
    assert text_counts(objects(values)) is None


def test_edges():
    assert text_counts(np.array(["a", "b"])) is None  # fixed-width text: numpy sorts it in C already
    empty = text_counts(objects([]))
    assert empty is not None and empty.categories.size == 0 and empty.counts.size == 0 and empty.missing == 0
    gone = text_counts(objects([None, np.nan, float("nan")]))
    assert gone is not None and gone.categories.size == 0 and gone.counts.size == 0 and gone.missing == 3
