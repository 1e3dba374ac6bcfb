"""A null dictionary: the run's pairs read through a random SAE of the same shape and sparsity.

A random dictionary already co-fires on translated tokens of a mid-layer
residual (the residuals of ``casa`` and ``house`` are close, so any direction
that fires on one tends to fire on the other). The null tells how much of a
score comes from that alone:

1. Directions: ``d_sae`` random unit vectors of width ``d_in``, ``b_dec`` the
   mean residual, encoder = decoder (``calibrate.random_jumprelu_sae``).
2. Sparsity: thresholds calibrated on the run's own residuals (up to
   ``calibration_tokens`` real tokens) so that the null's features fire at the
   real SAE's per-feature token rates (``n_tokens_<l>`` of ``features.parquet``
   over the run's real tokens, randomly assigned to directions): the same L0
   and the same spread of rates, dead features included.
3. Extraction: the run's own token ids (``tokens.parquet``), through the same
   model and hook, with the extraction kernel of ``precompute run``.
4. Scoring: the null run is written to a scratch directory beside the run,
   scored by the same scorer, and its ``features`` table (plus purity) becomes
   ``null_scores.parquet``. The null's activations are held in memory until
   they are sorted (about 17 bytes per activation: ~40 MB for the post's 500
   pairs); ``max_pairs`` caps the pairs for bigger runs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from bilingual_core import Run, ScoreConfig, score_run
from bilingual_core.evidence import purity_table, split_location
from bilingual_core.schema import (
    ACTIVATION_ROW_GROUP,
    ACTIVATIONS,
    ACTIVATIONS_SCHEMA,
    FEATURES,
    PAIRS,
    TOKENS,
)
from bilingual_core.storage import RunWriter, activation_writer, join
from precompute.evidence.config import NullConfig


def run_sentences(run: Run, n_pairs: int):
    """The run's real tokens as ``TokenizedSentences`` in (pair, language) order."""
    from precompute.common.tokenization import TokenizedSentences

    frame = run.read(
        TOKENS,
        columns=["pair_id", "lang", "position", "token_id"],
        filters=[("pair_id", "<", n_pairs)],
    ).to_pandas()
    frame["li"] = pd.Categorical(frame["lang"].astype(str), categories=run.languages).codes
    frame = frame[frame["position"] > 0].sort_values(["pair_id", "li", "position"])
    m = len(run.languages)
    sentence = frame["pair_id"].to_numpy(np.int64) * m + frame["li"].to_numpy(np.int64)
    lengths = np.bincount(sentence, minlength=n_pairs * m)
    offsets = np.zeros(n_pairs * m + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    none = np.zeros(n_pairs * m, bool)
    return TokenizedSentences(
        frame["token_id"].to_numpy(np.int32), offsets, none, none.astype(np.int64)
    )


@torch.no_grad()
def calibration_residuals(models, tokens, n_tokens: int, device: str) -> torch.Tensor:
    """Hook activations of the first sentences' real tokens, at least ``n_tokens`` of them."""
    from precompute.common.activations import hook_activation, pad_batch, real_tokens
    from precompute.common.tokenization import bos_token_id

    bos = bos_token_id(models.tokenizer)
    out, have, i = [], 0, 0
    while have < n_tokens and i < len(tokens):
        batch = [
            tokens.sentence(j)
            for j in range(i, min(i + 32, len(tokens)))
            if len(tokens.sentence(j))
        ]
        i += 32
        if not batch:
            continue
        ids, mask = pad_batch(models.tokenizer, batch, bos, device)
        real, _ = real_tokens(ids, mask, bos)
        x = hook_activation(models.model, models.hook_name, ids, mask)[real].float()
        out.append(x)
        have += x.shape[0]
    return torch.cat(out)[:n_tokens]


@torch.no_grad()
def null_sae(resid: torch.Tensor, hook_name: str, rates: np.ndarray, seed: int):
    """A random JumpReLU SAE whose feature ``i`` fires on a fraction ``rates[i]`` of ``resid``."""
    from precompute.models.calibrate import quantile_thresholds, random_jumprelu_sae

    d_sae = len(rates)
    target_l0 = float(np.clip(rates.sum(), 1e-3, 0.49 * d_sae))
    sae = random_jumprelu_sae(resid, hook_name, d_sae, target_l0, seed)
    pre = (resid.float() - sae.b_dec) @ sae.W_enc
    sae.threshold.copy_(quantile_thresholds(pre, torch.from_numpy(rates)).float())
    return sae


def real_rates(features: pd.DataFrame, languages: list[str], n_real_tokens: int) -> np.ndarray:
    """Per feature, the share of the run's real tokens it fires on."""
    n = (
        features.sort_values("feature")[[f"n_tokens_{lang}" for lang in languages]]
        .sum(axis=1)
        .to_numpy()
    )
    return np.clip(n / max(n_real_tokens, 1), 0.0, 1.0)


def extract_null(
    models, sae, tokens, n_pairs: int, m: int, cfg: NullConfig, device: str, progress: bool
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The null's activations of every sentence as columns (``lang`` as the index of
    the run's language), and the order that sorts them as ``activations.parquet`` requires."""
    from precompute.common.activations import Extractor, extract_chunk
    from precompute.common.tokenization import bos_token_id

    extractor = Extractor(
        models.model,
        sae,
        models.tokenizer,
        models.hook_name,
        bos_token_id(models.tokenizer),
        torch.device(device),
    )
    parts: dict[str, list[np.ndarray]] = {
        "feature": [],
        "pair_id": [],
        "lang": [],
        "position": [],
        "activation": [],
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=int(tokens.lengths.sum()), desc="null dictionary", unit="tok", unit_scale=True
        )
    for lo in range(0, n_pairs, cfg.chunk_pairs):
        hi = min(lo + cfg.chunk_pairs, n_pairs)
        sentences = np.arange(lo * m, hi * m)
        acts = extract_chunk(
            extractor,
            tokens,
            sentences,
            cfg.batch_size,
            on_batch=bar.update if bar is not None else None,
            batch_tokens=cfg.batch_tokens,
        )
        lengths = tokens.lengths[sentences]
        # chunk token index -> (sentence, position)
        sentence_of = np.repeat(sentences, lengths)
        starts = np.repeat(tokens.offsets[sentences] - tokens.offsets[sentences[0]], lengths)
        position = np.arange(len(sentence_of)) - starts + 1
        s = sentence_of[acts.token]
        parts["feature"].append(acts.feature)
        parts["pair_id"].append((s // m).astype(np.int32))
        parts["lang"].append((s % m).astype(np.int8))
        parts["position"].append(position[acts.token].astype(np.int32))
        parts["activation"].append(acts.value.astype(np.float32))
    if bar is not None:
        bar.close()
    cols = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    order = np.lexsort((cols["position"], cols["lang"], cols["pair_id"], cols["feature"]))
    return cols, order


def write_null_run(
    run: Run,
    scratch_root: str,
    fs,
    cols: dict[str, np.ndarray],
    order: np.ndarray,
    n_pairs: int,
    sae_info: dict[str, Any],
) -> str:
    """An unscored run under ``scratch_root`` with the run's pairs and tokens and the null's activations."""
    run_id = "null"
    lang_dict = pa.array(run.languages, pa.string())
    manifest = run.manifest
    manifest.run_id, manifest.n_pairs, manifest.sae = run_id, n_pairs, sae_info
    manifest.scoring, manifest.evidence = {}, {}
    with RunWriter(scratch_root, run_id, overwrite=True, fs=fs) as writer:
        for name in (PAIRS, TOKENS):
            table = run.read(name, filters=[("pair_id", "<", n_pairs)])
            writer.write_table(name, table)
        with fs.open(writer.path(ACTIVATIONS), "wb") as handle:
            out = activation_writer(handle)
            for lo in range(0, len(order), ACTIVATION_ROW_GROUP):
                idx = order[lo : lo + ACTIVATION_ROW_GROUP]
                out.write_table(
                    pa.table(
                        {
                            "pair_id": pa.array(cols["pair_id"][idx], pa.int32()),
                            "lang": pa.DictionaryArray.from_arrays(
                                pa.array(cols["lang"][idx], pa.int8()), lang_dict
                            ),
                            "position": pa.array(cols["position"][idx], pa.int32()),
                            "feature": pa.array(cols["feature"][idx], pa.int32()),
                            "activation": pa.array(cols["activation"][idx], pa.float32()),
                        },
                        schema=ACTIVATIONS_SCHEMA,
                    ),
                    row_group_size=ACTIVATION_ROW_GROUP,
                )
            out.close()
        writer.commit(manifest)
    return join(scratch_root, run_id)


def compute_null(
    location: str,
    models,
    cfg: NullConfig | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``null_scores.parquet`` rows (the null's features table with its purity) and a record."""
    cfg = cfg or NullConfig()
    t0 = time.perf_counter()
    run = Run.open(location)
    languages, m = run.languages, len(run.languages)
    n_pairs = min(run.manifest.n_pairs, cfg.max_pairs or run.manifest.n_pairs)
    feats = run.read_pandas(FEATURES)
    tokens = run_sentences(run, n_pairs)
    n_real = int((run.read(TOKENS, columns=["position"]).column("position").to_numpy() > 0).sum())
    rates = real_rates(feats, languages, n_real)
    rates = rates[np.random.default_rng(cfg.seed).permutation(len(rates))]
    resid = calibration_residuals(models, tokens, cfg.calibration_tokens, device)
    sae = null_sae(resid.to(device), models.hook_name, rates, cfg.seed).to(device)
    cols, order = extract_null(models, sae, tokens, n_pairs, m, cfg, device, progress)
    fs, root, run_id = split_location(location)
    scratch = join(root, f".{run_id}.tmp-null-{uuid.uuid4().hex[:12]}")
    sae_info = {
        "architecture": "jumprelu",
        "kind": "random null dictionary",
        "d_in": int(sae.cfg.d_in),
        "d_sae": int(sae.cfg.d_sae),
        "hook_name": models.hook_name,
        "seed": cfg.seed,
    }
    try:
        path = write_null_run(run, scratch, fs, cols, order, n_pairs, sae_info)
        scored = score_run(fs.unstrip_protocol(path), config=ScoreConfig()).features
        purity = purity_table(Run.open_fs(fs, path))
    finally:
        if fs.exists(scratch):
            fs.rm(scratch, recursive=True)
    null = scored.merge(purity, on="feature", how="left")
    n_tok = len(order)
    record = {
        **asdict(cfg),
        "n_pairs": n_pairs,
        "d_sae": int(sae.cfg.d_sae),
        "calibration_tokens_used": int(resid.shape[0]),
        "sparsity": "per-feature rates of the real SAE",
        "real_mean_l0": round(float(rates.sum()), 3),
        "null_mean_l0": round(n_tok / max(int(tokens.lengths.sum()), 1), 3),
        "null_alive": int(null["alive"].sum()),
        "n_activations": n_tok,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return null, record
