"""Streaming passes over ``activations.parquet``.

The file is sorted by ``(feature, pair_id, lang, position)``, so each
``(feature, pair, lang)`` group is a contiguous run of rows and its maximum is
one ``np.maximum.reduceat`` over run starts. Batches are decoded in a
background thread while numpy reduces the previous one.

* :func:`threshold_pass` reads only ``lang`` and ``activation`` and returns the
  exact thresholds (re-reading the file once more at large scale).
* :func:`sentence_max_blocks` yields the per-sentence maxima one block of
  consecutive features at a time, so memory holds one block, never the whole
  run. It also checks the data: sort order, duplicate rows, non-positive
  activations, ids out of range, unknown languages. For large files, and with
  numba installed, ``fused`` does a batch's checks, token sums and groups in
  one compiled loop, with the same results.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import fused
from .errors import RunFormatError
from .schema import check_columns
from .sparse import SentenceMax
from .stats import ExactQuantiles

BATCH_ROWS = 1 << 21
COLUMNS = ["pair_id", "lang", "position", "feature", "activation"]


def lang_indices(column: pa.ChunkedArray | pa.Array, languages: list[str], file: str) -> np.ndarray:
    """Map a ``lang`` column (string or dictionary) to int8 indices into ``languages``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    lookup = {lang: i for i, lang in enumerate(languages)}
    dictionary = column.dictionary.to_pylist()
    unknown = [d for d in dictionary if d not in lookup]
    if unknown:
        raise RunFormatError(
            file, "lang", f"language(s) {unknown} not in the manifest's languages {languages}"
        )
    mapping = np.array([lookup[d] for d in dictionary] or [0], dtype=np.int8)
    if column.null_count:
        raise RunFormatError(file, "lang", "contains nulls")
    codes = column.indices.to_numpy(zero_copy_only=False)
    if (mapping == np.arange(len(mapping))).all():
        # The file's dictionary lists the languages in the manifest's order
        # (as every writer here does): its codes are the indices already.
        return codes.astype(np.int8, copy=False)
    return mapping[codes]


def _iter_batches(pf: pq.ParquetFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Batches of the file, the next one decoded in a thread while the caller works."""
    it = pf.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        future = pool.submit(next, it, None)
        while True:
            batch = future.result()
            if batch is None:
                return
            future = pool.submit(next, it, None)
            yield batch


def _column(
    batch: pa.RecordBatch, name: str, dtype: type, file: str, *, writable: bool = False
) -> np.ndarray:
    col = batch.column(name)
    if col.null_count:
        raise RunFormatError(file, name, "contains nulls")
    return col.to_numpy(zero_copy_only=False).astype(dtype, copy=writable)


def check_schema(pf: pq.ParquetFile, file: str) -> None:
    """The activation file's required columns are there with the right kinds of type."""
    check_columns(pf.schema_arrow, file)


@dataclass
class BlockSums:
    """Per (feature, language) sums accumulated over the whole pass."""

    token_sum: np.ndarray
    """(d_sae, m): sum of activations over all real tokens."""
    n_rows: int = 0


def sentence_max_blocks(
    pf: pq.ParquetFile,
    *,
    languages: list[str],
    n_pairs: int,
    d_sae: int,
    file: str,
    block_features: int,
    sums: BlockSums | None = None,
    progress: object | None = None,
    sentence_len: np.ndarray | None = None,
    token_at: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[SentenceMax]:
    """Yield a SentenceMax for every block of ``block_features`` features, in order.

    Every block is yielded, empty or not, so per-feature arrays built from the
    blocks cover all ``d_sae`` features. ``sums`` (if given) accumulates the
    per-(feature, language) token sums and the row count. Each block carries
    ``peak_position``, the position of the token holding each maximum.
    ``sentence_len`` (per ``pair_id * m + lang``: tokens.parquet's positions
    per sentence, BOS included) makes every row's position be checked against
    its sentence. ``token_at`` (a ``TokenIndex``'s ``(offset, token_at)``) fills
    each block's ``peak_token``, the token id at each peak position, in the
    same pass.
    """
    check_schema(pf, file)
    m = len(languages)
    if token_at is not None and sentence_len is None:
        sentence_len = np.diff(token_at[0])  # a peak must lie inside its own sentence
    if d_sae >= 1 << 24:
        raise RunFormatError(
            file, "feature", f"d_sae {d_sae} is larger than this scorer supports (2^24)"
        )
    pending = _Groups()
    next_block = 0
    prev_key: int | None = None
    prev_pos = -1
    # The compiled kernel (numba, when installed) needs the tokens for its checks.
    use_kernel = (
        sentence_len is not None and token_at is not None and fused.enabled(pf.metadata.num_rows)
    )

    def take(block: int) -> SentenceMax:
        """Block ``block``'s features, complete, out of the pending groups."""
        return pending.take_below(
            (block + 1) * block_features,
            block,
            block_features,
            n_pairs,
            languages,
            d_sae,
            compiled=use_kernel,
        )

    for batch in _iter_batches(pf, COLUMNS):
        if batch.num_rows == 0:
            continue
        li = lang_indices(batch.column("lang"), languages, file)
        reduced = None
        if use_kernel:
            reduced = fused.reduce_batch(
                batch, li, m, d_sae, n_pairs, sentence_len, token_at, prev_key, prev_pos
            )
        if reduced is not None:
            gkey, gmax, gcount, gpeak, gtoken, token_sum = reduced
            if sums is not None:
                sums.token_sum += token_sum
                sums.n_rows += batch.num_rows
            last_pos = int(batch.column("position")[-1].as_py())
        else:
            gkey, gmax, gcount, gpeak, gtoken, last_pos = _reduce_numpy(
                batch,
                li,
                prev_key,
                prev_pos,
                languages=languages,
                n_pairs=n_pairs,
                d_sae=d_sae,
                file=file,
                sentence_len=sentence_len,
                token_at=token_at,
                sums=sums,
            )
        pending.add(
            gkey,
            gmax,
            gcount,
            gpeak,
            gtoken,
            continues=prev_key is not None and gkey[0] == prev_key,
        )
        prev_key, prev_pos = int(gkey[-1]), last_pos
        # Every feature below the batch's last one is complete.
        last_feature = prev_key >> 39
        while (next_block + 1) * block_features <= last_feature:
            yield take(next_block)
            next_block += 1
        if progress is not None:
            progress.update(batch.num_rows)  # type: ignore[attr-defined]
    while next_block * block_features < d_sae:
        yield take(next_block)
        next_block += 1


def _reduce_numpy(
    batch: pa.RecordBatch,
    li: np.ndarray,
    prev_key: int | None,
    prev_pos: int,
    *,
    languages: list[str],
    n_pairs: int,
    d_sae: int,
    file: str,
    sentence_len: np.ndarray | None,
    token_at: tuple[np.ndarray, np.ndarray] | None,
    sums: BlockSums | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, int]:
    """One batch's sentence groups ``(key, max, count, peak position, peak
    token)`` and its last row's position, with numpy, checking every row (and
    naming the rows at fault); adds the batch's token sums to ``sums``."""
    m = len(languages)
    f = _column(batch, "feature", np.int64, file, writable=True)
    p = _column(batch, "pair_id", np.int64, file, writable=True)
    pos = _column(batch, "position", np.int32, file)
    a = _column(batch, "activation", np.float32, file)
    _check_ranges(f, p, pos, a, n_pairs, d_sae, file)
    if sums is not None:
        # Token sums per (feature, language), every row added in float64.
        cell = f * m
        cell += li
        sums.token_sum += np.bincount(cell, weights=a, minlength=d_sae * m).reshape(d_sae, m)
        sums.n_rows += batch.num_rows
    f <<= 39
    p <<= 8
    f |= p
    f |= li
    key = f
    if prev_key is not None and (key[0] < prev_key or (key[0] == prev_key and pos[0] <= prev_pos)):
        _order_error(file, key[0] == prev_key)
    dk = np.diff(key)
    if dk.min(initial=0) < 0:
        _order_error(file, False)
    new_group = dk != 0
    dpos = np.diff(pos)
    if not np.all(new_group | (dpos > 0)):
        _order_error(file, duplicate=not np.any(~new_group & (dpos < 0)))
    ends = np.flatnonzero(new_group)
    starts = np.empty(len(ends) + 1, dtype=np.int64)
    starts[0] = 0
    np.add(ends, 1, out=starts[1:])
    gkey = key[starts]
    sentence = None
    if sentence_len is not None or token_at is not None:
        sentence = (gkey >> 8) & 0x7FFFFFFF
        sentence *= m
        sentence += gkey & 0xFF
    if sentence_len is not None:
        # Sorted: positions rise within a group, so each group's last row
        # holds its largest and checking those checks every row (the full
        # check then names the rows at fault).
        last = np.append(ends, len(key) - 1)
        if (pos[last] >= sentence_len[sentence]).any():
            _check_positions((key >> 8) & 0x7FFFFFFF, li, pos, m, sentence_len, languages, file)
    gmax, gpeak = _max_and_peak(a, pos, starts)
    gcount = np.diff(np.append(starts, len(a))).astype(np.int32)
    gtoken = None
    if token_at is not None:
        gtoken = _peak_token_ids(token_at, sentence, gpeak, gkey, languages, file)
    return gkey, gmax, gcount, gpeak, gtoken, int(pos[-1])


def _max_and_peak(
    a: np.ndarray, pos: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per group of consecutive rows (from ``starts``), its maximum and the
    position of its first row holding it, in one ``reduceat``: a positive
    float32's bits order as the float does, so the int64 ``bits << 32 |
    (2^31 - 1 - position)`` is largest at the maximum with the lowest position."""
    packed = a.view(np.int32).astype(np.int64)
    packed <<= 32
    packed |= np.int32(0x7FFFFFFF) - pos
    top = np.maximum.reduceat(packed, starts)
    peak = (np.int64(0x7FFFFFFF) - (top & 0xFFFFFFFF)).astype(np.int32)
    top >>= 32
    return top.astype(np.int32).view(np.float32), peak


def _peak_token_ids(
    token_at: tuple[np.ndarray, np.ndarray],
    sentence: np.ndarray,
    peak: np.ndarray,
    gkey: np.ndarray,
    languages: list[str],
    file: str,
) -> np.ndarray:
    """The token id at each group's peak position (``token_at`` as in
    :func:`sentence_max_blocks`); refuses a position tokens.parquet lacks."""
    offset, ids = token_at
    slot = offset[sentence]
    slot += peak
    if len(slot) and int(slot.max()) >= len(ids):
        bad_rows = np.flatnonzero(slot >= len(ids))
        _missing_token(gkey, peak, bad_rows, languages, file)
    out = ids[slot]
    bad = np.flatnonzero(out < 0)
    if len(bad):
        _missing_token(gkey, peak, bad, languages, file)
    return out


def _missing_token(
    gkey: np.ndarray, peak: np.ndarray, bad: np.ndarray, languages: list[str], file: str
) -> None:
    features = gkey[bad] >> 39
    i = int(bad[0])
    raise RunFormatError(
        file,
        "position",
        f"{len(bad):,} per-sentence peak(s) of features "
        f"{int(features.min())}..{int(features.max())} sit on "
        f"positions tokens.parquet lacks (first: feature {int(gkey[i] >> 39)}, "
        f"pair_id {int((gkey[i] >> 8) & 0x7FFFFFFF)}, lang {languages[int(gkey[i] & 0xFF)]!r}, "
        f"position {int(peak[i])}): the tokens table does not match the activations",
    )


class _Groups:
    """Per-sentence groups waiting for their feature block to be complete."""

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []
        self.maxima: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.peaks: list[np.ndarray] = []
        self.tokens: list[np.ndarray] | None = []

    def add(
        self,
        key: np.ndarray,
        gmax: np.ndarray,
        count: np.ndarray,
        peak: np.ndarray,
        token: np.ndarray | None,
        *,
        continues: bool,
    ) -> None:
        if token is None:
            self.tokens = None
        if continues:
            # The first group continues the last pending group (a sentence's
            # rows may span several batches); the earlier peak wins a tie.
            last = next(i for i in range(len(self.keys) - 1, -1, -1) if len(self.keys[i]))
            if gmax[0] > self.maxima[last][-1]:
                self.maxima[last][-1] = gmax[0]
                self.peaks[last][-1] = peak[0]
                if self.tokens is not None and token is not None:
                    self.tokens[last][-1] = token[0]
            self.counts[last][-1] += count[0]
            key, gmax, count, peak = key[1:], gmax[1:], count[1:], peak[1:]
            token = None if token is None else token[1:]
        if len(key):
            self.keys.append(key)
            self.maxima.append(gmax)
            self.counts.append(count)
            self.peaks.append(peak)
            if self.tokens is not None and token is not None:
                self.tokens.append(token)

    def take_below(
        self,
        limit: int,
        block: int,
        block_features: int,
        n_pairs: int,
        languages: list[str],
        d_sae: int,
        *,
        compiled: bool = False,
    ) -> SentenceMax:
        key, gmax, count, peak = (
            _cat(self.keys, np.int64),
            _cat(self.maxima, np.float32),
            _cat(self.counts, np.int32),
            _cat(self.peaks, np.int32),
        )
        token = None if self.tokens is None else _cat(self.tokens, np.int32)
        cut = int(np.searchsorted(key, np.int64(limit) << 39))
        self.keys, self.maxima, self.counts = [key[cut:]], [gmax[cut:]], [count[cut:]]
        self.peaks = [peak[cut:]]
        if token is not None:
            self.tokens = [token[cut:]]
        key = key[:cut]
        start = block * block_features
        return SentenceMax(
            (key >> 39).astype(np.int32),
            ((key >> 8) & 0x7FFFFFFF).astype(np.int32),
            (key & 0xFF).astype(np.int8),
            gmax[:cut],
            count[:cut],
            n_pairs,
            list(languages),
            start,
            min(block_features, d_sae - start),
            peak[:cut],
            None if token is None else token[:cut],
            compiled=compiled,
        )


def threshold_pass(
    pf: pq.ParquetFile,
    languages: list[str],
    file: str,
    *,
    track_max: bool = False,
    threads: int = 2,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Exact thresholds of the file's activations and (with ``track_max``) the
    largest activation per language.

    Each chunk's histogram (and, on the rescan, its selection) is made in one
    of ``threads`` threads; chunks are added in file order, so the result does
    not depend on the threads."""
    check_schema(pf, file)
    q = ExactQuantiles(languages, track_max=track_max, compiled=fused.enabled(pf.metadata.num_rows))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="thr-hist") as pool:

        def in_threads(fn: Callable, chunks: Iterable) -> Iterator:
            return _ordered_map(pool, fn, chunks, ahead=2 * threads)

        def summarised(chunk: tuple[np.ndarray, np.ndarray]) -> tuple:
            return chunk, q.summary(*chunk)

        for (li, a), summary in in_threads(summarised, rescan_values(pf, languages, file)):
            q.add(li, a, summary)
        table = q.result(lambda: rescan_values(pf, languages, file), map_chunks=in_threads)
    return table, q.lang_max


def _ordered_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, ahead: int) -> Iterator:
    """``map(fn, items)`` in ``pool``'s threads, in order, at most ``ahead`` items in flight."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def rescan_values(
    pf: pq.ParquetFile, languages: list[str], file: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Second pass for exact quantiles: ``(language indices, values)`` per batch."""
    for batch in _iter_batches(pf, ["lang", "activation"]):
        yield (
            lang_indices(batch.column("lang"), languages, file),
            _column(batch, "activation", np.float32, file),
        )


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _check_ranges(
    f: np.ndarray,
    p: np.ndarray,
    pos: np.ndarray,
    a: np.ndarray,
    n_pairs: int,
    d_sae: int,
    file: str,
) -> None:
    if not ((a > 0) & (a < np.inf)).all():
        bad = a[~((a > 0) & (a < np.inf))][0]
        raise RunFormatError(
            file,
            "activation",
            f"holds {bad!r}; only finite activations > 0 are stored (zeros are implicit)",
        )
    if f.min() < 0 or f.max() >= d_sae:
        raise RunFormatError(
            file,
            "feature",
            f"feature id {int(f.max()) if f.max() >= d_sae else int(f.min())} is outside 0..{d_sae - 1} (manifest d_sae = {d_sae})",
        )
    if p.min() < 0 or p.max() >= n_pairs:
        raise RunFormatError(
            file, "pair_id", f"pair id outside 0..{n_pairs - 1} (manifest n_pairs = {n_pairs})"
        )
    if pos.min() < 1:
        raise RunFormatError(
            file, "position", "position 0 (BOS) or negative: BOS and padding are never stored"
        )


def _check_positions(
    p: np.ndarray,
    li: np.ndarray,
    pos: np.ndarray,
    m: int,
    sentence_len: np.ndarray,
    languages: list[str],
    file: str,
) -> None:
    """Every row's position exists in its sentence of tokens.parquet."""
    bad = pos >= sentence_len[p * m + li]
    if bad.any():
        i = np.flatnonzero(bad)
        first = int(i[0])
        raise RunFormatError(
            file,
            "position",
            f"{len(i):,} row(s) of this batch point past their sentence in tokens.parquet "
            f"(first: pair_id {int(p[first])}, lang {languages[int(li[first])]!r}, "
            f"position {int(pos[first])}, but tokens.parquet has "
            f"{int(sentence_len[p[first] * m + li[first]])} positions there): "
            "the tokens table does not match the activations",
        )


def _order_error(file: str, duplicate: bool) -> None:
    if duplicate:
        raise RunFormatError(
            file, None, "duplicate rows: the same (feature, pair_id, lang, position) appears twice"
        )
    raise RunFormatError(
        file,
        None,
        "rows are not sorted by (feature, pair_id, lang, position) with lang in manifest order; "
        "sort them with `python -m precompute sort-activations --run DIR`",
    )
