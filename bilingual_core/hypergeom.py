"""Vectorised hypergeometric upper-tail probabilities in log space.

``scipy.stats.hypergeom.logsf`` evaluates element by element in Python and
``hypergeom.sf`` underflows to 0 below 1e-308 and takes seconds for 16k
features at n = 93,470; the co-activation score needs the tail for every
feature at several thresholds. Here the tail is summed term by term for all
features at once, starting at the observed overlap and walking away from the
mode, where the terms decrease monotonically, until they no longer change the
sum in float64.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

_LOG10 = np.log(10.0)
_EPS = 1e-17
_FIRST_STRETCH, _LONGEST_STRETCH = 4, 256
"""Terms a walk takes at once: 4 at first, doubling while elements still walk."""


def _log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


def log_pmf(x: np.ndarray, n: int, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``log P(X = x)`` for X ~ Hypergeometric(population n, k successes, d draws)."""
    return _log_comb(k, x) + _log_comb(n - k, d - x) - _log_comb(np.full_like(k, n), d)


def log10_sf(x: np.ndarray, n: int, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``log10 P(X >= x)`` for X ~ Hypergeometric(n, k, d), element-wise.

    Above the mode the upper tail ``sum_{j >= x} pmf(j)`` is summed directly;
    at or below it, ``1 - sum_{j < x} pmf(j)`` with the lower tail summed
    downwards. Both walks use the ratio of consecutive terms,
    ``pmf(j+1)/pmf(j) = (k-j)(d-j) / ((j+1)(n-k-d+j+1))``. Returns 0 where
    ``x <= max(0, k + d - n)`` (certain) and ``-inf`` where ``x > min(k, d)``.
    """
    x = np.asarray(x, dtype=np.float64)
    k = np.broadcast_to(np.asarray(k, dtype=np.float64), x.shape).copy()
    d = np.broadcast_to(np.asarray(d, dtype=np.float64), x.shape).copy()
    lo = np.maximum(0.0, k + d - n)
    hi = np.minimum(k, d)
    out = np.zeros(x.shape, dtype=np.float64)
    out[x > hi] = -np.inf
    mode = np.floor((d + 1) * (k + 1) / (n + 2))
    upper = (x > mode) & (x <= hi)
    lower = (x > lo) & (x <= mode)
    if upper.any():
        idx = np.flatnonzero(upper)
        log_first = log_pmf(x[idx], n, k[idx], d[idx])
        tail = _walk(x[idx], k[idx], d[idx], n, up=True, stop=hi[idx])
        out[idx] = (log_first + np.log(tail)) / _LOG10
    if lower.any():
        idx = np.flatnonzero(lower)
        start = x[idx] - 1
        log_first = log_pmf(start, n, k[idx], d[idx])
        tail = _walk(start, k[idx], d[idx], n, up=False, stop=lo[idx])
        below = np.exp(log_first) * tail
        out[idx] = np.log1p(-np.minimum(below, 1.0)) / _LOG10
    return np.minimum(out, 0.0)


def step_ratio(
    j: float | np.ndarray, k: float | np.ndarray, d: float | np.ndarray, n: int, *, up: bool
) -> float | np.ndarray:
    """``pmf(j + 1) / pmf(j)`` (``up``) or ``pmf(j - 1) / pmf(j)`` of the
    hypergeometric overlap of sets of sizes ``k`` and ``d`` among ``n``."""
    if up:
        return (k - j) * (d - j) / ((j + 1) * (n - k - d + j + 1))
    return j * (n - k - d + j) / ((k - j + 1) * (d - j + 1))


def _walk(
    start: np.ndarray, k: np.ndarray, d: np.ndarray, n: int, *, up: bool, stop: np.ndarray
) -> np.ndarray:
    """``sum_i pmf(start ± i) / pmf(start)`` until the terms vanish or the support ends.

    The walk takes a stretch of terms at a time for every element still walking
    (4, doubling up to 256: most walks end within a few terms, some take
    thousands): the ratios of a stretch are one array operation, and the terms and running
    sums are ``cumprod`` and ``cumsum`` along it, seeded with the current term
    and sum. Both accumulate left to right, so every term and sum is the same
    float as a walk of one step at a time; an element stops at the first term
    that no longer changes its sum (that term included) or at ``stop``.
    """
    total = np.ones(len(start))
    term = np.ones(len(start))
    j = start.copy()
    active = np.flatnonzero(j != stop)
    width = _FIRST_STRETCH
    while len(active):
        step = np.arange(width, dtype=np.float64) if up else -np.arange(width, dtype=np.float64)
        ja = j[active][:, None] + step  # the j each ratio starts from
        ka, da = k[active][:, None], d[active][:, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            ratio = step_ratio(ja, ka, da, n, up=up)
            ja += 1 if up else -1
            terms = np.empty((len(active), width + 1))
            terms[:, 0] = term[active]
            terms[:, 1:] = ratio
            np.multiply.accumulate(terms, axis=1, out=terms)
            sums = np.empty_like(terms)
            sums[:, 0] = total[active]
            sums[:, 1:] = terms[:, 1:]
            np.add.accumulate(sums, axis=1, out=sums)
        # ja now holds j after each step; a step whose term vanishes or that
        # reaches ``stop`` is the element's last.
        last = ~((terms[:, 1:] > _EPS * sums[:, 1:]) & (ja != stop[active][:, None]))
        ends = last.any(axis=1)
        at = np.where(ends, last.argmax(axis=1), width - 1)
        rows = np.arange(len(active))
        total[active] = sums[rows, at + 1]
        term[active] = terms[rows, at + 1]
        j[active] = ja[rows, at]
        active = active[~ends]
        width = min(2 * width, _LONGEST_STRETCH)
    return total
