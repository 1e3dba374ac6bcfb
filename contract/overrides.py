"""Flat overrides (the run command's options, a job's fields) applied to a preset's config.

Which names are overrides is declared once, in ``contract.settings``; this module
says where each value goes in the nested config.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from contract.config import CorpusSource, ModelSource, RunConfig, SaeSource
from contract.presets import GS2_DEFAULT, PRESETS, gemma_scope_2_sae, parse_gemma_scope_2_id
from contract.settings import OVERRIDES


def parse_sample_size(text: str | int | None) -> int | None:
    """``'all'`` (or None) -> None, else a positive integer."""
    if text is None or (isinstance(text, str) and text.lower() == "all"):
        return None
    value = int(text)
    if value < 1:
        raise ValueError(f"sample size must be >= 1 or 'all', got {value}")
    return value


def with_overrides(config: RunConfig, **overrides: Any) -> RunConfig:
    """Apply flat overrides (the CLI's options; None means 'keep the preset's').

    Naming a corpus file drops the preset's dataset and vice versa; naming a
    local SAE directory drops the release/id (and the preset's hook and
    Neuronpedia id, which then come from the SAE itself).
    """
    o = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(o) - set(OVERRIDES)
    if unknown:
        raise TypeError(f"unknown override(s): {sorted(unknown)}")
    return replace(
        config,
        model=_model(config.model, o),
        sae=_sae(config.sae, o),
        corpus=_corpus(config.corpus, o),
        extraction=replace(config.extraction, **{k: o[k] for k in _EXTRACTION if k in o}),
    )


_EXTRACTION = tuple(s.name for s in OVERRIDES.values() if s.group == "extraction")


def _model(model: ModelSource, o: dict[str, Any]) -> ModelSource:
    return replace(
        model,
        name=o.get("model", model.name),
        path=o.get("model_path", model.path),
        dtype=o.get("dtype", model.dtype),
    )


def _sae(sae: SaeSource, o: dict[str, Any]) -> SaeSource:
    if {"layer", "width", "l0"} & set(o):
        sae = _gemma_scope_2(sae, o)
    if "sae_path" in o:
        sae = SaeSource(path=o["sae_path"], dtype=sae.dtype)
    elif "sae_release" in o or "sae_id" in o:
        release = o.get("sae_release", sae.release)
        sae = SaeSource(
            release=release,
            sae_id=o.get("sae_id", sae.sae_id if release == sae.release else None),
            dtype=sae.dtype,
        )
    return replace(
        sae,
        hook_name=o.get("hook", sae.hook_name),
        neuronpedia_id=o.get("neuronpedia_id", sae.neuronpedia_id),
        dtype=o.get("sae_dtype", sae.dtype),
    )


def _corpus(corpus: CorpusSource, o: dict[str, Any]) -> CorpusSource:
    if "corpus_file" in o:
        corpus = replace(corpus, path=str(o["corpus_file"]), dataset=None, config=None, field=None)
    elif "dataset" in o:
        corpus = replace(corpus, dataset=o["dataset"], path=None, config=None)
    languages = o.get("languages", corpus.languages)
    if isinstance(languages, str):
        languages = tuple(x.strip() for x in languages.split(",") if x.strip())
    return replace(
        corpus,
        config=o.get("dataset_config", corpus.config),
        split=o.get("split", corpus.split),
        field=(None if o.get("field") == "" else o.get("field", corpus.field)),
        languages=tuple(languages),
        sample_size=parse_sample_size(o["sample_size"])
        if "sample_size" in o
        else corpus.sample_size,
        seed=o.get("seed", corpus.seed),
    )


def preset_values(config: RunConfig) -> dict[str, str]:
    """What each override keeps when left empty: ``config``'s value as the
    form shows it (``''`` where the config has none), keyed by override name."""
    m, s, c, e = config.model, config.sae, config.corpus, config.extraction
    values: dict[str, Any] = {
        "model": m.name,
        "model_path": m.path,
        "dtype": m.dtype,
        "sae_release": s.release,
        "sae_id": s.sae_id,
        "sae_path": s.path,
        "hook": s.hook_name,
        "neuronpedia_id": s.neuronpedia_id,
        "sae_dtype": s.dtype,
        "dataset": c.dataset,
        "dataset_config": c.config,
        "split": c.split,
        "field": c.field,
        "corpus_file": c.path,
        "languages": ",".join(c.languages),
        "sample_size": "all" if c.sample_size is None else c.sample_size,
        "seed": c.seed,
        **{k: getattr(e, k) for k in _EXTRACTION},
    }
    return {k: "" if values.get(k) is None else str(values[k]) for k in OVERRIDES}


def changed_from_preset(config: RunConfig) -> dict[str, str]:
    """The settings where ``config`` differs from the preset it names, with its
    values (``{}`` for an unchanged preset or a config that names none): what
    a manifest records beside the preset's name, so that a run made from one
    preset with a different model and SAE does not read as that preset's."""
    if config.preset not in PRESETS:
        return {}
    base = preset_values(PRESETS[config.preset]())
    ours = preset_values(config)
    return {k: v for k, v in ours.items() if v != base[k]}


def _gemma_scope_2(sae: SaeSource, o: dict[str, Any]) -> SaeSource:
    """``--layer/--width/--l0`` on top of a Gemma Scope 2 SAE (the others keep their value)."""
    if o.get("sae_path") is not None or o.get("sae_release") is not None or o.get("sae_id"):
        raise ValueError(
            "--layer/--width/--l0 pick a Gemma Scope 2 SAE: drop --sae-path/--sae-release/--sae-id"
        )
    current = parse_gemma_scope_2_id(sae.sae_id) if sae.kind == "pretrained" else None
    if current is None or not (sae.release or "").startswith("gemma-scope-2-270m"):
        raise ValueError(
            "--layer/--width/--l0 pick a Gemma Scope 2 SAE of Gemma 3 270M: use them with "
            "--preset gemma-scope-2-270m"
        )
    layer, width, l0 = (
        o.get(k, v) for k, v in zip(("layer", "width", "l0"), current or GS2_DEFAULT, strict=True)
    )
    picked = gemma_scope_2_sae(int(layer), str(width), str(l0))
    return replace(picked, dtype=sae.dtype)


MAX_SWEEP_LAYERS = 64


def parse_layers(text: str | list[int] | tuple[int, ...]) -> list[int]:
    """``'3,6,9,12'`` (or a list) -> distinct layers in increasing order (ValueError otherwise)."""
    if isinstance(text, str):
        items = [x.strip() for x in text.split(",") if x.strip()]
        if not all(x.isdigit() for x in items):
            raise ValueError(f"--layers: give layer numbers such as 3,6,9,12, got {text!r}")
        layers = [int(x) for x in items]
    else:
        layers = [int(x) for x in text]
    if not 1 <= len(layers) <= MAX_SWEEP_LAYERS:
        raise ValueError(f"--layers: give 1 to {MAX_SWEEP_LAYERS} layers, got {len(layers)}")
    if len(set(layers)) != len(layers) or min(layers) < 0:
        raise ValueError(f"--layers: layers must be distinct and >= 0, got {layers}")
    return sorted(layers)


def sweep_configs(
    config: RunConfig,
    layers: list[int],
    *,
    sae_paths: list[str] | None = None,
    sae_pattern: str | None = None,
) -> list[tuple[int, RunConfig]]:
    """One config per layer of a sweep: the same model and corpus, one SAE per layer.

    The SAE of each layer comes from ``sae_paths`` (one local SAE directory per layer, in
    the order of ``layers``), from ``sae_pattern`` (a path with ``{layer}``), or else from
    the preset's SAE family: the Gemma Scope 2 releases (same width and L0 at every
    layer) or the tiny preset's SAE (calibrated on each layer). No I/O."""
    if sae_paths is not None and sae_pattern is not None:
        raise ValueError("give --sae-paths or --sae-pattern, not both")
    if sae_paths is not None:
        if len(sae_paths) != len(layers):
            raise ValueError(
                f"--sae-paths names {len(sae_paths)} SAE(s) for {len(layers)} layer(s): "
                "give one per layer, in the order of --layers"
            )
        paths = list(sae_paths)
    elif sae_pattern is not None:
        if "{layer}" not in sae_pattern:
            raise ValueError(f"--sae-pattern needs '{{layer}}' in it, got {sae_pattern!r}")
        paths = [sae_pattern.replace("{layer}", str(layer)) for layer in layers]
    else:
        paths = []
    out = []
    for i, layer in enumerate(layers):
        if paths:
            sae = SaeSource(path=paths[i], dtype=config.sae.dtype)
            cfg = replace(config, sae=sae)
        elif config.sae.kind == "tiny":
            if layer >= config.tiny.n_layers:
                raise ValueError(
                    f"the tiny model has layers 0..{config.tiny.n_layers - 1}, not {layer}"
                )
            spec = replace(config.tiny, hook_layer=layer)
            sae = replace(config.sae, sae_id=f"layer_{layer}/width_{spec.d_sae}")
            cfg = replace(config, tiny=spec, sae=sae)
        elif parse_gemma_scope_2_id(config.sae.sae_id) is not None and (
            config.sae.release or ""
        ).startswith("gemma-scope-2-270m"):
            _, width, l0 = parse_gemma_scope_2_id(config.sae.sae_id)  # type: ignore[misc]
            cfg = replace(
                config, sae=replace(gemma_scope_2_sae(layer, width, l0), dtype=config.sae.dtype)
            )
        else:
            raise ValueError(
                "a sweep needs one SAE per layer: use --preset gemma-scope-2-270m (the Gemma "
                "Scope 2 SAEs of every layer), --preset tiny, or local SAE directories with "
                "--sae-paths a,b,... or --sae-pattern 'saes/name-l{layer}'"
            )
        out.append((layer, cfg))
    return out
