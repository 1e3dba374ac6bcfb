"""Writing the scorer's tables into a run being written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import fused
from .schema import COACTIVATION, CURVES, FEATURES, SENTENCE_MAX_SCHEMA, THRESHOLDS
from .sparse import SentenceMax
from .storage import RunWriter

PAIR_BLOCK_SHIFT = 10  # sentence_max.parquet row groups hold at most 1024 pairs each
LZ4_COLUMNS = ("feature", "max_activation", "peak_token_id")
"""The sentence_max.parquet columns that shrink under LZ4 after their encoding."""


@dataclass
class ScoreResult:
    """The tables the scorer writes, and what the manifest records about it."""

    features: pd.DataFrame
    thresholds: pd.DataFrame
    curves: pd.DataFrame
    coactivation: pd.DataFrame
    scoring: dict = field(default_factory=dict)


class SentenceMaxWriter:
    """Streams each block's per-sentence maxima into ``sentence_max.parquet``.

    Blocks are buffered until about ``flush_rows`` rows are held, then written
    grouped by pair bucket (1024 pairs), so every row group spans few pairs and
    a reader filtering on one pair_id skips all row groups but one per flush.
    Within a row group the rows run by language, then feature (in each block).
    The scorer's feature blocks are small (a few million activations, for
    cache-friendly scoring); writing each one on its own would cut the file into
    tens of thousands of row groups at full OPUS size.
    """

    def __init__(self, handle: Any, languages: list[str], flush_rows: int = 4_000_000) -> None:
        self.writer = pq.ParquetWriter(
            handle,
            SENTENCE_MAX_SCHEMA,
            # Delta-coded ids, byte-split floats, dictionary-coded token ids and
            # LZ4 where it pays (the other columns do not shrink under it): at
            # 44 M rows about 40 % less writing CPU than zstd level 1 on every
            # column (this file was the scorer's largest single cost), for a
            # file 2 % larger that is faster to read.
            compression={
                name: "lz4" if name in LZ4_COLUMNS else "none" for name in SENTENCE_MAX_SCHEMA.names
            },
            use_dictionary=["lang", "peak_token_id"],
            # Readers filter on pair_id or feature only: min/max statistics of
            # the other five columns cost an eighth of the writing, unused.
            write_statistics=["pair_id", "feature"],
            column_encoding={
                "feature": "DELTA_BINARY_PACKED",
                "pair_id": "DELTA_BINARY_PACKED",
                "max_activation": "BYTE_STREAM_SPLIT",
                "n_tokens": "DELTA_BINARY_PACKED",
                "peak_position": "DELTA_BINARY_PACKED",
            },
        )
        self.lang_dict = pa.array(languages, pa.string())
        self.flush_rows = flush_rows
        self.pending: list[tuple[pa.RecordBatch, np.ndarray]] = []
        """Held blocks in (pair bucket, language) order, with each row's
        ``bucket * languages + language`` key."""
        self.n_pending = 0

    def __call__(self, sm: SentenceMax) -> None:
        if len(sm) == 0:
            return
        n, m = len(sm), len(self.lang_dict)
        # Each block gathered into (pair bucket, language) order on its own (a
        # stable sort: feature order within each language's run; by the
        # compiled kernel for a compiled block, else Arrow's take); the flush
        # writes every bucket's slices of the held blocks as one row group,
        # with no further copy. Language runs make the `lang` column's
        # run-length encoding 5x cheaper than alternating languages.
        n_keys = (((sm.n_pairs - 1) >> PAIR_BLOCK_SHIFT) + 1) * m
        key = (sm.pair >> PAIR_BLOCK_SHIFT).astype(np.uint16 if n_keys <= 1 << 16 else np.int64)
        key *= m
        key += sm.lang.astype(key.dtype)
        columns = [
            sm.pair,
            sm.lang,
            sm.feature,
            sm.value,
            sm.n_tokens,
            _or_missing(sm.peak_position, n),
            _or_missing(sm.peak_token, n),
        ]
        gathered = fused.gather_by_key(key, n_keys, columns) if sm.compiled else None
        if gathered is not None:
            key, columns = gathered
            self.pending.append((self._batch(columns), key))
        else:
            order = np.argsort(key, kind="stable")
            # One gather of every column (Arrow's, without the GIL).
            self.pending.append((self._batch(columns).take(pa.array(order)), key[order]))
        self.n_pending += n
        if self.n_pending >= self.flush_rows:
            self._flush()

    def _batch(self, columns: list[np.ndarray]) -> pa.RecordBatch:
        pair, lang, feature, value, n_tokens, position, token = columns
        return pa.record_batch(
            [
                pa.array(pair, pa.int32()),
                pa.DictionaryArray.from_arrays(pa.array(lang, pa.int8()), self.lang_dict),
                pa.array(feature, pa.int32()),
                pa.array(value, pa.float32()),
                pa.array(n_tokens, pa.int32()),
                pa.array(position, pa.int32()),
                pa.array(token, pa.int32()),
            ],
            schema=SENTENCE_MAX_SCHEMA,
        )

    def _flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending, self.n_pending = self.pending, [], 0
        m = len(self.lang_dict)
        present = np.unique(np.concatenate([key // m for _, key in pending]))
        bounds = [
            (
                batch,
                np.searchsorted(key, present * m, "left"),
                np.searchsorted(key, (present + 1) * m, "left"),
            )
            for batch, key in pending
        ]
        for i in range(len(present)):
            pieces = [
                batch.slice(lo[i], hi[i] - lo[i]) for batch, lo, hi in bounds if hi[i] > lo[i]
            ]
            n = sum(piece.num_rows for piece in pieces)
            self.writer.write_table(pa.Table.from_batches(pieces), row_group_size=n)

    def close(self) -> None:
        self._flush()
        self.writer.close()


def _or_missing(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, -1, np.int32) if values is None else values


def write_score_tables(writer: RunWriter, result: ScoreResult) -> None:
    """Write features, thresholds, curves and coactivation into a RunWriter's temporary directory."""
    writer.write_table(FEATURES, pa.Table.from_pandas(result.features, preserve_index=False))
    writer.write_table(THRESHOLDS, pa.Table.from_pandas(result.thresholds, preserve_index=False))
    writer.write_table(CURVES, pa.Table.from_pandas(result.curves, preserve_index=False))
    writer.write_table(
        COACTIVATION, pa.Table.from_pandas(result.coactivation, preserve_index=False)
    )
