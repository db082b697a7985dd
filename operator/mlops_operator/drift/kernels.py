"""Compiled loops for the per-window checks: one pass over a window where numpy makes several.

numba compiles each loop to machine code for this CPU on its first call and keeps it in a cache on disk (next to
this file, or under NUMBA_CACHE_DIR where that is read-only), so a process pays the compile (about a second a loop)
once per machine. Each loop here has a plain numpy counterpart in the module that calls it; the unit tests hold the
two to the same answers (tests/unit/test_drift_kernels.py), and bench/quality_bench.py times them.

- `distinct_objects`: the distinct Python objects of an object column, by address, with their counts. A column read
  from Parquet holds one object per distinct value (Arrow's conversion shares them), so a text column of a million
  rows has a handful of addresses: counting them takes one pass with no hashing of strings. Callers merge objects
  that are equal but not the same (few) by value.
- `number_counts`: missing values and values below or above a range, in one pass.
- `cbpe_cells`: the expected counts and expected ROC AUC of CBPE from calibrated probabilities, with no sort.
- `residual_norms`: each row's distance from the PCA subspace, with no window-sized matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numba import typed, types

_F = TypeVar("_F", bound=Callable[..., Any])


def _compiled(**options: Any) -> Callable[[_F], _F]:
    return cast(Callable[[_F], _F], numba.njit(cache=True, nogil=True, **options))


# --- distinct objects -------------------------------------------------------------------------------------------

DISTINCT_OBJECTS = 2048  # more distinct objects than this: not a column of categories; callers take their own path
_SLOTS = 4 * DISTINCT_OBJECTS  # open addressing, at most a quarter full


@dataclass(frozen=True)
class DistinctObjects:
    rows: np.ndarray  # the first row holding each distinct object, in order of first appearance
    counts: np.ndarray  # rows holding it (int64)
    slots: np.ndarray  # its slot in the table: the value `codes` holds for its rows
    codes: np.ndarray | None  # per row, the slot of its object (int32); asked for with codes=True
    size: int  # the number of slots (a table indexed by code has this length)


class _Addresses:
    """An object column's buffer read as the addresses it holds (intp). The view keeps the column alive; nothing
    dereferences or writes an address."""

    def __init__(self, column: np.ndarray) -> None:
        self.column = column
        self.__array_interface__ = {"data": (column.ctypes.data, True), "typestr": np.dtype(np.intp).str,
                                    "shape": column.shape, "strides": column.strides, "version": 3}


def distinct_objects(column: np.ndarray, codes: bool = False) -> DistinctObjects | None:
    """The distinct objects (by identity) of a 1-d object column and their counts; None for any other column and
    for one with more than DISTINCT_OBJECTS distinct objects."""
    if column.dtype.kind != "O" or column.ndim != 1:
        return None
    addresses = np.asarray(_Addresses(column))
    table = np.zeros(2 * _SLOTS, dtype=np.intp)  # per slot: the address (0: empty), then its count
    first = np.full(_SLOTS, -1, dtype=np.int64)
    out = np.empty(column.size if codes else 0, dtype=np.int32)
    if _distinct(addresses, table, first, out, DISTINCT_OBJECTS) < 0:
        return None
    slots = np.flatnonzero(first >= 0)
    slots = slots[np.argsort(first[slots], kind="stable")]
    return DistinctObjects(rows=first[slots], counts=table[2 * slots + 1].astype(np.int64), slots=slots,
                           codes=out if codes else None, size=_SLOTS)


@_compiled()
def _distinct(addresses: np.ndarray, table: np.ndarray, first: np.ndarray, codes: np.ndarray, limit: int) -> int:
    mask = first.size - 1
    want_codes = codes.size > 0
    used = 0
    for i in range(addresses.size):
        key = addresses[i]
        slot = ((key >> 4) * 0x9E3779B1 >> 16) & mask  # objects are 16-byte aligned: drop the zero bits
        while table[2 * slot] != key:  # an address and its count share a cache line
            if table[2 * slot] == 0:  # no object lives at address 0
                if used == limit:
                    return -1
                table[2 * slot] = key
                first[slot] = i
                used += 1
                break
            slot = (slot + 1) & mask
        table[2 * slot + 1] += 1
        if want_codes:
            codes[i] = slot
    return used


# --- numbers ----------------------------------------------------------------------------------------------------


def number_counts(values: np.ndarray, lo: float, hi: float) -> tuple[int, int, int]:
    """(NaN, below ``lo``, above ``hi``) among float64 ``values``; NaN compares false both ways."""
    nan, below, above = _number_counts(np.asarray(values, dtype=np.float64), float(lo), float(hi))
    return int(nan), int(below), int(above)


@_compiled()
def _number_counts(values: np.ndarray, lo: float, hi: float) -> tuple[int, int, int]:
    nan = below = above = 0
    for i in range(values.size):  # written so that it vectorises: each test a 0 or 1 added
        v = values[i]
        nan += 1 if v != v else 0
        below += 1 if v < lo else 0
        above += 1 if v > hi else 0
    return nan, below, above


# --- CBPE -------------------------------------------------------------------------------------------------------

CBPE_CELLS = 1 << 15  # score cells of a window; the bound on the ROC AUC's error falls with their number squared


@dataclass(frozen=True)
class CBPESums:
    tp: float  # expected true positives: calibrated probabilities summed over the predicted positives
    fn: float  # the same over the predicted negatives
    positives: int  # rows predicted positive
    roc_auc: float  # expected ROC AUC from the cells (NaN when it is not defined)
    bound: float  # the most the cells' ROC AUC can lie under the exact one


def segments(x: np.ndarray | None, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A piecewise linear map (np.interp's, held flat beyond the ends; None: the identity) as segments: starts
    (from -inf), and p = intercept + slope * score on each."""
    if x is None or y is None:
        return np.array([-np.inf]), np.array([0.0]), np.array([1.0])
    slope = np.diff(y) / np.diff(x)
    starts = np.concatenate(([-np.inf], x))
    intercepts = np.concatenate(([y[0]], y[:-1] - slope * x[:-1], [y[-1]]))
    slopes = np.concatenate(([0.0], slope, [0.0]))
    return starts, intercepts, slopes


def cbpe_cells(scores: np.ndarray, predicted: np.ndarray, starts: np.ndarray, intercepts: np.ndarray,
               slopes: np.ndarray, cells: int = CBPE_CELLS) -> CBPESums | None:
    """CBPE's expected counts and ROC AUC from a window's raw scores and predicted classes (0/1), the calibration
    map given as `segments`; None when the window is empty, a score is NaN or infinite, or a class is not 0 or 1.

    The scores' range is cut into equal cells. A cell within one segment keeps its row count and score sum, from
    which its probability sum follows; a cell that a segment starts in sums its rows' probabilities one by one.
    The ROC AUC is then the trapezoid area over the cells in descending order. Within a cell the rows' order is
    not known: taking it as a tie is exact when the cell's probabilities are equal and lies under the exact area by
    at most the sum over cells of m(m-1)/4 times the spread of the calibrated probability over the cell, divided by
    expected positives times negatives. That is `bound` (about 1e-10 at a million rows); callers take the exact path
    when it is too wide."""
    s = np.ascontiguousarray(scores, dtype=np.float64)
    q = np.ascontiguousarray(predicted, dtype=np.int64)
    if s.size == 0:
        return None
    lo, hi = float(s.min()), float(s.max())  # NaN when any score is
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    out = np.zeros(5)
    if not _cbpe(s, q, lo, hi, starts, intercepts, slopes, cells if hi > lo else 1, out):
        return None
    return CBPESums(tp=float(out[0]), fn=float(out[1]), positives=int(out[2]), roc_auc=float(out[3]),
                    bound=float(out[4]))


@_compiled()
def _cbpe(s: np.ndarray, q: np.ndarray, lo: float, hi: float, starts: np.ndarray, intercepts: np.ndarray,
          slopes: np.ndarray, cells: int, out: np.ndarray) -> bool:
    n = s.size
    scale = cells / (hi - lo) if hi > lo else 0.0
    width = (hi - lo) / cells
    # per cell: the segment at its lower edge, whether another starts inside it, the probability at both edges
    first = np.empty(cells, dtype=np.int64)
    split = np.zeros(cells, dtype=np.bool_)
    spread = np.zeros(cells)
    k = 0
    last = starts.size - 1
    for b in range(cells):
        edge = lo + b * width
        top = lo + (b + 1) * width
        while k < last and starts[k + 1] <= edge:
            k += 1
        first[b] = k
        j = k
        while j < last and starts[j + 1] <= top:
            j += 1
        split[b] = j != k
        spread[b] = (intercepts[j] + slopes[j] * top) - (intercepts[k] + slopes[k] * edge)
    # one pass over the rows: per (cell, predicted class) the row count and the score sum, side by side (one cache
    # line); in a cell that a segment starts in, the calibrated probabilities' sum instead
    sums = np.zeros(4 * cells)
    for i in range(n):
        v = s[i]
        h = q[i]
        if h != 0 and h != 1:
            return False
        b = min(int((v - lo) * scale), cells - 1)
        c = 2 * (b + h * cells)
        sums[c] += 1.0
        if split[b]:
            j = first[b]
            while j < last and starts[j + 1] <= v:
                j += 1
            sums[c + 1] += intercepts[j] + slopes[j] * v
        else:
            sums[c + 1] += v
    tp = fn = 0.0
    positives = 0.0
    mass = np.empty(cells)  # calibrated probability per cell, both classes
    rows = np.empty(cells)
    for b in range(cells):
        k = first[b]
        pair = 0.0
        for h in range(2):
            c = 2 * (b + h * cells)
            p = sums[c + 1] if split[b] else intercepts[k] * sums[c] + slopes[k] * sums[c + 1]
            pair += p
            if h == 1:
                tp += p
                positives += sums[c]
            else:
                fn += p
        mass[b] = pair
        rows[b] = sums[2 * b] + sums[2 * (b + cells)]
    expected_pos = tp + fn
    expected_neg = n - expected_pos
    area = 0.0
    above = 0.0
    bound = 0.0
    for b in range(cells - 1, -1, -1):
        m = rows[b]
        if m == 0:
            continue
        area += (m - mass[b]) * (above + 0.5 * mass[b])
        above += mass[b]
        bound += 0.25 * m * (m - 1) * spread[b]
    out[0] = tp
    out[1] = fn
    out[2] = positives
    if expected_pos > 0 and expected_neg > 0:
        out[3] = area / (expected_pos * expected_neg)
        out[4] = bound / (expected_pos * expected_neg)
    else:
        out[3] = np.nan
        out[4] = 0.0
    return True


# --- PCA reconstruction -----------------------------------------------------------------------------------------

_BLOCK = 256  # rows a pass works on at a time: their projections stay in the first-level cache


@dataclass(frozen=True)
class TextColumn:
    codes: np.ndarray  # per row, a slot (int32)
    table: np.ndarray  # slot -> standardised value (float64)
    position: int  # the column's place in the model's column order


def residual_norms(rows: int, numbers: Sequence[tuple[np.ndarray, float, int]], text: Sequence[TextColumn],
                   multiply: np.ndarray, add: np.ndarray, residual: np.ndarray) -> tuple[float, float]:
    """(sum, sum of squares) over the rows of |z R^T|, where z is a row standardised (x * multiply + add; a NaN
    number first replaced by its fill) and R the (r, d) orthonormal basis of what the kept components leave out.

    ``numbers``: (float64 column, fill, position); ``text``: the coded columns, already standardised."""
    number_list = typed.List.empty_list(types.float64[::1])
    number_fill = np.empty(len(numbers))
    number_at = np.empty(len(numbers), dtype=np.int64)
    for i, (values, fill, position) in enumerate(numbers):
        number_list.append(np.ascontiguousarray(values, dtype=np.float64))
        number_fill[i], number_at[i] = fill, position
    code_list = typed.List.empty_list(types.int32[::1])
    table_list = typed.List.empty_list(types.float64[::1])
    code_at = np.empty(len(text), dtype=np.int64)
    for i, column in enumerate(text):
        code_list.append(np.ascontiguousarray(column.codes, dtype=np.int32))
        table_list.append(np.ascontiguousarray(column.table, dtype=np.float64))
        code_at[i] = column.position
    out = np.zeros(2)
    _residual_norms(rows, number_list, number_fill, number_at, code_list, table_list, code_at,
                    np.ascontiguousarray(multiply, dtype=np.float64), np.ascontiguousarray(add, dtype=np.float64),
                    np.ascontiguousarray(residual, dtype=np.float64), out)
    return float(out[0]), float(out[1])


@_compiled(fastmath={"contract", "reassoc", "nsz", "arcp"})  # not nnan: a NaN number is looked for
def _residual_norms(n: int, numbers: Any, number_fill: np.ndarray, number_at: np.ndarray, codes: Any, tables: Any,
                    code_at: np.ndarray, multiply: np.ndarray, add: np.ndarray, residual: np.ndarray,
                    out: np.ndarray) -> None:
    r = residual.shape[0]
    projected = np.zeros((r, _BLOCK))
    z = np.empty(_BLOCK)
    total = 0.0
    squares = 0.0
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        projected[:, :m] = 0.0
        for t in range(len(numbers)):
            values = numbers[t]
            j = number_at[t]
            times, plus, fill = multiply[j], add[j], number_fill[t]
            for i in range(m):
                v = values[start + i]
                if v != v:
                    v = fill
                z[i] = v * times + plus
            for c in range(r):
                w = residual[c, j]
                for i in range(m):
                    projected[c, i] += w * z[i]
        for t in range(len(codes)):
            rows = codes[t]
            table = tables[t]
            j = code_at[t]
            for i in range(m):
                z[i] = table[rows[start + i]]
            for c in range(r):
                w = residual[c, j]
                for i in range(m):
                    projected[c, i] += w * z[i]
        for i in range(m):
            squared = 0.0
            for c in range(r):
                squared += projected[c, i] * projected[c, i]
            error = np.sqrt(squared)
            total += error
            squares += error * error
    out[0] = total
    out[1] = squares
