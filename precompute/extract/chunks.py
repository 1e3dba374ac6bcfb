"""Turn one extracted chunk into its staged tables (pairs, tokens, activations).

A chunk is a contiguous range of sentences of the shard, ordered by
``(pair, lang)``. Its real tokens are numbered in that order, position
ascending; ``ChunkActivations.token`` indexes them. Tokens get positions
``1..L`` and every sentence a BOS row at position 0 (the run format's tokens
table); activations are never stored for BOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from precompute.common.activations import ChunkActivations
from precompute.common.tokenization import TokenizedSentences
from precompute.extract.staging import CHUNK_ACTS_SCHEMA, CHUNK_PAIRS_SCHEMA, CHUNK_TOKENS_SCHEMA


@dataclass(frozen=True)
class ChunkLayout:
    """Which sentences a chunk holds: shard sentence ids ``lo..hi-1`` and their pair/lang."""

    lo: int
    hi: int
    pair: np.ndarray
    """(n_sentences,) global pair id of each sentence."""
    lang: np.ndarray
    """(n_sentences,) language index of each sentence."""

    @property
    def sentences(self) -> np.ndarray:
        return np.arange(self.lo, self.hi)


def chunk_layout(lo_pair: int, hi_pair: int, shard_start: int, n_langs: int) -> ChunkLayout:
    """Layout of the chunk holding global pairs ``[lo_pair, hi_pair)`` of a shard starting at ``shard_start``."""
    lo, hi = (lo_pair - shard_start) * n_langs, (hi_pair - shard_start) * n_langs
    pair = np.repeat(np.arange(lo_pair, hi_pair, dtype=np.int32), n_langs)
    lang = np.tile(np.arange(n_langs, dtype=np.int8), hi_pair - lo_pair)
    return ChunkLayout(lo, hi, pair, lang)


def chunk_tables(
    layout: ChunkLayout,
    tokens: TokenizedSentences,
    acts: ChunkActivations,
    texts: list[str],
    token_text: np.ndarray,
    bos_id: int,
    bos_text: str,
) -> dict[str, pa.Table]:
    """The chunk's ``pairs``, ``tokens`` and ``acts`` tables (lang as int8 index).

    ``token_text`` is the text of every real token of the shard in its
    sentence (``tokenization.token_texts``), aligned with ``tokens.ids``;
    BOS rows read ``bos_text``."""
    lengths = tokens.lengths[layout.lo : layout.hi]
    n_sent, total = len(lengths), int(lengths.sum())
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    tok_pair = np.repeat(layout.pair, lengths)
    tok_lang = np.repeat(layout.lang, lengths)
    tok_pos = (np.arange(total) - np.repeat(first, lengths) + 1).astype(np.int32)
    ids = tokens.ids[tokens.offsets[layout.lo] : tokens.offsets[layout.hi]]
    real_text = token_text[tokens.offsets[layout.lo] : tokens.offsets[layout.hi]]

    # Tokens with one BOS row (position 0) before each sentence.
    bos_at = first + np.arange(n_sent)
    real_at = np.arange(total) + np.repeat(np.arange(n_sent) + 1, lengths)
    n_rows = total + n_sent
    pair = np.empty(n_rows, np.int32)
    lang = np.empty(n_rows, np.int8)
    pos = np.empty(n_rows, np.int32)
    tid = np.empty(n_rows, np.int32)
    text = np.empty(n_rows, dtype=object)
    pair[bos_at], lang[bos_at], pos[bos_at], tid[bos_at] = layout.pair, layout.lang, 0, bos_id
    pair[real_at], lang[real_at], pos[real_at], tid[real_at] = tok_pair, tok_lang, tok_pos, ids
    text[bos_at], text[real_at] = bos_text, real_text
    token_table = pa.table(
        [pair, lang, pos, tid, pa.array(text, pa.string())], schema=CHUNK_TOKENS_SCHEMA
    )

    t = acts.token
    act_table = pa.table(
        [
            tok_pair[t],
            tok_lang[t],
            tok_pos[t],
            acts.feature.astype(np.int32),
            acts.value.astype(np.float32),
        ],
        schema=CHUNK_ACTS_SCHEMA,
    )
    pair_table = pa.table(
        [layout.pair, layout.lang, pa.array(texts, pa.string())], schema=CHUNK_PAIRS_SCHEMA
    )
    return {"pairs": pair_table, "tokens": token_table, "acts": act_table}


def chunk_stats(
    layout: ChunkLayout, tokens: TokenizedSentences, acts: ChunkActivations, languages: list[str]
) -> dict[str, dict[str, int] | int]:
    """Per-language token and truncation counts and the number of activations."""
    sl = slice(layout.lo, layout.hi)
    per_lang = {
        "n_tokens": tokens.lengths[sl],
        "n_truncated": tokens.truncated[sl].astype(np.int64),
        "n_tokens_dropped": tokens.dropped[sl],
    }
    stats: dict[str, dict[str, int] | int] = {
        name: {lang: int(values[layout.lang == i].sum()) for i, lang in enumerate(languages)}
        for name, values in per_lang.items()
    }
    stats["n_activations"] = len(acts.value)
    return stats
