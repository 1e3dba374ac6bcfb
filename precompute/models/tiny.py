"""The ``tiny`` preset's model, tokenizer and SAE, built in-process and cached.

Everything is derived from the bundled parallel corpus and a seed, with no
network: a BPE tokenizer trained on the corpus, a 3-block
``HookedSAETransformer`` whose token embeddings make translations alike
(``tiny_alignment``), and a JumpReLU SAE on ``blocks.1.hook_resid_post``
whose features are

* *concept* features: the mean residual direction of an aligned token group
  (``casa``/``house``), so they fire on both languages (bilingual);
* *language* features: the mean direction of one language's own tokens;
* random directions (polysemantic noise),

with thresholds calibrated on the corpus (``calibrate``) so about
``target_l0`` features fire per token. A build takes a second or two; it is
cached under ``$BILINGUAL_CACHE_DIR`` (default ``~/.cache/bilingual-sae``),
keyed by the spec and the corpus bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from contract.config import TINY_CONTEXT, TinySpec, cache_root
from precompute.common.activations import hook_activation, pad_batch, real_tokens
from precompute.common.corpus import file_sha256, read_local_table
from precompute.common.tokenization import tokenize_sentences
from precompute.models import calibrate
from precompute.models.tiny_alignment import AlignedVocab, align_tokens, aligned_embeddings
from precompute.models.tiny_tokenizer import BOS_ID, load_tokenizer, train_tokenizer

BUILD_VERSION = 4
EMBED_NORM = 1.0
CONCEPT_SHARE = 0.4
LANGUAGE_FEATURES = 2
LANGUAGE_RATE = 0.1
RANDOM_MIN_RATE = 2e-3


def cache_key(spec: TinySpec) -> str:
    """Hash of the spec (padding side aside: it does not change the weights) and the corpus bytes."""
    fields = {
        k: v for k, v in asdict(spec).items() if k not in ("padding_side", "tokenizer_corpus")
    }
    text = json.dumps(
        {"spec": fields, "corpus": file_sha256(spec.tokenizer_corpus), "v": BUILD_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tiny_directory(spec: TinySpec) -> Path:
    """The cached build for ``spec``, built first if missing (atomic: tmp dir + rename)."""
    final = cache_root() / "tiny" / cache_key(spec)
    if (final / "spec.json").exists():
        return final
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        build_tiny(spec, tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same build first
            if not (final / "spec.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def model_config(spec: TinySpec, vocab_size: int, dtype: torch.dtype):
    from transformer_lens import HookedTransformerConfig

    d_head = spec.d_model // spec.n_heads
    return HookedTransformerConfig(
        model_name="tiny",
        n_layers=spec.n_layers,
        d_model=spec.d_model,
        n_heads=spec.n_heads,
        d_head=d_head,
        d_mlp=spec.d_mlp,
        d_vocab=vocab_size,
        n_ctx=TINY_CONTEXT,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="rotary",
        rotary_dim=d_head,
        seed=spec.seed,
        dtype=dtype,
        default_prepend_bos=True,
    )


def load_tiny_model(spec: TinySpec, device: str = "cpu", dtype: str = "float32"):
    """The tiny preset's model (its tokenizer attached) on ``device``."""
    from sae_lens import HookedSAETransformer

    directory = tiny_directory(spec)
    tokenizer = load_tokenizer(directory / "tokenizer", spec.padding_side)
    model = HookedSAETransformer(
        model_config(spec, len(tokenizer), getattr(torch, dtype)), tokenizer=tokenizer
    )
    state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.to(getattr(torch, dtype)) for k, v in state.items()}, strict=False)
    model.tokenizer.padding_side = spec.padding_side
    return model.to(device, print_details=False).eval()


def load_tiny_sae(spec: TinySpec, device: str = "cpu", dtype: str = "float32"):
    """The tiny preset's SAE on ``device``."""
    from sae_lens import SAE

    return SAE.load_from_disk(tiny_directory(spec) / "sae", device=device, dtype=dtype).eval()


def load_tiny(
    spec: TinySpec, device: str = "cpu", dtype: str = "float32", sae_dtype: str = "float32"
):
    """``(model, sae, tokenizer)`` of the tiny preset on ``device``."""
    model = load_tiny_model(spec, device, dtype)
    return model, load_tiny_sae(spec, device, sae_dtype), model.tokenizer


def build_tiny(spec: TinySpec, directory: Path) -> None:
    """Train the tokenizer, make the model and calibrate the SAE into ``directory``."""
    from sae_lens import HookedSAETransformer

    frame = read_local_table(spec.tokenizer_corpus)
    first, second = (frame[c].astype(str).tolist() for c in frame.columns[:2])
    train_tokenizer(first + second, spec.vocab_size, directory / "tokenizer")
    tokenizer = load_tokenizer(directory / "tokenizer")
    sentences = [_split(tokenize_sentences(tokenizer, texts, 10**6)) for texts in (first, second)]
    aligned = align_tokens(sentences[0], sentences[1], len(tokenizer))
    rng = np.random.default_rng(spec.seed)
    torch.manual_seed(spec.seed)
    model = HookedSAETransformer(
        model_config(spec, len(tokenizer), torch.float32), tokenizer=tokenizer
    ).eval()
    model.embed.W_E.data = torch.from_numpy(
        aligned_embeddings(aligned, spec.d_model, rng) * EMBED_NORM
    )
    torch.save(model.state_dict(), directory / "model.pt")
    resid, token_ids = _residuals(model, tokenizer, sentences[0] + sentences[1], spec.hook_name)
    _calibrated_sae(spec, resid, token_ids, aligned, rng).save_model(directory / "sae")
    (directory / "spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")


def _split(tokens) -> list[np.ndarray]:
    return [tokens.sentence(i) for i in range(len(tokens))]


@torch.no_grad()
def _residuals(model, tokenizer, sentences: list[np.ndarray], hook_name: str, batch: int = 64):
    """Hook activations and token ids of every real token of ``sentences``."""
    xs, ids = [], []
    for lo in range(0, len(sentences), batch):
        input_ids, mask = pad_batch(tokenizer, sentences[lo : lo + batch], BOS_ID, "cpu")
        real, _ = real_tokens(input_ids, mask, BOS_ID)
        xs.append(hook_activation(model, hook_name, input_ids, mask)[real])
        ids.append(input_ids[real])
    return torch.cat(xs).float(), torch.cat(ids).numpy()


def _directions(
    spec: TinySpec,
    centered: torch.Tensor,
    token_ids: np.ndarray,
    aligned: AlignedVocab,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, np.ndarray]:
    """Unit encoder directions (d_sae, d_model) and each one's target firing rate (nan: random)."""
    n = len(token_ids)
    group = aligned.group[token_ids]
    counts = np.bincount(group[group >= 0], minlength=aligned.n_groups)
    n_concept = min(int(CONCEPT_SHARE * spec.d_sae), int((counts >= 3).sum()))
    dirs, rates = [], []
    for g in np.argsort(-counts, kind="stable")[:n_concept]:
        dirs.append(centered[torch.from_numpy(group == g)].mean(dim=0))
        rates.append(counts[g] / n)
    lang = aligned.language[token_ids]
    for li in (0, 1):
        mean = centered[torch.from_numpy(lang == li)].mean(dim=0)
        for _ in range(LANGUAGE_FEATURES):
            dirs.append(
                mean
                + 0.3 * mean.norm() * torch.from_numpy(rng.standard_normal(spec.d_model)).float()
            )
            rates.append(LANGUAGE_RATE)
    n_random = spec.d_sae - len(dirs)
    dirs.extend(torch.from_numpy(rng.standard_normal((n_random, spec.d_model))).float())
    rates.extend([np.nan] * n_random)
    w = torch.stack(dirs)
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12), np.asarray(rates)


def _calibrated_sae(
    spec: TinySpec,
    resid: torch.Tensor,
    token_ids: np.ndarray,
    aligned: AlignedVocab,
    rng: np.random.Generator,
):
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

    mean = resid.mean(dim=0)
    directions, rates = _directions(spec, resid - mean, token_ids, aligned, rng)
    random = np.isnan(rates)
    budget = max(spec.target_l0 - rates[~random].sum(), 0.1 * spec.target_l0)
    rates[random] = calibrate.firing_rates(int(random.sum()), budget, rng, low=RANDOM_MIN_RATE)
    perm = torch.from_numpy(rng.permutation(spec.d_sae))
    directions, rates = directions[perm], rates[perm.numpy()]
    pre = (resid - mean) @ directions.T
    thresholds = calibrate.quantile_thresholds(pre, torch.from_numpy(rates))
    cfg = JumpReLUSAEConfig(
        d_in=spec.d_model,
        d_sae=spec.d_sae,
        dtype="float32",
        device="cpu",
        apply_b_dec_to_input=True,
    )
    cfg.metadata.hook_name = spec.hook_name
    cfg.metadata.model_name = "tiny"
    cfg.metadata.prepend_bos = True
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(directions.T)
        sae.W_dec.copy_(directions)
        sae.b_enc.zero_()
        sae.b_dec.copy_(mean)
        sae.threshold.copy_(thresholds.float())
    return sae
