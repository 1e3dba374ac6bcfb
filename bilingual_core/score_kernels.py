"""The per-block maths of the scores, vectorised over features (README, "The scores").

Most functions take a :class:`SentenceMax` block (the non-zero per-sentence
maxima of some consecutive features) and returns one value per feature of the
block. Pairs where a feature is silent in every language all share the same
probabilities, so they are handled as one term multiplied by their count: the
cost is proportional to the number of non-zeros, never ``n_pairs x d_sae``.

Notation: ``m`` languages, ``n`` pairs, ``q_i,l[k]`` the maximum activation of
feature ``i`` over the real tokens of pair ``k`` in language ``l``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from . import fused, hypergeom
from .ranking import rank_features
from .sparse import SentenceMax

CHUNK_ROWS = 1 << 15
"""Rows per chunk of the JSD sums: the temporaries of a chunk stay in cache."""

RowMaker = Callable[[int, int], tuple[np.ndarray, np.ndarray]]
"""``(lo, hi) -> (P, log P)``, each (m, hi - lo), for rows ``lo .. hi - 1``."""


def _row_terms(p: np.ndarray, log_p: np.ndarray, *, positive: bool) -> np.ndarray:
    """Per row, ``sum_l P_l log(P_l / M)``; ``p``, ``log_p`` are (m, rows).

    ``positive``: every ``P`` is > 0 (softmax), so no ``0 log 0`` guard is needed.
    """
    m = p.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mean = np.log(p.sum(axis=0) / m)
        total = np.zeros(p.shape[1])
        for lang in range(m):
            term = log_p[lang] - log_mean
            term *= p[lang]
            if not positive:
                term[p[lang] == 0] = 0.0
            total += term
    return total


def _jsd_terms(
    row_feature: np.ndarray,
    p: np.ndarray,
    log_p: np.ndarray,
    n_features: int,
    *,
    positive: bool = False,
) -> np.ndarray:
    """Per feature, ``sum_rows sum_l P_l log(P_l / M)`` over the given rows; ``p``, ``log_p`` are (m, rows)."""
    return np.bincount(
        row_feature, weights=_row_terms(p, log_p, positive=positive), minlength=n_features
    )


def _chunked_jsd_terms(
    row_feature: np.ndarray, rows: RowMaker, n_features: int, *, positive: bool
) -> np.ndarray:
    """:func:`_jsd_terms` with the rows made and summed ``CHUNK_ROWS`` at a time
    (the same operations per row, so the same result)."""
    n_rows = len(row_feature)
    total = np.empty(n_rows)
    for lo in range(0, n_rows, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, n_rows)
        total[lo:hi] = _row_terms(*rows(lo, hi), positive=positive)
    return np.bincount(row_feature, weights=total, minlength=n_features)


def _jsd(
    row_feature: np.ndarray,
    rows: RowMaker,
    m: int,
    p_silent: np.ndarray,
    log_p_silent: np.ndarray,
    n_silent: np.ndarray,
    n_features: int,
    *,
    positive_hint: bool = False,
) -> np.ndarray:
    """``JSD = (1/m) sum_l sum_k P_l[k] log(P_l[k] / M[k])`` with ``M`` the mean of the ``P_l``.

    ``rows`` makes the probabilities on the pairs where some language fires
    (rows of ``row_feature``), a chunk at a time; ``p_silent`` /
    ``log_p_silent`` (m, features): what each
    language gives a pair where no language fires, and ``n_silent`` the number
    of such pairs per feature. Natural logarithm. This equals
    ``H(M) - mean_l H(P_l)``; the KL form is used because its terms vanish when
    the distributions agree, which keeps precision near 0.
    """
    total = _chunked_jsd_terms(row_feature, rows, n_features, positive=positive_hint)
    if positive_hint and np.isnan(total).any():  # a probability underflowed to 0
        total = _chunked_jsd_terms(row_feature, rows, n_features, positive=False)
    silent = _jsd_terms(np.arange(n_features), p_silent, log_p_silent, n_features) * n_silent
    return np.maximum((total + np.where(n_silent > 0, silent, 0.0)) / m, 0.0)


def softmax_jsd(block: SentenceMax) -> np.ndarray:
    """Jensen-Shannon divergence of ``P_i,l = softmax_k(q_i,l[k])`` across languages.

    ``log P_i,l[k] = q_i,l[k] - logZ_i,l`` with
    ``logZ = c + log(sum_{k fires} exp(q - c) + (n - c_l) exp(-c))``, ``c = max_k q``
    (log-sum-exp in float64, no rescaling). A silent pair has ``q = 0``.
    """
    n, f = block.n_pairs, block.n_features
    if n == 0:
        return np.full(f, np.nan)
    row_feature, _, dense = block.union
    qmax = block.max_per_feature_lang()  # (f, m); 0 where never fires, still >= every q
    counts = block.per_feature_lang()
    shifted = np.exp(block.value - qmax.reshape(-1)[block.group])
    fired_sum = block.per_feature_lang(shifted)
    log_z = (qmax + np.log(fired_sum + (n - counts) * np.exp(-qmax))).T  # (m, f)

    def rows(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        rf = row_feature[lo:hi]
        log_p = np.empty((block.m, hi - lo))
        for lang in range(block.m):
            np.subtract(dense[lang, lo:hi], log_z[lang][rf], out=log_p[lang])
        return np.exp(log_p), log_p

    n_silent = n - np.bincount(row_feature, minlength=f)
    return _jsd(
        row_feature,
        rows,
        block.m,
        np.exp(-log_z),
        -log_z,
        n_silent,
        f,
        positive_hint=True,
    )


def mass_jsd(block: SentenceMax) -> np.ndarray:
    """JSD of ``P_i,l[k] = q_i,l[k] / sum_k q_i,l[k]`` across languages.

    Scale-free and zeros stay zero (unlike the softmax, which gives a silent
    pair positive mass). NaN when the feature never fires in some language.
    """
    f, m = block.n_features, block.m
    row_feature, _, dense = block.union
    totals = block.value_sums().T  # (m, f)

    def rows(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        rf = row_feature[lo:hi]
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.empty((m, hi - lo))
            for lang in range(m):
                np.divide(dense[lang, lo:hi], totals[lang][rf], out=p[lang])
            return p, np.log(p)

    zeros = np.zeros((m, f))
    out = _jsd(row_feature, rows, m, zeros, zeros, np.zeros(f), f)
    return np.where((totals > 0).all(axis=0), out, np.nan)


def firing_counts(block: SentenceMax, threshold: float = 0.0) -> np.ndarray:
    """``#{k : q_i,l[k] > threshold}`` per feature and language: shape (f, m), int64."""
    if threshold <= 0:
        return block.per_feature_lang().astype(np.int64)
    return threshold_counts(block, np.array([threshold])).sizes[:, :, 0]


def _float32_floor(cuts: np.ndarray) -> np.ndarray:
    """The largest float32 <= each cut: for float32 ``q``, ``q > t`` iff ``q > floor32(t)``."""
    c32 = cuts.astype(np.float32)
    above = c32.astype(np.float64) > cuts
    c32[above] = np.nextafter(c32[above], np.float32(-np.inf))
    return c32


FLOAT_BUCKET_SHIFT = 16


def float_bucket(values: np.ndarray) -> np.ndarray:
    """Each value's bucket: the top 16 bits of its float32 bits (uint32), which
    rise with the value for non-negative floats."""
    return np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) >> FLOAT_BUCKET_SHIFT


def _level_table(sorted32: np.ndarray) -> np.ndarray:
    """Per 16-bit bucket (:func:`float_bucket`), the level of every value in it
    (how many cuts lie below), int32; -1 where a cut shares the bucket, and
    everywhere when a cut is negative (the bits fall with negative floats)."""
    n_buckets = 1 << (32 - FLOAT_BUCKET_SHIFT)
    if np.signbit(sorted32).any():
        return np.full(n_buckets, -1, np.int32)
    cut_bucket = float_bucket(sorted32)
    table = np.searchsorted(cut_bucket, np.arange(n_buckets, dtype=np.uint32), side="left")
    table = table.astype(np.int32)
    table[cut_bucket] = -1  # buckets holding a cut: searched value by value
    return table


def _levels(values: np.ndarray, sorted32: np.ndarray, dtype: type) -> np.ndarray:
    """``searchsorted(sorted32, values, "left")`` (how many cuts lie below each
    value) for positive float32 values (a SentenceMax's), as ``dtype``.

    For non-negative floats the top 16 bits of the float32 representation rise
    with the value, so every value of a 16-bit bucket without a cut has the
    level of that bucket: one table lookup per value, and a binary search only
    for the few values sharing a bucket with a cut (6x faster than searching
    every value).
    """
    if np.signbit(sorted32).any():
        return np.searchsorted(sorted32, values, side="left").astype(dtype)
    level = _level_table(sorted32).astype(dtype)[float_bucket(values)]
    unsure = np.flatnonzero(level < 0)
    level[unsure] = np.searchsorted(sorted32, values[unsure], side="left")
    return level


def _level_hist(group: np.ndarray, n_groups: int, level: np.ndarray, n_levels: int) -> np.ndarray:
    """(n_groups, n_levels): per group, how many of its levels equal each level."""
    return np.bincount(group * n_levels + level, minlength=n_groups * n_levels).reshape(
        n_groups, n_levels
    )


def _from_top(hist: np.ndarray) -> np.ndarray:
    """Level histograms (..., n_cuts + 1) -> counts above each cut index
    (``level > j``), (..., n_cuts)."""
    return np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1][..., 1:]


@dataclass(frozen=True)
class ThresholdCounts:
    """Firing counts of a block at several thresholds ``t_j`` (last axis)."""

    sizes: np.ndarray
    """(f, m, T): ``|F_l| = #{k : q_l[k] > t}``."""
    intersection: np.ndarray
    """(f, T): pairs where every language exceeds t."""
    union: np.ndarray
    """(f, T): pairs where some language exceeds t."""
    pair_overlap: dict[tuple[int, int], np.ndarray]
    """(f, T) per pair of languages: pairs where both exceed t."""


def threshold_counts(block: SentenceMax, cuts: np.ndarray) -> ThresholdCounts:
    """Count, for all thresholds at once, which sentences and pairs exceed them.

    Each value gets a level, the number of thresholds below it (one binary
    search per value); ``q > t_j`` iff its level exceeds ``j``'s rank. A pair is
    above ``t`` in every language iff the minimum of its levels is, in some
    language iff the maximum is. Per-group level histograms summed from the top
    give every count. For a ``compiled`` block the histograms come from the
    compiled kernel (``fused``, the same counts) when numba is there.
    """
    f, m = block.n_features, block.m
    cuts = np.asarray(cuts, dtype=np.float64)
    order = np.argsort(cuts, kind="stable")
    sorted32 = _float32_floor(cuts[order])
    t = len(cuts)
    pairs = list(combinations(range(m), 2))
    hists = None
    if block.compiled:
        table = _level_table(sorted32)
        hists = fused.level_histograms(block, table, FLOAT_BUCKET_SHIFT, sorted32)
    if hists is not None:
        sizes, inter, union, per_pair = hists
        overlap = {ab: inter if m == 2 else per_pair[j] for j, ab in enumerate(pairs)}
    else:
        # Levels are small integers: int8 (most runs have ~30 cuts) keeps the
        # per-row matrices an eighth of the int64 size.
        small = np.int8 if t < np.iinfo(np.int8).max else np.int64
        level = _levels(np.asarray(block.value, dtype=np.float32), sorted32, small)
        row_feature = block.union[0]
        levels = block.scatter_rows(level, 0, small)
        sizes = _level_hist(block.group, f * m, level, t + 1)
        inter = _level_hist(row_feature, f, levels.min(axis=0), t + 1)
        union = _level_hist(row_feature, f, levels.max(axis=0), t + 1)
        overlap = {
            (a, b): inter
            if m == 2
            else _level_hist(row_feature, f, np.minimum(levels[a], levels[b]), t + 1)
            for a, b in pairs
        }
    inverse = np.empty(t, dtype=np.int64)
    inverse[order] = np.arange(t)

    def counts(hist: np.ndarray) -> np.ndarray:
        return _from_top(hist)[..., inverse]

    return ThresholdCounts(
        counts(sizes).reshape(f, m, t),
        counts(inter),
        counts(union),
        {k: counts(v) for k, v in overlap.items()},
    )


def idaf(counts: np.ndarray, n_pairs: int) -> np.ndarray:
    """Inverse document activation frequency ``(m n) / #{(k, l) : q_i,l[k] > 0}``.

    ``counts`` is (f, m). NaN for a feature that never fires.
    """
    m = counts.shape[1]
    pooled = counts.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pooled > 0, (m * n_pairs) / pooled, np.nan)


def alive(counts: np.ndarray) -> np.ndarray:
    """A feature is alive when it fires in at least one sentence of every language."""
    return (counts > 0).all(axis=1)


@dataclass(frozen=True)
class Ranking:
    """The combined score ``bi = jsd + beta * idaf`` and its ranks."""

    bi: np.ndarray
    rank: np.ndarray
    """1 = best; 0 where the feature is not alive (written as null)."""
    beta: float
    k: int
    """The K actually used (capped at the number alive minus one)."""


def bilingual_score(
    jsd: np.ndarray,
    idaf_values: np.ndarray,
    is_alive: np.ndarray,
    *,
    k: int = 300,
    beta_sign: float = -1.0,
) -> Ranking:
    """The blog's bilingual interpretability score over all features.

    ``beta = -(jsd_(K) - jsd_min) / (idaf_max - idaf_min)`` over alive features,
    ``jsd_(K)`` the K-th smallest jsd (0-indexed), K capped at ``n_alive - 1``;
    ``beta = 0`` when every alive feature has the same idaf. ``bi = jsd + beta idaf``,
    lower is better, ranks over alive features ordered by ``(bi, feature id)``.
    ``beta_sign = +1`` gives the notebook's ``bi = jsd + |beta| idaf``.
    """
    n = len(jsd)
    alive_idx = np.flatnonzero(is_alive)
    if len(alive_idx) == 0:
        return Ranking(np.full(n, np.nan), np.zeros(n, dtype=np.int32), 0.0, 0)
    k_used = min(k, len(alive_idx) - 1)
    a_jsd = jsd[alive_idx]
    a_idaf = idaf_values[alive_idx]
    jsd_k = np.partition(a_jsd, k_used)[k_used]
    spread = a_idaf.max() - a_idaf.min()
    beta = 0.0 if spread <= 0 else -(jsd_k - a_jsd.min()) / spread
    beta = abs(beta) * (1.0 if beta_sign > 0 else -1.0)
    bi = jsd + beta * idaf_values
    rank = rank_features(bi, is_alive, higher_is_better=False)
    return Ranking(bi, rank, float(beta), int(k_used))


@dataclass(frozen=True)
class Coactivation:
    """Co-activation of each feature across languages at one threshold."""

    n_intersection: np.ndarray
    n_union: np.ndarray
    jaccard: np.ndarray
    conditional: np.ndarray
    """(f, m): ``|F_all| / |F_l|``, the share of language l's firing pairs where all fire."""
    log10_pvalue: np.ndarray
    """Hypergeometric ``log10 P(overlap >= observed)`` under independence."""
    sizes: np.ndarray | None = None
    """(f, m): ``|F_l|``, the pairs where language l exceeds the threshold."""


def coactivation(block: SentenceMax, threshold: float = 0.0) -> Coactivation:
    """Co-activation at one threshold; see :func:`coactivation_from_counts`."""
    return coactivation_from_counts(threshold_counts(block, np.array([threshold])), block.n_pairs)[
        0
    ]


def coactivation_from_counts(counts: ThresholdCounts, n_pairs: int) -> list[Coactivation]:
    """``F_l = {k : q_i,l[k] > t}``; Jaccard ``|∩ F_l| / |∪ F_l|`` and the rest, per threshold.

    The p-value is the hypergeometric upper tail of the overlap of two sets of
    the observed sizes drawn independently from the ``n`` pairs. With more than
    two languages it is the largest (least significant) of the pairwise
    p-values: every pair of languages must co-fire more than chance. Ratios
    are NaN where their denominator is 0.
    """
    out = []
    for j in range(counts.sizes.shape[2]):
        inter, union, size = counts.intersection[:, j], counts.union[:, j], counts.sizes[:, :, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            jaccard = np.where(union > 0, inter / union, np.nan)
            conditional = np.where(size > 0, inter[:, None] / size, np.nan)
        log10_p = np.full(len(inter), -np.inf)
        for (a, b), overlap in counts.pair_overlap.items():
            log10_p = np.maximum(
                log10_p, hypergeom.log10_sf(overlap[:, j], n_pairs, size[:, a], size[:, b])
            )
        out.append(Coactivation(inter, union, jaccard, conditional, log10_p, size))
    return out


def monolinguality(mean_activation: np.ndarray) -> np.ndarray:
    """Language specificity ``nu_i,l = mu_i,l - mean_{l' != l} mu_i,l'``.

    ``mean_activation`` is (f, m): ``mu_i,l``, the mean activation over all real
    tokens of language ``l``, zeros included.
    """
    m = mean_activation.shape[1]
    total = mean_activation.sum(axis=1, keepdims=True)
    others = (total - mean_activation) / (m - 1)
    return mean_activation - others


def evidence(log10_pvalue: np.ndarray, mass_jsd_values: np.ndarray, n_languages: int) -> np.ndarray:
    """The evidence score ``-log10 p * (1 - mass_jsd / ln m)``; higher is better.

    ``-log10 p`` (the co-activation p-value at ``t = 0``) grows with the number of
    pairs where the feature fires in every language beyond what two independent
    sets of the observed sizes would share: one pair of n gives ``log10 n``,
    thirty give tens. The factor is 1 when the per-pair maxima, normalised per
    language, are distributed alike over the pairs (same pairs, similar
    strengths; any overall scale per language cancels) and 0 at the largest mass
    JSD, ``ln m``. NaN when the feature never fires in some language.
    """
    with np.errstate(invalid="ignore"):
        alignment = np.clip(1.0 - np.asarray(mass_jsd_values) / np.log(n_languages), 0.0, 1.0)
        return np.maximum(-np.asarray(log10_pvalue, dtype=np.float64), 0.0) * alignment
