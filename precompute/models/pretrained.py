"""Models through TransformerLens and SAEs through SAE-Lens: by name, or from local directories.

The model goes through ``HookedSAETransformer.from_pretrained_no_processing``
(weights as published, no folding), from the hub or from a local Hugging Face
checkpoint; the SAE through ``SAE.from_pretrained`` (a release + id) or
``SAE.load_from_disk`` (a directory). Gated weights (Gemma) need ``HF_TOKEN``:
that is checked before a long download starts, and failures during the
download are translated too. The token is only ever read from the environment,
never recorded. ``precompute.models.registry`` names these functions, one
entry per kind of source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.config import ModelSource, SaeSource
from precompute.common.errors import ModelAccessError
from precompute.models.checks import pretrained_sae_metadata

GATED_PREFIXES = ("google/gemma", "meta-llama/", "mistralai/")
TRANSFORMER_LENS_LOADER = "HookedSAETransformer.from_pretrained_no_processing"
"""What the manifest's ``model.loader`` says for both TransformerLens loaders."""

BUILD_HINT = (
    "; for the gemma-3-270m preset, build the checkpoint and its SAE first: "
    "python -m precompute gemma3-checkpoint"
)


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


# --------------------------------------------------------------------------- models


def check_named_model(source: ModelSource) -> None:
    """A known TransformerLens name whose gated weights can be had (cached, or a token)."""
    repo_id = official_name(source.name)
    if gated_without_token(repo_id):
        raise ModelAccessError(gated_message(repo_id))


def check_checkpoint(source: ModelSource) -> None:
    """The local Hugging Face checkpoint directory exists (its ``config.json``)."""
    if not (Path(str(source.path)) / "config.json").exists():
        raise ModelAccessError(
            f"no Hugging Face checkpoint (config.json) in {source.path}{BUILD_HINT}"
        )


def load_transformer_lens(source: ModelSource, device: str):
    """The TransformerLens model (with its tokenizer) on ``device``: the weights of
    ``source.path`` when given, else the hub's weights of ``source.name``."""
    import torch
    from sae_lens import HookedSAETransformer

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


# --------------------------------------------------------------------------- SAEs


def check_sae_directory(source: SaeSource) -> None:
    if not Path(str(source.path)).is_dir():
        raise ModelAccessError(f"no SAE-Lens directory at {source.path}{BUILD_HINT}")


def load_sae_directory(source: SaeSource, device: str):
    """An SAE written by ``SAE.save_model``."""
    from sae_lens import SAE

    check_sae_directory(source)
    return SAE.load_from_disk(source.path, device=device, dtype=source.dtype).eval()


def load_sae_release(source: SaeSource, device: str):
    """An SAE of an SAE-Lens release (a clear error first for an unknown release or id)."""
    from sae_lens import SAE

    pretrained_sae_metadata(str(source.release), str(source.sae_id))
    return SAE.from_pretrained(
        source.release, source.sae_id, device=device, dtype=source.dtype
    ).eval()
