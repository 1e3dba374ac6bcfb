"""A randomly initialised model of the exact Gemma 2 2B shape, with a Gemma Scope-sized SAE.

For speed measurements without the gated weights: the ``HookedTransformerConfig``
is TransformerLens's own gemma-2-2b config (built offline), re-initialised
with random weights; the SAE is a 16k JumpReLU on ``blocks.20.hook_resid_post``
whose thresholds are calibrated (``calibrate``) on the model's own residuals
so that about 71 features fire per token, Gemma Scope's average L0. The
compute per token is then the real one: same layers, widths, attention
soft-capping and SAE size. ``n_layers``/``d_vocab`` reductions exist only to
exercise the code on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from precompute.common.activations import hook_activation, pad_batch, real_tokens
from precompute.common.tokenization import tokenize_sentences
from precompute.models import calibrate
from precompute.models.loading import LoadedModels

GEMMA_HOOK_LAYER = 20
GEMMA_SCOPE_L0 = 71.0


@dataclass(frozen=True)
class GemmaShape:
    """Size of the stand-in model and SAE (defaults: the real ones)."""

    n_layers: int | None = None
    """Blocks (None: Gemma 2 2B's 26)."""
    d_vocab: int | None = None
    """Vocabulary (None: 256,000)."""
    d_sae: int = 16384
    """SAE features."""
    target_l0: float = GEMMA_SCOPE_L0
    """Features firing per token, on average."""
    seed: int = 0


def gemma_config(shape: GemmaShape, dtype: torch.dtype, device: str):
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    cfg = get_pretrained_model_config("gemma-2-2b", dtype=dtype, device=device)
    cfg.init_weights = True
    cfg.seed = shape.seed
    if shape.n_layers is not None:
        cfg.n_layers = shape.n_layers
    if shape.d_vocab is not None:
        cfg.d_vocab = cfg.d_vocab_out = shape.d_vocab
    cfg.tokenizer_name = None
    return cfg


def hook_name(cfg) -> str:
    return f"blocks.{min(GEMMA_HOOK_LAYER, cfg.n_layers - 1)}.hook_resid_post"


def build_gemma_shape(
    shape: GemmaShape,
    tokenizer,
    calibration_texts: list[str],
    device: str,
    dtype: torch.dtype = torch.bfloat16,
) -> LoadedModels:
    """Random Gemma-2-2B-shaped model + calibrated 16k JumpReLU SAE, ready for ``run_extraction``."""
    from sae_lens import HookedSAETransformer

    cfg = gemma_config(shape, dtype, device)
    if cfg.d_vocab < len(tokenizer):
        raise ValueError(
            f"d_vocab {cfg.d_vocab} is smaller than the tokenizer's {len(tokenizer)} ids"
        )
    torch.manual_seed(shape.seed)
    with torch.device(device):
        model = HookedSAETransformer(cfg, tokenizer=tokenizer, move_to_device=False).eval()
    hook = hook_name(cfg)
    sae = _calibrated_sae(shape, model, tokenizer, calibration_texts, hook, device)
    info = {
        "name": "gemma-2-2b shape, random init",
        "dtype": str(dtype).removeprefix("torch."),
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "d_vocab": cfg.d_vocab,
    }
    sae_info = {
        "hook_name": hook,
        "d_in": cfg.d_model,
        "d_sae": shape.d_sae,
        "architecture": "jumprelu",
        "release": "random",
        "id": f"calibrated-l0-{shape.target_l0:g}",
    }
    return LoadedModels(model, sae, model.tokenizer, hook, info, sae_info)


@torch.no_grad()
def _calibrated_sae(shape: GemmaShape, model, tokenizer, texts: list[str], hook: str, device: str):
    tokens = tokenize_sentences(tokenizer, texts, 128)
    bos = tokenizer.bos_token_id
    ids, mask = pad_batch(tokenizer, [tokens.sentence(i) for i in range(len(tokens))], bos, device)
    real, _ = real_tokens(ids, mask, bos)
    resid = hook_activation(model, hook, ids, mask)[real]
    return calibrate.random_jumprelu_sae(resid, hook, shape.d_sae, shape.target_l0, shape.seed)
