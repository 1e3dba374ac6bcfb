"""Load Gemma Scope 2 SAEs (SAE-Lens's ``gemma_3`` releases) from the hub or, offline, its cache.

SAE-Lens's own loader for these releases (``gemma_3_sae_huggingface_loader``)
reads ``<folder>/config.json`` and ``<folder>/params.safetensors`` of the repo
(``w_enc`` (d_in, d_sae), ``w_dec`` (d_sae, d_in), ``b_enc``, ``b_dec``,
``threshold``), but it asks the hub for the tensor shapes with HTTP range
requests before it downloads anything, so it cannot load an SAE offline even
when both files are cached. :func:`gemma_scope_2_loader` is a converter for
``SAE.from_pretrained(..., converter=...)`` that reads the same two files
through ``hf_hub_download`` (the cache first, the hub when online) and takes
the shapes from the downloaded file; it builds the same config and state dict
(``tests/test_gemma_scope2.py`` compares them with SAE-Lens's loader).
"""

from __future__ import annotations

import json
import re
from typing import Any

from contract.presets import GS2_REPO, GS2_RES, GS2_RES_ALL
from precompute.common.errors import ModelAccessError

PARAMS = "params.safetensors"
CONFIG = "config.json"
_LAYER = re.compile(r"layer_(\d+)")


GS2_FOLDERS = {GS2_RES: "resid_post", GS2_RES_ALL: "resid_post_all"}
"""Folder of each release's SAEs in the hub repo ``GS2_REPO`` (as SAE-Lens's registry says)."""


def is_gemma_scope_2(release: str | None) -> bool:
    """True for the two Gemma 3 270M residual-stream releases of Gemma Scope 2."""
    return release in GS2_FOLDERS


def download_command(repo_id: str, folder: str) -> str:
    return f"hf download {repo_id} --include '{folder}/*'"


def locate(release: str, sae_id: str) -> tuple[str, str]:
    """``(repo_id, folder)`` of an SAE of the two releases (no SAE-Lens import: cheap)."""
    return GS2_REPO, f"{GS2_FOLDERS[release]}/{sae_id}"


def missing_message(release: str, sae_id: str, reason: str) -> str:
    repo_id, folder = locate(release, sae_id)
    return (
        f"the SAE {sae_id!r} of release {release!r} ({repo_id}, {folder}/) is not in the local "
        f"Hugging Face cache and cannot be downloaded ({reason}); fetch it on a machine with "
        f"network access with `{download_command(repo_id, folder)}` (the same HF_HOME / "
        "HF_HUB_CACHE), or run once online"
    )


def check_cached(release: str, sae_id: str) -> None:
    """When the hub is offline (``HF_HUB_OFFLINE=1``), fail early unless the SAE's files are
    cached (the run checks this before it loads the model)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.is_offline_mode():
        return
    repo_id, folder = locate(release, sae_id)
    if not isinstance(try_to_load_from_cache(repo_id, f"{folder}/{PARAMS}"), str):
        raise ModelAccessError(missing_message(release, sae_id, "HF_HUB_OFFLINE=1"))


def _fetch(repo_id: str, filename: str, force_download: bool) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, force_download=force_download)


def _raw_config(repo_id: str, folder: str, force_download: bool) -> dict[str, Any]:
    """The folder's ``config.json``; without one (as SAE-Lens does) a JumpReLU config
    whose hook follows from the folder name."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        with open(_fetch(repo_id, f"{folder}/{CONFIG}", force_download)) as handle:
            return json.load(handle)
    except LocalEntryNotFoundError:
        raise
    except EntryNotFoundError:
        return {
            "architecture": "jump_relu",
            "model_name": repo_id.replace("gemma-scope-2", "gemma-3"),
        }


def gemma_scope_2_loader(
    repo_id: str,
    folder_name: str,
    device: str = "cpu",
    force_download: bool = False,
    cfg_overrides: dict[str, Any] | None = None,
):
    """SAE-Lens converter for Gemma Scope 2 residual-stream SAEs: ``(cfg, state_dict, None)``."""
    from sae_lens.loading.pretrained_sae_loaders import load_safetensors_weights
    from safetensors import safe_open

    if "resid_post" not in folder_name:
        raise ModelAccessError(
            f"{folder_name}: only the residual-stream (resid_post) Gemma Scope 2 SAEs are supported"
        )
    raw = _raw_config(repo_id, folder_name, force_download)
    if raw.get("architecture") != "jump_relu":
        raise ModelAccessError(
            f"{repo_id}/{folder_name}/{CONFIG}: architecture {raw.get('architecture')!r}, "
            "expected 'jump_relu'"
        )
    layer = _LAYER.search(folder_name)
    if layer is None:
        raise ModelAccessError(f"{folder_name}: no layer_<N> in the SAE's folder name")
    params = _fetch(repo_id, f"{folder_name}/{PARAMS}", force_download)
    with safe_open(params, framework="pt") as handle:
        d_in, d_sae = handle.get_slice("w_enc").get_shape()
    # the hub's model id (the 270M model has no -pt suffix there, unlike the SAE repo)
    model_name = repo_id.replace("gemma-scope-2", "gemma-3").replace("-270m-pt", "-270m")
    cfg: dict[str, Any] = {
        "architecture": "jumprelu",
        "d_in": int(d_in),
        "d_sae": int(d_sae),
        "dtype": "float32",
        "model_name": model_name,
        "hook_name": f"blocks.{int(layer.group(1))}.hook_resid_post",
        "hook_head_index": None,
        "finetuning_scaling_factor": False,
        "sae_lens_training_version": None,
        "prepend_bos": True,
        "dataset_path": "monology/pile-uncopyrighted",
        "context_size": 1024,
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "hf_hook_name": raw.get("hf_hook_point_in"),
        "device": device,
        **(cfg_overrides or {}),
    }
    weights = load_safetensors_weights(params, device=device, dtype=cfg["dtype"])
    state = {
        "W_enc": weights["w_enc"],
        "W_dec": weights["w_dec"],
        "b_enc": weights["b_enc"],
        "b_dec": weights["b_dec"],
        "threshold": weights["threshold"],
    }
    return cfg, state, None


def load_gemma_scope_2(release: str, sae_id: str, device: str, dtype: str):
    """``SAE.from_pretrained`` with the offline-capable converter; a missing file (offline,
    or no network) is one ModelAccessError naming the release, the id and the download command."""
    from huggingface_hub.errors import LocalEntryNotFoundError
    from sae_lens import SAE

    check_cached(release, sae_id)
    try:
        return SAE.from_pretrained(
            release, sae_id, device=device, dtype=dtype, converter=gemma_scope_2_loader
        )
    except LocalEntryNotFoundError as exc:
        raise ModelAccessError(missing_message(release, sae_id, str(exc).splitlines()[0])) from None
