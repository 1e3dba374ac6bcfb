"""Ablation per language against a frequency-matched random baseline (``validate --top N``)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bilingual_core import Run
from bilingual_core.evidence import ABLATION, bootstrap_ratio_ci, draw_baseline, ranking_column
from bilingual_core.schema import FEATURES
from precompute.cli import main
from precompute.evidence.ablation import compute_ablation, firing_starts
from precompute.evidence.config import AblationConfig


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_cache: None) -> None:
    """Every test here builds the tiny model into the session's shared cache."""


def _busy_feature(run: Run) -> int:
    """An alive feature firing in several sentences of each language."""
    feats = run.read_pandas(FEATURES)
    alive = feats[feats["alive"] & (feats["n_fire_en"] >= 3) & (feats["n_fire_es"] >= 3)]
    return int(alive.sort_values("n_fire_en")["feature"].iloc[0])


CFG = AblationConfig(max_sentences=6, n_baseline=2, baseline_pool=10, n_boot=200)


def _with(models, sae):
    out = copy.copy(models)
    out.sae = sae
    return out


def test_a_zeroed_decoder_direction_has_no_effect(tiny_run: Path, models) -> None:
    run = Run.open(tiny_run)
    f = _busy_feature(run)
    sae = copy.deepcopy(models.sae)
    with torch.no_grad():
        sae.W_dec[f] = 0
    table, _ = compute_ablation(
        run, _with(models, sae), AblationConfig(**{**CFG.__dict__, "features": (f,)})
    )
    assert set(table["lang"]) == {"en", "es"}
    assert (table["n_tokens"] > 0).all()
    np.testing.assert_allclose(table["delta_loss"], 0, atol=1e-5)
    assert not table["hurts"].any()


def test_a_planted_direction_raises_the_loss_where_it_fires(tiny_run: Path, models) -> None:
    """The feature's decoder direction is made to predict the tokens that follow its
    firing positions (their unembeddings get a component along it), so removing it
    must raise the loss there, well above random features of similar frequency."""
    run = Run.open(tiny_run)
    f = _busy_feature(run)
    starts = firing_starts(run, [f])
    tokens = run.read_pandas("tokens.parquet")
    tokens["lang"] = tokens["lang"].astype(str)
    nxt = tokens.merge(
        starts.assign(position=starts["first_position"] + 1), on=["pair_id", "lang", "position"]
    )
    targets = torch.as_tensor(sorted(set(nxt["token_id"])))
    model = models.model
    d = models.sae.W_dec[f].detach()
    d = (d - d.mean()) / d.norm()
    saved = model.unembed.W_U.detach().clone()
    try:
        with torch.no_grad():
            model.unembed.W_U[:, targets] += 8 * d[:, None]
        table, _ = compute_ablation(
            run, models, AblationConfig(**{**CFG.__dict__, "features": (f,)})
        )
    finally:
        with torch.no_grad():
            model.unembed.W_U.copy_(saved)
    assert (table["delta_loss"] > 0).all() and (table["ci_low"] > 0).all()
    assert (table["delta_loss"] > table["baseline_delta_loss"] + 0.01).all()


def test_the_baseline_is_drawn_with_matching_frequency() -> None:
    rng = np.random.default_rng(0)
    n = 200
    feats = pd.DataFrame(
        {
            "feature": np.arange(n),
            "alive": np.arange(n) % 7 != 0,
            "n_fire_en": rng.integers(1, 500, n),
            "n_fire_es": rng.integers(1, 500, n),
        }
    )
    candidates = [1, 2, 3]
    drawn = draw_baseline(
        feats, candidates, ["en", "es"], n=4, pool=10, rng=np.random.default_rng(1)
    )
    total = (feats["n_fire_en"] + feats["n_fire_es"]).to_numpy()
    for c, chosen in drawn.items():
        assert len(chosen) == 4 and len(set(chosen)) == 4
        assert not set(chosen) & set(candidates)
        assert feats.set_index("feature").loc[chosen, "alive"].all()
        others = feats[feats["alive"] & ~feats["feature"].isin(candidates)]["feature"].to_numpy()
        distance = np.abs(np.log(total[others]) - np.log(total[c]))
        tenth = np.sort(distance)[9]
        assert all(abs(np.log(total[b]) - np.log(total[c])) <= tenth for b in chosen)
    again = draw_baseline(
        feats, candidates, ["en", "es"], n=4, pool=10, rng=np.random.default_rng(1)
    )
    assert again == drawn


def test_bootstrap_ci_pools_tokens_over_sentences() -> None:
    rng = np.random.default_rng(0)
    ratio, low, high = bootstrap_ratio_ci(np.array([1.0, 3.0, 2.0]), np.array([1, 3, 2]), rng=rng)
    assert ratio == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)
    ratio, low, high = bootstrap_ratio_ci(np.array([0.0, 10.0]), np.array([5, 5]), rng=rng)
    assert ratio == pytest.approx(1.0) and low < ratio < high
    assert np.isnan(bootstrap_ratio_ci(np.array([]), np.array([]), rng=rng)[0])


def test_default_ranking_is_the_first_available() -> None:
    assert ranking_column(["bi_rank", "jaccard_rank", "evidence_rank"]) == "evidence_rank"
    assert ranking_column(["evidence_rank", "translation_rank"]) == "translation_rank"
    assert ranking_column(["bi_rank", "jaccard_rank"]) == "jaccard_rank"
    assert ranking_column(["bi_rank", "jaccard_rank"], "bi") == "bi_rank"
    with pytest.raises(ValueError, match="jaccard"):
        ranking_column(["jaccard_rank"], "nope")


@pytest.mark.slow
def test_cli_validate_is_reproducible_with_a_seed(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "validate",
        "--run",
        str(tiny_run),
        "--top",
        "2",
        "--max-sentences",
        "4",
        "--baseline",
        "2",
        "--quiet",
        "--seed",
        "3",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ablation.parquet" in out and "by translation_rank" in out  # the app's default ranking
    first = Run.open(tiny_run).read_pandas(ABLATION)
    assert main(args) == 0
    second = Run.open(tiny_run).read_pandas(ABLATION)
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == 2 * 2 and set(first["lang"]) == {"en", "es"}
    assert first["candidate_rank"].tolist() == [1, 1, 2, 2]
    assert Run.open(tiny_run).manifest.evidence["validate"]["ablation"]["seed"] == 3


def test_a_model_that_cannot_be_loaded_is_named(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-sae"
    assert (
        main(
            [
                "validate",
                "--run",
                str(tiny_run),
                "--top",
                "1",
                "--sae-path",
                str(missing),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "model 'tiny'" in err and str(missing) in err and "--sae-path" in err
