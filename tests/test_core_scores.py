"""Every score of docs/scores.md and the README against small cases computed by hand.

The expected numbers are written out as exact expressions (with their decimal
value in a comment); none is copied from the implementation.
"""

from __future__ import annotations

from math import comb, exp, log, log10

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from bilingual_core import (
    Manifest,
    RunWriter,
    SentenceMax,
    hypergeom,
    score_run,
    sentence_max_from_dense,
)
from bilingual_core import score_kernels as scores
from bilingual_core.schema import (
    ACTIVATIONS,
    ACTIVATIONS_SCHEMA,
    COACTIVATION,
    CURVES,
    PAIRS,
    PAIRS_SCHEMA,
    THRESHOLDS,
    TOKENS,
    TOKENS_SCHEMA,
)
from bilingual_core.stats import activation_frequency_curves, curve_counts

LN2, LN3 = log(2), log(3)
# q is stored as float32 (the contract's activation type), so an irrational q such as
# ln 3 carries a relative rounding of ~3e-8: hand values of such cases are compared at 1e-6.
F32 = 1e-6


def block_of(*features: list[list[float]], languages: tuple[str, ...] = ("en", "es")):
    """A SentenceMax from per-feature lists ``[q_lang1, q_lang2, ...]`` over the pairs."""
    q = np.array(features, dtype=np.float64)  # (d, m, n)
    return sentence_max_from_dense(np.transpose(q, (2, 1, 0)), list(languages))


def kl(p: list[float], m: list[float]) -> float:
    return sum(pi * log(pi / mi) for pi, mi in zip(p, m, strict=True) if pi > 0)


# --------------------------------------------------------------------------- softmax JSD


def test_softmax_jsd_two_pairs_by_hand():
    got = scores.softmax_jsd(
        block_of(
            # 0: same strength on the same pair: P_en = P_es, JSD 0.
            [[1.0, 0.0], [1.0, 0.0]],
            # 1: disjoint pairs, q = ln 3: P_en = (3/4, 1/4), P_es = (1/4, 3/4), M = (1/2, 1/2);
            #    KL(P_en||M) = 3/4 ln(3/2) + 1/4 ln(1/2) = 3/4 ln 3 - ln 2 = KL(P_es||M)
            #    JSD = 3/4 ln 3 - ln 2 = 0.130812...
            [[LN3, 0.0], [0.0, LN3]],
            # 2: fires on one pair in one language: P_en = (3/4, 1/4), P_es = (1/2, 1/2),
            #    M = (5/8, 3/8); KL_en = 3/4 ln(6/5) + 1/4 ln(2/3) = 0.035375,
            #    KL_es = 1/2 ln(4/5) + 1/2 ln(4/3) = 0.032269; JSD = 0.033822
            [[LN3, 0.0], [0.0, 0.0]],
            # 3: dead: both uniform, JSD 0.
            [[0.0, 0.0], [0.0, 0.0]],
            # 4: fires with equal strength on every pair in English only: both softmaxes
            #    are uniform, so the softmax JSD is 0 for an English-only feature.
            [[LN2, LN2], [0.0, 0.0]],
        )
    )
    expected = [
        0.0,
        0.75 * LN3 - LN2,
        0.5 * (0.75 * log(6 / 5) + 0.25 * log(2 / 3)) + 0.5 * (0.5 * log(4 / 5) + 0.5 * log(4 / 3)),
        0.0,
        0.0,
    ]
    np.testing.assert_allclose(got, expected, rtol=F32, atol=1e-15)
    assert got[1] == pytest.approx(0.130812035941137, rel=F32)
    assert got[2] == pytest.approx(0.033822075568605, rel=F32)


def test_softmax_jsd_three_pairs_with_ties_by_hand():
    # q_en = (ln 2, 0, 0): exp = (2, 1, 1), P_en = (1/2, 1/4, 1/4)
    # q_es = (ln 2, ln 2, 0) (a tie): exp = (2, 2, 1), P_es = (2/5, 2/5, 1/5)
    # M = (9/20, 13/40, 9/40)
    # JSD = 1/2 [1/2 ln(10/9) + 1/4 ln(10/13) + 1/4 ln(10/9)]
    #     + 1/2 [2/5 ln(8/9) + 2/5 ln(16/13) + 1/5 ln(8/9)] = 0.0129076...
    got = scores.softmax_jsd(block_of([[LN2, 0.0, 0.0], [LN2, LN2, 0.0]]))
    p_en, p_es, m = [1 / 2, 1 / 4, 1 / 4], [2 / 5, 2 / 5, 1 / 5], [9 / 20, 13 / 40, 9 / 40]
    assert got[0] == pytest.approx(0.5 * kl(p_en, m) + 0.5 * kl(p_es, m), rel=F32)
    assert got[0] == pytest.approx(0.012907622571983, rel=F32)


def test_softmax_jsd_three_languages_is_entropy_of_mean_minus_mean_entropy():
    # q = (ln 2, 0), (0, ln 2), (0, 0): P1 = (2/3, 1/3), P2 = (1/3, 2/3), P3 = M = (1/2, 1/2)
    # H(M) = ln 2, H(P1) = H(P2) = ln 3 - 2/3 ln 2, H(P3) = ln 2
    # JSD = ln 2 - (2 (ln 3 - 2/3 ln 2) + ln 2) / 3 = 10/9 ln 2 - 2/3 ln 3 = 0.0377553...
    got = scores.softmax_jsd(
        block_of([[LN2, 0.0], [0.0, LN2], [0.0, 0.0]], languages=("en", "es", "fr"))
    )
    h = lambda p: -sum(x * log(x) for x in p)  # noqa: E731
    via_entropy = h([0.5, 0.5]) - (h([2 / 3, 1 / 3]) + h([1 / 3, 2 / 3]) + h([0.5, 0.5])) / 3
    assert got[0] == pytest.approx(10 / 9 * LN2 - 2 / 3 * LN3, rel=F32)
    assert got[0] == pytest.approx(via_entropy, rel=F32)
    assert got[0] == pytest.approx(0.0377553415100883, rel=F32)


def test_softmax_jsd_is_stable_at_large_activations():
    # q = 1000 overflows exp() without log-sum-exp. Disjoint pairs: P_en = (1, e^-1000) etc.,
    # JSD = ln 2 to double precision; same pairs: 0.
    got = scores.softmax_jsd(
        block_of([[1000.0, 0.0], [0.0, 1000.0]], [[1000.0, 0.0], [1000.0, 0.0]])
    )
    assert np.isfinite(got).all()
    assert got[0] == pytest.approx(LN2, rel=1e-12)
    assert got[1] == pytest.approx(0.0, abs=1e-15)


def test_softmax_jsd_is_magnitude_sensitive_and_mass_jsd_is_not():
    # Disjoint pairs with q = 0.01: P = (sigmoid(.01), 1 - sigmoid(.01)) and its mirror;
    # JSD = ln 2 - H(sigmoid(0.01)) = 1.2499843e-5: the least bilingual pattern scores ~0.
    # Same pair, q = 3 vs 3.3 (10% noise on a strong feature): JSD = 4.4309e-4, larger.
    weak_disjoint = [[0.01, 0.0], [0.0, 0.01]]
    strong_aligned = [[3.0, 0.0], [3.3, 0.0]]
    block = block_of(weak_disjoint, strong_aligned)
    soft = scores.softmax_jsd(block)
    sig = lambda c: 1 / (1 + exp(-c))  # noqa: E731
    h2 = lambda p: -(p * log(p) + (1 - p) * log(1 - p))  # noqa: E731
    assert soft[0] == pytest.approx(LN2 - h2(sig(0.01)), rel=F32)
    assert soft[0] == pytest.approx(1.2499843751734e-05, rel=F32)
    p, q = sig(3.0), sig(3.3)
    mid = [(p + q) / 2, (2 - p - q) / 2]
    assert soft[1] == pytest.approx(0.5 * kl([p, 1 - p], mid) + 0.5 * kl([q, 1 - q], mid), rel=F32)
    assert soft[0] < soft[1]  # the softmax ranks the disjoint weak feature as more bilingual
    mass = scores.mass_jsd(block)
    assert mass[0] == pytest.approx(LN2, rel=1e-12)  # disjoint: maximal
    assert mass[1] == pytest.approx(0.0, abs=1e-15)  # both put all mass on pair 0
    # Scaling all activations changes the softmax JSD, never the mass JSD.
    scaled = block.scaled(np.array([100.0, 100.0]))
    assert scores.softmax_jsd(scaled)[0] > 100 * soft[0]
    np.testing.assert_allclose(scores.mass_jsd(scaled), mass, rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------- mass JSD


def test_mass_jsd_by_hand():
    got = scores.mass_jsd(
        block_of(
            # 0: q_en = (1, 3, 0), q_es = (2, 2, 0): P_en = (1/4, 3/4, 0), P_es = (1/2, 1/2, 0),
            #    M = (3/8, 5/8, 0): JSD = 1/2 [1/4 ln(2/3) + 3/4 ln(6/5)] + 1/2 [1/2 ln(4/3) + 1/2 ln(4/5)]
            #    = 0.0338220...
            [[1.0, 3.0, 0.0], [2.0, 2.0, 0.0]],
            # 1: the same with Spanish x100: scale-free, same value.
            [[1.0, 3.0, 0.0], [200.0, 200.0, 0.0]],
            # 2: disjoint: ln 2
            [[1.0, 0.0, 0.0], [0.0, 5.0, 0.0]],
            # 3: English only: undefined (NaN)
            [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            # 4: dead: NaN
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            # 5: proportional on the same pairs: 0
            [[1.0, 2.0, 4.0], [0.5, 1.0, 2.0]],
        )
    )
    expected0 = 0.5 * (0.25 * log(2 / 3) + 0.75 * log(6 / 5)) + 0.5 * (
        0.5 * log(4 / 3) + 0.5 * log(4 / 5)
    )
    assert got[0] == pytest.approx(expected0, rel=1e-12)
    assert got[0] == pytest.approx(0.033822075568605, rel=1e-11)
    assert got[1] == pytest.approx(expected0, rel=1e-6)  # float32 storage of q
    assert got[2] == pytest.approx(LN2, rel=1e-12)
    assert np.isnan(got[3]) and np.isnan(got[4])
    assert got[5] == pytest.approx(0.0, abs=1e-12)


def test_mass_jsd_three_languages():
    # P1 = (2/3, 1/3), P2 = (1/3, 2/3), P3 = (1/2, 1/2): JSD = 10/9 ln 2 - 2/3 ln 3
    got = scores.mass_jsd(
        block_of([[2.0, 1.0], [1.0, 2.0], [3.0, 3.0]], languages=("en", "es", "fr"))
    )
    assert got[0] == pytest.approx(10 / 9 * LN2 - 2 / 3 * LN3, rel=1e-12)


# --------------------------------------------------------------------------- counts, idaf, alive


def test_firing_counts_idaf_and_alive_by_hand():
    block = block_of(
        [[0.5, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]],  # en fires twice, es once
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],  # dead
        [[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]],  # English only
        [[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]],  # fires everywhere
    )
    counts = scores.firing_counts(block)
    np.testing.assert_array_equal(counts, [[2, 1], [0, 0], [3, 0], [4, 4]])
    # q > 0.75: feature 0 keeps en pair 1 (2.0) and es pair 0 (1.0)
    np.testing.assert_array_equal(
        scores.firing_counts(block, 0.75), [[1, 1], [0, 0], [3, 0], [4, 4]]
    )
    # idaf = (m n) / pooled count = 8 / 3, undefined, 8 / 3, 8 / 8
    got = scores.idaf(counts, n_pairs=4)
    np.testing.assert_allclose(got[[0, 2, 3]], [8 / 3, 8 / 3, 1.0], rtol=1e-15)
    assert np.isnan(got[1])
    np.testing.assert_array_equal(scores.alive(counts), [True, False, False, True])


def test_idaf_three_languages():
    # m n = 3 * 10 = 30; pooled counts 1 + 2 + 3 = 6 -> 5
    assert scores.idaf(np.array([[1, 2, 3]]), n_pairs=10)[0] == pytest.approx(5.0)


# --------------------------------------------------------------------------- beta, bi, ranks

# Dyadic numbers so that every bi below, and every tie, is exact in binary.
JSD = np.array([0.125, 0.375, 0.25, 0.625, 0.5, 0.0, 0.0])
IDAF = np.array([2.0, 4.0, 2.0, 10.0, 4.0, np.nan, 100.0])
ALIVE = np.array([True, True, True, True, True, False, False])  # 5 dead, 6 fires in one language


def test_bilingual_score_by_hand():
    # Alive jsd sorted: .125 .25 .375 .5 .625; K = 2 -> jsd_(2) = .375; idaf over alive: 2..10
    # beta = -(.375 - .125) / (10 - 2) = -1/32 (feature 6's idaf 100 is not alive: ignored)
    # bi = jsd - idaf/32 = .0625, .25, .1875, .3125, .375  -> ranks 1, 3, 2, 4, 5
    r = scores.bilingual_score(JSD, IDAF, ALIVE, k=2)
    assert r.k == 2
    assert r.beta == -1 / 32
    np.testing.assert_array_equal(r.bi[:5], [0.0625, 0.25, 0.1875, 0.3125, 0.375])
    np.testing.assert_array_equal(r.rank, [1, 3, 2, 4, 5, 0, 0])


def test_bilingual_score_caps_k_and_breaks_ties_by_feature_id():
    # K = 300 > 5 alive -> K = 4: jsd_(4) = .625, beta = -(.625 - .125) / 8 = -1/16
    # bi = .125 - 2/16, .375 - 4/16, .25 - 2/16, .625 - 10/16, .5 - 4/16 = 0, .125, .125, 0, .25
    # Ties: features 0 and 3 at 0 -> 1, 2; features 1 and 2 at .125 -> 3, 4; feature 4 -> 5.
    for k in (4, 5, 300):
        r = scores.bilingual_score(JSD, IDAF, ALIVE, k=k)
        assert r.k == 4
        assert r.beta == -1 / 16
        np.testing.assert_array_equal(r.bi[:5], [0.0, 0.125, 0.125, 0.0, 0.25])
        np.testing.assert_array_equal(r.rank, [1, 3, 4, 2, 5, 0, 0])


def test_bilingual_score_beta_zero_when_all_idaf_equal():
    idaf = np.array([3.0, 3.0, 3.0, 3.0, 3.0, np.nan, 1.0])
    # Same idaf for every alive feature: beta = 0, bi = jsd; jsd .125 .375 .25 .625 .5
    r = scores.bilingual_score(JSD, idaf, ALIVE, k=2)
    assert r.beta == 0.0
    np.testing.assert_array_equal(r.bi[:5], JSD[:5])
    np.testing.assert_array_equal(r.rank, [1, 3, 2, 5, 4, 0, 0])
    # Equal jsd and equal idaf: ties broken by feature id.
    tied = scores.bilingual_score(
        np.array([0.5, 0.25, 0.5, 0.25]), np.full(4, 2.0), np.ones(4, bool)
    )
    np.testing.assert_array_equal(tied.rank, [3, 1, 4, 2])


def test_bilingual_score_notebook_sign():
    # beta_sign = +1: bi = jsd + |beta| idaf with |beta| = 1/32 (K = 2)
    # bi = .1875, .5, .3125, .9375, .625 -> ranks 1, 3, 2, 5, 4
    r = scores.bilingual_score(JSD, IDAF, ALIVE, k=2, beta_sign=+1.0)
    assert r.beta == 1 / 32
    np.testing.assert_array_equal(r.bi[:5], [0.1875, 0.5, 0.3125, 0.9375, 0.625])
    np.testing.assert_array_equal(r.rank, [1, 3, 2, 5, 4, 0, 0])


def test_bilingual_score_one_alive_and_none_alive():
    one = scores.bilingual_score(
        np.array([0.3, 0.1]), np.array([2.0, 5.0]), np.array([True, False])
    )
    assert one.k == 0 and one.beta == 0.0
    np.testing.assert_array_equal(one.rank, [1, 0])
    none = scores.bilingual_score(np.array([0.3, 0.0]), np.array([2.0, np.nan]), np.zeros(2, bool))
    np.testing.assert_array_equal(none.rank, [0, 0])
    assert np.isnan(none.bi).all()


# --------------------------------------------------------------------------- co-activation


def hypergeom_tail(overlap: int, n: int, a: int, b: int) -> float:
    """P(X >= overlap) for the overlap X of independent random subsets of sizes a, b of n."""
    return sum(comb(a, x) * comb(n - a, b - x) for x in range(overlap, min(a, b) + 1)) / comb(n, b)


def test_coactivation_by_hand():
    n = 10
    en0, es0 = np.zeros(n), np.zeros(n)
    en0[[0, 1, 2, 3]] = [1.0, 1.0, 3.0, 0.5]
    es0[[2, 3, 4]] = [2.0, 0.2, 1.0]
    en1, es1 = np.zeros(n), np.zeros(n)
    en1[[5, 6]] = es1[[5, 6]] = 4.0
    en2 = np.zeros(n)
    en2[0] = 1.0
    block = block_of([en0, es0], [en1, es1], [en2, np.zeros(n)], [np.zeros(n), np.zeros(n)])

    c = scores.coactivation(block, 0.0)
    # 0: F_en = {0,1,2,3}, F_es = {2,3,4}: |∩| = 2, |∪| = 5, Jaccard 2/5, rates 2/4 and 2/3,
    #    p = P(X >= 2), X ~ Hypergeom(10, 4, 3) = (C(4,2) C(6,1) + C(4,3) C(6,0)) / C(10,3) = 40/120
    # 1: same two pairs: Jaccard 1, p = C(2,2) / C(10,2) = 1/45
    # 2: English only: Jaccard 0, rate_en 0, rate_es undefined, p = 1
    # 3: dead: everything undefined, p = 1
    np.testing.assert_array_equal(c.n_intersection, [2, 2, 0, 0])
    np.testing.assert_array_equal(c.n_union, [5, 2, 1, 0])
    np.testing.assert_allclose(c.jaccard[:3], [2 / 5, 1.0, 0.0])
    assert np.isnan(c.jaccard[3])
    np.testing.assert_allclose(c.conditional[:2], [[2 / 4, 2 / 3], [1.0, 1.0]])
    assert (
        c.conditional[2, 0] == 0.0
        and np.isnan(c.conditional[2, 1])
        and np.isnan(c.conditional[3]).all()
    )
    assert hypergeom_tail(2, 10, 4, 3) == pytest.approx(1 / 3)
    assert hypergeom_tail(2, 10, 2, 2) == pytest.approx(1 / 45)
    np.testing.assert_allclose(10.0**c.log10_pvalue, [1 / 3, 1 / 45, 1.0, 1.0], rtol=1e-10)
    assert stats.hypergeom.sf(1, 10, 4, 3) == pytest.approx(1 / 3)

    # At t = 0.6: F_en = {0,1,2}, F_es = {2,4}: |∩| = 1, |∪| = 4, Jaccard 1/4, rates 1/3, 1/2,
    # p = P(X >= 1) = 1 - C(7,2)/C(10,2) = 24/45
    t = scores.coactivation(block, 0.6)
    assert (t.n_intersection[0], t.n_union[0]) == (1, 4)
    assert t.jaccard[0] == pytest.approx(1 / 4)
    np.testing.assert_allclose(t.conditional[0], [1 / 3, 1 / 2])
    assert 10.0 ** t.log10_pvalue[0] == pytest.approx(24 / 45, rel=1e-10)


def test_coactivation_pvalue_weighs_evidence():
    # Two features with Jaccard 1: one on 2 pairs, one on 200 pairs of 1000.
    n = 1000
    rare, common = np.zeros(n), np.zeros(n)
    rare[[3, 7]] = 1.0
    common[:200] = 1.0
    c = scores.coactivation(block_of([rare, rare], [common, common]), 0.0)
    np.testing.assert_allclose(c.jaccard, [1.0, 1.0])
    # p(rare) = 1 / C(1000, 2); p(common) = 1 / C(1000, 200), far below double precision
    assert c.log10_pvalue[0] == pytest.approx(-log(comb(1000, 2), 10), rel=1e-9)
    assert c.log10_pvalue[1] == pytest.approx(-log(comb(1000, 200), 10), rel=1e-6)
    assert c.log10_pvalue[1] < c.log10_pvalue[0] - 100


def block_from_sets(n_pairs: int, features: list[tuple[set[int], set[int]]]) -> SentenceMax:
    """A two-language SentenceMax where feature i fires (q = 1) on the given pairs."""
    rows = sorted(
        (f, k, lang) for f, sets in enumerate(features) for lang, s in enumerate(sets) for k in s
    )
    f, k, lang = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    return SentenceMax(
        f.astype(np.int32), k.astype(np.int32), lang.astype(np.int8),
        np.ones(len(f), np.float32), np.ones(len(f), np.int32),
        n_pairs, ["en", "es"], 0, len(features),
    )  # fmt: skip


def exact_log10_tail(x: int, n: int, a: int, b: int) -> float:
    """log10 P(X >= x), X the overlap of independent random subsets of sizes a, b of
    n pairs, in exact integer arithmetic: the terms ``C(a, j) C(n - a, b - j)`` by the
    exact recurrence ``T_{j+1} = T_j (a - j)(b - j) / ((j + 1)(n - a - b + j + 1))``."""
    lo, hi = max(0, a + b - n), min(a, b)
    if x <= lo:
        return 0.0
    if x > hi:
        return -np.inf
    term, total = comb(a, x) * comb(n - a, b - x), 0
    for j in range(x, hi + 1):
        total += term
        term = term * (a - j) * (b - j) // ((j + 1) * (n - a - b + j + 1))
    ratio = total / comb(n, b)  # int / int is correctly rounded
    return log10(ratio) if ratio > 1e-300 else log10(total) - log10(comb(n, b))


@pytest.mark.parametrize("n", [10, 200, 93470])
def test_coactivation_pvalue_exact_on_a_grid(n):
    cases = []
    if n < 1000:  # every size class, overlaps around the support ends and the mode
        for a in sorted({1, 2, 5, n // 7, n // 2, n - 1, n}):
            for b in sorted({1, 3, n // 5, n // 3, n - 2}):
                lo, hi = max(0, a + b - n), min(a, b)
                mode = (a + 1) * (b + 1) // (n + 2)
                near = {
                    lo,
                    lo + 1,
                    mode - 1,
                    mode,
                    mode + 1,
                    mode + 3,
                    (mode + hi) // 2,
                    hi - 1,
                    hi,
                }
                cases += [(a, b, x) for x in sorted(near) if lo <= x <= hi]
    else:  # the size of the full corpus
        cases = [(1, 1, 1), (1, 1, 0), (3, 3, 3), (3, 3, 1), (2, 90000, 2), (2, 90000, 1)]
        cases += [(500, 600, x) for x in (0, 3, 4, 10, 100, 500)]
        cases += [(4000, 5000, x) for x in (150, 213, 214, 260, 400)]
    features = []
    for a, b, x in cases:
        en = set(range(a))
        es = set(range(x)) | set(range(a, a + b - x))
        features.append((en, es))
    c = scores.coactivation(block_from_sets(n, features), 0.0)
    np.testing.assert_array_equal(c.n_intersection, [x for _, _, x in cases])
    for i, (a, b, x) in enumerate(cases):
        ref = exact_log10_tail(x, n, a, b)
        got = c.log10_pvalue[i]
        assert np.isfinite(got), (a, b, x, got)  # never underflows to -inf
        assert got == pytest.approx(ref, rel=1e-9, abs=1e-12), (n, a, b, x)
        if ref > -300:
            assert 10.0**got == pytest.approx(
                stats.hypergeom.sf(x - 1, n, a, b), rel=1e-8, abs=1e-300
            )


def _one_step_walk(start, k, d, n, up, stop):
    """The tail walk one term at a time, per element (what hypergeom._walk does
    in stretches): each element's sum and its number of terms."""
    sums, lengths = [], []
    for j, kk, dd, s in zip(start, k, d, stop, strict=True):
        total = term = 1.0
        steps = 0
        while j != s:
            ratio = hypergeom.step_ratio(j, kk, dd, n, up=up)
            j += 1 if up else -1
            term *= ratio
            total += term
            steps += 1
            if not term > hypergeom._EPS * total:
                break
        sums.append(total)
        lengths.append(steps)
    return np.array(sums), np.array(lengths)


@pytest.mark.parametrize("up", [True, False])
def test_tail_walk_in_stretches_equals_one_term_at_a_time(up):
    # Walks of every length in one call, as log10_sf starts them (upwards
    # above the mode, downwards below it): a few terms in the far tails,
    # hundreds near the mode of wide distributions, and walks that the
    # support's end cuts short or leaves no term.
    n = 93_470
    rng = np.random.default_rng(7)
    k = rng.integers(1, 40_000, 400).astype(np.float64)
    d = rng.integers(1, 40_000, 400).astype(np.float64)
    mode = np.floor((d + 1) * (k + 1) / (n + 2))
    lo, hi = np.maximum(0.0, k + d - n), np.minimum(k, d)
    away = np.round(np.abs(rng.normal(0, 4, 400)) * (np.sqrt(k * d / n) + 1)) + 1
    if up:
        start, stop = np.minimum(mode + away, hi), hi
        start[:20] = np.maximum(hi[:20] - 1, mode[:20] + 1)  # one term before the end
    else:
        start, stop = np.maximum(mode - away, lo), lo
        start[:20] = np.minimum(lo[:20] + 1, mode[:20] - 1)
    start[20:40] = stop[20:40]  # no term at all
    got = hypergeom._walk(start, k, d, n, up=up, stop=stop)
    want, length = _one_step_walk(start.tolist(), k.tolist(), d.tolist(), n, up, stop.tolist())
    np.testing.assert_array_equal(got, want)  # the same floats, not just close
    assert length.min() == 0 and length.max() > 300, (length.min(), length.max())


def test_coactivation_three_languages():
    # F_1 = {0,1,2}, F_2 = {0,1}, F_3 = {0,1,2,3} of 10 pairs: ∩ = {0,1}, ∪ = {0,1,2,3}
    # Jaccard 2/4, rates 2/3, 2/2, 2/4. p: the least significant pairwise overlap:
    # (1,2): P(X>=2 | 10, 3, 2) = 3/45; (1,3): P(X>=3 | 10, 3, 4) = 7/210; (2,3): P(X>=2 | 10, 2, 4) = 28/210
    n = 10
    f1, f2, f3 = np.zeros(n), np.zeros(n), np.zeros(n)
    f1[[0, 1, 2]] = 1.0
    f2[[0, 1]] = 2.0
    f3[[0, 1, 2, 3]] = 3.0
    c = scores.coactivation(block_of([f1, f2, f3], languages=("en", "es", "fr")), 0.0)
    assert (c.n_intersection[0], c.n_union[0]) == (2, 4)
    assert c.jaccard[0] == pytest.approx(0.5)
    np.testing.assert_allclose(c.conditional[0], [2 / 3, 1.0, 0.5])
    pairwise = [hypergeom_tail(2, n, 3, 2), hypergeom_tail(3, n, 3, 4), hypergeom_tail(2, n, 2, 4)]
    np.testing.assert_allclose(pairwise, [3 / 45, 7 / 210, 28 / 210])
    assert 10.0 ** c.log10_pvalue[0] == pytest.approx(max(pairwise), rel=1e-10)


# --------------------------------------------------------------------------- monolinguality


def test_monolinguality_by_hand():
    # nu_l = mu_l - mean of the other languages' mu
    np.testing.assert_allclose(
        scores.monolinguality(np.array([[3.0, 1.0], [2.0, 2.0]])), [[2.0, -2.0], [0.0, 0.0]]
    )
    # three languages: mu = (3, 1, 2): nu = 3 - 1.5, 1 - 2.5, 2 - 2
    np.testing.assert_allclose(
        scores.monolinguality(np.array([[3.0, 1.0, 2.0]])), [[1.5, -1.5, 0.0]]
    )


# --------------------------------------------------------------------------- curves (unit)


def test_curve_counts_and_curves_by_hand():
    # 2 pairs; q per feature: 0 = en (2, 0) es (2, 0); 1 = en (3, 0) es (0, 3); 2 = en (0, 5); 3 dead
    block = block_of(
        [[2.0, 0.0], [2.0, 0.0]],
        [[3.0, 0.0], [0.0, 3.0]],
        [[0.0, 5.0], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, 0.0]],
    )
    thr = {
        "mean": {"en": 2.5, "es": 2.5, "global": 2.5},
        "q0.5": {"en": 1.0, "es": 1.0, "global": 4.0},
    }
    counts = curve_counts(block, thr)
    np.testing.assert_array_equal(counts[("mean", "en")], [0, 1, 1, 0])
    np.testing.assert_array_equal(counts[("mean", "global")], [0, 2, 1, 0])
    np.testing.assert_array_equal(counts[("q0.5", "es")], [1, 1, 0, 0])
    np.testing.assert_array_equal(counts[("q0.5", "global")], [0, 0, 1, 0])
    curves = activation_frequency_curves(counts, n_pairs=2, m=2)
    en = curves[(curves.threshold == "mean") & (curves.scope == "en")]
    # fractions of 2 English sentences, descending, ties by feature id
    assert en.feature.tolist() == [1, 2, 0, 3]
    assert en.fraction.tolist() == [0.5, 0.5, 0.0, 0.0]
    assert en["rank"].tolist() == [1, 2, 3, 4]
    glob = curves[(curves.threshold == "mean") & (curves.scope == "global")]
    # fractions of all 4 sentences
    assert glob.feature.tolist() == [1, 2, 0, 3]
    assert glob.fraction.tolist() == [0.5, 0.25, 0.0, 0.0]


# --------------------------------------------------------------------------- the pipeline on a hand-built run


def write_hand_run(
    root,
    run_id: str,
    rows: list[tuple[int, str, int, int, float]],
    *,
    n_pairs: int,
    d_sae: int,
    lengths: dict[str, int],
    languages=("en", "es"),
) -> None:
    """A run in the contract format: ``lengths[lang]`` real tokens per sentence plus
    BOS, and the given activation rows ``(pair, lang, position, feature, value)``."""
    langs = list(languages)
    lang_type = pa.dictionary(pa.int8(), pa.string())

    def lang_col(values):
        return pa.array(values, pa.string()).dictionary_encode().cast(lang_type)

    pairs = [(k, lang, f"sentence {k} {lang}") for k in range(n_pairs) for lang in langs]
    tokens = [
        (k, lang, p, 10 + p, "<bos>" if p == 0 else f"t{p}")
        for k in range(n_pairs)
        for lang in langs
        for p in range(lengths[lang] + 1)
    ]
    rows = sorted(rows, key=lambda r: (r[3], r[0], langs.index(r[1]), r[2]))
    with RunWriter(root, run_id) as w:
        w.write_table(
            PAIRS,
            pa.table(
                {
                    "pair_id": pa.array([r[0] for r in pairs], pa.int32()),
                    "lang": lang_col([r[1] for r in pairs]),
                    "text": [r[2] for r in pairs],
                },
                schema=PAIRS_SCHEMA,
            ),
        )
        w.write_table(
            TOKENS,
            pa.table(
                {
                    "pair_id": pa.array([r[0] for r in tokens], pa.int32()),
                    "lang": lang_col([r[1] for r in tokens]),
                    "position": pa.array([r[2] for r in tokens], pa.int32()),
                    "token_id": pa.array([r[3] for r in tokens], pa.int32()),
                    "token": [r[4] for r in tokens],
                },
                schema=TOKENS_SCHEMA,
            ),
        )
        w.write_table(
            ACTIVATIONS,
            pa.table(
                {
                    "pair_id": pa.array([r[0] for r in rows], pa.int32()),
                    "lang": lang_col([r[1] for r in rows]),
                    "position": pa.array([r[2] for r in rows], pa.int32()),
                    "feature": pa.array([r[3] for r in rows], pa.int32()),
                    "activation": pa.array([r[4] for r in rows], pa.float32()),
                },
                schema=ACTIVATIONS_SCHEMA,
            ),
        )
        w.commit(Manifest(run_id=run_id, languages=langs, n_pairs=n_pairs, d_sae=d_sae))


HAND_ROWS = [
    # feature 0: en pair 0 at two tokens (max 2), es pair 0 at one token (2): P_en = P_es
    (0, "en", 1, 0, 1.0),
    (0, "en", 2, 0, 2.0),
    (0, "es", 3, 0, 2.0),
    # feature 1: en pair 0 (3), es pair 1 (3): disjoint
    (0, "en", 3, 1, 3.0),
    (1, "es", 2, 1, 3.0),
    # feature 2: English only, pair 1 (5); feature 3: dead
    (1, "en", 3, 2, 5.0),
]


@pytest.fixture
def hand_run(tmp_path):
    write_hand_run(tmp_path, "hand", HAND_ROWS, n_pairs=2, d_sae=4, lengths={"en": 3, "es": 4})
    return tmp_path / "hand"


def test_score_run_on_hand_built_run(hand_run):
    result = score_run(hand_run)
    f = result.features.set_index("feature")
    # q_en = (2, 0), (3, 0), (0, 5), 0; q_es = (2, 0), (0, 3), 0, 0
    np.testing.assert_array_equal(f.alive, [True, True, False, False])
    np.testing.assert_array_equal(f.n_fire_en, [1, 1, 1, 0])
    np.testing.assert_array_equal(f.n_fire_es, [1, 1, 0, 0])
    np.testing.assert_array_equal(f.n_tokens_en, [2, 1, 1, 0])
    np.testing.assert_array_equal(f.max_act_en, [2.0, 3.0, 5.0, 0.0])
    # jsd: 0; ln 2 - H(sigmoid 3) = 0.50228; English only, n = 2: P_en = (1/(1+e^5), e^5/(1+e^5)), P_es uniform
    sig3 = 1 / (1 + exp(-3.0))
    p5 = 1 / (1 + exp(-5.0))
    mid = [(0.5 + (1 - p5)) / 2, (0.5 + p5) / 2]
    expected_jsd = [
        0.0,
        LN2 + sig3 * log(sig3) + (1 - sig3) * log(1 - sig3),
        0.5 * kl([1 - p5, p5], mid) + 0.5 * kl([0.5, 0.5], mid),
        0.0,
    ]
    np.testing.assert_allclose(f.jsd, expected_jsd, rtol=1e-9, atol=1e-15)
    assert f.jsd[1] == pytest.approx(0.5022822094535, rel=1e-10)
    # idaf = (m n) / pooled count = 4/2, 4/2, 4/1, undefined
    np.testing.assert_allclose(f.idaf[:3], [2.0, 2.0, 4.0])
    assert np.isnan(f.idaf[3])
    # Both alive features have idaf 2: beta = 0, bi = jsd, ranks 1, 2, none, none.
    assert result.scoring["beta"] == 0.0
    np.testing.assert_allclose(f.bi[:2], f.jsd[:2])
    assert f.bi_rank.tolist()[:2] == [1, 2]
    assert f.bi_rank.isna().tolist() == [False, False, True, True]
    # mass JSD: 0, ln 2, undefined, undefined
    np.testing.assert_allclose(f.mass_jsd[:2], [0.0, LN2], atol=1e-15)
    assert f.mass_jsd[2:].isna().all()
    # co-activation at any level: feature 0 on pair 0 in both (p = 1/2), feature 1 none
    np.testing.assert_allclose(f.jaccard[:2], [1.0, 0.0])
    assert 10 ** f.coact_log10p[0] == pytest.approx(0.5)
    # monolinguality: 6 real English tokens, 8 Spanish; mu_en = (3, 3, 5, 0)/6, mu_es = (2, 3, 0, 0)/8
    np.testing.assert_allclose(f.mean_act_en, [0.5, 0.5, 5 / 6, 0.0])
    np.testing.assert_allclose(f.mean_act_es, [0.25, 3 / 8, 0.0, 0.0])
    np.testing.assert_allclose(f.mono_en, [0.25, 1 / 8, 5 / 6, 0.0])
    np.testing.assert_allclose(f.mono_es, [-0.25, -1 / 8, -5 / 6, 0.0])


def test_thresholds_and_curves_on_hand_built_run(hand_run):
    score_run(hand_run)
    thr = pd.read_parquet(hand_run / THRESHOLDS)
    table = {(r.threshold, r.scope): r.value for r in thr.itertuples()}
    # en activations 1, 2, 3, 5 (position q (n-1), linear): .05 -> 1.15, .25 -> 1.75, .5 -> 2.5,
    #   .75 -> 3 + .25 * 2 = 3.5, .95 -> 3 + .85 * 2 = 4.7; mean 11/4
    # es activations 2, 3: 2.05, 2.25, 2.5, 2.75, 2.95; mean 2.5
    # global 1, 2, 2, 3, 3, 5: .05 -> 1.25, .25 -> 2, .5 -> 2.5, .75 -> 3, .95 -> 4.5; mean 16/6
    expected = {
        "en": [11 / 4, 1.15, 1.75, 2.5, 3.5, 4.7],
        "es": [2.5, 2.05, 2.25, 2.5, 2.75, 2.95],
        "global": [16 / 6, 1.25, 2.0, 2.5, 3.0, 4.5],
    }
    names = ["mean", "q0.05", "q0.25", "q0.5", "q0.75", "q0.95"]
    for scope, values in expected.items():
        got = [table[(name, scope)] for name in names]
        np.testing.assert_allclose(got, values, rtol=1e-12, err_msg=scope)
        np.testing.assert_allclose(
            got[1:],
            np.quantile(
                [r[4] for r in HAND_ROWS if scope in ("global", r[1])],
                [0.05, 0.25, 0.5, 0.75, 0.95],
            ),
        )
    assert len(thr) == 18
    curves = pd.read_parquet(hand_run / CURVES)

    def curve(threshold, scope):
        c = curves[(curves.threshold == threshold) & (curves.scope == scope)].sort_values("rank")
        return c.feature.tolist(), c.fraction.tolist()

    # mean en 2.75: q_en > 2.75 on 1 of 2 sentences for features 1 and 2
    assert curve("mean", "en") == ([1, 2, 0, 3], [0.5, 0.5, 0.0, 0.0])
    # mean es 2.5: only feature 1 (es pair 1 = 3)
    assert curve("mean", "es") == ([1, 0, 2, 3], [0.5, 0.0, 0.0, 0.0])
    # mean global 8/3 over 4 sentences: feature 1 on 2, feature 2 on 1
    assert curve("mean", "global") == ([1, 2, 0, 3], [0.5, 0.25, 0.0, 0.0])
    # q0.05 global 1.25: features 0 and 1 on 2 sentences, feature 2 on 1
    assert curve("q0.05", "global") == ([0, 1, 2, 3], [0.5, 0.5, 0.25, 0.0])
    assert len(curves) == 6 * 3 * 4
    coact = pd.read_parquet(hand_run / COACTIVATION)
    # at the global mean 8/3 feature 0 (q = 2) no longer fires: undefined Jaccard
    row = coact[(coact.threshold == "mean") & (coact.feature == 0)].iloc[0]
    assert row.n_union == 0 and np.isnan(row.jaccard)
    assert row.threshold_value == pytest.approx(16 / 6)


def test_score_run_with_no_alive_feature(tmp_path):
    # Every feature fires in one language only: nothing is alive, nothing is ranked.
    rows = [(0, "en", 1, 0, 1.0), (1, "es", 2, 1, 2.0), (1, "es", 3, 1, 0.5)]
    write_hand_run(tmp_path, "dead", rows, n_pairs=2, d_sae=3, lengths={"en": 3, "es": 3})
    result = score_run(tmp_path / "dead")
    f = result.features
    assert not f.alive.any()
    assert f.bi_rank.isna().all()
    assert result.scoring["n_alive"] == 0
    # idaf = 4/1, 4/1 and undefined for feature 2, which never fires
    np.testing.assert_allclose(f.idaf[:2], [4.0, 4.0])
    assert np.isnan(f.idaf[2])
    assert f.mass_jsd.isna().all()
    np.testing.assert_array_equal(f.n_fire_en, [1, 0, 0])
    np.testing.assert_array_equal(f.n_fire_es, [0, 1, 0])
    np.testing.assert_array_equal(f.n_tokens_es, [0, 2, 0])
