"""Named starting configs (``python -m precompute run --preset NAME``).

``gemma-2-2b`` is the reference setup of the blog post (Gemma 2 2B, Gemma
Scope layer 20, OPUS Books en-es; needs a GPU and the hub); ``gemma-3-270m``
the offline Gemma 3 270M checkpoint of ``python -m precompute
gemma3-checkpoint`` on the CPU; ``tiny`` runs the same pipeline offline on
an in-process model in seconds. Overrides on top of a preset:
``jobs.overrides.with_overrides``.
"""

from __future__ import annotations

from pathlib import Path

from jobs.config import (
    BUNDLED_CORPUS,
    REPO_ROOT,
    TINY,
    CorpusSource,
    ExtractionConfig,
    ModelSource,
    RunConfig,
    SaeSource,
    TinySpec,
    cache_root,
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
        corpus=CorpusSource(
            dataset="Helsinki-NLP/opus_books",
            config="en-es",
            split="train",
            field="translation",
            languages=("en", "es"),
            sample_size=500,
            seed=42,
        ),
        extraction=ExtractionConfig(
            max_tokens=1024,
            batch_size=256,
            batch_tokens=32768,
            chunk_pairs=1024,
            device="auto",
            needs_gpu=True,
        ),
        preset="gemma-2-2b",
    )


def tiny() -> RunConfig:
    """In-process model, tokenizer and SAE on the bundled corpus: offline, CPU, seconds."""
    spec = TinySpec()
    return RunConfig(
        model=ModelSource(name=TINY, dtype="float32"),
        sae=SaeSource(release=TINY, sae_id=f"layer_{spec.hook_layer}/width_{spec.d_sae}"),
        corpus=CorpusSource(
            path=str(BUNDLED_CORPUS), field=None, languages=("en", "es"), sample_size=None, seed=0
        ),
        extraction=ExtractionConfig(max_tokens=64, batch_size=32, chunk_pairs=128, device="cpu"),
        tiny=spec,
        preset=TINY,
    )


GEMMA3_MODEL = "google/gemma-3-270m"
GEMMA3_SAE = REPO_ROOT / "saes" / "gemma3-270m-l6-topk32-4096"
"""The SAE this project trained on Gemma 3 270M (``python -m precompute train-sae``, docs/training.md)."""


def gemma3_directory() -> Path:
    """Where ``python -m precompute gemma3-checkpoint`` caches the checkpoint and its SAEs."""
    return cache_root() / "gemma3-270m"


def gemma_3_270m() -> RunConfig:
    """Gemma 3 270M from the offline checkpoint (``python -m precompute gemma3-checkpoint``)
    with the SAE trained by this project (layer 6, TopK k=32, 4,096 latents), fp32 on the CPU,
    over the bundled English-Spanish pairs."""
    return RunConfig(
        model=ModelSource(
            name=GEMMA3_MODEL, path=str(gemma3_directory() / "checkpoint"), dtype="float32"
        ),
        sae=SaeSource(path=str(GEMMA3_SAE)),
        corpus=CorpusSource(
            path=str(BUNDLED_CORPUS), field=None, languages=("en", "es"), sample_size=None, seed=0
        ),
        extraction=ExtractionConfig(max_tokens=128, batch_size=32, chunk_pairs=256, device="cpu"),
        preset="gemma-3-270m",
    )


PRESETS = {"gemma-2-2b": gemma_2_2b, "gemma-3-270m": gemma_3_270m, TINY: tiny}


def preset(name: str) -> RunConfig:
    """The named preset's config (ValueError for an unknown name)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
