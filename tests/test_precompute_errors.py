"""Errors a user can fix say what to do, and leave no run behind. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bilingual_core import list_runs
from contract.config import ModelSource
from contract.overrides import with_overrides
from contract.presets import gemma_2_2b
from precompute.cli import main
from precompute.common import devices
from precompute.common.errors import (
    CorpusError,
    DeviceError,
    IncompatibleSaeError,
    ModelAccessError,
)
from precompute.common.testing import tiny_config, write_corpus
from precompute.extract.pipeline import run_extraction
from precompute.models import loading as models
from precompute.models import pretrained


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_cache: None) -> None:
    """Every test here builds the tiny model into the session's shared cache."""


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: False)


def test_gemma_preset_without_gpu_names_the_cpu_flag(tmp_path: Path, no_gpu: None) -> None:
    with pytest.raises(DeviceError, match="--device cpu"):
        run_extraction(gemma_2_2b(), tmp_path, "g", progress=False)
    assert not any(tmp_path.iterdir())
    assert devices.resolve_device(with_overrides(gemma_2_2b(), device="cpu")) == "cpu"


def test_forcing_cuda_without_gpu_fails(no_gpu: None) -> None:
    with pytest.raises(DeviceError, match="--device cpu"):
        devices.resolve_device(with_overrides(tiny_config(), device="cuda"))
    assert devices.resolve_device(with_overrides(tiny_config(), device="auto")) == "cpu"


def test_gated_model_without_token_fails_before_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download")

    import sae_lens

    monkeypatch.setattr(sae_lens.HookedSAETransformer, "from_pretrained_no_processing", no_download)
    with pytest.raises(ModelAccessError, match="HF_TOKEN") as info:
        models.load_model(ModelSource(name="gemma-2-2b", dtype="bfloat16"), "cpu")
    assert "huggingface.co/google/gemma-2-2b" in str(info.value)
    # The whole run stops there too: before the corpus is fetched, leaving nothing behind.
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", no_download)
    with pytest.raises(ModelAccessError, match="HF_TOKEN"):
        run_extraction(with_overrides(gemma_2_2b(), device="cpu"), tmp_path, "g", progress=False)
    assert not any(tmp_path.iterdir())
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_dummy")
    assert not pretrained.gated_without_token("google/gemma-2-2b")
    assert not pretrained.gated_without_token("gpt2")


def test_unknown_model_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelAccessError, match="unknown model"):
        models.load_model(ModelSource(name="no-such-model-xyz"), "cpu")


def test_hook_the_model_lacks(tmp_path: Path) -> None:
    cfg = with_overrides(tiny_config(sample_size=4), hook="blocks.7.hook_resid_post")
    with pytest.raises(
        IncompatibleSaeError, match=r"has no hook 'blocks\.7\.hook_resid_post'.*did you mean"
    ):
        run_extraction(cfg, tmp_path, "r", progress=False)
    assert list_runs(tmp_path) == []


def test_sae_whose_d_in_does_not_fit(tmp_path: Path) -> None:
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

    cfg = JumpReLUSAEConfig(d_in=32, d_sae=16)
    cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    cfg.metadata.model_name = "some-other-model"
    JumpReLUSAE(cfg).save_model(tmp_path / "sae")
    run_cfg = with_overrides(tiny_config(sample_size=4), sae_path=str(tmp_path / "sae"))
    with pytest.raises(
        IncompatibleSaeError, match=r"d_in 32 does not match the width 64.*some-other-model"
    ):
        run_extraction(run_cfg, tmp_path / "out", "r", progress=False)


def test_a_local_sae_that_fits_is_used(tmp_path: Path) -> None:
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

    cfg = JumpReLUSAEConfig(d_in=64, d_sae=32)
    cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    sae = JumpReLUSAE(cfg)
    import torch

    with torch.no_grad():
        sae.W_enc.normal_(generator=torch.Generator().manual_seed(0))
    sae.save_model(tmp_path / "sae")
    run_cfg = with_overrides(tiny_config(sample_size=6), sae_path=str(tmp_path / "sae"))
    manifest = run_extraction(run_cfg, tmp_path / "out", "r", progress=False)
    assert manifest.d_sae == 32 and manifest.sae["hook_name"] == "blocks.0.hook_resid_post"
    assert manifest.sae["path"] == str(tmp_path / "sae") and "release" not in manifest.sae


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "empty"),
        ([("Hello there.", "")], "misaligned"),
    ],
)
def test_empty_or_misaligned_corpus(
    tmp_path: Path, pairs: list[tuple[str, str]], message: str
) -> None:
    path = write_corpus(tmp_path / "c.tsv", pairs)
    with pytest.raises(CorpusError, match=message):
        run_extraction(
            tiny_config(sample_size=None, corpus_file=path), tmp_path / "out", "r", progress=False
        )
    assert not (tmp_path / "out").exists() or not any(
        (tmp_path / "out").iterdir()
    )  # no staging left


def test_cli_prints_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_corpus(tmp_path / "c.tsv", [("One.", "Uno.")])
    code = main(
        [
            "run",
            "--preset",
            "tiny",
            "--corpus-file",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--sample-size",
            "5",
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "only 1" in err and "Traceback" not in err
