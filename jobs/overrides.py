"""Flat overrides (the run command's options, a job's fields) applied to a preset's config.

Which names are overrides is declared once, in ``jobs.settings``; this module
says where each value goes in the nested config.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobs.config import CorpusSource, ModelSource, RunConfig, SaeSource
from jobs.presets import GS2_DEFAULT, gemma_scope_2_sae, parse_gemma_scope_2_id
from jobs.settings import OVERRIDES


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
