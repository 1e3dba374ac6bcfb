"""The gemma-scope-2-270m preset: its SAE catalogue, its options, and its loader offline.

A small SAE (d_in 640, 24 latents) is written in the file layout of the
Gemma Scope 2 hub repo (``<folder>/config.json`` + ``<folder>/params.safetensors``)
into a Hugging Face cache under ``tmp_path``; with the hub offline, the preset's
own loader reads it. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from contract.config import BUNDLED_CORPUS
from contract.overrides import with_overrides
from contract.presets import (
    GEMMA3_MODEL,
    GS2_REPO,
    GS2_RES,
    GS2_RES_ALL,
    gemma3_directory,
    gemma_scope_2_entries,
    preset,
)
from precompute.cli import main
from precompute.common.errors import ModelAccessError
from precompute.models.gemma_scope2 import gemma_scope_2_loader, locate
from precompute.models.loading import check_sae_access, load_sae

D_IN, D_SAE = 640, 24
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def write_cached_sae(
    cache: Path, release: str, sae_id: str, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The SAE's files where ``hf_hub_download`` finds them in ``cache`` (HF_HUB_CACHE)."""
    repo_id, folder = locate(release, sae_id)
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    target = repo / "snapshots" / SNAPSHOT / folder
    target.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(D_SAE, D_IN, generator=gen)
    tensors = {
        "w_enc": (w / w.norm(dim=1, keepdim=True)).T.contiguous(),
        "w_dec": (w / w.norm(dim=1, keepdim=True)).contiguous(),
        "b_enc": torch.zeros(D_SAE),
        "b_dec": torch.zeros(D_IN),
        "threshold": torch.full((D_SAE,), 0.5),
    }
    save_file(tensors, str(target / "params.safetensors"))
    layer = int(sae_id.split("_")[1])
    (target / "config.json").write_text(
        json.dumps(
            {
                "architecture": "jump_relu",
                "model_name": "gemma-v3-270m-pt",
                "hf_hook_point_in": f"model.layers.{layer}.output",
            }
        )
    )
    return tensors


@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache under ``tmp_path``, with the hub offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_catalogue_is_the_installed_sae_lens_registry() -> None:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    ours = gemma_scope_2_entries()
    for release in (GS2_RES, GS2_RES_ALL):
        lookup = directory[release]
        assert lookup.repo_id == GS2_REPO and lookup.model == GEMMA3_MODEL
        listed = {i for i in lookup.saes_map if "seed" not in i}
        assert listed <= set(ours), listed - set(ours)
        for sae_id, rel in ours.items():
            if rel == release:
                assert sae_id in listed
                assert locate(rel, sae_id)[1] == lookup.saes_map[sae_id]
                np_id = with_overrides(
                    preset("gemma-scope-2-270m"),
                    **dict(
                        zip(("layer", "width", "l0"), _parts(sae_id), strict=True),
                    ),
                ).sae.neuronpedia_id
                assert np_id == lookup.neuronpedia_id.get(sae_id)


def _parts(sae_id: str) -> tuple[int, str, str]:
    bits = sae_id.split("_")
    return int(bits[1]), bits[3], bits[5]


def test_preset_is_gemma_3_270m_with_the_layer_12_sae() -> None:
    cfg = preset("gemma-scope-2-270m")
    assert cfg.model.name == "google/gemma-3-270m" and cfg.model.path is None
    assert (cfg.sae.release, cfg.sae.sae_id) == (GS2_RES, "layer_12_width_16k_l0_medium")
    assert cfg.sae.hook_name == "blocks.12.hook_resid_post"
    assert cfg.sae.neuronpedia_id == "gemma-3-270m/12-gemmascope-2-res-16k"


def test_layer_width_l0_pick_an_entry_of_either_release() -> None:
    base = preset("gemma-scope-2-270m")
    sae = with_overrides(base, layer=3, l0="big", width="262k").sae
    assert (sae.release, sae.sae_id, sae.hook_name, sae.neuronpedia_id) == (
        GS2_RES_ALL,
        "layer_3_width_262k_l0_big",
        "blocks.3.hook_resid_post",
        None,
    )
    sae = with_overrides(base, layer=9, width="1m").sae
    assert (sae.release, sae.sae_id) == (GS2_RES, "layer_9_width_1m_l0_medium")
    assert sae.neuronpedia_id == "gemma-3-270m/9-gemmascope-2-res-1m"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"layer": 3}, "layer 3, width 16k, L0 medium"),
        ({"layer": 30, "l0": "small"}, "layer 30"),
        ({"layer": 4, "width": "1m", "l0": "big"}, "width 1m"),
    ],
)
def test_invalid_combination_lists_the_valid_ones(overrides, needle) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        with_overrides(preset("gemma-scope-2-270m"), **overrides)
    assert "--layer 0..17 with --width 16k|262k and --l0 small|big" in str(info.value)
    assert "--layer 5, 9, 12, 15" in str(info.value)


def test_layer_needs_the_gemma_scope_preset() -> None:
    with pytest.raises(ValueError, match="--preset gemma-scope-2-270m"):
        with_overrides(preset("tiny"), layer=1)


def test_offline_without_the_files_names_release_id_and_command(hf_offline: Path) -> None:
    sae = preset("gemma-scope-2-270m").sae
    with pytest.raises(ModelAccessError) as info:
        check_sae_access(sae)
    text = str(info.value)
    assert GS2_RES in text and "layer_12_width_16k_l0_medium" in text
    assert (
        "hf download google/gemma-scope-2-270m-pt --include 'resid_post/layer_12_width_16k_l0_medium/*'"
        in text
    )


def test_run_command_offline_exits_with_one_line(hf_offline: Path, tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "run",
            "--preset=gemma-scope-2-270m",
            f"--out={tmp_path / 'results'}",
            "--layer=6",
            "--l0=small",
            "--device=cpu",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "layer_6_width_16k_l0_small" in err and GS2_RES_ALL in err and "hf download" in err


def test_offline_cache_loads_through_the_presets_call(hf_offline: Path) -> None:
    sae_id = "layer_12_width_16k_l0_medium"
    tensors = write_cached_sae(hf_offline, GS2_RES, sae_id)
    source = preset("gemma-scope-2-270m").sae
    check_sae_access(source)  # cached: no error
    sae = load_sae(source, "cpu")
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (D_IN, D_SAE)
    assert sae.cfg.metadata.hook_name == "blocks.12.hook_resid_post"
    assert torch.equal(sae.W_enc.detach(), tensors["w_enc"])
    assert torch.equal(sae.threshold.detach(), tensors["threshold"])


def test_same_config_and_weights_as_sae_lens_own_loader(
    hf_offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAE-Lens's loader reads the same files (its hub-only shape lookup answered locally)."""
    from sae_lens.loading import pretrained_sae_loaders as loaders
    from safetensors import safe_open

    sae_id = "layer_5_width_16k_l0_small"
    write_cached_sae(hf_offline, GS2_RES_ALL, sae_id, seed=1)
    repo_id, folder = locate(GS2_RES_ALL, sae_id)

    def local_shapes(repo: str, filename: str) -> dict[str, list[int]]:
        from huggingface_hub import hf_hub_download

        with safe_open(hf_hub_download(repo, filename), framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118

    monkeypatch.setattr(loaders, "get_safetensors_tensor_shapes", local_shapes)
    theirs = loaders.gemma_3_sae_huggingface_loader(repo_id, folder, "cpu")
    ours = gemma_scope_2_loader(repo_id, folder, "cpu")
    assert ours[0] == theirs[0]
    assert ours[1].keys() == theirs[1].keys()
    for key in ours[1]:
        assert torch.equal(ours[1][key], theirs[1][key])


@pytest.mark.slow
def test_real_extraction_on_gemma3_with_the_cached_sae(hf_offline: Path, tmp_path: Path) -> None:
    from bilingual_core import Run
    from precompute.extract.pipeline import run_extraction

    checkpoint = gemma3_directory() / "checkpoint"
    if not (checkpoint / "config.json").exists():
        pytest.skip("no Gemma 3 checkpoint: python -m precompute gemma3-checkpoint")
    write_cached_sae(hf_offline, GS2_RES_ALL, "layer_3_width_16k_l0_small", seed=2)
    config = with_overrides(
        preset("gemma-scope-2-270m"),
        model_path=str(checkpoint),
        layer=3,
        l0="small",
        corpus_file=str(BUNDLED_CORPUS),
        sample_size=6,
        device="cpu",
    )
    manifest = run_extraction(config, tmp_path / "results", "gs2", progress=False)
    run = Run.open(tmp_path / "results" / "gs2")
    assert manifest.d_sae == D_SAE and manifest.n_pairs == 6
    assert manifest.sae["release"] == GS2_RES_ALL
    assert manifest.sae["hook_name"] == "blocks.3.hook_resid_post"
    assert manifest.extraction["stop_at_layer"] == 4
    acts = run.read_pandas("activations.parquet")
    assert len(acts) > 0 and (acts["activation"] > 0.5).all()  # the JumpReLU threshold
