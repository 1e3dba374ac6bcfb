"""Token embeddings for the tiny model in which translations look alike.

A randomly initialised model has no bilingual features to find. To give the
tiny preset (and the bundled demo run) something real to show, translation-
equivalent tokens of the bundled parallel corpus share part of their
embedding, and tokens used in only one language share a language direction.

Alignment is the Dice coefficient over sentence pairs: with ``df_en(a)`` the
number of pairs whose English side contains token ``a``, ``df_es(b)``
likewise, and ``c(a, b)`` the pairs containing both,
``dice(a, b) = 2 c(a, b) / (df_en(a) + df_es(b))``. ``a`` and ``b`` are aligned
when each is the other's best match, ``c >= 2`` and ``dice >= 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_DICE = 0.5
MIN_PAIRS = 2
MONOLINGUAL_SHARE = 0.9


@dataclass(frozen=True)
class AlignedVocab:
    """Per token id: its translation group (-1: none) and its language (-1: both/none)."""

    group: np.ndarray
    language: np.ndarray
    """0 = only in the first language's sentences, 1 = only in the second, -1 otherwise."""
    frequency: np.ndarray
    """Occurrences of each token in the corpus (both languages)."""

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0


def _presence(sentences: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """(n_pairs, vocab) 0/1 matrix: token present in the pair's sentence."""
    matrix = np.zeros((len(sentences), vocab_size), dtype=np.float32)
    for k, ids in enumerate(sentences):
        matrix[k, ids] = 1.0
    return matrix


def align_tokens(
    first: list[np.ndarray], second: list[np.ndarray], vocab_size: int
) -> AlignedVocab:
    """Mutual-best Dice alignment of the tokens of two aligned sentence lists."""
    x, y = _presence(first, vocab_size), _presence(second, vocab_size)
    df_x, df_y = x.sum(axis=0), y.sum(axis=0)
    both = x.T @ y
    denom = df_x[:, None] + df_y[None, :]
    dice = np.divide(2 * both, denom, out=np.zeros_like(both), where=denom > 0)
    best_y = dice.argmax(axis=1)
    best_x = dice.argmax(axis=0)
    a = np.arange(vocab_size)
    ok = (best_x[best_y] == a) & (dice[a, best_y] >= MIN_DICE) & (both[a, best_y] >= MIN_PAIRS)
    group = np.full(vocab_size, -1, dtype=np.int64)
    for g, (i, j) in enumerate(zip(a[ok], best_y[ok], strict=True)):
        group[i] = g
        group[j] = g
    share = np.divide(
        df_x, df_x + df_y, out=np.full(vocab_size, 0.5, np.float32), where=(df_x + df_y) > 0
    )
    language = np.where(
        share >= MONOLINGUAL_SHARE, 0, np.where(share <= 1 - MONOLINGUAL_SHARE, 1, -1)
    )
    language[(df_x + df_y) == 0] = -1
    frequency = np.bincount(np.concatenate(first + second), minlength=vocab_size).astype(np.int64)
    return AlignedVocab(group, language, frequency)


def aligned_embeddings(
    aligned: AlignedVocab,
    d_model: int,
    rng: np.random.Generator,
    own: float = 0.6,
    shared: float = 0.8,
    lang: float = 0.5,
) -> np.ndarray:
    """(vocab, d_model) unit-norm rows: ``own`` * a token's random vector +
    ``shared`` * its group's vector + ``lang`` * its language's vector."""
    vocab = len(aligned.group)

    def unit(n: int) -> np.ndarray:
        v = rng.standard_normal((n, d_model))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    tokens, groups, langs = unit(vocab), unit(max(aligned.n_groups, 1)), unit(2)
    emb = own * tokens
    has_group = aligned.group >= 0
    emb[has_group] += shared * groups[aligned.group[has_group]]
    has_lang = aligned.language >= 0
    emb[has_lang] += lang * langs[aligned.language[has_lang]]
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
