"""Peak-token evidence: which token carries each per-sentence maximum, and what
that says about a feature (docs/scores.md, "Translation evidence").

For every sentence where a feature fires, the scorer keeps the position of the
token holding its maximum and that token's id (``peak_position`` and
``peak_token_id`` in ``sentence_max.parquet``). A pair where the feature fires
in two languages is then

* *shared surface* when both peak tokens are the same string after case
  folding and whitespace stripping (``?``/``?``, ``Tom``/``Tom``): any model
  that has seen both scripts would co-fire there;
* *cross-token* otherwise (``want``/``quiero``).

Everything here is vectorised over the features of a block; nothing loops
over features in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from . import fused, hypergeom
from .sparse import SentenceMax

TOP_TUPLES = 5
"""Commonest peak-token tuples kept per feature (label and ``token_pairs``)."""
LABEL_SAMPLE_PAIRS = 4096
"""Per-language commonest peak tokens (the label of features that rarely fire
in every language) are counted over pairs with ids below this, a fixed sample."""
MINHASH_BINS = 32
"""Bins of the one-permutation MinHash sketch of a feature's peak positions."""
_EMPTY = np.iinfo(np.uint64).max
_POSITION_BITS = 16


@dataclass(frozen=True)
class PeakEvidence:
    """Per-feature peak-token evidence of one block (or, concatenated, a run)."""

    n_cross: np.ndarray
    """(f, P): co-firing pairs with different peak strings, per language pair."""
    n_shared: np.ndarray
    """(f, P): co-firing pairs with the same peak string."""
    cross_log10p: np.ndarray
    """(f, P): log10 P(X >= n_cross), X the overlap of two random sets of the
    languages' firing counts (hypergeometric, as the co-activation p-value)."""
    top_feature: np.ndarray
    """Global feature id of each kept peak-token tuple (pairs where every language fires)."""
    top_classes: np.ndarray
    """(rows, m): the token classes of each tuple."""
    top_count: np.ndarray
    """Pairs with that tuple."""
    lang_feature: np.ndarray
    """Global feature id of each per-language commonest peak token (sampled pairs)."""
    lang_index: np.ndarray
    lang_class: np.ndarray
    sketch: np.ndarray
    """(f, MINHASH_BINS) uint64: MinHash of the feature's (pair, lang, peak position) set."""
    n_repeated: np.ndarray
    """(f,): pairs where every language fires on different tokens whose tuple
    (``want/quiero``) occurs in at least two pairs; with ``n_every_cross``,
    how consistent the cross-token pairs are (random co-firing repeats none)."""
    n_every_cross: np.ndarray
    """(f,): pairs where every language fires and the peak strings are not all equal."""


def language_pairs(m: int) -> list[tuple[int, int]]:
    return list(combinations(range(m), 2))


def _top_per_group(group: np.ndarray, count: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest counts of each group (ties by index), group order."""
    order = np.lexsort((np.arange(len(count)), -count, group))
    g = group[order]
    start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, np.int64)
    rank = np.arange(len(g)) - np.repeat(start, np.diff(np.r_[start, len(g)]))
    return order[rank < k]


def _factorise_rows(codes: np.ndarray) -> np.ndarray:
    """One int64 code per column of ``codes`` (m, rows), equal iff the columns are
    equal, ordered as the columns are lexicographically (the fallback of
    :func:`_count_tuples` when a packed key would not fit 63 bits)."""
    out = codes[0].astype(np.int64)
    for row in codes[1:]:
        _, inverse = np.unique(out, return_inverse=True)
        out = inverse.astype(np.int64) * (int(row.max(initial=0)) + 1) + row
    return out


def _runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of each run of equal values of a sorted array."""
    if not len(sorted_keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new = np.empty(len(sorted_keys), dtype=bool)
    new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    start = np.flatnonzero(new)
    return start, np.diff(np.append(start, len(sorted_keys)))


def _bits(n_values: int) -> int:
    """Bits holding the values 0 .. n_values - 1."""
    return max(int(n_values - 1).bit_length(), 1)


def _count_tuples(
    feature: np.ndarray, tuples: np.ndarray, n_features: int, key_bits: int = 63
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ``(feature, tuple)`` of the rows, ordered by feature then tuple
    (lexicographic), with their counts: ``(feature, classes (m, u), count)``.

    ``feature`` is non-decreasing (the rows of a block), so one stable sort of a
    packed int64 key (feature, classes...) costs little more than the sort
    within each feature. Classes are first renumbered to those present
    (order-preserving) so the key fits in ``key_bits``; otherwise the columns
    are factorised.
    """
    m = tuples.shape[0]
    present_ids = np.zeros(0, np.int64)
    if tuples.size:
        present = np.bincount(tuples.reshape(-1)) > 0
        present_ids = np.flatnonzero(present)
        remap = np.cumsum(present) - 1
        tuples = remap[tuples]
    cb, fb = _bits(len(present_ids)), _bits(n_features)
    if m * cb + fb <= key_bits:
        key = feature.astype(np.int64) << (m * cb)
        for li in range(m):
            key |= tuples[li].astype(np.int64) << ((m - 1 - li) * cb)
        key.sort(kind="stable")
        start, count = _runs(key)
        uniq = key[start]
        mask = (1 << cb) - 1
        classes = np.stack([(uniq >> ((m - 1 - li) * cb)) & mask for li in range(m)])
        return uniq >> (m * cb), present_ids[classes], count
    code = _factorise_rows(tuples)
    span = int(code.max(initial=0)) + 1
    uniq, first, count = np.unique(
        feature.astype(np.int64) * span + code, return_index=True, return_counts=True
    )
    return uniq // span, present_ids[tuples[:, first]], count


def _top_per_group_sorted(group: np.ndarray, count: np.ndarray, k: int) -> np.ndarray:
    """:func:`_top_per_group` for a non-decreasing ``group``: one packed sort."""
    n = len(count)
    if not n:
        return np.zeros(0, np.int64)
    c_max = int(count.max())
    cb, ib = _bits(c_max + 1), _bits(n)
    if _bits(int(group[-1]) + 1) + cb + ib > 63:
        return _top_per_group(group, count, k)
    key = (group.astype(np.int64) << (cb + ib)) | ((c_max - count.astype(np.int64)) << ib)
    key |= np.arange(n, dtype=np.int64)
    key.sort(kind="stable")
    start, length = _runs(key >> (cb + ib))
    rank = np.arange(n) - np.repeat(start, length)
    return key[rank < k] & ((1 << ib) - 1)


def _mode_per_group(group: np.ndarray, count: np.ndarray) -> np.ndarray:
    """For a non-decreasing ``group``, the index of each group's largest count
    (the first on ties): ``_top_per_group(group, count, 1)`` without a sort."""
    if not len(count):
        return np.zeros(0, np.int64)
    start, length = _runs(group)
    best = np.repeat(np.maximum.reduceat(count, start), length)
    hits = np.flatnonzero(count == best)
    first = np.empty(len(hits), dtype=bool)
    first[0] = True
    hit_group = group[hits]
    np.not_equal(hit_group[1:], hit_group[:-1], out=first[1:])
    return hits[first]


def _minhash(block: SentenceMax) -> np.ndarray:
    """One-permutation MinHash with ``MINHASH_BINS`` bins of each feature's
    (pair, lang, peak position) keys (in-place arithmetic: one temporary); for a
    ``compiled`` block by the compiled kernel (``fused``, the same sketch)."""
    if block.compiled and len(block):
        sketch = fused.minhash(block, MINHASH_BINS, _POSITION_BITS, _EMPTY)
        if sketch is not None:
            return sketch
    f = block.n_features
    sketch = np.full(f * MINHASH_BINS, _EMPTY, dtype=np.uint64)
    if len(block):
        h = block.pair.astype(np.uint64)
        h *= np.uint64(block.m)
        h += block.lang.astype(np.uint64)
        h <<= np.uint64(_POSITION_BITS)
        h |= block.peak_position.astype(np.uint64)
        with np.errstate(over="ignore"):
            h *= np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
        slot = block.feature.astype(np.int64)
        slot -= block.feature_offset
        slot *= MINHASH_BINS
        slot += (h & np.uint64(MINHASH_BINS - 1)).astype(np.int64)
        h >>= np.uint64(5)
        np.minimum.at(sketch, slot, h)
    return sketch.reshape(f, MINHASH_BINS)


def peak_evidence(block: SentenceMax, norm_of_id: np.ndarray) -> PeakEvidence:
    """The peak-token evidence of every feature of a block (needs ``peak_token``)."""
    f, m, n = block.n_features, block.m, block.n_pairs
    assert block.peak_token is not None
    cls = norm_of_id[block.peak_token]
    row_feature = block.union[0]
    codes = block.scatter_rows(cls, -1, np.int32)
    counts = block.per_feature_lang()
    pairs = language_pairs(m)
    n_cross = np.zeros((f, len(pairs)), dtype=np.int64)
    n_shared = np.zeros((f, len(pairs)), dtype=np.int64)
    log10p = np.zeros((f, len(pairs)))
    for j, (a, b) in enumerate(pairs):
        both = codes[a] >= 0
        both &= codes[b] >= 0
        same = codes[a] == codes[b]
        same &= both
        n_both = np.bincount(row_feature[both], minlength=f)
        n_shared[:, j] = np.bincount(row_feature[same], minlength=f)
        n_cross[:, j] = n_both - n_shared[:, j]
        log10p[:, j] = hypergeom.log10_sf(n_cross[:, j], n, counts[:, a], counts[:, b])
    # Commonest tuples of peak classes over pairs where every language fires.
    every = (codes >= 0).all(axis=0)
    tuple_feature, classes, cnt = _count_tuples(row_feature[every], codes[:, every], f)
    del codes, every
    keep = _top_per_group_sorted(tuple_feature, cnt, TOP_TUPLES)
    distinct = (classes != classes[0]).any(axis=0)
    n_every_cross = np.bincount(tuple_feature, weights=cnt * distinct, minlength=f)
    n_repeated = np.bincount(tuple_feature, weights=cnt * (distinct & (cnt >= 2)), minlength=f)
    # Per-language commonest peak class over a fixed sample of pairs: the
    # entries are sorted by (feature, pair, lang), so the packed key is sorted
    # by feature already and a stable sort mostly merges short runs.
    sample = block.pair < LABEL_SAMPLE_PAIRS
    n_cls = int(norm_of_id.max(initial=0)) + 1
    lang_key = block.feature[sample].astype(np.int64)
    lang_key -= block.feature_offset
    lang_key *= m
    lang_key += block.lang[sample]
    lang_key *= n_cls
    lang_key += cls[sample]
    del sample
    lang_key.sort(kind="stable")
    start, lc = _runs(lang_key)
    lk = lang_key[start]
    del lang_key
    group = lk // n_cls
    best = _mode_per_group(group, lc)
    group = group[best]
    return PeakEvidence(
        n_cross,
        n_shared,
        log10p,
        (tuple_feature[keep] + block.feature_offset).astype(np.int32),
        classes[:, keep].T.astype(np.int32),
        cnt[keep].astype(np.int32),
        (group // m + block.feature_offset).astype(np.int32),
        (group % m).astype(np.int8),
        (lk[best] % n_cls).astype(np.int32),
        _minhash(block),
        n_repeated.astype(np.int64),
        n_every_cross.astype(np.int64),
    )


def concat(parts: list[PeakEvidence]) -> PeakEvidence:
    """The evidence of consecutive blocks as one."""
    return PeakEvidence(
        *(
            np.concatenate([getattr(p, name) for p in parts])
            for name in PeakEvidence.__dataclass_fields__
        )
    )


# --- whole-run quantities -------------------------------------------------

SIGNIFICANCE = 0.05
"""Family-wise level of the Bonferroni cut on ``cross_log10p`` (over ``d_sae`` features)."""
MOSTLY = 0.5
"""``cross_share`` above which co-firing is "mostly cross-token"."""
MIN_COFIRING = 2
"""Co-firing pairs needed before a feature is called shared-surface, or its
label is built from its co-firing tuples."""
FAMILY_CANDIDATES = 2000
"""Families are sought among this many best-ranked alive features."""
FAMILY_SIMILARITY = 0.6
"""Estimated Jaccard of the peak-position sets above which two features are one family."""
FAMILY_MIN_SENTENCES = 3
"""Features firing in fewer sentences stay alone (a coincidence of two is no family)."""


@dataclass(frozen=True)
class CrossSummary:
    """Per feature, the weakest language pair's peak-token counts (contract columns)."""

    n_cross: np.ndarray
    n_shared: np.ndarray
    cross_share: np.ndarray
    cross_log10p: np.ndarray
    is_translation: np.ndarray
    is_shared_surface: np.ndarray
    translation: np.ndarray
    cross_repeated: np.ndarray
    """Share of the cross-token pairs (every language firing) whose token tuple repeats."""


def significance_cut(d_sae: int) -> float:
    """``log10`` p-value a translation feature must reach: Bonferroni over the dictionary."""
    return float(np.log10(SIGNIFICANCE / max(d_sae, 1)))


def summarise(
    ev: PeakEvidence, alive: np.ndarray, alignment: np.ndarray | None = None
) -> CrossSummary:
    """Weakest language pair per feature (largest ``cross_log10p``, then fewest
    cross-token pairs), the flags and the default score ``translation``.

    With ``s = cross_share * -cross_log10p * alignment * (1 + cross_repeated) / 2``
    (``alignment`` the evidence score's ``1 - mass_jsd / ln m``, 1 when not
    given; ``cross_repeated`` the share of cross-token pairs whose token tuple
    occurs in another pair too, 0 for a feature co-firing on unrelated tokens
    each time), a translation
    feature scores ``1 + s`` and every other feature ``s / (1 + s)``, below 1:
    each tier keeps the order of ``s`` and every translation feature ranks
    above every other feature.
    """
    f = len(ev.n_cross)
    # The least significant pair; among equal p-values, the one with fewer cross-token pairs.
    pick = np.argmax(ev.cross_log10p - 1e-9 * ev.n_cross, axis=1)
    rows = np.arange(f)
    n_cross = ev.n_cross[rows, pick]
    n_shared = ev.n_shared[rows, pick]
    log10p = ev.cross_log10p[rows, pick]
    co = n_cross + n_shared
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(co > 0, n_cross / np.maximum(co, 1), np.nan)
    cut = significance_cut(f)
    is_translation = alive & (co > 0) & (share > MOSTLY) & (log10p <= cut)
    is_shared = alive & (co >= MIN_COFIRING) & (share < MOSTLY)
    product = np.nan_to_num(share, nan=0.0) * np.maximum(-log10p, 0.0)
    if alignment is not None:
        product = product * np.nan_to_num(alignment, nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        repeated = np.where(
            ev.n_every_cross > 0, ev.n_repeated / np.maximum(ev.n_every_cross, 1), np.nan
        )
    product = product * (1.0 + np.nan_to_num(repeated, nan=0.0)) / 2.0
    translation = np.where(is_translation, 1.0 + product, product / (1.0 + product))
    translation = np.where(alive, translation, np.nan)
    return CrossSummary(
        n_cross, n_shared, share, log10p, is_translation, is_shared, translation, repeated
    )


def labels(
    ev: PeakEvidence,
    summary: CrossSummary,
    display: list[str],
    languages: list[str],
    n_features: int,
) -> tuple[list[str], list[str]]:
    """Per feature, a short deterministic ``label`` and ``token_pairs`` (its
    commonest peak-token tuples with their pair counts).

    * shared-surface features: their commonest same-token tuple, ``? (same token)``;
    * features with at least ``MIN_COFIRING`` co-firing pairs: their two commonest
      cross-token tuples, ``want/quiero · like/gusta``;
    * others: each language's commonest peak token, ``en: night · es: noche``.
    """
    m = len(languages)
    # Per kept tuple, once: its text and whether its strings are all equal.
    texts = ["/".join(display[c] for c in row) for row in ev.top_classes.tolist()]
    all_same = (ev.top_classes == ev.top_classes[:, :1]).all(axis=1).tolist()
    tuples: list[list[tuple[str, bool, int, int]]] = [[] for _ in range(n_features)]
    for feat, text, same_tuple, first, count in zip(
        ev.top_feature.tolist(),
        texts,
        all_same,
        ev.top_classes[:, 0].tolist(),
        ev.top_count.tolist(),
        strict=True,
    ):
        tuples[feat].append((text, same_tuple, first, count))
    per_lang: list[dict[int, int]] = [{} for _ in range(n_features)]
    for feat, li, c in zip(
        ev.lang_feature.tolist(), ev.lang_index.tolist(), ev.lang_class.tolist(), strict=True
    ):
        per_lang[feat][li] = c
    co = (summary.n_cross + summary.n_shared).tolist()
    shared_surface = summary.is_shared_surface.tolist()
    out_label, out_pairs = [], []
    for i in range(n_features):
        rows = tuples[i]
        out_pairs.append(" · ".join(f"{text} ×{k}" for text, _, _, k in rows))
        same = [first for _, is_same, first, _ in rows if is_same]
        cross = [text for text, is_same, _, _ in rows if not is_same]
        if shared_surface[i] and same:
            out_label.append(f"{display[same[0]]} (same token)")
        elif co[i] >= MIN_COFIRING and cross:
            out_label.append(" · ".join(cross[:2]))
        elif per_lang[i]:
            out_label.append(
                " · ".join(
                    f"{lang}: {display[per_lang[i][li]] if li in per_lang[i] else '–'}"
                    for li, lang in enumerate(languages[:m])
                )
            )
        else:
            out_label.append("")
    return out_label, out_pairs


def _similar_pairs(sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``i < j`` of ``sig`` (rows, MINHASH_BINS) whose estimated Jaccard,
    equal filled bins over bins filled in either, is at least ``FAMILY_SIMILARITY``.

    Only rows sharing a value in some bin can reach it, so the candidates come
    from one sort of the (bin, value) keys instead of comparing every row with
    every other; the similarity is then computed exactly for those.
    """
    filled = sig != _EMPTY
    row, col = np.nonzero(filled)  # row-major: rows ascending within a key
    key = (col.astype(np.uint64) << np.uint64(59)) | sig[row, col]
    order = np.argsort(key, kind="stable")
    start, length = _runs(key[order])
    multi = length > 1
    start, length = start[multi], length[multi]
    # Every pair of members of each run of equal keys, smaller row first.
    within = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    member = np.repeat(start, length) + within
    n_after = np.repeat(length, length) - within - 1
    first = np.repeat(member, n_after)
    second = first + 1 + np.arange(n_after.sum()) - np.repeat(np.cumsum(n_after) - n_after, n_after)
    i, j = row[order[first]], row[order[second]]
    n_rows = len(sig)
    pair, equal = np.unique(i.astype(np.int64) * n_rows + j, return_counts=True)
    i, j = pair // n_rows, pair % n_rows
    either = (filled[i] | filled[j]).sum(axis=1)
    keep = equal / np.maximum(either, 1) >= FAMILY_SIMILARITY
    return i[keep], j[keep]


def families(
    sketch: np.ndarray, rank: np.ndarray, n_sentences: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(family, family_size)`` per feature.

    Rule: two of the ``FAMILY_CANDIDATES`` best-ranked features (``rank`` > 0,
    1 = best) that each fire in at least ``FAMILY_MIN_SENTENCES`` sentences are
    linked when the estimated Jaccard similarity of their sets of
    (pair, language, peak position) is at least ``FAMILY_SIMILARITY``;
    families are the connected components, named by their best-ranked member.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = len(rank)
    family = np.arange(f, dtype=np.int32)
    size = np.ones(f, dtype=np.int32)
    ranked = np.flatnonzero((rank > 0) & (n_sentences >= FAMILY_MIN_SENTENCES))
    cand = ranked[np.argsort(rank[ranked], kind="stable")][:FAMILY_CANDIDATES]
    if len(cand) < 2:
        return family, size
    src_a, dst_a = _similar_pairs(sketch[cand])
    graph = coo_matrix((np.ones(len(src_a)), (src_a, dst_a)), shape=(len(cand), len(cand)))
    _, comp = connected_components(graph, directed=False)
    # cand is in rank order, so the first member of each component is its best.
    first = np.full(comp.max() + 1, -1, dtype=np.int64)
    for_order = np.arange(len(cand))[::-1]
    first[comp[for_order]] = for_order
    family[cand] = cand[first[comp]].astype(np.int32)
    size[cand] = np.bincount(comp)[comp].astype(np.int32)
    return family, size
