"""Direct logit effects and nearest decoder neighbours of every SAE feature.

The direct logit effect of feature ``i`` is its decoder direction read
straight through the unembedding, skipping every later layer:

    effect_i = norm(W_dec[i]) @ W_U        (one logit per vocabulary token)

where ``norm`` is the final normalisation *without its scale*: LayerNorm
centres the direction and multiplies by its elementwise weight ``w``;
RMSNorm only multiplies by ``w`` (TransformerLens stores Gemma's ``1 + w``).
The division by the residual's norm is left out: it depends on the whole
residual at a position, not on the feature, and is one positive number per
position, so it scales all of a feature's logits alike and never changes
which tokens come first. Gemma 2's final logit soft-capping (``tanh``) is
monotone, so it is left out too. The unembedding bias adds the same offset
whatever the feature and is not part of the effect.

Features are processed in blocks of ``block_size`` rows, so at most
``block_size x d_vocab`` logits exist at once (Gemma 2 2B: 16,384 x 256,000
logits would be 16 GB; blocks of 128 features hold 131 MB).

Neighbours: the cosine similarity of decoder rows, ``top`` most similar
other features per feature, also computed a block of rows at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from bilingual_core.evidence import (
    PROMOTED,
    SUPPRESSED,
    TAG_SHARE,
    logits_schema,
    output_language_shares,
    tag_tokens,
    token_language_shares,
)

MAX_BLOCK_LOGITS = 1 << 25
"""Logits (float32) held at once: 128 MiB."""


@dataclass
class LogitResult:
    logits: pd.DataFrame
    """``feature, sign, rank, token_id, token, logit, lang_tag, n_occurrences, share_<l>``."""
    output_languages: pd.DataFrame
    neighbours: pd.DataFrame
    record: dict[str, Any]


def final_norm(model) -> tuple[bool, torch.Tensor | None, str]:
    """``(centre, weight, kind)`` of the model's final normalisation, as applied to a direction."""
    kind = str(getattr(model.cfg, "normalization_type", None))
    ln = getattr(model, "ln_final", None)
    weight = getattr(ln, "w", None) if ln is not None else None
    return (
        kind.startswith("LN"),
        (weight.detach() if isinstance(weight, torch.Tensor) else None),
        kind,
    )


def block_size_for(d_vocab: int, max_logits: int = MAX_BLOCK_LOGITS) -> int:
    return max(1, max_logits // max(d_vocab, 1))


@torch.no_grad()
def logit_effects(model, sae, block: slice) -> torch.Tensor:
    """``(block features, d_vocab)`` float32 direct logit effects (module docstring)."""
    centre, weight, _ = final_norm(model)
    w_u = model.W_U
    d = sae.W_dec[block].to(w_u.device, torch.float32)
    if centre:
        d = d - d.mean(dim=-1, keepdim=True)
    if weight is not None:
        d = d * weight.to(d.device, torch.float32)
    return d @ w_u.to(torch.float32)


@torch.no_grad()
def top_logits(
    model, sae, k: int = 10, block_size: int | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(top_ids, top_values, bottom_ids, bottom_values)``, each ``(d_sae, k)``:
    the ``k`` most promoted tokens (largest effect first) and the ``k`` most
    suppressed (most negative first) of every feature."""
    d_sae, d_vocab = int(sae.cfg.d_sae), int(model.cfg.d_vocab)
    k = min(k, d_vocab)
    size = block_size or block_size_for(d_vocab)
    out = [
        np.zeros((d_sae, k), np.int64),
        np.zeros((d_sae, k), np.float32),
        np.zeros((d_sae, k), np.int64),
        np.zeros((d_sae, k), np.float32),
    ]
    bar = _bar(progress, d_sae, "logit effects")
    for lo in range(0, d_sae, size):
        effects = logit_effects(model, sae, slice(lo, lo + size))
        hi = lo + effects.shape[0]
        top = effects.topk(k, dim=1)
        bottom = effects.topk(k, dim=1, largest=False)
        out[0][lo:hi], out[1][lo:hi] = top.indices.cpu().numpy(), top.values.cpu().numpy()
        out[2][lo:hi], out[3][lo:hi] = bottom.indices.cpu().numpy(), bottom.values.cpu().numpy()
        if bar is not None:
            bar.update(hi - lo)
    if bar is not None:
        bar.close()
    return out[0], out[1], out[2], out[3]


@torch.no_grad()
def decoder_neighbours(
    sae, top: int = 10, block_size: int = 1024, device: torch.device | str | None = None
) -> pd.DataFrame:
    """``feature, rank, neighbour, cosine``: each feature's ``top`` most similar
    other decoder rows by cosine similarity (rank 1 = most similar)."""
    w = sae.W_dec.detach().to(device or sae.W_dec.device, torch.float32)
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    d_sae = w.shape[0]
    top = min(top, d_sae - 1)
    ids, cos = [], []
    for lo in range(0, d_sae, block_size):
        sim = w[lo : lo + block_size] @ w.T
        rows = torch.arange(sim.shape[0], device=sim.device)
        sim[rows, rows + lo] = -torch.inf  # not its own neighbour
        best = sim.topk(top, dim=1)
        ids.append(best.indices.cpu().numpy())
        cos.append(best.values.cpu().numpy())
    n_ids, n_cos = np.concatenate(ids), np.concatenate(cos)
    return pd.DataFrame(
        {
            "feature": np.repeat(np.arange(d_sae, dtype=np.int32), top),
            "rank": np.tile(np.arange(1, top + 1, dtype=np.int32), d_sae),
            "neighbour": n_ids.reshape(-1).astype(np.int32),
            "cosine": n_cos.reshape(-1).astype(np.float32),
        }
    )


def logits_frame(
    top_ids: np.ndarray,
    top_values: np.ndarray,
    bottom_ids: np.ndarray,
    bottom_values: np.ndarray,
    strings: dict[int, str],
    shares: pd.DataFrame,
    languages: list[str],
) -> pd.DataFrame:
    """The long ``logits.parquet`` rows from ``top_logits``' arrays, tagged by language."""
    d_sae, k = top_ids.shape
    parts = []
    for sign, ids, values in (
        (PROMOTED, top_ids, top_values),
        (SUPPRESSED, bottom_ids, bottom_values),
    ):
        flat = ids.reshape(-1)
        part = pd.DataFrame(
            {
                "feature": np.repeat(np.arange(d_sae, dtype=np.int32), k),
                "sign": sign,
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), d_sae),
                "token_id": flat.astype(np.int32),
                "token": [strings.get(int(t), "") for t in flat],
                "logit": values.reshape(-1).astype(np.float32),
            }
        )
        parts.append(pd.concat([part, tag_tokens(flat, shares, languages)], axis=1))
    return pd.concat(parts, ignore_index=True).sort_values(
        ["feature", "sign", "rank"], ignore_index=True
    )


def compute_logit_evidence(
    model,
    sae,
    tokenizer,
    tokens: pd.DataFrame,
    languages: list[str],
    *,
    k: int = 10,
    n_neighbours: int = 10,
    block_size: int | None = None,
    progress: bool = False,
) -> LogitResult:
    """Logit effects (tagged with the run's token languages) and neighbours of every feature.

    ``tokens``: the run's ``tokens.parquet`` (``lang``, ``position``, ``token_id``)."""
    from precompute.common.tokenization import token_strings

    t0 = time.perf_counter()
    top_ids, top_values, bottom_ids, bottom_values = top_logits(model, sae, k, block_size, progress)
    t_logits = time.perf_counter() - t0
    strings = token_strings(
        tokenizer, np.concatenate([top_ids.reshape(-1), bottom_ids.reshape(-1)])
    )
    shares = token_language_shares(tokens, languages)
    frame = logits_frame(top_ids, top_values, bottom_ids, bottom_values, strings, shares, languages)
    t1 = time.perf_counter()
    neighbours = decoder_neighbours(sae, n_neighbours)
    centre, weight, kind = final_norm(model)
    record = {
        "k": int(top_ids.shape[1]),
        "n_neighbours": int(neighbours["rank"].max()) if len(neighbours) else 0,
        "final_norm": {
            "type": kind,
            "centred": centre,
            "weight_applied": weight is not None,
            "scale_applied": False,
        },
        "tag_share": TAG_SHARE,
        "seconds_logits": round(t_logits, 3),
        "seconds_neighbours": round(time.perf_counter() - t1, 3),
    }
    return LogitResult(frame, output_language_shares(frame, languages), neighbours, record)


def to_tables(result: LogitResult, languages: list[str]) -> dict[str, pa.Table]:
    from bilingual_core.evidence import LOGITS, NEIGHBOURS, NEIGHBOURS_SCHEMA, OUTPUT_LANGUAGES

    return {
        LOGITS: pa.Table.from_pandas(
            result.logits, schema=logits_schema(languages), preserve_index=False
        ),
        OUTPUT_LANGUAGES: pa.Table.from_pandas(result.output_languages, preserve_index=False),
        NEIGHBOURS: pa.Table.from_pandas(
            result.neighbours, schema=NEIGHBOURS_SCHEMA, preserve_index=False
        ),
    }


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="feature", unit_scale=True)


def add_logit_evidence(
    location: str,
    *,
    device: str = "auto",
    k: int = 10,
    n_neighbours: int = 10,
    block_size: int | None = None,
    progress: bool = True,
    models=None,
    **overrides: Any,
) -> LogitResult:
    """Compute the logit tables of the run at ``location`` and add them to it atomically.

    ``models``: already loaded ``LoadedModels`` (tests, benchmarks); otherwise the
    model and SAE named by the manifest (``overrides``: ``model_path``, ``sae_path``)."""
    from bilingual_core import Run
    from bilingual_core.evidence import add_tables
    from bilingual_core.schema import TOKENS
    from precompute.evidence.loading import pick_device

    run = Run.open(location)
    if models is None:
        from precompute.evidence.loading import load_run_models

        models = load_run_models(run, pick_device(device), **overrides)
    check_residual(models)
    tokens = run.read_pandas(TOKENS, columns=["lang", "position", "token_id"])
    result = compute_logit_evidence(
        models.model,
        models.sae,
        models.tokenizer,
        tokens,
        run.languages,
        k=k,
        n_neighbours=n_neighbours,
        block_size=block_size,
        progress=progress,
    )
    add_tables(location, to_tables(result, run.languages), "logits", result.record)
    return result


def check_residual(models) -> None:
    """Logit effects and ablations need decoder directions in the residual stream."""
    from precompute.common.errors import IncompatibleSaeError

    if int(models.sae.cfg.d_in) != int(models.model.cfg.d_model) or "resid" not in models.hook_name:
        raise IncompatibleSaeError(
            f"the SAE reads {models.hook_name} (d_in {models.sae.cfg.d_in}); decoder "
            "directions can only be read through the unembedding for an SAE on the "
            f"residual stream (d_model {models.model.cfg.d_model})"
        )
