"""Optional compiled kernels for the scorer (numba).

With numba installed (``requirements.txt``, the scoring side; the app's install
leaves it out, and the app never scores), runs of ``MIN_ROWS`` activations or
more take loops compiled here in place of numpy passes:

* :func:`reduce_batch` does in one pass over a batch of ``activations.parquet``
  what ``reduce.sentence_max_blocks`` otherwise does in a dozen numpy passes:
  the range and order checks, the token sums per (feature, language), and per
  sentence group its key, maximum, first peak position, row count and peak
  token id;
* :func:`level_histograms` counts a block's sentences and pairs per threshold
  level (``score_kernels.threshold_counts``) without the per-row temporaries;
* :func:`block_arrays` makes in one pass the arrays every score of a block
  shares (``SentenceMax.prepare``: the union rows, each (feature, pair) where
  some language fires with the dense matrix of its maxima, and the per
  (feature, language) counts, maxima and sums);
* :func:`gather_by_key` puts a block's rows of ``sentence_max.parquet`` into
  (pair bucket, language) order by one counting sort;
* :func:`minhash` fills a block's MinHash sketches (``peaks``) in one loop
  where numpy's ``minimum.at`` takes 10-30 ns a row;
* :func:`bucket_histogram` and :func:`select_buckets` do the thresholds pass's
  per-chunk work (``stats.ExactQuantiles``): the top-bits histogram with the
  per-language sums, and the rescan's selection of the wanted buckets.

The results are the same, bit for bit (``tests/test_core_fused.py``): the
kernels do integer work, comparisons and copies, and every float sum is made
in row order, from zero, in float64, as the numpy path's ``bincount`` makes it
(a batch's token sums are then added to the running total, as there). The reduction only says *whether* a batch is well formed;
any batch it refuses goes to the numpy path, which names the rows at fault.
Without numba, or after a compiler failure (warned once), every wrapper
returns None and numpy does the work. numba is imported on first use (about
1 s), never by the app, and each kernel compiles once (about 1 s) into numba's
on-disk cache.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from .sparse import SentenceMax

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


def _level_histograms(
    feature: np.ndarray,
    pair: np.ndarray,
    lang: np.ndarray,
    value: np.ndarray,
    bits: np.ndarray,
    offset: int,
    m: int,
    table: np.ndarray,
    shift: int,
    sorted32: np.ndarray,
    n_levels: int,
    sizes: np.ndarray,
    inter: np.ndarray,
    union: np.ndarray,
    overlap: np.ndarray,
) -> bool:
    """Level histograms of a block whose entries are sorted by (feature, pair):
    ``sizes[(feature * m + lang) * n_levels + level]`` per entry, and per pair
    (a run of entries) the minimum level over all languages (0 when one is
    silent) in ``inter``, the maximum in ``union`` and, when ``m > 2``, the
    minimum of each language pair in ``overlap[pair index]``. A level is the
    number of ``sorted32`` cuts below the value: ``table`` by its bucket
    (``bits >> shift``), a binary search where the table holds -1."""
    n = len(feature)
    levels = np.zeros(m, np.int64)
    f = np.int64(-1)
    p = np.int64(-1)
    seen = 0
    for i in range(n + 1):
        if i == n or np.int64(feature[i]) - offset != f or np.int64(pair[i]) != p:
            if f >= 0:  # close the previous pair
                low = levels[0] if seen == m else 0
                high = levels[0]
                for li in range(1, m):
                    low = min(low, levels[li])
                    high = max(high, levels[li])
                inter[f * n_levels + low] += 1
                union[f * n_levels + high] += 1
                if m > 2:
                    j = 0
                    for a in range(m):
                        for b in range(a + 1, m):
                            overlap[j, f * n_levels + min(levels[a], levels[b])] += 1
                            j += 1
            if i == n:
                break
            f = np.int64(feature[i]) - offset
            p = np.int64(pair[i])
            seen = 0
            for li in range(m):
                levels[li] = 0
        level = np.int64(table[bits[i] >> shift])
        if level < 0:
            lo = 0
            hi = len(sorted32)
            while lo < hi:  # searchsorted(sorted32, value, "left")
                mid = (lo + hi) >> 1
                if sorted32[mid] < value[i]:
                    lo = mid + 1
                else:
                    hi = mid
            level = np.int64(lo)
        li = np.int64(lang[i])
        sizes[(f * m + li) * n_levels + level] += 1
        levels[li] = level
        seen += 1
    return True


def _minhash(
    feature: np.ndarray,
    pair: np.ndarray,
    lang: np.ndarray,
    position: np.ndarray,
    offset: int,
    m: int,
    bins: int,
    position_bits: int,
    sketch: np.ndarray,
) -> bool:
    """``peaks._minhash``'s sketch, one entry at a time (uint64 wrapping arithmetic)."""
    shift = np.uint64(position_bits)
    for i in range(len(feature)):
        h = np.uint64(pair[i]) * np.uint64(m) + np.uint64(lang[i])
        h = (h << shift) | np.uint64(position[i])
        h = h * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
        slot = (np.int64(feature[i]) - offset) * bins + np.int64(h & np.uint64(bins - 1))
        h >>= np.uint64(5)
        if h < sketch[slot]:
            sketch[slot] = h
    return True


def _bucket_histogram(
    lang: np.ndarray,
    bits: np.ndarray,
    values: np.ndarray,
    shift: int,
    hist: np.ndarray,
    sums: np.ndarray,
) -> bool:
    """``hist[lang << (32 - shift) | bits >> shift] += 1`` and ``sums[lang] += value``
    (float64, in row order: ``bincount``'s additions) for every row."""
    for i in range(len(bits)):
        li = np.int64(lang[i])
        hist[(li << (32 - shift)) | np.int64(bits[i] >> shift)] += 1
        sums[li] += np.float64(values[i])
    return True


def _select_buckets(
    lang: np.ndarray,
    bits: np.ndarray,
    values: np.ndarray,
    shift: int,
    wanted: np.ndarray,
    out_lang: np.ndarray,
    out_values: np.ndarray,
) -> int:
    """Copy the rows whose bucket (``bits >> shift``) is ``wanted``, in order;
    returns how many."""
    k = 0
    for i in range(len(bits)):
        if wanted[bits[i] >> shift]:
            out_lang[k] = lang[i]
            out_values[k] = values[i]
            k += 1
    return k


def _block_arrays(
    feature: np.ndarray,
    pair: np.ndarray,
    lang: np.ndarray,
    value: np.ndarray,
    n_tokens: np.ndarray,
    offset: int,
    n_features: int,
    m: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A non-empty block's shared arrays (``SentenceMax.prepare``), entries
    sorted by (feature, pair): the union rows (a row per (feature, pair) run of
    entries) with ``row_feature``, ``row_of_entry``, ``union_slot`` and the dense
    (m, rows) maxima; each entry's ``group``; and per (feature, language) cell
    the entry count, the largest value, and the sums of ``n_tokens`` and of the
    values (float64, in entry order: ``bincount``'s additions)."""
    n = len(feature)
    row_of_entry = np.empty(n, np.int64)
    row_feature = np.empty(n, np.int64)
    group = np.empty(n, np.int64)
    cells = np.zeros((4, n_features * m), np.float64)
    row = -1
    for i in range(n):
        local = np.int64(feature[i]) - offset
        if i == 0 or feature[i] != feature[i - 1] or pair[i] != pair[i - 1]:
            row += 1
            row_feature[row] = local
        row_of_entry[i] = row
        g = local * m + np.int64(lang[i])
        group[i] = g
        v = np.float64(value[i])
        cells[0, g] += 1.0
        if v > cells[1, g]:
            cells[1, g] = v
        cells[2, g] += np.float64(n_tokens[i])
        cells[3, g] += v
    n_rows = row + 1
    union_slot = np.empty(n, np.int64)
    dense = np.zeros((m, n_rows), np.float64)
    flat = dense.reshape(-1)
    for i in range(n):
        slot = np.int64(lang[i]) * n_rows + row_of_entry[i]
        union_slot[i] = slot
        flat[slot] = np.float64(value[i])
    return row_feature[:n_rows].copy(), row_of_entry, union_slot, dense, group, cells


def _gather_by_key(
    key: np.ndarray,
    n_keys: int,
    pair: np.ndarray,
    lang: np.ndarray,
    feature: np.ndarray,
    value: np.ndarray,
    n_tokens: np.ndarray,
    position: np.ndarray,
    token: np.ndarray,
    out: tuple,
) -> bool:
    """The rows of a sentence_max block and their keys in ``key`` order, by a
    stable counting sort (``take(argsort(key, kind="stable"))``) into ``out``
    (key, pair, lang, feature, value, n_tokens, position, token)."""
    start = np.zeros(n_keys + 1, np.int64)
    for i in range(len(key)):
        start[np.int64(key[i]) + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    o_key, o_pair, o_lang, o_feature, o_value, o_tokens, o_position, o_token = out
    for i in range(len(key)):
        k = np.int64(key[i])
        j = start[k]
        start[k] = j + 1
        o_key[j] = key[i]
        o_pair[j] = pair[i]
        o_lang[j] = lang[i]
        o_feature[j] = feature[i]
        o_value[j] = value[i]
        o_tokens[j] = n_tokens[i]
        o_position[j] = position[i]
        o_token[j] = token[i]
    return True


_disabled: list[Exception] = []
"""The error that turned the kernels off in this process, if any."""


@functools.cache
def kernel(fn: Callable = _reduce) -> Callable | None:
    """The compiled ``fn`` (by default :func:`_reduce`; compiled on its first
    call, then cached on disk), or None without numba."""
    try:
        import numba
    except ImportError:  # the app's install: the numpy path serves
        return None
    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # nowhere to write numba's cache: compile in each process
        return numba.njit(nogil=True)(fn)


def enabled(n_rows: int) -> bool:
    """Whether a file of ``n_rows`` activations is scored with the compiled kernels."""
    return n_rows >= MIN_ROWS and not _disabled and kernel() is not None


def _run(fn: Callable, *args: object) -> object | None:
    """``fn`` compiled and called, or None (no numba, or the kernels turned off;
    a compiler failure warns once and turns them off for the process)."""
    compiled = None if _disabled else kernel(fn)
    if compiled is None:
        return None
    try:
        return compiled(*args)
    except Exception as exc:  # a compiler failure never stops the scoring
        warnings.warn(f"the compiled kernels failed ({exc}); using numpy", stacklevel=3)
        _disabled.append(exc)
        return None


def level_histograms(
    block: SentenceMax, table: np.ndarray, shift: int, sorted32: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Per-level counts of a block (``score_kernels.threshold_counts``): ``sizes``
    (f * m, levels), ``inter`` and ``union`` (f, levels) and ``overlap`` (language
    pairs, f, levels; empty for two languages, where it is ``inter``), or None
    (numpy's turn). ``table``: each bucket's level (the values' float32 bits
    ``>> shift``), -1 where a cut lies."""
    f, m, n_levels = block.n_features, block.m, len(sorted32) + 1
    value = np.ascontiguousarray(block.value, dtype=np.float32)
    sizes = np.zeros(f * m * n_levels, np.int64)
    inter, union = np.zeros(f * n_levels, np.int64), np.zeros(f * n_levels, np.int64)
    overlap = np.zeros((m * (m - 1) // 2 if m > 2 else 0, f * n_levels), np.int64)
    done = _run(
        _level_histograms, block.feature, block.pair, block.lang, value, value.view(np.uint32),
        block.feature_offset, m, table.astype(np.int32, copy=False), shift, sorted32, n_levels,
        sizes, inter, union, overlap,
    )  # fmt: skip
    if done is None:
        return None
    return (
        sizes.reshape(f * m, n_levels),
        inter.reshape(f, n_levels),
        union.reshape(f, n_levels),
        overlap.reshape(-1, f, n_levels),
    )


def minhash(block: SentenceMax, bins: int, position_bits: int, empty: int) -> np.ndarray | None:
    """``peaks._minhash`` of a block, (f, bins) uint64, or None (numpy's turn)."""
    sketch = np.full(block.n_features * bins, empty, dtype=np.uint64)
    done = _run(
        _minhash, block.feature, block.pair, block.lang, block.peak_position,
        block.feature_offset, block.m, bins, position_bits, sketch,
    )  # fmt: skip
    if done is None:
        return None
    return sketch.reshape(block.n_features, bins)


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
    if _disabled or kernel() is None:
        return None
    columns = [batch.column(name) for name in ("feature", "pair_id", "position", "activation")]
    if any(c.null_count for c in columns):
        return None
    f, p, pos, a = (c.to_numpy(zero_copy_only=False) for c in columns)
    offset, ids = token_at
    sums = np.zeros(d_sae * m)
    reduced = _run(
        _reduce, f, p, pos, a, lang, m, d_sae, n_pairs, sentence_len, offset, ids,
        -1 if prev_key is None else prev_key, prev_pos, sums,
    )  # fmt: skip
    if reduced is None:
        return None
    keys, gmax, gpeak, gcount, gtoken, n_groups, ok = reduced
    if not ok:
        return None
    k = n_groups
    return keys[:k], gmax[:k], gcount[:k], gpeak[:k], gtoken[:k], sums.reshape(d_sae, m)


def bucket_histogram(
    lang: np.ndarray, values: np.ndarray, m: int, shift: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``stats.ExactQuantiles.summary`` of a chunk: the (m, 2^(32 - shift)) histogram
    of the values' top bits per language and the per-language sums, or None."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    n_buckets = 1 << (32 - shift)
    hist, sums = np.zeros(m * n_buckets, np.int64), np.zeros(m)
    if _run(_bucket_histogram, lang, values.view(np.uint32), values, shift, hist, sums) is None:
        return None
    return hist.reshape(m, n_buckets), sums


def select_buckets(
    lang: np.ndarray, values: np.ndarray, shift: int, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows (language indices, values) whose top-bits bucket is ``wanted``, or None."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    out_lang, out_values = np.empty(len(values), lang.dtype), np.empty(len(values), np.float32)
    k = _run(
        _select_buckets, lang, values.view(np.uint32), values, shift, wanted, out_lang, out_values
    )
    if k is None:
        return None
    return out_lang[:k].copy(), out_values[:k].copy()


def block_arrays(block: SentenceMax) -> tuple[np.ndarray, ...] | None:
    """``(row_feature, row_of_entry, union_slot, dense, group, cells)`` of a
    non-empty block (``SentenceMax.prepare``; ``cells``: (4, f * m) counts,
    maxima, token sums and value sums), or None."""
    return _run(
        _block_arrays,
        block.feature,
        block.pair,
        block.lang,
        block.value,
        block.n_tokens,
        block.feature_offset,
        block.n_features,
        block.m,
    )  # type: ignore[return-value]


def gather_by_key(
    key: np.ndarray, n_keys: int, columns: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """``(key, columns)`` reordered by ``key`` (0 .. n_keys - 1; stable), or None.
    ``columns``: a sentence_max block's pair, lang, feature, value, n_tokens,
    peak position and peak token arrays."""
    out = tuple(np.empty_like(a) for a in [key, *columns])
    if _run(_gather_by_key, key, n_keys, *columns, out) is None:
        return None
    return out[0], list(out[1:])
