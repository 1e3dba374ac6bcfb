"""Per-sentence maxima of SAE features in sparse form.

The scores (docs/scores.md) depend on the activations only through the
per-sample maximum ``q_i,l[k] = max_p a[k,l,p,i]``. Almost all of these are
zero, so they are kept as parallel arrays of the non-zero entries, sorted by
``(feature, pair, language)``. Every score is computed from them in time
proportional to the number of non-zeros.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import fused


@dataclass
class SentenceMax:
    """Non-zero per-sentence maxima, sorted by ``(feature, pair, lang)``.

    Covers features ``feature_offset .. feature_offset + n_features - 1``;
    ``feature`` holds global feature ids.
    """

    feature: np.ndarray
    """int32, global feature id."""
    pair: np.ndarray
    """int32, pair id in ``0 .. n_pairs - 1``."""
    lang: np.ndarray
    """int8, index into ``languages``."""
    value: np.ndarray
    """float32 > 0: ``q_i,l[k]``."""
    n_tokens: np.ndarray
    """int32: number of tokens of the sentence where the feature fires."""
    n_pairs: int
    languages: list[str]
    feature_offset: int
    n_features: int
    peak_position: np.ndarray | None = None
    """int32: position of the token carrying the maximum (the first one on ties);
    None when the producer did not track it."""
    peak_token: np.ndarray | None = None
    """int32: token id at ``peak_position`` (filled in by the scorer from tokens.parquet)."""
    compiled: bool = field(default=False, compare=False)
    """Whether the per-block work may use the compiled kernels (``fused``: the
    same numbers; set by the reading for runs large enough to import numba)."""
    union_slot: np.ndarray = field(init=False, repr=False, compare=False)
    """Each entry's flat index ``lang * rows + row`` into (m, union rows) matrices
    (set with :attr:`union`)."""

    @property
    def m(self) -> int:
        return len(self.languages)

    def __len__(self) -> int:
        return len(self.value)

    @property
    def local_feature(self) -> np.ndarray:
        """Feature ids relative to this block (0 .. n_features - 1), int64."""
        return self.feature.astype(np.int64) - self.feature_offset

    @cached_property
    def group(self) -> np.ndarray:
        """Each entry's (feature, language) cell, ``local_feature * m + lang``, int64
        (computed once per block: every per-(feature, language) sum uses it)."""
        out = self.local_feature
        out *= self.m
        out += self.lang
        return out

    def per_feature_lang(
        self, weights: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Sum ``weights`` (default 1) per (feature, language): shape (n_features, m)."""
        if weights is None and mask is None:
            return self._counts.copy()
        idx = self.group
        w = weights
        if mask is not None:
            idx = idx[mask]
            w = None if weights is None else weights[mask]
        counts = np.bincount(idx, weights=w, minlength=self.n_features * self.m)
        return counts.reshape(self.n_features, self.m)

    @cached_property
    def _counts(self) -> np.ndarray:
        return np.bincount(self.group, minlength=self.n_features * self.m).reshape(
            self.n_features, self.m
        )

    def max_per_feature_lang(self) -> np.ndarray:
        """``max_k q_i,l[k]`` (0 where the feature never fires): shape (n_features, m)."""
        return self._max.copy()

    @cached_property
    def _max(self) -> np.ndarray:
        out = np.zeros(self.n_features * self.m, dtype=np.float64)
        np.maximum.at(out, self.group, self.value.astype(np.float64))
        return out.reshape(self.n_features, self.m)

    def token_counts(self) -> np.ndarray:
        """``n_tokens`` summed per (feature, language), float64: shape (n_features, m)."""
        return self._token_counts.copy()

    @cached_property
    def _token_counts(self) -> np.ndarray:
        return self.per_feature_lang(self.n_tokens.astype(np.float64))

    def value_sums(self) -> np.ndarray:
        """The values summed per (feature, language), float64: shape (n_features, m)."""
        return self._value_sums.copy()

    @cached_property
    def _value_sums(self) -> np.ndarray:
        return self.per_feature_lang(self.value)

    def prepare(self) -> None:
        """Make the arrays every score of the block shares (:attr:`union`,
        :attr:`group`, the per-(feature, language) counts, maxima and sums) now,
        in one compiled pass when the block is ``compiled`` (the same arrays);
        otherwise each is made by numpy on first use."""
        if not self.compiled or not len(self) or "union" in self.__dict__:
            return
        made = fused.block_arrays(self)
        if made is None:
            return
        row_feature, row_of_entry, self.union_slot, dense, group, cells = made
        shape = (self.n_features, self.m)
        self.__dict__.update(
            union=(row_feature, row_of_entry, dense),
            group=group,
            _counts=cells[0].astype(np.int64).reshape(shape),
            _max=cells[1].reshape(shape),
            _token_counts=cells[2].reshape(shape),
            _value_sums=cells[3].reshape(shape),
        )

    def lang_max(self) -> np.ndarray:
        """(m,): the largest value of each language over all features and pairs."""
        out = np.zeros(self.m, dtype=np.float64)
        np.maximum.at(out, self.lang, self.value.astype(np.float64))
        return out

    @cached_property
    def union(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entries grouped by (feature, pair): the pairs where some language fires.

        Computed once per block and shared by every score. Returns ``(row_feature, row_of_entry, dense)``: the local feature of each
        union row, the union row of each entry, and a (rows, m) float64 matrix
        of ``q`` with zeros where a language is silent.
        """
        n = len(self)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((self.m, 0))
        new = np.empty(n, dtype=bool)
        new[0] = True
        new[1:] = (self.feature[1:] != self.feature[:-1]) | (self.pair[1:] != self.pair[:-1])
        row_of_entry = np.cumsum(new) - 1
        n_rows = int(row_of_entry[-1]) + 1
        self.union_slot = self.lang.astype(np.int64)
        self.union_slot *= n_rows
        self.union_slot += row_of_entry
        dense = np.zeros((self.m, n_rows), dtype=np.float64)
        dense.reshape(-1)[self.union_slot] = self.value
        row_feature = self.feature[new].astype(np.int64)
        row_feature -= self.feature_offset
        return row_feature, row_of_entry, dense

    def scatter_rows(self, values: np.ndarray, fill: object, dtype: type) -> np.ndarray:
        """An (m, union rows) matrix holding each entry's ``values`` at its
        (language, union row), ``fill`` elsewhere."""
        row_feature = self.union[0]
        out = np.full((self.m, len(row_feature)), fill, dtype=dtype)
        if len(self):
            out.reshape(-1)[self.union_slot] = values
        return out

    def blocks(self, block_features: int) -> Iterator[SentenceMax]:
        """Split into blocks of at most ``block_features`` consecutive features."""
        for start in range(0, self.n_features, block_features):
            count = min(block_features, self.n_features - start)
            yield self.features(self.feature_offset + start, count)

    def features(self, first: int, count: int) -> SentenceMax:
        """The entries of global features ``first .. first + count - 1`` (views)."""
        lo, hi = np.searchsorted(self.feature, [first, first + count])
        return SentenceMax(
            self.feature[lo:hi],
            self.pair[lo:hi],
            self.lang[lo:hi],
            self.value[lo:hi],
            self.n_tokens[lo:hi],
            self.n_pairs,
            self.languages,
            first,
            count,
            None if self.peak_position is None else self.peak_position[lo:hi],
            None if self.peak_token is None else self.peak_token[lo:hi],
        )

    def scaled(self, factor_per_lang: np.ndarray) -> SentenceMax:
        """A copy with each language's values multiplied by its factor."""
        value = (self.value.astype(np.float64) * factor_per_lang[self.lang]).astype(np.float32)
        return SentenceMax(
            self.feature,
            self.pair,
            self.lang,
            value,
            self.n_tokens,
            self.n_pairs,
            self.languages,
            self.feature_offset,
            self.n_features,
            self.peak_position,
            self.peak_token,
        )


def sentence_max_from_dense(
    q: np.ndarray, languages: list[str], n_tokens: np.ndarray | None = None
) -> SentenceMax:
    """Build a SentenceMax from a dense ``(n_pairs, m, d_sae)`` array of maxima.

    Used by tests and by the reference implementations; the pipeline never
    holds a dense array.
    """
    n_pairs, m, d_sae = q.shape
    if m != len(languages):
        raise ValueError(f"q has {m} languages, expected {len(languages)}")
    if (q < 0).any():
        raise ValueError("per-sentence maxima must be >= 0")
    # Order entries by (feature, pair, lang).
    qt = np.transpose(q, (2, 0, 1))  # (d_sae, n_pairs, m)
    f, k, lang = np.nonzero(qt > 0)
    tokens = (
        np.ones(len(f), np.int32) if n_tokens is None else n_tokens.transpose(2, 0, 1)[f, k, lang]
    )
    return SentenceMax(
        f.astype(np.int32),
        k.astype(np.int32),
        lang.astype(np.int8),
        qt[f, k, lang].astype(np.float32),
        tokens.astype(np.int32),
        n_pairs,
        list(languages),
        0,
        d_sae,
    )


def merge_sentence_max(a: SentenceMax, b: SentenceMax) -> SentenceMax:
    """Element-wise max of two SentenceMax over the same features (token counts add)."""
    feature = np.concatenate([a.feature, b.feature])
    pair = np.concatenate([a.pair, b.pair])
    lang = np.concatenate([a.lang, b.lang])
    value = np.concatenate([a.value, b.value])
    n_tok = np.concatenate([a.n_tokens, b.n_tokens])
    order = np.lexsort((lang, pair, feature))
    feature, pair, lang, value, n_tok = (
        feature[order],
        pair[order],
        lang[order],
        value[order],
        n_tok[order],
    )
    new = np.ones(len(value), dtype=bool)
    if len(value):
        new[1:] = (np.diff(feature) != 0) | (np.diff(pair) != 0) | (np.diff(lang) != 0)
    starts = np.flatnonzero(new)
    if len(starts) == 0:
        return a
    return SentenceMax(
        feature[starts],
        pair[starts],
        lang[starts],
        np.maximum.reduceat(value, starts),
        np.add.reduceat(n_tok, starts).astype(np.int32),
        a.n_pairs,
        a.languages,
        a.feature_offset,
        a.n_features,
    )
