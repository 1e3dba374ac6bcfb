"""Bilingual scores, vectorised over features (DESIGN.md section 4).

Each function takes a :class:`SentenceMax` block (the non-zero per-sentence
maxima of some consecutive features) and returns one value per feature of the
block. Pairs where a feature is silent in every language all share the same
probabilities, so they are handled as one term multiplied by their count: the
cost is proportional to the number of non-zeros, never ``n_pairs x d_sae``.

Notation: ``m`` languages, ``n`` pairs, ``q_i,l[k]`` the maximum activation of
feature ``i`` over the real tokens of pair ``k`` in language ``l``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from .sparse import SentenceMax


def _jsd_from_log_probs(
    row_feature: np.ndarray,
    log_p_rows: np.ndarray,
    log_p_silent: np.ndarray,
    n_silent: np.ndarray,
    n_features: int,
) -> np.ndarray:
    """``JSD = (1/m) sum_l sum_k P_l[k] log(P_l[k] / M[k])`` with ``M`` the mean of the ``P_l``.

    ``log_p_rows`` (rows, m): log-probabilities on the pairs where some language
    fires (``-inf`` for zero probability); ``log_p_silent`` (features, m): the
    log-probability every language gives a pair where no language fires, and
    ``n_silent`` (features,) the number of such pairs. Natural logarithm; the
    identity ``JSD = H(M) - mean_l H(P_l)`` holds, this form is used because its
    terms vanish when the distributions agree, so it keeps precision near 0.
    """
    m = log_p_rows.shape[1]

    def kl_terms(log_p: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.exp(log_p)
            log_m = np.log(p.mean(axis=1, keepdims=True))
            terms = np.where(p > 0, p * (log_p - log_m), 0.0)
        return terms.sum(axis=1)

    per_row = kl_terms(log_p_rows)
    total = np.bincount(row_feature, weights=per_row, minlength=n_features)
    silent = kl_terms(log_p_silent) * n_silent
    out = (total + np.where(n_silent > 0, silent, 0.0)) / m
    return np.maximum(out, 0.0)


def softmax_jsd(block: SentenceMax) -> np.ndarray:
    """Jensen-Shannon divergence of ``P_i,l = softmax_k(q_i,l[k])`` across languages.

    ``log P_i,l[k] = q_i,l[k] - logZ_i,l`` with
    ``logZ = c + log(sum_{k fires} exp(q - c) + (n - c_l) exp(-c))``, ``c = max_k q``
    (log-sum-exp in float64, no rescaling). A silent pair has ``q = 0``.
    """
    n, f = block.n_pairs, block.n_features
    if n == 0:
        return np.full(f, np.nan)
    row_feature, _, dense = block.union_rows()
    q = block.value.astype(np.float64)
    qmax = block.max_per_feature_lang()  # (f, m); 0 where never fires, still >= every q
    counts = block.per_feature_lang()
    shifted = np.exp(q - qmax[block.local_feature, block.lang])
    fired_sum = block.per_feature_lang(shifted)
    log_z = qmax + np.log(fired_sum + (n - counts) * np.exp(-qmax))
    log_p_rows = dense - log_z[row_feature]
    log_p_silent = -log_z
    n_silent = n - np.bincount(row_feature, minlength=f)
    return _jsd_from_log_probs(row_feature, log_p_rows, log_p_silent, n_silent, f)


def mass_jsd(block: SentenceMax) -> np.ndarray:
    """JSD of ``P_i,l[k] = q_i,l[k] / sum_k q_i,l[k]`` across languages.

    Scale-free and zeros stay zero (unlike the softmax, which gives a silent
    pair positive mass). NaN when the feature never fires in some language.
    """
    f = block.n_features
    row_feature, _, dense = block.union_rows()
    totals = block.per_feature_lang(block.value.astype(np.float64))  # (f, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p_rows = np.log(dense) - np.log(totals[row_feature])
    log_p_silent = np.full((f, block.m), -np.inf)
    out = _jsd_from_log_probs(row_feature, log_p_rows, log_p_silent, np.zeros(f), f)
    return np.where((totals > 0).all(axis=1), out, np.nan)


def firing_counts(block: SentenceMax, threshold: float = 0.0) -> np.ndarray:
    """``#{k : q_i,l[k] > threshold}`` per feature and language: shape (f, m), int64."""
    mask = None if threshold <= 0 else block.value > threshold
    return block.per_feature_lang(mask=mask).astype(np.int64)


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
    rank = np.zeros(n, dtype=np.int32)
    alive_idx = np.flatnonzero(is_alive)
    if len(alive_idx) == 0:
        return Ranking(np.full(n, np.nan), rank, 0.0, 0)
    k_used = min(k, len(alive_idx) - 1)
    a_jsd = jsd[alive_idx]
    a_idaf = idaf_values[alive_idx]
    jsd_k = np.partition(a_jsd, k_used)[k_used]
    spread = a_idaf.max() - a_idaf.min()
    beta = 0.0 if spread <= 0 else -(jsd_k - a_jsd.min()) / spread
    beta = abs(beta) * (1.0 if beta_sign > 0 else -1.0)
    bi = jsd + beta * idaf_values
    order = alive_idx[np.lexsort((alive_idx, bi[alive_idx]))]
    rank[order] = np.arange(1, len(order) + 1, dtype=np.int32)
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


def coactivation(block: SentenceMax, threshold: float = 0.0) -> Coactivation:
    """``F_l = {k : q_i,l[k] > t}``; Jaccard ``|∩ F_l| / |∪ F_l|`` and the rest.

    The p-value is the hypergeometric upper tail of the overlap of two sets of
    the observed sizes drawn independently from the ``n`` pairs. With more than
    two languages it is the largest (least significant) of the pairwise
    p-values: every pair of languages must co-fire more than chance.
    All ratios are NaN where their denominator is 0.
    """
    f, m, n = block.n_features, block.m, block.n_pairs
    row_feature, _, dense = block.union_rows()
    above = dense > threshold
    any_above = above.any(axis=1)
    n_union = np.bincount(row_feature[any_above], minlength=f)
    n_inter = np.bincount(row_feature[above.all(axis=1)], minlength=f)
    sizes = firing_counts(block, threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        jaccard = np.where(n_union > 0, n_inter / n_union, np.nan)
        conditional = np.where(sizes > 0, n_inter[:, None] / sizes, np.nan)
    log10_p = np.full(f, -np.inf) if m >= 2 else np.zeros(f)
    for a, b in combinations(range(m), 2):
        both = np.bincount(row_feature[above[:, a] & above[:, b]], minlength=f)
        logp = stats.hypergeom.logsf(both - 1, n, sizes[:, a], sizes[:, b]) / np.log(10)
        logp = np.where((sizes[:, a] == 0) | (sizes[:, b] == 0), 0.0, np.minimum(logp, 0.0))
        log10_p = np.maximum(log10_p, logp)
    return Coactivation(n_inter, n_union, jaccard, conditional, log10_p)


def monolinguality(mean_activation: np.ndarray) -> np.ndarray:
    """Language specificity ``nu_i,l = mu_i,l - mean_{l' != l} mu_i,l'``.

    ``mean_activation`` is (f, m): ``mu_i,l``, the mean activation over all real
    tokens of language ``l``, zeros included.
    """
    m = mean_activation.shape[1]
    total = mean_activation.sum(axis=1, keepdims=True)
    others = (total - mean_activation) / (m - 1)
    return mean_activation - others
