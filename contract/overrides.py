"""Preset overrides (the run command's options, a job's fields) applied to a preset's config.

Each override is a field of ``contract.settings.PresetOverrides`` whose ``target``
names the config field it replaces; :func:`with_overrides` sets every given one
there. The few rules that touch several fields (a corpus file drops the
dataset, a local SAE drops the release, ``--layer/--width/--l0`` pick a Gemma
Scope 2 SAE) are the small functions below.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from contract.config import CorpusSource, RunConfig, SaeSource
from contract.fields import options
from contract.presets import (
    GS2_DEFAULT,
    PRESETS,
    gemma_scope_2_sae,
    parse_gemma_scope_2_id,
    preset,
)
from contract.settings import PresetOverrides, RunSettings, SweepSettings, validate

TARGETS: dict[str, str] = {
    name: meta.target for name, _, meta in options(PresetOverrides) if meta.target is not None
}
"""Override name -> dotted config path it replaces (read from the fields' ``target``)."""


def to_config_value(name: str, value: Any) -> Any:
    """An override's value as its config field holds it (``'all'`` pairs -> None, a list of
    languages -> a tuple, ``--field ''`` -> None)."""
    if name == "sample_size":  # validated by the model: a positive number or 'all'
        return None if value == "all" else int(value)
    if name == "field" and value == "":
        return None
    return tuple(value) if isinstance(value, list) else value


def with_overrides(
    config: RunConfig, overrides: PresetOverrides | None = None, /, **flat: Any
) -> RunConfig:
    """``config`` with every given override set at its ``target`` (None keeps the preset's).

    ``overrides``: validated settings (any model deriving from PresetOverrides), or
    ``flat`` name=value pairs, validated here (TypeError for an unknown name).
    Naming a corpus file drops the preset's dataset and vice versa; naming a
    local SAE directory drops the release/id (and the preset's hook and
    Neuronpedia id, which then come from the SAE itself).
    """
    if overrides is None:
        unknown = set(flat) - set(PresetOverrides.model_fields)
        if unknown:
            raise TypeError(f"unknown override(s): {sorted(unknown)}")
        overrides = validate(PresetOverrides, {k: v for k, v in flat.items() if v is not None})
    o = {k: v for k, v in overrides.given().items() if k in PresetOverrides.model_fields}
    config = replace(
        config, sae=_sae_source(config.sae, o), corpus=_corpus_source(config.corpus, o)
    )
    sections: dict[str, dict[str, Any]] = {}
    for name, value in o.items():
        if name in TARGETS:
            section, key = TARGETS[name].split(".")
            sections.setdefault(section, {})[key] = to_config_value(name, value)
    return replace(
        config,
        **{section: replace(getattr(config, section), **kw) for section, kw in sections.items()},
    )


def config_from_settings(settings: RunSettings | SweepSettings) -> RunConfig:
    """The preset that ``settings`` names with every override it gives."""
    return with_overrides(preset(settings.preset), settings)


def _sae_source(sae: SaeSource, o: dict[str, Any]) -> SaeSource:
    """The SAE the overrides start from: a Gemma Scope 2 pick, a local directory (without
    the preset's hook and Neuronpedia id), or another release (the id is kept only
    within the same release)."""
    if {"layer", "width", "l0"} & set(o):
        sae = _gemma_scope_2(sae, o)
    if "sae_path" in o:
        return SaeSource(path=o["sae_path"], dtype=sae.dtype)
    if "sae_release" in o or "sae_id" in o:
        release = o.get("sae_release", sae.release)
        return SaeSource(
            release=release,
            sae_id=o.get("sae_id", sae.sae_id if release == sae.release else None),
            dtype=sae.dtype,
        )
    return sae


def _corpus_source(corpus: CorpusSource, o: dict[str, Any]) -> CorpusSource:
    """A corpus file drops the preset's dataset (and its config and field); a dataset drops
    the preset's file (and config)."""
    if "corpus_file" in o:
        return replace(corpus, path=str(o["corpus_file"]), dataset=None, config=None, field=None)
    if "dataset" in o:
        return replace(corpus, dataset=o["dataset"], path=None, config=None)
    return corpus


def _shown(name: str, value: Any) -> str:
    if name == "sample_size" and value is None:
        return "all"
    if value is None:
        return ""
    return ",".join(value) if isinstance(value, tuple | list) else str(value)


def preset_values(config: RunConfig) -> dict[str, str]:
    """What each override keeps when left empty: ``config``'s value at the override's
    ``target`` as the form shows it (``''`` where the config has none, or for an
    override without a single target), keyed by override name."""
    values = {}
    for name in PresetOverrides.model_fields:
        target = TARGETS.get(name)
        if target is None:
            values[name] = ""
            continue
        section, key = target.split(".")
        values[name] = _shown(name, getattr(getattr(config, section), key))
    return values


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
