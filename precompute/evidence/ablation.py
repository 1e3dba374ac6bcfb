"""Ablate a feature where it fires and measure the change in next-token loss, per language.

For a feature ``f`` and a sentence where it fires (first firing real-token
position ``p0``), the model runs twice on the sentence: once clean, once with
the feature removed at the SAE's hook, at every real token,

    x_t  <-  x_t - a_f(x_t) * W_dec[f]        (a_f = the SAE's activation of f at t)

and the rest of the model runs on the edited residual. The effect is the
change of next-token cross-entropy over the predictions made from ``p0`` on
(position ``p`` predicts token ``p + 1``; earlier predictions cannot change):

    delta_loss(f, l) = sum_s sum_{p >= p0(s)} (CE_ablated - CE_clean) / #tokens

pooled over the feature's sentences ``s`` in language ``l`` (at most
``max_sentences`` of them, drawn with the seed), with a percentile bootstrap
CI over sentences. The baseline repeats the same measurement for random alive
features of similar firing frequency (``bilingual_core.evidence.draw_baseline``),
pooled over their sentences. Rows of several features (and the clean runs)
share a batch: each batch row carries the feature it ablates.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from bilingual_core import Run
from bilingual_core.evidence import (
    ABLATION,
    bootstrap_ratio_ci,
    candidates_with_baseline,
    ranking_column,
)
from bilingual_core.schema import ACTIVATIONS, FEATURES, TOKENS
from precompute.evidence.config import AblationConfig

CLEAN = -1


@dataclass
class Job:
    feature: int
    """Feature ablated, or CLEAN."""
    sentence: tuple[int, str]
    """(pair id, language)."""


def firing_starts(run: Run, features: list[int]) -> pd.DataFrame:
    """``feature, pair_id, lang, first_position, n_positions`` for every sentence where
    one of ``features`` fires (the activations file is sorted by feature: cheap)."""
    table = run.read(
        ACTIVATIONS,
        columns=["feature", "pair_id", "lang", "position"],
        filters=[("feature", "in", [int(f) for f in features])],
    )
    frame = table.to_pandas()
    frame["lang"] = frame["lang"].astype(str)
    grouped = frame.groupby(["feature", "pair_id", "lang"], sort=True)["position"]
    return grouped.agg(first_position="min", n_positions="size").reset_index()


def sentence_tokens(run: Run, sentences: set[tuple[int, str]]) -> dict[tuple[int, str], np.ndarray]:
    """Real token ids (positions 1..L, BOS excluded) of each (pair id, language)."""
    pairs = sorted({p for p, _ in sentences})
    frame = run.read(
        TOKENS,
        columns=["pair_id", "lang", "position", "token_id"],
        filters=[("pair_id", "in", pairs)],
    ).to_pandas()
    frame["lang"] = frame["lang"].astype(str)
    frame = frame[frame["position"] > 0].sort_values(["pair_id", "lang", "position"])
    out = {}
    for (pair, lang), part in frame.groupby(["pair_id", "lang"], sort=False):
        if (int(pair), str(lang)) in sentences:
            out[(int(pair), str(lang))] = part["token_id"].to_numpy(np.int64)
    return out


def choose_sentences(
    starts: pd.DataFrame, max_sentences: int, rng: np.random.Generator
) -> pd.DataFrame:
    """At most ``max_sentences`` rows per (feature, language), a random subset when more."""
    parts = []
    for _, part in starts.groupby(["feature", "lang"], sort=True):
        if len(part) > max_sentences:
            part = part.iloc[np.sort(rng.choice(len(part), size=max_sentences, replace=False))]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else starts.iloc[:0]


class Ablator:
    """Per-token next-token losses of sentences, each with one feature ablated (or none)."""

    def __init__(self, model, sae, tokenizer, hook_name: str, bos_id: int, device: str) -> None:
        self.model, self.sae, self.tokenizer = model, sae, tokenizer
        self.hook_name, self.bos_id, self.device = hook_name, bos_id, torch.device(device)

    @torch.no_grad()
    def losses(self, rows: list[np.ndarray], features: list[int]) -> list[np.ndarray]:
        """For each sentence (real token ids) with its feature to ablate (CLEAN: none):
        the cross-entropy of predicting token ``p + 1`` at positions ``p = 1 .. L-1``."""
        from precompute.common.activations import pad_batch, real_tokens

        ids, mask = pad_batch(self.tokenizer, rows, self.bos_id, self.device)
        real, position = real_tokens(ids, mask, self.bos_id)
        feat = torch.as_tensor(features, device=self.device)
        hooks = [(self.hook_name, self._ablate_hook(feat, real))] if (feat >= 0).any() else []
        logits = self.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none"
        ).view(ids.shape[0], -1)
        keep = (
            real[:, :-1] & mask[:, 1:].bool()
        )  # predictions from a real token of the next real token
        out = []
        for b in range(ids.shape[0]):
            order = position[b, :-1][keep[b]].argsort()
            out.append(nll[b][keep[b]][order].cpu().numpy().astype(np.float64))
        return out

    def _ablate_hook(self, feat: torch.Tensor, real: torch.Tensor):
        sae = self.sae

        def ablate(x: torch.Tensor, hook: Any) -> torch.Tensor:
            rows = torch.nonzero(feat >= 0).squeeze(1)
            f = feat[rows]
            acts = sae.encode(x[rows].to(sae.dtype))
            a = acts.gather(-1, f[:, None, None].expand(-1, acts.shape[1], 1)).squeeze(-1)
            a = a * real[rows].to(a.dtype)
            x = x.clone()
            x[rows] = x[rows] - (a[..., None] * sae.W_dec[f][:, None, :]).to(x.dtype)
            return x

        return ablate


def _batches(lengths: np.ndarray, batch_size: int, batch_tokens: int) -> list[np.ndarray]:
    from precompute.common.activations import length_batches

    return length_batches(lengths, batch_size, batch_tokens)


def run_losses(
    ablator: Ablator,
    jobs: list[Job],
    tokens: dict[tuple[int, str], np.ndarray],
    cfg: AblationConfig,
    bar=None,
    weights: np.ndarray | None = None,
) -> list[np.ndarray]:
    """``ablator.losses`` of every job, batched longest first."""
    lengths = np.array([len(tokens[j.sentence]) for j in jobs], np.int64)
    out: list[np.ndarray | None] = [None] * len(jobs)
    for batch in _batches(lengths, cfg.batch_size, cfg.batch_tokens):
        losses = ablator.losses(
            [tokens[jobs[i].sentence] for i in batch], [jobs[i].feature for i in batch]
        )
        for i, loss in zip(batch, losses, strict=True):
            out[i] = loss
        if bar is not None:
            bar.update(float(weights[batch].sum()) if weights is not None else len(batch))
    return out  # type: ignore[return-value]


def delta_sums(
    chosen: pd.DataFrame,
    ablated: dict[tuple[int, int, str], np.ndarray],
    clean: dict[tuple[int, str], np.ndarray],
) -> pd.DataFrame:
    """Per chosen (feature, sentence): ``delta_sum`` of ablated - clean losses over the
    predictions from the first firing position on, their number ``n_tokens``, and ``clean_sum``."""
    sums, counts, clean_sums = [], [], []
    for row in chosen.itertuples(index=False):
        key = (int(row.pair_id), str(row.lang))
        start = int(row.first_position) - 1  # losses[i] is the prediction made at position i + 1
        a, c = ablated[(int(row.feature), *key)][start:], clean[key][start:]
        sums.append(float((a - c).sum()))
        counts.append(len(a))
        clean_sums.append(float(c.sum()))
    return chosen.assign(delta_sum=sums, n_tokens=counts, clean_sum=clean_sums)


def ablation_table(
    per_sentence: pd.DataFrame,
    candidates: pd.DataFrame,
    rank_column: str,
    baseline: dict[int, list[int]],
    languages: list[str],
    available: pd.DataFrame,
    cfg: AblationConfig,
) -> pd.DataFrame:
    """One row per candidate and language (see docs/evidence.md for the columns)."""
    rng = np.random.default_rng(cfg.seed + 1)
    rows = []
    for cand in candidates.itertuples(index=False):
        f = int(cand.feature)
        for lang in languages:
            mine = per_sentence[(per_sentence["feature"] == f) & (per_sentence["lang"] == lang)]
            base = per_sentence[
                per_sentence["feature"].isin(baseline[f]) & (per_sentence["lang"] == lang)
            ]
            d, lo, hi = bootstrap_ratio_ci(
                mine["delta_sum"], mine["n_tokens"], n_boot=cfg.n_boot, rng=rng
            )
            bd, blo, bhi = bootstrap_ratio_ci(
                base["delta_sum"], base["n_tokens"], n_boot=cfg.n_boot, rng=rng
            )
            n_tok = int(mine["n_tokens"].sum())
            n_avail = int(((available["feature"] == f) & (available["lang"] == lang)).sum())
            rows.append(
                {
                    "feature": f,
                    "lang": lang,
                    "rank_by": rank_column,
                    "candidate_rank": _rank(getattr(cand, rank_column)),
                    "n_sentences": len(mine),
                    "n_sentences_firing": n_avail,
                    "n_tokens": n_tok,
                    "delta_loss": d,
                    "ci_low": lo,
                    "ci_high": hi,
                    "clean_loss": float(mine["clean_sum"].sum() / n_tok) if n_tok else float("nan"),
                    "baseline_delta_loss": bd,
                    "baseline_ci_low": blo,
                    "baseline_ci_high": bhi,
                    "baseline_n_sentences": len(base),
                    "baseline_features": ",".join(str(b) for b in baseline[f]),
                    "hurts": hurts(lo, bhi),
                }
            )
    return pd.DataFrame(rows)


def _rank(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def hurts(ci_low: float, baseline_ci_high: float) -> bool:
    """Ablating the feature raises the loss: its CI lies above 0 and above the baseline's CI."""
    if not ci_low > 0:
        return False
    return bool(np.isnan(baseline_ci_high) or ci_low > baseline_ci_high)


def compute_ablation(
    run: Run,
    models,
    cfg: AblationConfig | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ablation table of the run's top candidates, and a record for the manifest."""
    cfg = cfg or AblationConfig()
    from precompute.common.tokenization import bos_token_id

    t0 = time.perf_counter()
    languages = run.languages
    feats = run.read_pandas(FEATURES)
    rank_column = ranking_column(feats.columns, cfg.score)
    rng = np.random.default_rng(cfg.seed)
    candidates, baseline, ablate = candidates_with_baseline(
        feats,
        rank_column,
        cfg.top,
        cfg.features,
        languages,
        n_baseline=cfg.n_baseline,
        pool=cfg.baseline_pool,
        rng=rng,
    )
    available = firing_starts(run, ablate)
    chosen = choose_sentences(available, cfg.max_sentences, rng)
    sentences = {
        (int(p), str(lang)) for p, lang in zip(chosen["pair_id"], chosen["lang"], strict=True)
    }
    tokens = sentence_tokens(run, sentences)
    ablator = Ablator(
        models.model,
        models.sae,
        models.tokenizer,
        models.hook_name,
        bos_token_id(models.tokenizer),
        device,
    )
    clean_jobs = [Job(CLEAN, s) for s in sorted(sentences)]
    bar = _bar(progress, len(clean_jobs), "clean loss", "sentence")
    clean = dict(
        zip(sorted(sentences), run_losses(ablator, clean_jobs, tokens, cfg, bar), strict=True)
    )
    _close(bar)
    jobs = [
        Job(int(r.feature), (int(r.pair_id), str(r.lang))) for r in chosen.itertuples(index=False)
    ]
    per_feature = chosen.groupby("feature").size()
    weights = np.array([1.0 / per_feature[j.feature] for j in jobs])
    bar = _bar(progress, len(per_feature), "ablating", "feature")
    ablated_losses = run_losses(ablator, jobs, tokens, cfg, bar, weights)
    _close(bar)
    ablated = {(j.feature, *j.sentence): loss for j, loss in zip(jobs, ablated_losses, strict=True)}
    per_sentence = delta_sums(chosen, ablated, clean)
    table = ablation_table(
        per_sentence, candidates, rank_column, baseline, languages, available, cfg
    )
    seconds = time.perf_counter() - t0
    record = {
        **asdict(cfg),
        "rank_by": rank_column,
        "n_candidates": len(candidates),
        "n_features_ablated": len(ablate),
        "n_forward_rows": len(jobs) + len(clean_jobs),
        "device": device,
        "seconds": round(seconds, 3),
        "seconds_per_candidate": round(seconds / max(len(candidates), 1), 4),
    }
    return table, record


def to_table(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    casts = {
        "feature": pa.int32(),
        "candidate_rank": pa.int32(),
        "n_sentences": pa.int32(),
        "n_sentences_firing": pa.int32(),
        "n_tokens": pa.int64(),
        "baseline_n_sentences": pa.int32(),
    }
    for name, typ in casts.items():
        if name in table.column_names:
            table = table.set_column(
                table.column_names.index(name), name, table.column(name).cast(typ)
            )
    return table


def _bar(enabled: bool, total: int, desc: str, unit: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        smoothing=0.1,
        bar_format="{l_bar}{bar}| {n:.0f}/{total} [{elapsed}<{remaining}, {rate_fmt}]",
    )


def _close(bar) -> None:
    if bar is not None:
        bar.close()


__all__ = ["ABLATION", "AblationConfig", "Ablator", "compute_ablation", "to_table"]
