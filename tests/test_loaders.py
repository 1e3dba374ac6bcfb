"""The loader registry: each kind of source finds its loader, checks it offline, describes it
for the manifest, and a new loader is one entry. Nothing here loads a model."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from contract.config import REPO_ROOT, ModelSource, SaeSource, TinySpec
from contract.presets import GS2_RES
from precompute.common.errors import ModelAccessError
from precompute.models import loading, registry
from precompute.models.registry import SaeLoader, model_loader, sae_loader


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (ModelSource(name="tiny"), "tiny"),
        (ModelSource(name="gemma-2-2b"), "pretrained"),
        (ModelSource(name="google/gemma-3-270m", path="/some/checkpoint"), "local"),
    ],
)
def test_each_model_source_has_its_loader(source: ModelSource, kind: str) -> None:
    assert source.kind == kind
    assert model_loader(source).kind == kind


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (SaeSource(release="tiny"), "tiny"),
        (SaeSource(path="/some/sae"), "local"),
        (SaeSource(release=GS2_RES, sae_id="layer_9_width_16k_l0_medium"), "gemma_scope_2"),
        (SaeSource(release="gemma-scope-2b-pt-res-canonical", sae_id="x"), "pretrained"),
    ],
)
def test_each_sae_source_has_its_loader(source: SaeSource, kind: str) -> None:
    assert sae_loader(source).kind == kind


def test_the_tiny_models_manifest_record_gives_its_spec_back() -> None:
    spec = TinySpec(seed=3, d_sae=256, hook_layer=2)
    loader = model_loader(ModelSource(name="tiny"))
    record = loader.info(ModelSource(name="tiny"), spec)
    assert record["loader"].startswith("precompute.models.tiny")
    assert not Path(record["tiny"]["tokenizer_corpus"]).is_absolute()  # portable manifests
    assert loader.restore(record) == {"tiny": spec}
    assert loader.restore({"name": "tiny"}) == {}  # an old manifest: the default spec


def test_where_a_source_came_from_is_recorded() -> None:
    local = ModelSource(name="google/gemma-3-270m", path="/ckpt")
    assert model_loader(local).info(local, TinySpec())["path"] == "/ckpt"
    assert "path" not in model_loader(ModelSource(name="gpt2")).info(
        ModelSource(name="gpt2"), TinySpec()
    )
    assert sae_loader(SaeSource(path="/sae")).info(SaeSource(path="/sae")) == {"path": "/sae"}
    gs2 = SaeSource(release=GS2_RES, sae_id="layer_9_width_16k_l0_medium")
    assert sae_loader(gs2).info(gs2) == {"release": GS2_RES, "id": gs2.sae_id}


def test_missing_local_directories_fail_the_offline_check(tmp_path: Path) -> None:
    with pytest.raises(ModelAccessError, match=r"config\.json.*gemma3-checkpoint"):
        loading.check_access(ModelSource(name="google/gemma-3-270m", path=str(tmp_path)))
    with pytest.raises(ModelAccessError, match="no SAE-Lens directory"):
        loading.check_sae_access(SaeSource(path=str(tmp_path / "absent")))
    loading.check_access(ModelSource(name="tiny"))  # in-process: nothing to check
    loading.check_sae_access(SaeSource(release="tiny"))


def test_a_new_loader_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = []
    fake = SaeLoader(
        kind="my-hub",
        accepts=lambda source: source.release == "my-hub",
        check=lambda source: None,
        load=lambda source, tiny, device: loaded.append((source.sae_id, device)) or "an SAE",
        info=lambda source: {"release": "my-hub", "id": source.sae_id},
    )
    monkeypatch.setattr(registry, "SAE_LOADERS", (fake, *registry.SAE_LOADERS))
    source = SaeSource(release="my-hub", sae_id="layer-3")
    assert loading.load_sae(source, "cpu") == "an SAE"
    assert loaded == [("layer-3", "cpu")]
    assert sae_loader(replace(source, release="tiny", sae_id=None)).kind == "tiny"


def test_a_source_no_loader_takes_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MODEL_LOADERS", registry.MODEL_LOADERS[1:])
    with pytest.raises(ModelAccessError, match=r"no loader takes the model.*local, pretrained"):
        loading.check_access(ModelSource(name="tiny"))


def test_the_registry_imports_no_torch() -> None:
    code = (
        "import sys, precompute.models.registry, precompute.models.loading; "
        "sys.exit('torch' in sys.modules or 'sae_lens' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0


def test_the_tiny_preset_loads_through_the_registry(tiny_cache: None) -> None:
    """``load_models`` and the SAE loader alone give the same SAE; the manifest record
    ``model_info`` writes gives the tiny spec back."""
    import torch

    from precompute.common.testing import tiny_config

    config = tiny_config()
    loaded = loading.load_models(config, "cpu")
    assert loaded.tokenizer is loaded.model.tokenizer
    assert model_loader(config.model).restore(loaded.model_info) == {"tiny": config.tiny}
    assert (loaded.sae_info["release"], loaded.sae_info["id"]) == ("tiny", config.sae.sae_id)
    sae = loading.load_sae(config.sae, "cpu", config.tiny)
    assert torch.equal(sae.W_dec, loaded.sae.W_dec)
