"""Writing the scorer's tables into a run being written."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import COACTIVATION, CURVES, FEATURES, SENTENCE_MAX_SCHEMA, THRESHOLDS
from .sparse import SentenceMax
from .storage import RunWriter

PAIR_BLOCK_SHIFT = 10  # sentence_max.parquet row groups hold at most 1024 pairs each


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
    The scorer's feature blocks are small (a few million activations, for
    cache-friendly scoring); writing each one on its own would cut the file into
    tens of thousands of row groups at full OPUS size.
    """

    def __init__(self, handle: Any, languages: list[str], flush_rows: int = 4_000_000) -> None:
        self.writer = pq.ParquetWriter(
            handle,
            SENTENCE_MAX_SCHEMA,
            # zstd level 1 with delta-coded ids and byte-split floats: a third
            # faster to write than the default level, and smaller.
            compression="zstd",
            compression_level=1,
            use_dictionary=["lang"],
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
        self.pending: list[tuple[np.ndarray, ...]] = []
        self.n_pending = 0

    def __call__(self, sm: SentenceMax) -> None:
        if len(sm) == 0:
            return
        n = len(sm)
        self.pending.append(
            (
                sm.pair.astype(np.int32, copy=True),
                sm.lang.astype(np.int8, copy=True),
                sm.feature.astype(np.int32, copy=True),
                sm.value.astype(np.float32, copy=True),
                sm.n_tokens.astype(np.int32, copy=True),
                _or_missing(sm.peak_position, n).astype(np.int32, copy=True),
                _or_missing(sm.peak_token, n).astype(np.int32, copy=True),
            )
        )
        self.n_pending += n
        if self.n_pending >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        pair, lang, feature, value, n_tokens, peak_position, peak_token = (
            np.concatenate(parts) if len(self.pending) > 1 else parts[0]
            for parts in zip(*self.pending, strict=True)
        )
        self.pending, self.n_pending = [], 0
        bucket = (pair >> PAIR_BLOCK_SHIFT).astype(np.uint16)
        order = np.argsort(bucket, kind="stable")  # stable: feature order within a bucket
        edges = np.flatnonzero(np.diff(bucket[order])) + 1
        for lo, hi in itertools.pairwise([0, *edges.tolist(), len(order)]):
            rows = order[lo:hi]
            table = pa.table(
                {
                    "pair_id": pa.array(pair[rows], pa.int32()),
                    "lang": pa.DictionaryArray.from_arrays(
                        pa.array(lang[rows], pa.int8()), self.lang_dict
                    ),
                    "feature": pa.array(feature[rows], pa.int32()),
                    "max_activation": pa.array(value[rows], pa.float32()),
                    "n_tokens": pa.array(n_tokens[rows], pa.int32()),
                    "peak_position": pa.array(peak_position[rows], pa.int32()),
                    "peak_token_id": pa.array(peak_token[rows], pa.int32()),
                },
                schema=SENTENCE_MAX_SCHEMA,
            )
            self.writer.write_table(table, row_group_size=hi - lo)

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
