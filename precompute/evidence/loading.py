"""Load the model and SAE a run was extracted with, from its manifest alone."""

from __future__ import annotations

from typing import Any

from bilingual_core import Run
from contract.config import BUNDLED_CORPUS, CorpusSource, ModelSource, RunConfig, SaeSource
from precompute.common.errors import PrecomputeError
from precompute.models.registry import model_loader


def config_from_manifest(
    run: Run,
    *,
    model_path: str | None = None,
    sae_path: str | None = None,
    dtype: str | None = None,
) -> RunConfig:
    """A ``RunConfig`` whose model and SAE are those recorded in the run's manifest
    (``model_path``/``sae_path``/``dtype`` override them, e.g. where the weights live elsewhere)."""
    model, sae = run.manifest.model, run.manifest.sae
    if not model.get("name"):
        raise PrecomputeError(
            f"run {run.run_id!r}: its manifest names no model, so it cannot be reloaded"
        )
    source = ModelSource(
        name=str(model["name"]),
        path=model_path or model.get("path"),
        dtype=dtype or model.get("dtype") or "float32",
    )
    sae_dtype = sae.get("dtype") or "float32"
    if sae_path or sae.get("path"):
        sae_source = SaeSource(
            path=sae_path or sae["path"], hook_name=sae.get("hook_name"), dtype=sae_dtype
        )
    elif sae.get("release"):
        sae_source = SaeSource(
            release=sae["release"],
            sae_id=sae.get("id"),
            hook_name=sae.get("hook_name"),
            dtype=sae_dtype,
        )
    else:
        raise PrecomputeError(
            f"run {run.run_id!r}: its manifest names no SAE (release + id, or path); "
            "pass --sae-path"
        )
    return RunConfig(
        model=source,
        sae=sae_source,
        corpus=CorpusSource(path=str(BUNDLED_CORPUS), field=None),
        **model_loader(source).restore(model),
    )


def describe_needs(config: RunConfig) -> str:
    m, s = config.model, config.sae
    model = f"model {m.name!r}" + (f" from {m.path}" if m.path else "")
    sae = f"SAE at {s.path}" if s.path else f"SAE {s.release!r} id {s.sae_id!r}"
    return f"{model} and {sae} (hook {s.hook_name or 'from the SAE metadata'})"


def load_run_models(run: Run, device: str, **overrides: Any):
    """``LoadedModels`` for ``run`` on ``device``, checked against the manifest's
    ``d_sae``; any failure to load becomes one PrecomputeError naming what is needed."""
    from precompute.models.loading import load_models

    config = config_from_manifest(run, **overrides)
    try:
        loaded = load_models(config, device)
    except Exception as exc:  # every loader failure gets the same explanation
        raise PrecomputeError(
            f"cannot load what run {run.run_id!r} was made with: needs the {describe_needs(config)} "
            f"({type(exc).__name__}: {exc}). Pass --model-path DIR (a local Hugging Face checkpoint of that "
            "model) and/or --sae-path DIR (a local SAE-Lens directory) where they are available offline"
        ) from exc
    if int(loaded.sae.cfg.d_sae) != run.manifest.d_sae:
        raise PrecomputeError(
            f"the loaded SAE has {loaded.sae.cfg.d_sae} features but run {run.run_id!r} "
            f"has d_sae {run.manifest.d_sae}: not the SAE the run was made with"
        )
    return loaded


def pick_device(requested: str = "auto") -> str:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without a GPU is an error."""
    from precompute.common.devices import cuda_available
    from precompute.common.errors import DeviceError

    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise DeviceError(
            "--device cuda was asked for but no CUDA GPU is visible to torch; pass --device cpu"
        )
    return requested
