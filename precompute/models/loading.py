"""Load the language model, its tokenizer and the SAE for a run.

The real model goes through TransformerLens
(``HookedSAETransformer.from_pretrained_no_processing``, weights as published,
no folding), from the hub or from a local Hugging Face checkpoint; the SAE
through SAE-Lens (``SAE.from_pretrained`` or ``SAE.load_from_disk``). Gated
weights (Gemma) need ``HF_TOKEN``: that is checked before a long download
starts, and failures during the download are translated too. The token is
only ever read from the environment, never recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contract.config import ModelSource, RunConfig, SaeSource, display_path
from precompute.common.errors import ModelAccessError
from precompute.models.checks import check_hook, check_sae_width, pretrained_sae_metadata

GATED_PREFIXES = ("google/gemma", "meta-llama/", "mistralai/")


@dataclass
class LoadedModels:
    """What the extraction runs: model, tokenizer, SAE, the hook, and manifest facts."""

    model: Any
    sae: Any
    tokenizer: Any
    hook_name: str
    model_info: dict[str, Any]
    sae_info: dict[str, Any]


def official_name(name: str) -> str:
    """TransformerLens's hub id for a model name (ModelAccessError when unknown)."""
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(name)
    except ValueError as exc:
        raise ModelAccessError(
            f"unknown model {name!r}: use a TransformerLens model name such as "
            "gemma-2-2b (with --model-path for a local checkpoint of that architecture)"
        ) from exc


def has_hf_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


def gated_without_token(repo_id: str) -> bool:
    """True when ``repo_id`` is gated, no token is configured and its weights are not cached."""
    if not repo_id.startswith(GATED_PREFIXES) or has_hf_token():
        return False
    from huggingface_hub import try_to_load_from_cache

    return not isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def gated_message(repo_id: str) -> str:
    return (
        f"{repo_id} is a gated model: accept its licence at https://huggingface.co/{repo_id}, "
        "create a read token at https://huggingface.co/settings/tokens and export HF_TOKEN=<token> "
        "before running (the token is used for the download only and never written to the run)"
    )


_BUILD_HINT = (
    "; for the gemma-3-270m preset, build the checkpoint and its SAE first: "
    "python -m precompute gemma3-checkpoint"
)


def check_access(source: ModelSource) -> None:
    """Fail early (before the corpus is fetched) when gated weights cannot be downloaded."""
    if source.path is not None:
        if not (Path(source.path) / "config.json").exists():
            raise ModelAccessError(
                f"no Hugging Face checkpoint (config.json) in {source.path}{_BUILD_HINT}"
            )
        return
    if source.is_tiny:
        return
    repo_id = official_name(source.name)
    if gated_without_token(repo_id):
        raise ModelAccessError(gated_message(repo_id))


def check_sae_access(source: SaeSource) -> None:
    """Fail early (before the model loads) when a Gemma Scope 2 SAE is neither cached nor
    downloadable (``HF_HUB_OFFLINE=1``): the error names the download command."""
    if source.kind != "pretrained":
        return
    from precompute.models.gemma_scope2 import check_cached, is_gemma_scope_2

    if is_gemma_scope_2(source.release):
        check_cached(source.release, source.sae_id)


def load_model(source: ModelSource, device: str):
    """The TransformerLens model (with its tokenizer) on ``device``."""
    import torch
    from sae_lens import HookedSAETransformer

    check_access(source)
    repo_id = official_name(source.name)
    dtype = getattr(torch, source.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, "device": device}
    if source.path is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs["hf_model"] = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype)
        kwargs["tokenizer"] = AutoTokenizer.from_pretrained(source.path)
    try:
        return HookedSAETransformer.from_pretrained_no_processing(source.name, **kwargs).eval()
    except OSError as exc:
        text = str(exc).lower()
        if "gated" in text or "401" in text or "403" in text:
            raise ModelAccessError(gated_message(repo_id) + f" ({exc})") from exc
        raise


def load_sae(source: SaeSource, device: str):
    """The SAE-Lens SAE on ``device``."""
    from sae_lens import SAE

    if source.path is not None:
        if not Path(source.path).is_dir():
            raise ModelAccessError(f"no SAE-Lens directory at {source.path}{_BUILD_HINT}")
        return SAE.load_from_disk(source.path, device=device, dtype=source.dtype).eval()
    pretrained_sae_metadata(source.release, source.sae_id)  # clear error for unknown release/id
    from precompute.models.gemma_scope2 import is_gemma_scope_2, load_gemma_scope_2

    if is_gemma_scope_2(source.release):  # also offline, from the Hugging Face cache
        return load_gemma_scope_2(source.release, source.sae_id, device, source.dtype).eval()
    return SAE.from_pretrained(
        source.release, source.sae_id, device=device, dtype=source.dtype
    ).eval()


def load_models(config: RunConfig, device: str) -> LoadedModels:
    """Model, SAE and tokenizer for ``config`` on ``device``, checked to fit together."""
    if config.model.is_tiny:
        from precompute.models.tiny import load_tiny

        model, sae, tokenizer = load_tiny(config.tiny, device, config.model.dtype, config.sae.dtype)
        if config.sae.kind == "local":
            sae = load_sae(config.sae, device)
    else:
        model = load_model(config.model, device)
        sae = load_sae(config.sae, device)
        tokenizer = model.tokenizer
    hook = config.sae.hook_name or sae.cfg.metadata.hook_name
    if not hook:
        raise ModelAccessError(
            "the SAE's metadata names no hook; pass --hook (e.g. blocks.20.hook_resid_post)"
        )
    check_hook(model, hook, config.model.name)
    check_sae_width(model, sae, hook, config.model.name)
    return LoadedModels(
        model, sae, tokenizer, hook, model_info(config, model), sae_info(config, sae, hook)
    )


def model_info(config: RunConfig, model) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": config.model.name,
        "dtype": config.model.dtype,
        "n_layers": model.cfg.n_layers,
        "d_model": model.cfg.d_model,
        "d_vocab": model.cfg.d_vocab,
        "loader": "HookedSAETransformer.from_pretrained_no_processing",
    }
    if config.model.path is not None:
        info["path"] = config.model.path
    if config.model.is_tiny:
        info["loader"] = "precompute.models.tiny (built in-process)"
        info["tiny"] = {
            **asdict(config.tiny),
            "tokenizer_corpus": display_path(config.tiny.tokenizer_corpus),
        }
    return info


def sae_info(config: RunConfig, sae, hook: str) -> dict[str, Any]:
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
    if src.path is not None:
        info["path"] = src.path
    else:
        info["release"], info["id"] = src.release, src.sae_id
    if neuronpedia:
        info["neuronpedia_id"] = neuronpedia
    return info
