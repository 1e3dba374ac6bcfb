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

    Within a block, rows are grouped by pair bucket (1024 pairs) so every row
    group spans few pairs and a reader filtering on one pair_id skips all row
    groups but one per feature block.
    """

    def __init__(self, handle: Any, languages: list[str]) -> None:
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

    def __call__(self, sm: SentenceMax) -> None:
        if len(sm) == 0:
            return
        bucket = (sm.pair >> PAIR_BLOCK_SHIFT).astype(np.uint16)
        order = np.argsort(bucket, kind="stable")
        edges = np.flatnonzero(np.diff(bucket[order])) + 1
        peak_position = _or_missing(sm.peak_position, len(sm))
        peak_token = _or_missing(sm.peak_token, len(sm))
        # One row group per bucket, gathered one at a time (the block is
        # scored meanwhile: a whole reordered copy would add to its peak memory).
        for lo, hi in itertools.pairwise([0, *edges.tolist(), len(order)]):
            rows = order[lo:hi]
            table = pa.table(
                {
                    "pair_id": pa.array(sm.pair[rows], pa.int32()),
                    "lang": pa.DictionaryArray.from_arrays(
                        pa.array(sm.lang[rows], pa.int8()), self.lang_dict
                    ),
                    "feature": pa.array(sm.feature[rows], pa.int32()),
                    "max_activation": pa.array(sm.value[rows], pa.float32()),
                    "n_tokens": pa.array(sm.n_tokens[rows], pa.int32()),
                    "peak_position": pa.array(peak_position[rows], pa.int32()),
                    "peak_token_id": pa.array(peak_token[rows], pa.int32()),
                },
                schema=SENTENCE_MAX_SCHEMA,
            )
            self.writer.write_table(table, row_group_size=hi - lo)

    def close(self) -> None:
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
