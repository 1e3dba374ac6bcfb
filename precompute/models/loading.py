"""Load the language model, its tokenizer and the SAE for a run, checked to fit together.

Each kind of source (the tiny in-process model, a TransformerLens model by name,
a local Hugging Face checkpoint; the tiny SAE, an SAE-Lens release, a Gemma
Scope 2 SAE, an SAE-Lens directory) has one loader in
``precompute.models.registry``; the functions here look the source's loader up
and add the checks and manifest facts every kind shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.config import ModelSource, RunConfig, SaeSource, TinySpec
from precompute.common.errors import ModelAccessError
from precompute.models.checks import check_hook, check_sae_width
from precompute.models.registry import model_loader, sae_loader


@dataclass
class LoadedModels:
    """What the extraction runs: model, tokenizer, SAE, the hook, and manifest facts."""

    model: Any
    sae: Any
    tokenizer: Any
    hook_name: str
    model_info: dict[str, Any]
    sae_info: dict[str, Any]


def check_access(source: ModelSource) -> None:
    """Fail early (before the corpus is fetched) when the model cannot be had: gated
    weights without a token, a missing checkpoint directory."""
    model_loader(source).check(source)


def check_sae_access(source: SaeSource) -> None:
    """Fail early (before the model loads) when the SAE cannot be had: a missing directory,
    a Gemma Scope 2 SAE neither cached nor downloadable (``HF_HUB_OFFLINE=1``; the error
    names the download command)."""
    sae_loader(source).check(source)


def load_model(source: ModelSource, device: str, tiny: TinySpec | None = None):
    """The model (with its tokenizer) on ``device``; ``tiny``: the spec of the tiny model."""
    loader = model_loader(source)
    loader.check(source)
    return loader.load(source, tiny or TinySpec(), device)


def load_sae(source: SaeSource, device: str, tiny: TinySpec | None = None):
    """The SAE-Lens SAE on ``device``; ``tiny``: the spec of the tiny SAE."""
    return sae_loader(source).load(source, tiny or TinySpec(), device)


def load_models(config: RunConfig, device: str) -> LoadedModels:
    """Model, SAE and tokenizer for ``config`` on ``device``, checked to fit together."""
    model = load_model(config.model, device, config.tiny)
    sae = load_sae(config.sae, device, config.tiny)
    hook = config.sae.hook_name or sae.cfg.metadata.hook_name
    if not hook:
        raise ModelAccessError(
            "the SAE's metadata names no hook; pass --hook (e.g. blocks.20.hook_resid_post)"
        )
    check_hook(model, hook, config.model.name)
    check_sae_width(model, sae, hook, config.model.name)
    return LoadedModels(
        model, sae, model.tokenizer, hook, model_info(config, model), sae_info(config, sae, hook)
    )


def model_info(config: RunConfig, model) -> dict[str, Any]:
    """The manifest's ``model`` record: the loaded model's shape and where it came from."""
    info: dict[str, Any] = {
        "name": config.model.name,
        "dtype": config.model.dtype,
        "n_layers": model.cfg.n_layers,
        "d_model": model.cfg.d_model,
        "d_vocab": model.cfg.d_vocab,
    }
    return info | model_loader(config.model).info(config.model, config.tiny)


def sae_info(config: RunConfig, sae, hook: str) -> dict[str, Any]:
    """The manifest's ``sae`` record: the loaded SAE's shape and where it came from."""
    src = config.sae
    meta = sae.cfg.metadata
    neuronpedia = src.neuronpedia_id or meta.get("neuronpedia_id")
    info: dict[str, Any] = {
        "hook_name": hook,
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "architecture": sae.cfg.architecture(),
        "dtype": src.dtype,
    }
    info |= sae_loader(src).info(src)
    if neuronpedia:
        info["neuronpedia_id"] = neuronpedia
    return info
