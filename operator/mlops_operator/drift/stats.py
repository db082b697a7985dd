"""Per-feature drift statistics: pure functions over numpy arrays, no pandas.

Each function mirrors one Evidently 0.7 stat test (``evidently/legacy/calculations/stattests``) or the
scipy routine it calls, but takes what a reference profile already holds (sorted values, category counts)
so the reference side is never re-sorted or re-counted per window.  The rules and their sources are listed
in docs/drift-statistics.md.  Callers pass finite, non-empty samples; cleaning happens in the engine.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special
from scipy.spatial import distance
from scipy.stats import kstwo

# scipy.stats.ks_2samp(method="auto") is exact while both samples have at most this many values.
KS_EXACT_MAX_N = 10_000


# --- Kolmogorov-Smirnov ---------------------------------------------------------------------------------


def ks_statistic(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """Two-sided two-sample KS statistic, evaluated exactly as ``scipy.stats.ks_2samp`` does.

    scipy evaluates ECDF(ref) - ECDF(cur) at every pooled value.  That step function only rises at
    reference values and only falls at current values, so its maximum is reached at a reference value and
    its minimum at a current value: searchsorted on the two sorted samples, no pooled sort.
    """
    n1, n2 = ref_sorted.size, cur_sorted.size
    # ECDF(ref) at ref values and ECDF(cur) at cur values: index past the last tie.
    ref_own = np.searchsorted(ref_sorted, ref_sorted, side="right")
    cur_own = np.searchsorted(cur_sorted, cur_sorted, side="right")
    up = ref_own / n1 - np.searchsorted(cur_sorted, ref_sorted, side="right") / n2
    down = np.searchsorted(ref_sorted, cur_sorted, side="right") / n1 - cur_own / n2
    max_up = float(up.max())
    max_down = min(max(-float(down.min()), 0.0), 1.0)  # clipped to [0, 1] like scipy's minS
    return max_down if max_down > max_up else max_up


def ks_pvalue(d: float, n1: int, n2: int) -> tuple[float, float]:
    """p-value of ``ks_2samp(alternative="two-sided", method="auto")`` for statistic ``d``.

    Returns ``(d, p)``: in exact mode scipy snaps d to the lattice value h / lcm(n1, n2), and so do we.
    Exact mode (both sizes <= 10 000) counts lattice paths (Hodges 1958); the unequal-size count uses the
    "1 - p" recursion of Viehmann (2021) that scipy uses, the equal-size one the alternating binomial sum.
    Otherwise, or if the exact value is not a probability, Smirnov's asymptotic form via ``kstwo.sf``.
    """
    if max(n1, n2) <= KS_EXACT_MAX_N:
        g = math.gcd(n1, n2)
        lcm = (n1 // g) * n2
        h = int(round(d * lcm))
        d = h * 1.0 / lcm
        if h == 0:
            return d, 1.0
        if n1 == n2:
            p = _ks_exact_equal(n1, h)
        else:
            p = _ks_exact_unequal(n1, n2, g, h)
        if 0.0 <= p <= 1.0:
            return d, p
    big, small = sorted((float(n1), float(n2)), reverse=True)
    en = big * small / (big + small)
    p = float(kstwo.sf(d, np.round(en)))
    return d, min(max(p, 0.0), 1.0)


def ks_2samp_sorted(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) equal to ``scipy.stats.ks_2samp(ref, cur)`` with its defaults."""
    return ks_pvalue(ks_statistic(ref_sorted, cur_sorted), ref_sorted.size, cur_sorted.size)


def _ks_exact_equal(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n) = 2 * sum_k (-1)^(k-1) C(2n, n-kh) / C(2n, n), evaluated Horner-style.

    R_k = C(2n, n-(k+1)h) / C(2n, n-kh) is a product of h ratios; P/2 = R_0 (1 - R_1 (1 - R_2 (...))).
    Plain Python floats, multiplied in the same sequence as scipy so tiny p-values agree to the last bits.
    """
    acc = 0.0
    for k in range(n // h, -1, -1):
        ratio = 1.0
        base = k * h
        for j in range(h):
            ratio = (n - base - j) * ratio / (n + base + j + 1)
        acc = ratio * (1.0 - acc)
    return 2 * acc


def _ks_exact_unequal(n1: int, n2: int, g: int, h: int) -> float:
    """P(D >= h/lcm) for unequal sizes; scipy's compiled routine when present, else ours (same values)."""
    if _scipy_outer_prob is not None:
        return float(_scipy_outer_prob(n1, n2, g, h))
    return ks_exact_unequal_numpy(n1, n2, g, h)


def ks_exact_unequal_numpy(n1: int, n2: int, g: int, h: int) -> float:
    """Share of monotone lattice paths (0,0)->(m,n) that leave the band |ng*i - mg*j| < h.

    U(i, j) = share of paths to (i, j) that already left the band; U = 1 outside it and
    U(i, j) = (U(i-1, j) * i + U(i, j-1) * j) / (i + j) inside (the "1 - p" recursion of Viehmann 2021,
    arXiv:2102.08037, which scipy uses).  Cells of one anti-diagonal depend only on the previous one, so
    each diagonal is one vector step; same arithmetic per cell as scipy, so results agree bit for bit.
    """
    m, n = (n1, n2) if n1 >= n2 else (n2, n1)
    mg, ng = m // g, n // g
    w = mg + ng
    js = np.arange(n + 1, dtype=np.float64)
    # prev[j + 1] holds U(s-1-j, j) for the previous diagonal; prev[0] is a zero pad for j = -1.
    prev = np.ones(n + 2)
    prev[0] = 0.0
    prev[1] = 0.0  # U(0, 0): the origin is inside the band (h > 0)
    lo_prev = 0
    for s in range(1, m + n + 1):
        # valid cells of diagonal s (0 <= i <= m, 0 <= j <= n) inside the band |ng*s - w*j| < h
        lo = max(0, s - m, (ng * s - h) // w + 1)
        hi = min(n, s, -((-(ng * s + h)) // w) - 1)
        if hi < lo:
            return 1.0  # every path crosses this diagonal outside the band
        j = js[lo : hi + 1]
        cur = prev[lo + 1 : hi + 2] * (s - j)
        cur += prev[lo : hi + 1] * j
        cur /= s
        if lo > lo_prev:  # cells that fell below the band are outside again (the pad stays 0)
            prev[lo_prev + 1 : lo + 1] = 1.0
        prev[lo + 1 : hi + 2] = cur
        lo_prev = lo
    return float(prev[n + 1])


try:  # the compiled routine behind scipy.stats.ks_2samp's exact mode; private, hence optional
    from scipy.stats._stats_pythran import _compute_outer_prob_inside_method as _scipy_outer_prob
except ImportError:  # pragma: no cover - depends on the scipy build
    _scipy_outer_prob = None


# --- Wasserstein ----------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _quantile_grid(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segments of [0, 1) on which both empirical quantile functions are constant.

    Breakpoints are i/n and j/m, kept as integers in units of 1/(n*m).  Returns (ref index, cur index,
    segment width) per segment.  Cached: every feature of a window usually shares the same (n, m).
    """
    a = np.arange(n, dtype=np.int64) * m
    b = np.arange(m, dtype=np.int64) * n
    t = np.concatenate((a, b))
    t.sort(kind="stable")  # two sorted runs: a linear merge
    keep = np.empty(t.size, dtype=bool)
    keep[0] = True
    np.not_equal(t[1:], t[:-1], out=keep[1:])
    t = t[keep]
    width = np.diff(t, append=np.int64(n) * m) / (float(n) * m)
    ref_idx, cur_idx = t // m, t // n
    for arr in (ref_idx, cur_idx, width):
        arr.setflags(write=False)
    return ref_idx, cur_idx, width


def wasserstein_sorted(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """First Wasserstein distance between two samples (``scipy.stats.wasserstein_distance``).

    scipy integrates |F_ref - F_cur| over x after sorting the pooled sample; we integrate the equal
    quantity |Q_ref - Q_cur| over [0, 1), which needs no pooled sort: equal to rounding (~1e-15).
    """
    n, m = ref_sorted.size, cur_sorted.size
    ref = ref_sorted.astype(np.float64, copy=False)
    cur = cur_sorted.astype(np.float64, copy=False)
    if n == m:
        return float(np.abs(ref - cur).sum() / n)
    ref_idx, cur_idx, width = _quantile_grid(n, m)
    return float(np.dot(np.abs(ref[ref_idx] - cur[cur_idx]), width))


def wasserstein_normed(ref_sorted: np.ndarray, cur_sorted: np.ndarray, ref_std: float) -> float:
    """Evidently's "Wasserstein distance (normed)": W1 / max(std(ref, ddof=0), 0.001)."""
    return wasserstein_sorted(ref_sorted, cur_sorted) / max(float(ref_std), 0.001)


# --- binning for PSI and Jensen-Shannon ------------------------------------------------------------------


def sturges_edges(lo: Any, hi: Any, total: int, dtype: np.dtype) -> np.ndarray:
    """``np.histogram_bin_edges(pooled, bins="sturges")`` from the pooled min, max, size and dtype only.

    Follows numpy's steps: range = (min, max) widened by 0.5 when empty; width = ptp / (log2(size) + 1),
    at least 1 for integer data; bins = ceil(range / width); edges = linspace in the promoted float type.
    """
    dtype = np.dtype(dtype)
    lo, hi = dtype.type(lo), dtype.type(hi)
    first, last = lo, hi
    if first == last:
        first, last = first - 0.5, last + 0.5
    integer = np.issubdtype(dtype, np.integer)
    width = _range_width(hi, lo) / (np.log2(total) + 1.0)
    if width:
        if integer and width < 1:
            width = 1
        n_bins = int(np.ceil(_range_width(last, first) / width))
    else:
        n_bins = 1
    bin_type = np.result_type(first, last, np.empty(0, dtype))
    if np.issubdtype(bin_type, np.integer):
        bin_type = np.result_type(bin_type, float)
    return np.linspace(first, last, n_bins + 1, endpoint=True, dtype=bin_type)


def _range_width(hi: Any, lo: Any) -> Any:
    """hi - lo, in the unsigned counterpart for signed integers so the range cannot overflow."""
    dt = np.result_type(hi, lo)
    if np.issubdtype(dt, np.signedinteger):
        unsigned = np.dtype(dt.str.replace("i", "u"))
        return np.subtract(np.asarray(hi, dtype=dt), np.asarray(lo, dtype=dt), casting="unsafe", dtype=unsigned)
    return np.subtract(hi, lo, dtype=dt)


def histogram_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` for already sorted values: half-open bins, last one closed."""
    cum = np.concatenate(
        (
            np.searchsorted(sorted_values, edges[:-1], side="left"),
            np.searchsorted(sorted_values, edges[-1:], side="right"),
        )
    )
    return np.diff(cum)


def histogram_unsorted(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` without sorting the values (O(n log bins))."""
    nb = edges.size - 1
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = nb - 1  # the last bin is closed on the right
    inside = (idx >= 0) & (idx < nb)
    if not inside.all():
        idx = idx[inside]
    return np.bincount(idx, minlength=nb)


def fill_zeroes(percents: np.ndarray) -> np.ndarray:
    """Evidently's ``feel_zeroes``: empty bins get min(non-zero)/1e6 if that min <= 1e-4, else 1e-4."""
    zero = percents == 0
    if not zero.any():
        return percents
    smallest = percents[~zero].min()
    out = percents.copy()
    out[zero] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def psi(ref_percents: np.ndarray, cur_percents: np.ndarray) -> float:
    """Population stability index over bins whose empty entries were already filled."""
    return float(np.sum((ref_percents - cur_percents) * np.log(ref_percents / cur_percents)))


def jensenshannon(ref_percents: np.ndarray, cur_percents: np.ndarray) -> float:
    """Jensen-Shannon distance, natural log (``scipy.spatial.distance.jensenshannon``, base=None)."""
    return float(distance.jensenshannon(ref_percents, cur_percents))


# --- tests on category counts ----------------------------------------------------------------------------


def chisquare_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Evidently's chi-square: observed = current counts, expected = reference counts * n_cur / n_ref.

    Returns ``scipy.stats.chisquare(f_obs, f_exp)``; a category absent from the reference has expected 0,
    so the statistic is inf and p = 0.  One category only: 0 degrees of freedom, p is NaN (as in scipy).
    """
    n_ref = int(ref_counts.sum())
    n_cur = int(cur_counts.sum())
    f_exp = ref_counts * (n_cur / n_ref)
    f_obs = cur_counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = float(np.sum((f_obs - f_exp) ** 2 / f_exp))
    p = float(special.chdtrc(f_obs.size - 1, stat))
    return stat, p


def ztest_proportions(ref_ones: int, n_ref: int, cur_ones: int, n_cur: int) -> tuple[float, float]:
    """Two-proportion Z-test (pooled variance), two-sided p = 2 * (1 - Phi(|z|)) as Evidently computes it."""
    p1 = float(ref_ones) / n_ref
    p2 = float(cur_ones) / n_cur
    pooled = float(p1 * n_ref + p2 * n_cur) / (n_ref + n_cur)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = float((p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n_ref + 1.0 / n_cur)))
    p = float(2 * (1 - special.ndtr(abs(z))))
    return z, p
