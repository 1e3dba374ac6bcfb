"""Named starting configs and the command-line overrides applied on top of them.

``gemma-2-2b`` is the reference setup of the blog post (DESIGN.md section 1);
``tiny`` runs the same pipeline offline on the CPU in seconds (section 6).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobs.config import (
    BUNDLED_CORPUS,
    TINY,
    CorpusSource,
    ExtractionConfig,
    ModelSource,
    RunConfig,
    SaeSource,
    TinySpec,
)

GEMMA_NEURONPEDIA = "gemma-2-2b/20-gemmascope-res-16k"


def gemma_2_2b() -> RunConfig:
    """Gemma 2 2B base in bf16 on a GPU, Gemma Scope layer-20 16k residual SAE,
    500 OPUS Books en-es pairs sampled with seed 42 (the post's setup)."""
    return RunConfig(
        model=ModelSource(name="gemma-2-2b", dtype="bfloat16"),
        sae=SaeSource(
            release="gemma-scope-2b-pt-res-canonical",
            sae_id="layer_20/width_16k/canonical",
            hook_name="blocks.20.hook_resid_post",
            neuronpedia_id=GEMMA_NEURONPEDIA,
        ),
        corpus=CorpusSource(dataset="Helsinki-NLP/opus_books", config="en-es", split="train",
                            field="translation", languages=("en", "es"), sample_size=500, seed=42),
        extraction=ExtractionConfig(max_tokens=1024, batch_size=256, batch_tokens=32768, chunk_pairs=1024,
                                    device="auto", needs_gpu=True),
        preset="gemma-2-2b",
    )


def tiny() -> RunConfig:
    """In-process model, tokenizer and SAE on the bundled corpus: offline, CPU, seconds."""
    spec = TinySpec()
    return RunConfig(
        model=ModelSource(name=TINY, dtype="float32"),
        sae=SaeSource(release=TINY, sae_id=f"layer_{spec.hook_layer}/width_{spec.d_sae}"),
        corpus=CorpusSource(path=str(BUNDLED_CORPUS), field=None, languages=("en", "es"),
                            sample_size=None, seed=0),
        extraction=ExtractionConfig(max_tokens=64, batch_size=32, chunk_pairs=128, device="cpu"),
        tiny=spec,
        preset=TINY,
    )


PRESETS = {"gemma-2-2b": gemma_2_2b, TINY: tiny}


def preset(name: str) -> RunConfig:
    """The named preset's config (ValueError for an unknown name)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


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
    unknown = set(o) - _KNOWN
    if unknown:
        raise TypeError(f"unknown override(s): {sorted(unknown)}")
    return replace(
        config,
        model=_model(config.model, o),
        sae=_sae(config.sae, o),
        corpus=_corpus(config.corpus, o),
        extraction=replace(config.extraction, **{k: o[k] for k in _EXTRACTION if k in o}),
    )


_EXTRACTION = ("max_tokens", "batch_size", "batch_tokens", "chunk_pairs", "device")
_KNOWN = {
    "model", "model_path", "dtype", "sae_release", "sae_id", "sae_path", "hook", "sae_dtype",
    "neuronpedia_id", "dataset", "dataset_config", "split", "field", "corpus_file", "languages",
    "sample_size", "seed", *_EXTRACTION,
}


def _model(model: ModelSource, o: dict[str, Any]) -> ModelSource:
    return replace(model, name=o.get("model", model.name), path=o.get("model_path", model.path),
                   dtype=o.get("dtype", model.dtype))


def _sae(sae: SaeSource, o: dict[str, Any]) -> SaeSource:
    if "sae_path" in o:
        sae = SaeSource(path=o["sae_path"], dtype=sae.dtype)
    elif "sae_release" in o or "sae_id" in o:
        release = o.get("sae_release", sae.release)
        sae = SaeSource(release=release, sae_id=o.get("sae_id", sae.sae_id if release == sae.release else None),
                        dtype=sae.dtype)
    return replace(sae, hook_name=o.get("hook", sae.hook_name),
                   neuronpedia_id=o.get("neuronpedia_id", sae.neuronpedia_id),
                   dtype=o.get("sae_dtype", sae.dtype))


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
        sample_size=parse_sample_size(o["sample_size"]) if "sample_size" in o else corpus.sample_size,
        seed=o.get("seed", corpus.seed),
    )
