"""Does the SAE fit the model? Checked on the loaded objects and, offline, on metadata.

On loaded objects: the hook exists in the model, and the SAE's ``d_in`` equals
the width of that hook's activation (measured by running the model on a
single BOS token). Offline (``--dry-run`` and the tests): TransformerLens's
config of the model and SAE-Lens's directory of pretrained SAEs, both shipped
with the packages, must agree on model, hook, layer and width.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from contract.config import RunConfig
from precompute.common.errors import IncompatibleSaeError

_L0_IN_PATH = re.compile(r"average_l0_(\d+)")


def check_hook(model, hook: str, model_name: str) -> None:
    if hook in model.hook_dict:
        return
    close = difflib.get_close_matches(hook, list(model.hook_dict), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise IncompatibleSaeError(
        f"model {model_name!r} has no hook {hook!r} (it has {model.cfg.n_layers} "
        f"blocks, numbered 0..{model.cfg.n_layers - 1}){hint}"
    )


def hook_width(model, hook: str) -> int:
    """Width of the activation at ``hook`` (trailing dimensions multiplied)."""
    import torch

    from precompute.common.activations import hook_activation

    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else 0
    device = next(model.parameters()).device
    ids = torch.tensor([[bos]], device=device)
    x = hook_activation(model, hook, ids, torch.ones_like(ids))
    return math.prod(x.shape[2:])


def check_sae_width(model, sae, hook: str, model_name: str) -> None:
    width = hook_width(model, hook)
    if sae.cfg.d_in != width:
        trained_on = sae.cfg.metadata.get("model_name")
        origin = f" (it was trained on {trained_on!r})" if trained_on else ""
        raise IncompatibleSaeError(
            f"SAE d_in {sae.cfg.d_in} does not match the width {width} of {hook} "
            f"in model {model_name!r} (d_model {model.cfg.d_model}): the SAE belongs "
            f"to another model{origin}"
        )


def pretrained_sae_metadata(release: str, sae_id: str) -> dict[str, Any]:
    """What SAE-Lens knows about a pretrained SAE without downloading it.

    Always: ``repo_id``, ``path``, ``model``, ``neuronpedia_id``, ``expected_l0``
    (from the path, when it says). For Gemma Scope releases also ``hook_name``,
    ``d_in`` and ``d_sae`` (SAE-Lens derives them from the names).
    """
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        close = difflib.get_close_matches(release, list(directory), n=3)
        raise IncompatibleSaeError(
            f"unknown SAE-Lens release {release!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
        )
    lookup = directory[release]
    if sae_id not in lookup.saes_map:
        close = difflib.get_close_matches(sae_id, list(lookup.saes_map), n=3)
        raise IncompatibleSaeError(
            f"release {release!r} has no SAE {sae_id!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
        )
    path = lookup.saes_map[sae_id]
    l0 = _L0_IN_PATH.search(path)
    meta: dict[str, Any] = {
        "repo_id": lookup.repo_id,
        "path": path,
        "model": lookup.model,
        "neuronpedia_id": lookup.neuronpedia_id.get(sae_id),
        "expected_l0": int(l0.group(1)) if l0 else None,
    }
    if lookup.conversion_func == "gemma_2":
        from sae_lens.loading.pretrained_sae_loaders import get_gemma_2_config_from_hf

        cfg = get_gemma_2_config_from_hf(lookup.repo_id, path, device="cpu")
        meta.update(hook_name=cfg["hook_name"], d_in=cfg["d_in"], d_sae=cfg["d_sae"])
    return meta


def offline_plan(config: RunConfig) -> dict[str, Any]:
    """Check a non-tiny preset against the packaged metadata; return what was found.

    Raises IncompatibleSaeError when the model, hook, layer or width disagree.
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    model_cfg = get_pretrained_model_config(config.model.name)
    plan: dict[str, Any] = {
        "model": {
            "name": config.model.name,
            "n_layers": model_cfg.n_layers,
            "d_model": model_cfg.d_model,
            "d_vocab": model_cfg.d_vocab,
        }
    }
    if config.sae.kind != "pretrained":
        return plan
    meta = pretrained_sae_metadata(config.sae.release, config.sae.sae_id)
    plan["sae"] = meta
    hook = config.sae.hook_name or meta.get("hook_name")
    problems = []
    if meta["model"] != config.model.name:
        problems.append(
            f"the SAE was trained on {meta['model']!r}, the run uses {config.model.name!r}"
        )
    if hook and meta.get("hook_name") and hook != meta["hook_name"]:
        problems.append(f"hook {hook!r} != the SAE's hook {meta['hook_name']!r}")
    match = re.match(r"^blocks\.(\d+)\.", hook or "")
    if match and int(match.group(1)) >= model_cfg.n_layers:
        problems.append(f"hook {hook!r} is past the model's last block {model_cfg.n_layers - 1}")
    if (
        hook
        and hook.endswith("hook_resid_post")
        and meta.get("d_in") not in (None, model_cfg.d_model)
    ):
        problems.append(f"SAE d_in {meta['d_in']} != model d_model {model_cfg.d_model}")
    if (
        config.sae.neuronpedia_id
        and meta["neuronpedia_id"]
        and config.sae.neuronpedia_id != meta["neuronpedia_id"]
    ):
        problems.append(
            f"neuronpedia id {config.sae.neuronpedia_id!r} != SAE-Lens's {meta['neuronpedia_id']!r}"
        )
    if problems:
        raise IncompatibleSaeError("the configured model and SAE disagree: " + "; ".join(problems))
    plan["hook_name"] = hook
    return plan
