"""Planted features: what each score makes of features whose kind is known.

A seeded synthetic run (400 pairs, 128 features) plants bilingual features
(same pairs, same strength in both languages), language-leaning ones,
independent ones, ``weak`` ones (independent, activations 0.005-0.03) and
``ubiquitous`` ones (95% of sentences, strengths 0.5-15 drawn independently
on each side of a pair). The tests state what co-activation and mass JSD do
with them, and document what the blog's softmax score does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from bilingual_core import (
    ScoreConfig,
    SyntheticConfig,
    SyntheticTruth,
    score_run,
    sentence_max_from_dense,
    write_synthetic_run,
)
from bilingual_core import score_kernels as scores
from bilingual_core.schema import ACTIVATIONS


@dataclass
class Planted:
    features: pd.DataFrame
    truth: SyntheticTruth
    q: np.ndarray
    """(n, m, d) per-sentence maxima."""

    def kind(self, *kinds: str) -> pd.DataFrame:
        ids = sorted(f for k in kinds for f in self.truth.features_of(k))
        return self.features.set_index("feature").loc[ids]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Planted:
    root = tmp_path_factory.mktemp("planted")
    cfg = SyntheticConfig(n_pairs=400, d_sae=128, seed=0)
    truth = write_synthetic_run(root, cfg)
    result = score_run(root / cfg.run_id, config=ScoreConfig())
    frame = pd.read_parquet(root / cfg.run_id / ACTIVATIONS)
    q = np.zeros((cfg.n_pairs, 2, cfg.d_sae))
    li = (frame.lang.astype(str) == "es").to_numpy().astype(int)
    np.maximum.at(q, (frame.pair_id, li, frame.feature), frame.activation.astype(np.float64))
    return Planted(result.features, truth, q)


def test_the_run_has_every_kind(planted):
    for kind in ("bilingual", "leaning", "independent", "weak", "ubiquitous", "dead"):
        assert len(planted.truth.features_of(kind)) >= 4, kind
    assert planted.kind("bilingual").alive.all()
    assert not planted.kind("dead").alive.any()


def test_coactivation_ranks_bilingual_above_leaning_and_independent(planted):
    bil, other = planted.kind("bilingual"), planted.kind("leaning", "independent")
    # Same concept on both sides of every pair: the firing sets coincide exactly.
    assert (bil.jaccard == 1.0).all()
    assert bil.jaccard.min() > other.jaccard.max()
    assert bil.jaccard_rank.max() < other.jaccard_rank.min()  # NA (dead) ranks are skipped
    # Hypergeometric evidence of the overlap.
    assert bil.coact_log10p.max() < -4
    assert bil.coact_log10p.max() < other.coact_log10p.min()
    assert planted.kind("independent").coact_log10p.min() > -2


def test_mass_jsd_ranks_bilingual_above_leaning_and_independent(planted):
    bil, other = planted.kind("bilingual"), planted.kind("leaning", "independent")
    assert bil.mass_jsd.max() < 0.01
    assert bil.mass_jsd.max() < other.mass_jsd.min()
    assert bil.mass_jsd_rank.max() < other.mass_jsd_rank.min()
    # Nor are weak or ubiquitous features mistaken for bilingual ones.
    assert bil.mass_jsd.max() < planted.kind("weak", "ubiquitous").mass_jsd.min()


def test_blog_score_makes_weak_features_look_bilingual(planted):
    alive = planted.features[planted.features.alive]
    weak, bil = planted.kind("weak"), planted.kind("bilingual")
    # Weak features fire independently in each language (low Jaccard, high mass JSD) ...
    assert weak.jaccard.max() < 0.2
    assert weak.mass_jsd.min() > 0.4
    # ... but their tiny activations make every softmax almost uniform: jsd ~ 2e-5, below
    # every planted bilingual feature; they are the four lowest-jsd features of the run.
    assert weak.jsd.max() < 1e-4
    assert weak.jsd.max() < bil.jsd.min()
    assert set(alive.nsmallest(len(weak), "jsd").feature) == set(weak.index)
    # bi's idaf term helps rare features, so bilingual features (which fire on few
    # pairs) mostly rank above the weak ones, but not all of them:
    assert (bil.bi_rank > weak.bi_rank.min()).any()
    # and weak features still rank above every leaning, independent and ubiquitous one.
    others = planted.kind("leaning", "independent", "ubiquitous").bi_rank.dropna()
    assert weak.bi_rank.max() < others.min()


def test_blog_score_on_ubiquitous_features(planted):
    ubi, bil = planted.kind("ubiquitous"), planted.kind("bilingual")
    # They fire on ~95% of the sentences of both languages: co-activation without a
    # threshold is high, but no higher than chance (the p-value says so) ...
    assert ubi.jaccard.min() > 0.85
    assert ubi.coact_log10p.min() > -1
    # ... and their large strengths, drawn independently on each side, dominate the
    # softmax: jsd ~ 0.5, above every bilingual feature, and idaf ~ 1 gives no help.
    assert ubi.jsd.min() > 0.4
    assert ubi.jsd.min() > bil.jsd.max()
    assert (ubi.idaf < 1.1).all()
    assert ubi.bi_rank.min() > bil.bi_rank.max()


def test_softmax_jsd_follows_activation_magnitude(planted):
    """Rescaling a feature's activations changes its blog jsd, never its mass JSD."""
    ids = planted.truth.features_of("independent") + planted.truth.features_of("bilingual")
    q = planted.q[:, :, ids]
    base = sentence_max_from_dense(q, ["en", "es"])
    n_ind = len(planted.truth.features_of("independent"))
    jsd = {c: scores.softmax_jsd(base.scaled(np.array([c, c]))) for c in (1e-3, 1.0, 10.0)}
    mass = {c: scores.mass_jsd(base.scaled(np.array([c, c]))) for c in (1e-3, 1.0, 10.0)}
    ind, bil = slice(0, n_ind), slice(n_ind, None)
    # Independent features shrunk 1000x look more bilingual than every real bilingual one.
    assert jsd[1e-3][ind].max() < jsd[1.0][bil].min()
    assert jsd[1.0][ind].min() > 0.5
    # Shrinking drives every jsd towards 0; growing does not order them either: at 10x
    # the softmax collapses onto each language's strongest pair, and jsd only says
    # whether those two pairs coincide (up for some bilingual features, ~0 for others).
    assert (jsd[1e-3] < jsd[1.0]).all()
    assert jsd[1e-3].max() < 1e-3
    assert (jsd[10.0][bil] > jsd[1.0][bil]).any()
    assert (jsd[10.0][bil] < 1e-6).any()
    for c in (1e-3, 10.0):
        np.testing.assert_allclose(mass[c], mass[1.0], rtol=1e-5, atol=1e-9)


def test_blog_score_with_k_capped_puts_the_rarest_features_first(planted):
    """Fewer than K + 1 = 301 features are alive, so K = n_alive - 1 and jsd_(K) is the
    largest jsd: the feature with the largest idaf gets a bonus as large as the whole
    jsd range and ranks first whatever its firing pattern."""
    f = planted.features
    alive = f[f.alive]
    beta = (alive.bi - alive.jsd) / alive.idaf
    np.testing.assert_allclose(beta, beta.iloc[0])
    assert beta.iloc[0] == pytest.approx(
        -(alive.jsd.max() - alive.jsd.min()) / (alive.idaf.max() - alive.idaf.min())
    )
    top = alive.nsmallest(5, "bi_rank")
    first = top.iloc[0]
    assert first.idaf == alive.idaf.max()
    # It fires in both languages, never on the same pair: the least bilingual pattern.
    assert first.jaccard == 0.0
    assert first.mass_jsd == pytest.approx(np.log(2))
    assert (top.jaccard == 0.0).sum() >= 3
