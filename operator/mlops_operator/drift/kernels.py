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

The loops release the GIL. `parallel_map` and `row_ranges` split a large window over a few threads (see
`worker_count`); data quality splits its columns, the reconstruction error its rows.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numba import typed, types

_F = TypeVar("_F", bound=Callable[..., Any])


def _compiled(**options: Any) -> Callable[[_F], _F]:
    return cast(Callable[[_F], _F], numba.njit(cache=True, nogil=True, **options))


# --- threads ----------------------------------------------------------------------------------------------------

PARALLEL_ROWS = 100_000  # a window smaller than this is checked on the calling thread alone
MAX_WORKERS = 4
_T = TypeVar("_T")
_R = TypeVar("_R")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def worker_count() -> int:
    """Threads a large window is split over: the CPUs this process may use (its affinity, and its cgroup's CPU
    quota when it has one, as in a pod with a CPU limit), at most MAX_WORKERS; MLOPS_DRIFT_THREADS sets it (up to
    MAX_WORKERS too)."""
    setting = os.environ.get("MLOPS_DRIFT_THREADS", "").strip()
    if setting:
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"MLOPS_DRIFT_THREADS={setting!r}: give a whole number of threads, at least 1")
        return min(int(setting), MAX_WORKERS)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(cpus, MAX_WORKERS))


def parallel_map(fn: Callable[[_T], _R], items: Sequence[_T], rows: int) -> list[_R]:
    """``[fn(item) for item in items]``, on the pool's threads when the window has PARALLEL_ROWS rows or more.
    The loops here release the GIL, so threads run them side by side. ``fn`` must not itself wait on the pool."""
    workers = worker_count()
    if workers == 1 or len(items) < 2 or rows < PARALLEL_ROWS:
        return [fn(item) for item in items]
    return list(_executor().map(fn, items))


def row_ranges(rows: int) -> list[tuple[int, int]]:
    """[start, end) ranges that split a window over the threads (one range below PARALLEL_ROWS rows)."""
    parts = worker_count() if rows >= PARALLEL_ROWS else 1
    edges = [rows * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="mlops-drift")
        return _pool


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
               slopes: np.ndarray, cells: int = CBPE_CELLS, span: tuple[float, float] | None = None) -> CBPESums | None:
    """CBPE's expected counts and ROC AUC from a window's raw scores and predicted classes (0/1), the calibration
    map given as `segments`; None when the window is empty, a score is NaN, or a class is not 0 or 1.

    A range of scores is cut into equal cells: ``span``, where the map is flat below and above it (a calibration
    map's first and last knot), or else the window's own (then an infinite score also gives None). Scores below and
    above it have a cell each, where the map is flat. A cell within one segment keeps its row count and score sum,
    from which its probability sum follows; a cell that a segment starts in sums its rows' probabilities one by one.
    The ROC AUC is then the trapezoid area over the cells in descending order. Within a cell the rows' order is not
    known: taking it as a tie is exact when the cell's probabilities are equal and lies under the exact area by at
    most the sum over cells of m(m-1)/4 times the spread of the calibrated probability over the cell, divided by
    expected positives times negatives. That is `bound` (about 1e-10 at a million rows); callers take the exact path
    when it is too wide."""
    s = np.ascontiguousarray(scores, dtype=np.float64)
    q = np.ascontiguousarray(predicted, dtype=np.int64)
    if s.size == 0:
        return None
    # One thread: this pass is short, and two halves on two threads measured slower (docs/benchmarks.md).
    if span is not None and span[1] > span[0]:
        lo, hi = float(span[0]), float(span[1])
    else:  # the window's own range
        lo, hi = float(s.min()), float(s.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):  # a NaN score makes them NaN
            return None
    cells = cells if hi > lo else 1
    first, split, spread = _cbpe_cells(lo, hi, starts, intercepts, slopes, cells)
    scale = cells / (hi - lo) if hi > lo else 0.0
    sums = np.zeros(4 * first.size)
    if not _cbpe_rows(s, q, lo, scale, first, split, starts, intercepts, slopes, sums):
        return None
    out = np.zeros(5)
    _cbpe_area(sums, first, split, spread, intercepts, slopes, s.size, out)
    return CBPESums(tp=float(out[0]), fn=float(out[1]), positives=int(out[2]), roc_auc=float(out[3]),
                    bound=float(out[4]))


@_compiled()
def _cbpe_cells(lo: float, hi: float, starts: np.ndarray, intercepts: np.ndarray, slopes: np.ndarray,
                cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell (0: below ``lo``; 1 to ``cells``: the grid; cells + 1: ``hi`` and above): the segment at its lower
    edge, whether another starts inside it, and the spread of the calibrated probability over it. The outer two hold
    scores where the map is flat (or, for a window's own range, equal to its top), so their spread is 0."""
    width = (hi - lo) / cells
    first = np.zeros(cells + 2, dtype=np.int64)
    split = np.zeros(cells + 2, dtype=np.bool_)
    spread = np.zeros(cells + 2)
    k = 0
    last = starts.size - 1
    for b in range(1, cells + 1):
        edge = lo + (b - 1) * width
        top = lo + b * width
        while k < last and starts[k + 1] <= edge:
            k += 1
        first[b] = k
        j = k
        while j < last and starts[j + 1] <= top:
            j += 1
        split[b] = j != k
        spread[b] = (intercepts[j] + slopes[j] * top) - (intercepts[k] + slopes[k] * edge)
    while k < last and starts[k + 1] <= hi:
        k += 1
    first[cells + 1] = k
    return first, split, spread


@_compiled()
def _cbpe_rows(s: np.ndarray, q: np.ndarray, lo: float, scale: float, first: np.ndarray, split: np.ndarray,
               starts: np.ndarray, intercepts: np.ndarray, slopes: np.ndarray, sums: np.ndarray) -> bool:
    """One pass over the rows: per (cell, predicted class) the row count and the score sum, side by side (one cache
    line); in a cell that a segment starts in, the calibrated probabilities' sum instead. False when a score is NaN
    or a class is not 0 or 1."""
    cells = first.size
    grid = cells - 2
    last = starts.size - 1
    for i in range(s.size):
        v = s[i]
        h = q[i]
        if h != 0 and h != 1:
            return False
        x = (v - lo) * scale
        if x >= grid:
            b = grid + 1
            v = v if v < np.inf else 0.0  # flat there (slope 0): an infinite score adds nothing to the sum
        elif x >= 0:
            b = int(x) + 1
        elif x < 0:
            b = 0
            v = v if v > -np.inf else 0.0
        else:  # NaN
            return False
        c = 2 * (b + h * cells)
        sums[c] += 1.0
        if split[b]:
            j = first[b]
            while j < last and starts[j + 1] <= v:
                j += 1
            sums[c + 1] += intercepts[j] + slopes[j] * v
        else:
            sums[c + 1] += v
    return True


@_compiled()
def _cbpe_area(sums: np.ndarray, first: np.ndarray, split: np.ndarray, spread: np.ndarray, intercepts: np.ndarray,
               slopes: np.ndarray, n: int, out: np.ndarray) -> None:
    """From the cells' sums: expected TP and FN, predicted positives, the trapezoid area and its bound."""
    cells = first.size
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


# --- PCA reconstruction -----------------------------------------------------------------------------------------

_BLOCK = 512  # rows a pass standardises at a time (20 columns: 80 KB), then projects with one matrix product


@dataclass(frozen=True)
class TextColumn:
    codes: np.ndarray  # per row, a slot (int32)
    table: np.ndarray  # slot -> standardised value (float64)
    position: int  # the column's place in the model's column order


def residual_norms(rows: int, numbers: Sequence[tuple[np.ndarray, float, int]], text: Sequence[TextColumn],
                   multiply: np.ndarray, add: np.ndarray, residual: np.ndarray) -> tuple[float, float]:
    """(sum, sum of squares) over the rows of |z R^T|, where z is a row standardised (x * multiply + add; a NaN
    number first replaced by its fill) and R the (r, d) orthonormal basis of what the kept components leave out.

    ``numbers``: (float64 column, fill, position); ``text``: the coded columns, already standardised. Every position
    of the d columns is one of them."""
    if residual.shape[0] == 0:  # every component kept: each row is its own reconstruction
        return 0.0, 0.0
    number_columns = [np.ascontiguousarray(values, dtype=np.float64) for values, _, _ in numbers]
    number_fill = np.array([fill for _, fill, _ in numbers], dtype=np.float64)
    number_at = np.array([position for _, _, position in numbers], dtype=np.int64)
    code_columns = [np.ascontiguousarray(column.codes, dtype=np.int32) for column in text]
    table_list = typed.List.empty_list(types.float64[::1])
    for column in text:
        table_list.append(np.ascontiguousarray(column.table, dtype=np.float64))
    code_at = np.array([column.position for column in text], dtype=np.int64)
    times = np.ascontiguousarray(multiply, dtype=np.float64)
    plus = np.ascontiguousarray(add, dtype=np.float64)
    basis = np.ascontiguousarray(residual, dtype=np.float64)

    def part(bounds: tuple[int, int]) -> np.ndarray:
        # each range's columns as views from its first row: indices from 0 spare the loop negative-index checks
        start, end = bounds
        number_list = typed.List.empty_list(types.float64[::1])
        for values in number_columns:
            number_list.append(values[start:end])
        code_list = typed.List.empty_list(types.int32[::1])
        for codes in code_columns:
            code_list.append(codes[start:end])
        out = np.zeros(2)
        _residual_norms(end - start, number_list, number_fill, number_at, code_list, table_list, code_at, times,
                        plus, basis, out)
        return out

    total, squares = np.sum(parallel_map(part, row_ranges(rows), rows), axis=0)
    return float(total), float(squares)


@_compiled(fastmath={"contract", "reassoc", "nsz", "arcp"})  # not nnan: a NaN number is looked for
def _residual_norms(rows: int, numbers: Any, number_fill: np.ndarray, number_at: np.ndarray, codes: Any, tables: Any,
                    code_at: np.ndarray, multiply: np.ndarray, add: np.ndarray, residual: np.ndarray,
                    out: np.ndarray) -> None:
    r, d = residual.shape
    full = np.empty((d, _BLOCK))
    full_projected = np.empty((r, _BLOCK))
    squared = np.empty(_BLOCK)
    total = 0.0
    squares = 0.0
    for first in range(0, rows, _BLOCK):
        m = min(_BLOCK, rows - first)
        z = full if m == _BLOCK else np.empty((d, m))
        projected = full_projected if m == _BLOCK else np.empty((r, m))
        for t in range(len(numbers)):
            values = numbers[t]
            j = number_at[t]
            times, plus, fill = multiply[j], add[j], number_fill[t]
            for i in range(m):
                v = values[first + i]
                z[j, i] = (fill if v != v else v) * times + plus
        for t in range(len(codes)):
            coded = codes[t]
            table = tables[t]
            j = code_at[t]
            for i in range(m):
                z[j, i] = table[coded[first + i]]
        np.dot(residual, z, projected)
        squared[:m] = 0.0
        for c in range(r):
            for i in range(m):
                squared[i] += projected[c, i] * projected[c, i]
        for i in range(m):
            error = np.sqrt(squared[i])
            total += error
            squares += error * error
    out[0] = total
    out[1] = squares
