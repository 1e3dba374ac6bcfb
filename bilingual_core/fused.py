"""An optional compiled kernel for the scorer's reduction (numba).

With numba installed (``requirements.txt``, the scoring side; the app's install
leaves it out, and the app never scores), :func:`reduce_batch` does in one pass
over a batch of ``activations.parquet`` what ``reduce.sentence_max_blocks``
otherwise does in a dozen numpy passes: the range and order checks, the token
sums per (feature, language), and per sentence group its key, maximum, first
peak position, row count and peak token id. The results are the same, bit for
bit (``tests/test_core_fused.py``): the token sums are a batch's own sums in row
order, added to the running total, as the numpy path's ``bincount`` does.

The kernel only says *whether* a batch is well formed; any batch it refuses
goes to the numpy path, which names the rows at fault. Without numba,
:func:`kernel` is None and the numpy path does everything. numba is imported on
first use (about 1 s), never by the app, and the kernel compiles once (about
1 s) into numba's on-disk cache.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import numpy as np
import pyarrow as pa

MIN_ROWS = 1 << 26
"""Files with fewer activation rows (67 M) take the numpy path: importing numba
(~1 s) would cost about what the kernel saves (~23 ns a row)."""


def _reduce(
    f: np.ndarray,
    p: np.ndarray,
    pos: np.ndarray,
    a: np.ndarray,
    li: np.ndarray,
    m: int,
    d_sae: int,
    n_pairs: int,
    sentence_len: np.ndarray,
    offset: np.ndarray,
    token_at: np.ndarray,
    prev_key: int,
    prev_pos: int,
    sums: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """One batch's groups ``(key, max, peak position, count, peak token)``, the
    number of groups and whether every check passed; adds each row's activation
    to ``sums[feature * m + lang]`` (float64, zeros on entry). Stops at the
    first row that fails a check (the caller then discards everything)."""
    n = len(a)
    keys = np.empty(n, np.int64)
    gmax = np.empty(n, np.float32)
    gpeak = np.empty(n, np.int32)
    gcount = np.empty(n, np.int32)
    gtoken = np.empty(n, np.int32)
    g = -1
    last_key = prev_key
    last_pos = prev_pos
    for i in range(n):
        fi = np.int64(f[i])
        pi = np.int64(p[i])
        lang = np.int64(li[i])
        value = a[i]
        position = pos[i]
        if not (0 <= fi < d_sae and 0 <= pi < n_pairs and 0 <= lang < m):
            return keys, gmax, gpeak, gcount, gtoken, 0, False
        if not (value > 0 and value < np.inf) or position < 1:
            return keys, gmax, gpeak, gcount, gtoken, 0, False
        if position >= sentence_len[pi * m + lang]:
            return keys, gmax, gpeak, gcount, gtoken, 0, False
        sums[fi * m + lang] += np.float64(value)
        key = (fi << 39) | (pi << 8) | lang
        if key < last_key or (key == last_key and position <= last_pos):
            return keys, gmax, gpeak, gcount, gtoken, 0, False  # out of order, or a duplicate
        if g < 0 or key != last_key:
            g += 1
            keys[g] = key
            gmax[g] = value
            gpeak[g] = position
            gcount[g] = 1
        else:
            gcount[g] += 1
            if value > gmax[g]:  # strictly: the first position holding the maximum wins
                gmax[g] = value
                gpeak[g] = position
        last_key = key
        last_pos = position
    for j in range(g + 1):
        key = keys[j]
        sentence = ((key >> 8) & 0x7FFFFFFF) * m + (key & 0xFF)
        token = token_at[offset[sentence] + gpeak[j]]
        if token < 0:
            return keys, gmax, gpeak, gcount, gtoken, 0, False
        gtoken[j] = token
    return keys, gmax, gpeak, gcount, gtoken, g + 1, True


_disabled: list[Exception] = []
"""The error that turned the kernel off in this process, if any."""


@functools.cache
def kernel() -> Callable | None:
    """The compiled :func:`_reduce` (compiled on its first call, then cached on
    disk), or None without numba."""
    try:
        import numba
    except ImportError:  # the app's install: the numpy path serves
        return None
    try:
        return numba.njit(nogil=True, cache=True)(_reduce)
    except RuntimeError:  # nowhere to write numba's cache: compile in each process
        return numba.njit(nogil=True)(_reduce)


def reduce_batch(
    batch: pa.RecordBatch,
    lang: np.ndarray,
    m: int,
    d_sae: int,
    n_pairs: int,
    sentence_len: np.ndarray,
    token_at: tuple[np.ndarray, np.ndarray],
    prev_key: int | None,
    prev_pos: int,
) -> tuple[np.ndarray, ...] | None:
    """``(key, max, count, peak position, peak token, token sums (d_sae, m))`` of
    one batch (``lang``: its language indices), or None when the kernel is
    missing or refuses the batch (nulls, a value out of range, rows out of
    order, a position past its sentence, a peak on a padded slot)."""
    compiled = None if _disabled else kernel()
    if compiled is None:
        return None
    columns = [batch.column(name) for name in ("feature", "pair_id", "position", "activation")]
    if any(c.null_count for c in columns):
        return None
    f, p, pos, a = (c.to_numpy(zero_copy_only=False) for c in columns)
    offset, ids = token_at
    sums = np.zeros(d_sae * m)
    try:
        keys, gmax, gpeak, gcount, gtoken, n_groups, ok = compiled(
            f, p, pos, a, lang, m, d_sae, n_pairs, sentence_len, offset, ids,
            -1 if prev_key is None else prev_key, prev_pos, sums,
        )  # fmt: skip
    except Exception as exc:  # a compiler failure never stops the scoring
        warnings.warn(f"the compiled reduction failed ({exc}); using numpy", stacklevel=2)
        _disabled.append(exc)
        return None
    if not ok:
        return None
    k = n_groups
    return keys[:k], gmax[:k], gcount[:k], gpeak[:k], gtoken[:k], sums.reshape(d_sae, m)
