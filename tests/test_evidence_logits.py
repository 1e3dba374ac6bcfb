"""Logit effects, language tags and decoder neighbours (``python -m precompute logits``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bilingual_core import Run
from bilingual_core.evidence import (
    LOGITS,
    MIXED,
    NEIGHBOURS,
    OUTPUT_LANGUAGES,
    UNKNOWN,
    output_language_shares,
    tag_tokens,
    token_language_shares,
)
from bilingual_core.schema import MANIFEST
from precompute.cli import main
from precompute.evidence.logits import compute_logit_evidence, decoder_neighbours, top_logits


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_cache: None) -> None:
    """Every test here builds the tiny model into the session's shared cache."""


def _dense_effects(model, sae) -> np.ndarray:
    d = sae.W_dec.detach().double()
    d = (d - d.mean(dim=1, keepdim=True)) * model.ln_final.w.detach().double()
    return (d @ model.W_U.detach().double()).numpy()


def test_logit_effects_equal_a_dense_computation(models) -> None:
    dense = _dense_effects(models.model, models.sae)
    top_ids, top_values, bottom_ids, bottom_values = top_logits(
        models.model, models.sae, k=5, block_size=7
    )
    np.testing.assert_allclose(
        np.take_along_axis(dense, bottom_ids, 1), bottom_values, rtol=1e-4, atol=1e-5
    )
    assert top_ids.shape == (models.sae.cfg.d_sae, 5)
    expect_top = np.argsort(-dense, axis=1, kind="stable")[:, :5]
    expect_bottom = np.argsort(dense, axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(
        top_values, np.take_along_axis(dense, expect_top, 1), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        bottom_values, np.take_along_axis(dense, expect_bottom, 1), rtol=1e-4, atol=1e-5
    )
    # ids agree wherever the values are not tied within float32 rounding
    np.testing.assert_allclose(
        np.take_along_axis(dense, top_ids, 1), top_values, rtol=1e-4, atol=1e-5
    )
    assert (top_ids[:, 0] == expect_top[:, 0]).mean() > 0.99
    assert (np.diff(top_values, axis=1) <= 0).all() and (np.diff(bottom_values, axis=1) >= 0).all()


def test_a_decoder_row_along_a_tokens_unembedding_promotes_it_first(models) -> None:
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

    model = models.model
    target = 1234
    saved = model.unembed.W_U.detach().clone()
    try:
        with torch.no_grad():
            model.unembed.W_U[:, target] *= 10  # a token with a distinctive unembedding
            sae = JumpReLUSAE(
                JumpReLUSAEConfig(d_in=model.cfg.d_model, d_sae=4, dtype="float32", device="cpu")
            )
            sae.W_dec.copy_(
                torch.randn(4, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
            )
            sae.W_dec[2] = model.W_U[:, target] / model.W_U[:, target].norm()
            top_ids, _, bottom_ids, _ = top_logits(model, sae, k=3)
            neg = top_logits(model, _negated(sae), k=3)[2]
    finally:
        with torch.no_grad():
            model.unembed.W_U.copy_(saved)
    assert top_ids[2, 0] == target
    assert neg[2, 0] == target  # the opposite direction suppresses it most
    assert target not in bottom_ids[2]


def _negated(sae):
    import copy

    out = copy.deepcopy(sae)
    with torch.no_grad():
        out.W_dec.mul_(-1)
    return out


def test_language_tag_follows_occurrences() -> None:
    tokens = pd.DataFrame(
        {
            "lang": ["en"] * 6 + ["es"] * 6,
            "position": [0, 1, 2, 3, 4, 5] * 2,
            "token_id": [1, 10, 10, 10, 20, 30, 1, 20, 20, 20, 30, 40],
        }
    )
    shares = token_language_shares(tokens, ["en", "es"])
    assert 1 not in shares.index  # BOS rows never count
    assert shares.loc[10, "lang_tag"] == "en" and shares.loc[10, "n_en"] == 3
    assert shares.loc[20, "lang_tag"] == MIXED and shares.loc[20, "share_es"] == pytest.approx(
        0.75
    )  # < 0.8
    assert shares.loc[30, "lang_tag"] == MIXED
    assert shares.loc[40, "lang_tag"] == "es"
    tagged = tag_tokens(np.array([10, 99, 40]), shares, ["en", "es"])
    assert tagged["lang_tag"].tolist() == ["en", UNKNOWN, "es"]
    assert tagged["n_occurrences"].tolist() == [3, 0, 1]
    assert np.isnan(tagged["share_en"].iloc[1])


def test_output_languages_count_promoted_tokens_only() -> None:
    logits = pd.DataFrame(
        {
            "feature": [0, 0, 0, 0, 0, 1, 1],
            "sign": ["promoted"] * 4 + ["suppressed", "promoted", "promoted"],
            "lang_tag": ["es", "es", "es", UNKNOWN, "en", "en", MIXED],
        }
    )
    out = output_language_shares(logits, ["en", "es"]).set_index("feature")
    assert out.loc[0, "out_es"] == pytest.approx(0.75) and out.loc[0, "out_en"] == 0
    assert out.loc[0, "output_languages"] == "es 0.8"
    assert out.loc[1, "out_mixed"] == pytest.approx(0.5)
    assert out.loc[1, "output_languages"] == "en 0.5"


def test_neighbours_by_cosine(models) -> None:
    import copy

    sae = copy.deepcopy(models.sae)
    with torch.no_grad():
        sae.W_dec[7] = 3 * sae.W_dec[1]
    frame = decoder_neighbours(sae, top=4, block_size=50)
    assert list(frame.columns) == ["feature", "rank", "neighbour", "cosine"]
    first = frame[(frame["feature"] == 1) & (frame["rank"] == 1)].iloc[0]
    assert first["neighbour"] == 7 and first["cosine"] == pytest.approx(1.0, abs=1e-5)
    w = sae.W_dec.detach().double()
    w = w / w.norm(dim=1, keepdim=True)
    cos = (w @ w.T).numpy()
    np.fill_diagonal(cos, -np.inf)
    best = np.sort(cos, axis=1)[:, ::-1][:, :4]
    np.testing.assert_allclose(frame["cosine"].to_numpy().reshape(-1, 4), best, atol=1e-5)
    assert not (frame["feature"] == frame["neighbour"]).any()


def test_tags_use_the_runs_tokens(models, tiny_run: Path) -> None:
    run = Run.open(tiny_run)
    tokens = run.read_pandas("tokens.parquet")
    result = compute_logit_evidence(
        models.model, models.sae, models.tokenizer, tokens, run.languages, k=4
    )
    seen = set(tokens.loc[tokens["position"] > 0, "token_id"])
    unknown = result.logits["lang_tag"] == UNKNOWN
    assert set(result.logits.loc[unknown, "token_id"]).isdisjoint(seen)
    assert set(result.logits.loc[~unknown, "token_id"]) <= seen
    assert len(result.logits) == 2 * 4 * run.manifest.d_sae


def test_cli_adds_the_tables_atomically(
    tiny_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.read_bytes() for p in tiny_run.iterdir()}
    import bilingual_core.storage

    def killed(self, manifest):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(bilingual_core.storage.RunWriter, "commit", killed)
        assert main(["logits", "--run", str(tiny_run), "--quiet", "--k", "3"]) == 130
    assert {p.name: p.read_bytes() for p in tiny_run.iterdir()} == before
    assert not [p for p in tiny_run.parent.iterdir() if ".tmp-" in p.name]

    assert main(["logits", "--run", str(tiny_run), "--quiet", "--k", "3", "--neighbours", "5"]) == 0
    assert "added logits.parquet" in capsys.readouterr().out
    run = Run.open(tiny_run)
    for name, data in before.items():
        if name != MANIFEST:
            assert (tiny_run / name).read_bytes() == data
    logits = run.read_pandas(LOGITS)
    assert list(logits.columns[:6]) == ["feature", "sign", "rank", "token_id", "token", "logit"]
    assert logits.groupby(["feature", "sign"]).size().eq(3).all()
    assert run.read_pandas(NEIGHBOURS)["rank"].max() == 5
    assert len(run.read_pandas(OUTPUT_LANGUAGES)) == run.manifest.d_sae
    assert run.manifest.evidence["logits"]["final_norm"]["scale_applied"] is False


@pytest.mark.slow
def test_run_adds_logits_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--preset", "tiny", "--out", str(tmp_path), "--sample-size", "8", "--quiet"]
    assert main([*base, "--run-id", "with"]) == 0
    assert main([*base, "--run-id", "without", "--no-logits"]) == 0
    assert Run.open(tmp_path, "with").has(LOGITS) and Run.open(tmp_path, "with").has(NEIGHBOURS)
    assert not Run.open(tmp_path, "without").has(LOGITS)
