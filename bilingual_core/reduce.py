"""One streaming pass over ``activations.parquet``: per-sentence maxima and sums.

The file is sorted by ``(feature, pair_id, lang, position)``, so each
``(feature, pair, lang)`` group is a contiguous run of rows and the maximum is
a ``np.maximum.reduceat`` over run starts. Batches are read one at a time (a
background thread decodes the next one while numpy reduces the current), so
memory holds the per-sentence maxima plus one batch, never the activations.
The same pass checks the data: sort order, duplicate rows, non-positive
activations, ids out of range, unknown languages.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import RunFormatError
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
        raise RunFormatError(file, "lang", f"language(s) {unknown} not in the manifest's languages {languages}")
    mapping = np.array([lookup[d] for d in dictionary] or [0], dtype=np.int8)
    if column.null_count:
        raise RunFormatError(file, "lang", "contains nulls")
    return mapping[column.indices.to_numpy(zero_copy_only=False)]


def _iter_batches(pf: pq.ParquetFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Batches of the file, the next one decoded in a thread while the caller works."""
    it = pf.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(next, it, None)
        while True:
            batch = future.result()
            if batch is None:
                return
            future = pool.submit(next, it, None)
            yield batch


def _column(batch: pa.RecordBatch, name: str, dtype: type, file: str) -> np.ndarray:
    col = batch.column(name)
    if col.null_count:
        raise RunFormatError(file, name, "contains nulls")
    return col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


@dataclass
class ActivationPass:
    """Everything the scorer needs from the token-level activations."""

    sentence_max: SentenceMax
    token_sum: np.ndarray
    """(d_sae, m): sum of activations over all real tokens."""
    quantiles: ExactQuantiles
    n_rows: int
    lang_max: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(m,): the largest activation in each language."""


def check_schema(pf: pq.ParquetFile, file: str) -> None:
    """Required columns present, with integer / float types."""
    schema = pf.schema_arrow
    expected = {"pair_id": "integer", "lang": "string", "position": "integer", "feature": "integer", "activation": "floating"}
    for name, kind in expected.items():
        if name not in schema.names:
            raise RunFormatError(file, name, f"missing (the file has columns {schema.names})")
        t = schema.field(name).type
        value_type = t.value_type if pa.types.is_dictionary(t) else t
        ok = {
            "integer": pa.types.is_integer(value_type),
            "floating": pa.types.is_floating(value_type),
            "string": pa.types.is_string(value_type) or pa.types.is_large_string(value_type),
        }[kind]
        if not ok:
            raise RunFormatError(file, name, f"has type {t}, expected {kind}")


def activation_pass(
    pf: pq.ParquetFile,
    *,
    languages: list[str],
    n_pairs: int,
    d_sae: int,
    file: str,
    quantiles: bool = True,
    progress: object | None = None,
) -> ActivationPass:
    """Stream the activation table once; see the module docstring."""
    check_schema(pf, file)
    m = len(languages)
    if d_sae >= 1 << 24:
        raise RunFormatError(file, "feature", f"d_sae {d_sae} is larger than this scorer supports (2^24)")
    scopes = [*languages, "global"]
    q = ExactQuantiles(scopes)
    token_sum = np.zeros(d_sae * m, dtype=np.float64)
    lang_max = np.zeros(m, dtype=np.float64)
    out_f: list[np.ndarray] = []
    out_p: list[np.ndarray] = []
    out_l: list[np.ndarray] = []
    out_v: list[np.ndarray] = []
    out_n: list[np.ndarray] = []
    prev_key: int | None = None
    prev_pos = -1
    n_rows = 0
    for batch in _iter_batches(pf, COLUMNS):
        if batch.num_rows == 0:
            continue
        f = _column(batch, "feature", np.int64, file)
        p = _column(batch, "pair_id", np.int64, file)
        pos = _column(batch, "position", np.int64, file)
        a = _column(batch, "activation", np.float32, file)
        li = lang_indices(batch.column("lang"), languages, file)
        _check_ranges(f, p, pos, a, n_pairs, d_sae, file)
        key = (f << 39) | (p << 8) | li.astype(np.int64)
        if prev_key is not None and (key[0] < prev_key or (key[0] == prev_key and pos[0] <= prev_pos)):
            _order_error(file, key[0] == prev_key)
        dk = np.diff(key)
        if (dk < 0).any():
            _order_error(file, False)
        same = dk == 0
        if (np.diff(pos)[same] <= 0).any():
            _order_error(file, True)
        starts = np.flatnonzero(np.concatenate([[True], ~same]))
        gmax = np.maximum.reduceat(a, starts)
        gcount = np.diff(np.append(starts, len(a))).astype(np.int32)
        gkey = key[starts]
        if prev_key is not None and gkey[0] == prev_key:
            # The first group continues the last group of the previous batch.
            out_v[-1][-1] = max(out_v[-1][-1], gmax[0])
            out_n[-1][-1] += gcount[0]
            gmax, gcount, gkey, starts = gmax[1:], gcount[1:], gkey[1:], starts[1:]
        out_f.append((gkey >> 39).astype(np.int32))
        out_p.append(((gkey >> 8) & 0x7FFFFFFF).astype(np.int32))
        out_l.append((gkey & 0xFF).astype(np.int8))
        out_v.append(gmax.astype(np.float32))
        out_n.append(gcount)
        token_sum += np.bincount(f * m + li, weights=a, minlength=d_sae * m)
        _lang_max(lang_max, li, a, m)
        if quantiles:
            for s in range(m):
                q.add(s, a[li == s])
            q.add(m, a)
        prev_key = int(key[-1])
        prev_pos = int(pos[-1])
        n_rows += batch.num_rows
        if progress is not None:
            progress.update(batch.num_rows)  # type: ignore[attr-defined]
    sm = SentenceMax(
        _cat(out_f, np.int32), _cat(out_p, np.int32), _cat(out_l, np.int8), _cat(out_v, np.float32),
        _cat(out_n, np.int32), n_pairs, list(languages), 0, d_sae,
    )
    return ActivationPass(sm, token_sum.reshape(d_sae, m), q, n_rows, lang_max)


def rescan_values(pf: pq.ParquetFile, languages: list[str], file: str) -> Iterator[tuple[int, np.ndarray]]:
    """Second pass for exact quantiles: ``(scope index, values)`` chunks (global = m)."""
    m = len(languages)
    for batch in _iter_batches(pf, ["lang", "activation"]):
        a = _column(batch, "activation", np.float32, file)
        li = lang_indices(batch.column("lang"), languages, file)
        for s in range(m):
            yield s, a[li == s]
        yield m, a


def _lang_max(lang_max: np.ndarray, li: np.ndarray, a: np.ndarray, m: int) -> None:
    for s in range(m):
        sel = a[li == s]
        if len(sel):
            lang_max[s] = max(lang_max[s], float(sel.max()))


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _check_ranges(
    f: np.ndarray, p: np.ndarray, pos: np.ndarray, a: np.ndarray, n_pairs: int, d_sae: int, file: str
) -> None:
    if not (a > 0).all():
        bad = a[~(a > 0)][0]
        raise RunFormatError(file, "activation", f"holds {bad!r}; only activations > 0 are stored (zeros are implicit)")
    if f.min() < 0 or f.max() >= d_sae:
        raise RunFormatError(file, "feature", f"feature id {int(f.max()) if f.max() >= d_sae else int(f.min())} is outside 0..{d_sae - 1} (manifest d_sae = {d_sae})")
    if p.min() < 0 or p.max() >= n_pairs:
        raise RunFormatError(file, "pair_id", f"pair id outside 0..{n_pairs - 1} (manifest n_pairs = {n_pairs})")
    if pos.min() < 1:
        raise RunFormatError(file, "position", "position 0 (BOS) or negative: BOS and padding are never stored")


def _order_error(file: str, duplicate: bool) -> None:
    if duplicate:
        raise RunFormatError(file, None, "duplicate rows: the same (feature, pair_id, lang, position) appears twice")
    raise RunFormatError(
        file, None,
        "rows are not sorted by (feature, pair_id, lang, position) with lang in manifest order; "
        "sort them with `python -m precompute sort-activations --run DIR`",
    )
