"""The evidence score, the one ranking rule and the score registry.

The evidence score must need evidence: on synthetic runs planting every kind
of feature (bilingual with strong and with tiny activations, a single pair, two
pairs, language-leaning, independent, ubiquitous, dead), its top 10 holds at
least 9 planted bilingual features; and a tie never ranks a feature seen on
one pair above one seen on thirty.
"""

from __future__ import annotations

import dataclasses
from math import comb, log, log10

import numpy as np
import pandas as pd
import pytest

from bilingual_core import (
    PlantedCounts,
    SyntheticConfig,
    score_run,
    sentence_max_from_dense,
    write_synthetic_run,
)
from bilingual_core import score_kernels as kernels
from bilingual_core import score_registry as registry
from bilingual_core.ranking import rank_features
from bilingual_core.schema import FEATURES, REQUIRED_COLUMNS, feature_columns
from bilingual_core.synthetic import BILINGUAL_KINDS, planted_precision
from explorer import table


def block_of(*features: list[list[float]]):
    """A SentenceMax from per-feature lists ``[q_en, q_es]`` over the pairs."""
    q = np.array(features, dtype=np.float64)  # (d, m, n)
    return sentence_max_from_dense(np.transpose(q, (2, 1, 0)), ["en", "es"])


def evidence_of(block) -> np.ndarray:
    c = kernels.coactivation(block, 0.0)
    return kernels.evidence(c.log10_pvalue, kernels.mass_jsd(block), 2)


# --------------------------------------------------------------------------- the kernel


def test_evidence_by_hand():
    n = 10
    one = [0.0] * n
    one[3] = 2.0
    three_en, three_es = [0.0] * n, [0.0] * n
    for k, (a, b) in zip((1, 4, 7), ((1.0, 2.0), (2.0, 4.0), (3.0, 6.0)), strict=True):
        three_en[k], three_es[k] = a, b
    disjoint_en, disjoint_es = [0.0] * n, [0.0] * n
    disjoint_en[0], disjoint_es[1] = 1.0, 1.0
    got = evidence_of(block_of([one, one], [three_en, three_es], [disjoint_en, disjoint_es]))
    # 0: one pair of ten in both languages, P(X >= 1) = 1/10 for two singletons: log10 10 = 1,
    #    and identical distributions (mass JSD 0): evidence 1.
    # 1: three pairs, Spanish exactly twice English: the per-language normalisation removes the
    #    factor, mass JSD 0; P(X >= 3) = 1 / C(10, 3) = 1/120: evidence log10 120 = 2.079.
    # 2: no shared pair: p = 1, evidence 0 (and mass JSD ln 2, alignment 0).
    np.testing.assert_allclose(got, [1.0, log10(comb(10, 3)), 0.0], rtol=1e-9, atol=1e-12)


def test_evidence_alignment_factor_by_hand():
    # Both languages fire on pairs 0 and 1 of four; English (1, 3)/4, Spanish (3, 1)/4.
    # M = (1/2, 1/2); KL(P_en||M) = 1/4 ln(1/2) + 3/4 ln(3/2) = KL(P_es||M), so
    # mass JSD = 3/4 ln 3 - ln 2 = 0.130812; p = P(X >= 2 | 2, 2 of 4) = 1/6.
    got = evidence_of(block_of([[1.0, 3.0, 0.0, 0.0], [3.0, 1.0, 0.0, 0.0]]))
    jsd = 0.75 * log(3) - log(2)
    assert got[0] == pytest.approx(log10(6) * (1 - jsd / log(2)), rel=1e-9)


def test_evidence_is_nan_when_a_language_is_silent():
    got = evidence_of(block_of([[1.0, 0.0], [0.0, 0.0]]))
    assert np.isnan(got[0])


# --------------------------------------------------------------------------- ties


def test_rank_features_breaks_ties_by_support_then_feature_id():
    values = np.array([1.0, 1.0, 1.0, 2.0, np.nan])
    alive = np.array([True, True, True, True, True])
    support = np.array([1, 30, 1, 0, 50])
    assert rank_features(values, alive, higher_is_better=True, support=support).tolist() == [
        3,
        2,
        4,
        1,
        0,
    ]
    # Without support, ties go by feature id (the blog score's rule).
    assert rank_features(values, alive, higher_is_better=True).tolist() == [2, 3, 4, 1, 0]
    assert rank_features(values, alive, higher_is_better=False, support=support).tolist() == [
        2,
        1,
        3,
        4,
        0,
    ]


def _one_versus_thirty(n: int = 200) -> np.ndarray:
    """Features 0-9 fire on one pair each (same pair, same strength in both languages);
    feature 10 on thirty pairs in both languages, with different strengths on each side."""
    rng = np.random.default_rng(0)
    q = np.zeros((n, 2, 11))
    for f in range(10):
        q[f, :, f] = 5.0
    pairs = rng.choice(n, size=30, replace=False)
    q[pairs, 0, 10] = rng.uniform(1.0, 10.0, size=30)
    q[pairs, 1, 10] = rng.uniform(1.0, 10.0, size=30)
    return q


def test_one_pair_never_ranks_above_thirty():
    block = sentence_max_from_dense(_one_versus_thirty(), ["en", "es"])
    c = kernels.coactivation(block, 0.0)
    ev = kernels.evidence(c.log10_pvalue, kernels.mass_jsd(block), 2)
    alive = np.ones(11, bool)
    rank = rank_features(ev, alive, higher_is_better=True, support=c.n_intersection)
    assert rank[10] == 1
    # The single-pair features are perfectly aligned (mass JSD 0, Jaccard 1), the
    # thirty-pair one is not; still the evidence of one pair is only log10 n.
    np.testing.assert_allclose(ev[:10], log10(200))
    assert ev[10] > 10 * ev[0]
    # Jaccard ties (1 for every one of them, when feature 10 fires only on shared pairs)
    # go by support, not by feature id.
    jac = np.ones(11)
    assert rank_features(jac, alive, higher_is_better=True, support=c.n_intersection)[10] == 1


def test_the_app_ranks_ties_by_support():
    feats = pd.DataFrame(
        {
            "feature": [0, 1, 2],
            "alive": [True, True, True],
            "jaccard": [1.0, 1.0, 1.0],
            "evidence": [2.3, 2.3, 40.0],
            "n_both": [1, 30, 30],
            "n_fire_en": [1, 30, 30],
            "n_fire_es": [1, 30, 30],
            "bi": [0.1, 0.1, 0.2],
            "jsd": [0.1, 0.1, 0.2],
        }
    )
    scored = table.score_table(feats, None, ["en", "es"])
    scores = table.available_scores(scored.columns, ["en", "es"])
    assert scores[0].key == "evidence"
    jac = table.ranks(scored, table.score_by_key(scores, "jaccard"))
    assert jac.tolist() == [3, 1, 2]
    assert table.ranks(scored, scores[0]).tolist() == [3, 2, 1]
    # The blog score keeps the post's rule: ties by feature id.
    assert table.ranks(scored, table.score_by_key(scores, "bi")).tolist() == [1, 2, 3]


# --------------------------------------------------------------------------- the registry


def test_registry_declarations_are_complete_and_unique():
    keys = [s.key for s in registry.SCORES]
    assert keys[0] == "translation" and registry.DEFAULT.key == "translation"
    assert len(set(keys)) == len(keys)
    columns = [s.column for s in registry.SCORES] + registry.rank_columns()
    assert len(set(columns)) == len(columns)
    for spec in registry.SCORES:
        assert spec.label and spec.formula and spec.better in ("higher", "lower")
        assert (spec.block is None) != (spec.run is None)


def test_schema_is_derived_from_the_registry():
    required = [c.name for c in REQUIRED_COLUMNS[FEATURES]]
    assert {"feature", "alive", "bi", "bi_rank", "jsd"} <= set(required)
    names = [c.name for c in feature_columns(["en", "es"])]
    for spec in registry.SCORES:
        if spec.key != "notebook":
            assert set(spec.columns(["en", "es"])) <= set(names), spec.key
    assert "evidence_rank" in names and "notebook_rank" not in names
    assert "notebook_rank" in [c.name for c in feature_columns(["en", "es"], notebook=True)]


def test_app_menus_follow_the_registry_order():
    feats = pd.DataFrame(columns=[c.name for c in feature_columns(["en", "es"])])
    keys = [s.key for s in table.available_scores(feats.columns, ["en", "es"])]
    expected = [
        k
        for s in registry.SCORES
        if s.key != "notebook"
        for k in ([s.key.format(lang=lang) for lang in ("en", "es")] if s.per_language else [s.key])
    ]
    assert keys == expected


# --------------------------------------------------------------------------- planted runs


def _planted(tmp_path, n_pairs: int, seed: int):
    # Without the shared-surface kind: co-activation evidence cannot tell it from
    # a bilingual feature (tests/test_core_peaks.py covers it with the default ranking).
    planted = dataclasses.replace(PlantedCounts.every_kind(), shared_surface=0)
    cfg = SyntheticConfig(n_pairs=n_pairs, d_sae=256, seed=seed, planted=planted)
    truth = write_synthetic_run(tmp_path, cfg)
    return score_run(tmp_path / cfg.run_id).features, truth


def _precision(features: pd.DataFrame, truth, key: str) -> float:
    spec = registry.score_by_key(key)
    return planted_precision(
        features,
        truth,
        spec.column,
        higher_is_better=spec.higher_is_better,
        support=spec.ties == "support",
    )


@pytest.mark.parametrize(("n_pairs", "seed"), [(300, 0), (300, 1), (1000, 0)])
def test_evidence_top_10_is_planted_bilingual(tmp_path, n_pairs, seed):
    features, truth = _planted(tmp_path, n_pairs, seed)
    kinds = set(truth.kinds.values())
    assert {
        "bilingual",
        "bilingual_weak",
        "single_pair",
        "two_pairs",
        "leaning",
        "independent",
        "ubiquitous",
        "weak",
        "dead",
    } <= kinds
    assert _precision(features, truth, "evidence") >= 0.9
    assert _precision(features, truth, "translation") >= 0.9
    # The stored rank is the registry's ranking of the stored value.
    top = features.dropna(subset=["evidence_rank"]).sort_values("evidence_rank")
    assert top["evidence"].is_monotonic_decreasing
    # The blog score puts single- and two-pair features first.
    assert _precision(features, truth, "bi") <= 0.2
    first = features.loc[features["bi_rank"] == 1, "feature"].item()
    assert truth.kinds.get(int(first)) not in BILINGUAL_KINDS


@pytest.mark.slow
def test_evidence_top_10_at_3000_pairs(tmp_path):
    features, truth = _planted(tmp_path, 3000, 2)
    assert _precision(features, truth, "evidence") >= 0.9


def test_a_new_declaration_reaches_the_scorer_schema_and_menus(tmp_path, monkeypatch):
    """Adding a score is one ScoreSpec plus its kernel: nothing else names it."""

    def max_en(block) -> np.ndarray:  # a toy block kernel: the largest English maximum
        return block.max_per_feature_lang()[:, 0]

    toy = registry.ScoreSpec(
        "toy",
        "toy score",
        "toy_max_en",
        "higher",
        "max_k q_en[k]",
        block=max_en,
        rank_column="toy_rank",
    )
    monkeypatch.setattr(registry, "SCORES", (*registry.SCORES, toy))
    cfg = SyntheticConfig(n_pairs=40, d_sae=48, mean_tokens=6.0, seed=1)
    write_synthetic_run(tmp_path, cfg)
    features = score_run(tmp_path / cfg.run_id).features
    np.testing.assert_allclose(features["toy_max_en"], features["max_act_en"], rtol=1e-6)
    assert features["toy_rank"].notna().sum() == features["alive"].sum()
    assert {"toy_max_en", "toy_rank"} <= {c.name for c in feature_columns(["en", "es"])}
    assert "toy" in [s.key for s in table.available_scores(features.columns, ["en", "es"])]
