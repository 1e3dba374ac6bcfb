"""What one extraction run uses: model, SAE, corpus sample and extraction knobs.

Plain frozen dataclasses, nested by concern. What each overridable field means
is declared once, as the help text of the setting that overrides it
(``contract.settings.PresetOverrides``, whose ``target`` names the field here);
the docstrings below only add what the help does not say. Building one does no I/O and no
device checks (``device="auto"`` is resolved when the run starts, datasets are
loaded then too), so every config, the real Gemma one included, can be built
and checked offline.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["float32", "bfloat16", "float16", "float64"]
PaddingSide = Literal["left", "right"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16", "float64")

TINY = "tiny"
REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CORPUS = REPO_ROOT / "data" / "parallel_en_es.tsv"
CACHE_ENV = "BILINGUAL_CACHE_DIR"


def cache_root() -> Path:
    """Where built models are cached: ``$BILINGUAL_CACHE_DIR``, else ``~/.cache/bilingual-sae``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bilingual-sae")


def display_path(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (manifests stay portable), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


TINY_CONTEXT = 2048
"""Positions the tiny model has (its rotary tables end there)."""
MODEL_CONTEXT = {"tiny": TINY_CONTEXT, "gemma-2-2b": 8192, "google/gemma-3-270m": 32768}
"""Context length of the models the presets name: a sentence (``max_tokens`` plus
its BOS token) must fit."""


@dataclass(frozen=True)
class TinySpec:
    """Shape of the in-process model, tokenizer and SAE of the ``tiny`` preset."""

    seed: int = 0
    """Seeds the tokenizer-independent parts: weights, SAE directions, thresholds."""
    vocab_size: int = 6000
    """BPE vocabulary cap (the bundled corpus needs about 5,300 for whole words)."""
    n_layers: int = 3
    """Transformer blocks (the SAE reads block ``hook_layer``, later blocks never run)."""
    hook_layer: int = 1
    """Block whose ``hook_resid_post`` the SAE reads."""
    d_model: int = 64
    """Residual stream width (= SAE d_in)."""
    n_heads: int = 4
    """Attention heads per block (d_head = d_model / n_heads)."""
    d_mlp: int = 256
    """MLP hidden width."""
    d_sae: int = 512
    """SAE features."""
    target_l0: float = 8.0
    """Mean number of features the calibrated thresholds let fire per token."""
    padding_side: PaddingSide = "right"
    """Where the tokenizer pads a batch (tests also run a left-padding one)."""
    tokenizer_corpus: str = str(BUNDLED_CORPUS)
    """TSV (``en<TAB>es``) the tokenizer and the token alignment are trained on."""

    def __post_init__(self) -> None:
        if not 0 <= self.hook_layer < self.n_layers:
            raise ValueError(f"hook_layer {self.hook_layer} must be in 0..{self.n_layers - 1}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if not 0 < self.target_l0 < self.d_sae:
            raise ValueError(f"target_l0 must be in (0, d_sae), got {self.target_l0}")

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.hook_layer}.hook_resid_post"


@dataclass(frozen=True)
class ModelSource:
    """The language model."""

    name: str
    """``--model`` (``tiny``: the in-process model)."""
    path: str | None = None
    """``--model-path``."""
    dtype: DType = "float32"
    """``--dtype``."""

    @property
    def is_tiny(self) -> bool:
        return self.name == TINY

    @property
    def kind(self) -> Literal["tiny", "pretrained", "local"]:
        """Which loader takes it (``precompute.models.registry``): the in-process model, a
        TransformerLens model by name, or a local Hugging Face checkpoint."""
        if self.is_tiny:
            return "tiny"
        return "pretrained" if self.path is None else "local"


@dataclass(frozen=True)
class SaeSource:
    """The sparse autoencoder: an SAE-Lens release + id, or a local SAE-Lens directory."""

    release: str | None = None
    """``--sae-release`` (``tiny``: the in-process SAE)."""
    sae_id: str | None = None
    """``--sae-id``."""
    path: str | None = None
    """``--sae-path`` (loaded with ``SAE.load_from_disk``)."""
    hook_name: str | None = None
    """``--hook``."""
    neuronpedia_id: str | None = None
    """``--neuronpedia-id``; ``None`` takes it from the SAE-Lens directory when known."""
    dtype: DType = "float32"
    """``--sae-dtype`` (activations are stored as float32 either way)."""

    def __post_init__(self) -> None:
        if (self.path is None) == (self.release is None):
            raise ValueError("give an SAE release (+ id) or a local SAE path, not both or neither")
        if self.release is not None and self.release != TINY and not self.sae_id:
            raise ValueError(f"SAE release {self.release!r} needs an SAE id")

    @property
    def kind(self) -> Literal["tiny", "pretrained", "local"]:
        if self.path is not None:
            return "local"
        return "tiny" if self.release == TINY else "pretrained"


@dataclass(frozen=True)
class CorpusSource:
    """Aligned sentences: a Hugging Face dataset or a local file, and the sample taken."""

    dataset: str | None = None
    """``--dataset``."""
    config: str | None = None
    """``--dataset-config``."""
    split: str = "train"
    """``--split``."""
    field: str | None = "translation"
    """``--field`` (``None``: one column per language)."""
    path: str | None = None
    """``--corpus-file``."""
    languages: tuple[str, ...] = ("en", "es")
    """``--languages``."""
    sample_size: int | None = 500
    """``--sample-size`` (``None``: all, in file order)."""
    seed: int = 42
    """``--seed``."""

    def __post_init__(self) -> None:
        if (self.path is None) == (self.dataset is None):
            raise ValueError(
                "give a Hugging Face dataset or a local corpus file, not both or neither"
            )
        if len(self.languages) < 2 or len(set(self.languages)) != len(self.languages):
            raise ValueError(f"need two or more distinct languages, got {list(self.languages)}")
        if self.sample_size is not None and self.sample_size < 1:
            raise ValueError(f"sample size must be >= 1 (or 'all'), got {self.sample_size}")

    @property
    def source(self) -> str:
        return self.dataset if self.dataset is not None else str(self.path)


@dataclass(frozen=True)
class ExtractionConfig:
    """How the activations are computed and staged."""

    max_tokens: int = 128
    """``--max-tokens`` (BOS not counted)."""
    batch_size: int = 64
    """``--batch-size`` (sentences are sorted by length to limit padding)."""
    batch_tokens: int = 32768
    """``--batch-tokens``: batches of long sentences shrink, so one long outlier
    cannot exhaust device memory."""
    chunk_pairs: int = 1024
    """``--chunk-pairs`` (also the unit of streaming to disk)."""
    device: Device = "auto"
    """``--device``."""
    needs_gpu: bool = False
    """With ``device=auto`` and no GPU, fail instead of silently running on the CPU."""

    def __post_init__(self) -> None:
        if min(self.max_tokens, self.batch_size, self.batch_tokens, self.chunk_pairs) < 1:
            raise ValueError("max_tokens, batch_size, batch_tokens and chunk_pairs must be >= 1")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything an extraction run needs; a preset plus overrides."""

    model: ModelSource
    sae: SaeSource
    corpus: CorpusSource
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    tiny: TinySpec = field(default_factory=TinySpec)
    """Used only when ``model.name == 'tiny'``."""
    preset: str | None = None
    """Name of the preset this config came from (for messages and the manifest)."""

    def __post_init__(self) -> None:
        if self.sae.kind == "tiny" and not self.model.is_tiny:
            raise ValueError("the tiny SAE only fits the tiny model")
        if self.model.is_tiny and self.sae.kind == "pretrained":
            raise ValueError(
                "the tiny model takes the tiny SAE or a local SAE directory, not a pretrained SAE"
            )
        for dtype in (self.model.dtype, self.sae.dtype):
            if dtype not in DTYPES:
                raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        context = MODEL_CONTEXT.get(self.model.name)
        if context is not None and self.extraction.max_tokens + 1 > context:
            raise ValueError(
                f"max_tokens {self.extraction.max_tokens} does not fit the model: a sentence "
                f"and its BOS token must fit its context of {context} tokens "
                f"(max_tokens at most {context - 1})"
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.model.is_tiny:
            out.pop("tiny")
        return out

    def fingerprint(self) -> str:
        """Hash of everything that changes the stored numbers (not batch size or device),
        so ``--resume`` refuses to mix chunks of different configs."""
        data = self.to_dict()
        data["extraction"] = {
            k: v for k, v in data["extraction"].items() if k in ("max_tokens", "chunk_pairs")
        }
        data.pop("preset", None)
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
