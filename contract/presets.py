"""Named starting configs (``python -m precompute run --preset NAME``).

``gemma-2-2b`` is the reference setup of the blog post (Gemma 2 2B, Gemma
Scope layer 20, OPUS Books en-es; needs a GPU and the hub); ``gemma-3-270m``
the offline Gemma 3 270M checkpoint of ``python -m precompute
gemma3-checkpoint`` on the CPU; ``gemma-scope-2-270m`` the same model (by name from the
hub, or ``--model-path``) with Google's Gemma Scope 2 residual SAEs, any
layer, width and L0 of the two SAE-Lens releases (``gemma_scope_2_sae``);
``tiny`` runs the same pipeline offline on an in-process model in seconds. Overrides on top of a preset:
``contract.overrides.with_overrides``.
"""

from __future__ import annotations

import re
from pathlib import Path

from contract.config import (
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
GEMMA3_SAE = REPO_ROOT / "saes" / "gemma3-270m-l9-topk48-4096"
"""The SAE this project trained on Gemma 3 270M (``python -m precompute train-sae``, docs/training.md)."""


def gemma3_directory() -> Path:
    """Where ``python -m precompute gemma3-checkpoint`` caches the checkpoint and its SAEs."""
    return cache_root() / "gemma3-270m"


def gemma_3_270m() -> RunConfig:
    """Gemma 3 270M from the offline checkpoint (``python -m precompute gemma3-checkpoint``)
    with the SAE trained by this project at layer 9 (TopK k=48, 4,096 latents), fp32 on the CPU,
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


GEMMA_SCOPE_2 = "gemma-scope-2-270m"
GS2_REPO = "google/gemma-scope-2-270m-pt"
GS2_RES = "gemma-scope-2-270m-pt-res"
GS2_RES_ALL = "gemma-scope-2-270m-pt-res-all"
GS2_DEFAULT = (12, "16k", "medium")
GS2_WIDTHS = ("16k", "65k", "262k", "1m")
GS2_L0S = ("small", "medium", "big")
_GS2_CATALOGUE: dict[str, tuple[range | tuple[int, ...], tuple[str, ...], tuple[str, ...]]] = {
    GS2_RES: ((5, 9, 12, 15), GS2_WIDTHS, GS2_L0S),
    GS2_RES_ALL: (range(18), ("16k", "262k"), ("small", "big")),
}
"""The residual-stream SAEs of SAE-Lens's ``pretrained_saes.yaml`` for Gemma 3 270M, as
layers x widths x L0s per release (ids ``layer_{N}_width_{W}_l0_{L}``). Written out here
because the job contract never imports SAE-Lens; ``tests/test_gemma_scope2.py`` checks it
against the installed registry."""


def gemma_scope_2_entries() -> dict[str, str]:
    """Every SAE id of the two releases -> its release (the curated ``res`` release first:
    an id in both is taken from it, with its Neuronpedia id)."""
    out: dict[str, str] = {}
    for release, (layers, widths, l0s) in _GS2_CATALOGUE.items():
        for layer in layers:
            for width in widths:
                for l0 in l0s:
                    out.setdefault(f"layer_{layer}_width_{width}_l0_{l0}", release)
    return out


def valid_gemma_scope_2() -> str:
    """The valid ``--layer/--width/--l0`` combinations, in words (for error messages)."""
    parts = []
    for release, (layers, widths, l0s) in _GS2_CATALOGUE.items():
        span = (
            f"{layers[0]}..{layers[-1]}"
            if isinstance(layers, range)
            else ", ".join(map(str, layers))
        )
        parts.append(
            f"{release}: --layer {span} with --width {'|'.join(widths)} and --l0 {'|'.join(l0s)}"
        )
    return "; ".join(parts)


def gemma_scope_2_sae(layer: int, width: str, l0: str) -> SaeSource:
    """The Gemma Scope 2 residual SAE at ``blocks.{layer}.hook_resid_post`` (ValueError,
    listing the valid combinations, when no release has it)."""
    sae_id = f"layer_{layer}_width_{width}_l0_{l0}"
    release = gemma_scope_2_entries().get(sae_id)
    if release is None:
        raise ValueError(
            f"Gemma Scope 2 has no 270M residual SAE for layer {layer}, width {width}, "
            f"L0 {l0}; valid combinations: {valid_gemma_scope_2()}"
        )
    neuronpedia = (
        f"gemma-3-270m/{layer}-gemmascope-2-res-{width}"
        if release == GS2_RES and l0 == "medium"
        else None
    )
    return SaeSource(
        release=release,
        sae_id=sae_id,
        hook_name=f"blocks.{layer}.hook_resid_post",
        neuronpedia_id=neuronpedia,
    )


_GS2_ID = re.compile(r"layer_(\d+)_width_(\w+?)_l0_(small|medium|big)")


def parse_gemma_scope_2_id(sae_id: str | None) -> tuple[int, str, str] | None:
    """``(layer, width, l0)`` of a Gemma Scope 2 SAE id, None for another id."""
    match = _GS2_ID.fullmatch(sae_id or "")
    return (int(match[1]), match[2], match[3]) if match else None


def gemma_scope_2_270m() -> RunConfig:
    """Gemma 3 270M (``google/gemma-3-270m`` from the hub, or ``--model-path``) with the
    Gemma Scope 2 layer-12 16k residual SAE (L0 medium), fp32 on the CPU, over the bundled
    English-Spanish pairs. ``--layer``, ``--width`` and ``--l0`` pick another SAE."""
    return RunConfig(
        model=ModelSource(name=GEMMA3_MODEL, dtype="float32"),
        sae=gemma_scope_2_sae(*GS2_DEFAULT),
        corpus=CorpusSource(
            path=str(BUNDLED_CORPUS), field=None, languages=("en", "es"), sample_size=None, seed=0
        ),
        extraction=ExtractionConfig(max_tokens=128, batch_size=32, chunk_pairs=256, device="auto"),
        preset=GEMMA_SCOPE_2,
    )


PRESETS = {
    "gemma-2-2b": gemma_2_2b,
    "gemma-3-270m": gemma_3_270m,
    GEMMA_SCOPE_2: gemma_scope_2_270m,
    TINY: tiny,
}


def preset(name: str) -> RunConfig:
    """The named preset's config (ValueError for an unknown name)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
