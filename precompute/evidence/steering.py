"""Steer with a feature's decoder direction and read what the model writes, per language.

For a candidate feature ``f`` with decoder row ``W_dec[f]`` and typical maximum
activation ``s_f`` (the median, over the sentences where it fires, of its
maximum in the sentence), a strength ``alpha`` adds

    x_t  <-  x_t + alpha * s_f * W_dec[f]

to the residual at the SAE's hook at every position that predicts a
continuation token: the prompt's last token and every generated token (the
prompt's earlier tokens are left alone). From a neutral prompt in each
language of the run (``DEFAULT_PROMPTS``, or a JSON file), the model
continues greedily for ``n_tokens`` tokens. ``alpha = 0`` is the unsteered
model. Per continuation the module records:

* the **concept log-probability**: at each generated position, the
  log-probability that the next token is one of the feature's own peak tokens
  in the prompt's language (``log sum_{t in peak} p(t)``), averaged over the
  positions; its rise over the same prompt unsteered is the concept gain;
* how many generated tokens are peak tokens;
* the language tag of every generated token (the tags of the logit tables:
  a token's language in this run's corpus; ``mixed``, or ``unknown`` when it
  never occurs in the run).

Peak tokens: per feature and language, the ``n_peak`` commonest tokens at
the feature's maximum in the sentences where it fires, read from the
``peak_token_id`` column of ``sentence_max.parquet`` when the scorer wrote it,
else from ``activations.parquet`` and ``tokens.parquet``.

The same is measured for random alive features of similar firing frequency
(``bilingual_core.evidence.draw_baseline``), each steered with its own scale
and judged on its own peak tokens. The continuations of one prompt share a
batch (each row carries its own steering vector); keys and values are cached
between steps. The hook lives only inside ``Steerer.generate`` (a
TransformerLens hooks context): nothing stays on the model afterwards.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from bilingual_core import Run
from bilingual_core.evidence import (
    BASELINE,
    CANDIDATE,
    MIXED,
    STEERING,
    STEERING_SCHEMA,
    UNKNOWN,
    add_tables,
    candidates_with_baseline,
    ranking_column,
    steering_verdict,
    token_language_shares,
    writes_every_language,
)
from bilingual_core.progress import bar
from bilingual_core.schema import ACTIVATIONS, FEATURES, SENTENCE_MAX, TOKENS
from precompute.common.errors import PrecomputeError
from precompute.evidence.config import SteeringConfig

DEFAULT_PROMPTS: dict[str, tuple[str, ...]] = {
    "en": ("I think that", "Yesterday we", "The next day,"),
    "es": ("Creo que", "Ayer nosotros", "Al día siguiente,"),
    "fr": ("Je pense que", "Hier, nous", "Le lendemain,"),
    "de": ("Ich glaube, dass", "Gestern haben wir", "Am nächsten Tag"),
    "it": ("Penso che", "Ieri noi", "Il giorno dopo,"),
    "pt": ("Eu acho que", "Ontem nós", "No dia seguinte,"),
}
"""Neutral prompts, the same three in each language (translations of each other)."""
MAX_STRENGTH = 100.0
MAX_STRENGTHS = 12
MAX_PROMPTS = 20
MAX_PROMPT_CHARS = 500
PEAK_COLUMN = "peak_token_id"
"""Column of ``sentence_max.parquet`` with the token at the sentence's maximum, when present."""


# ------------------------------------------------------------ settings ---


def parse_strengths(values: Iterable[str]) -> tuple[float, ...]:
    """Strengths from the command line (``0 1 2`` or ``0,1,2``), checked (``check_strengths``)."""
    out = []
    for value in values:
        for part in str(value).split(","):
            if not part.strip():
                continue
            try:
                out.append(float(part))
            except ValueError:
                raise PrecomputeError(
                    f"--strengths: {part.strip()!r} is not a number (give e.g. --strengths 0 1 2 4)"
                ) from None
    return check_strengths(out)


def check_strengths(values: Iterable[float]) -> tuple[float, ...]:
    """Sorted distinct strengths with 0 (the unsteered model) added; a clear error for
    none, non-finite values, or values beyond ``MAX_STRENGTH`` in size."""
    values = list(values)
    if not values:
        raise PrecomputeError("--strengths: give at least one strength, e.g. --strengths 0 1 2 4")
    for v in values:
        if not math.isfinite(v):
            raise PrecomputeError(f"--strengths: {v} is not a finite number")
        if abs(v) > MAX_STRENGTH:
            raise PrecomputeError(
                f"--strengths: {v:g} is beyond ±{MAX_STRENGTH:g} times the feature's typical "
                "maximum activation (such a push swamps the residual stream)"
            )
    out = tuple(sorted({0.0, *(float(v) for v in values)}))
    if len(out) > MAX_STRENGTHS:
        raise PrecomputeError(f"--strengths: at most {MAX_STRENGTHS} strengths, got {len(out)}")
    return out


def load_prompts(path: str | Path) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Prompts from a JSON file ``{"en": ["I think that", ...], "es": [...]}``, checked."""
    path = Path(path)
    where = f"prompt file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PrecomputeError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PrecomputeError(f"{where}: cannot be read as UTF-8 text ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PrecomputeError(
            f"{where}: not valid JSON ({exc.msg}, line {exc.lineno}); expected an object "
            'such as {"en": ["I think that"], "es": ["Creo que"]}'
        ) from None
    if not isinstance(data, dict) or not data:
        raise PrecomputeError(
            f"{where}: expected a non-empty JSON object mapping each language to a list of prompts"
        )
    out = []
    for lang, prompts in data.items():
        if not isinstance(prompts, list) or not prompts:
            raise PrecomputeError(f"{where}: {lang!r} must map to a non-empty list of prompts")
        if len(prompts) > MAX_PROMPTS:
            raise PrecomputeError(
                f"{where}: {lang!r} has {len(prompts)} prompts; at most {MAX_PROMPTS}"
            )
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise PrecomputeError(f"{where}: prompt {i} of {lang!r} is not a non-empty string")
            if len(prompt) > MAX_PROMPT_CHARS:
                raise PrecomputeError(
                    f"{where}: prompt {i} of {lang!r} has {len(prompt)} characters; "
                    f"at most {MAX_PROMPT_CHARS}"
                )
        out.append((str(lang), tuple(prompts)))
    return tuple(out)


def prompts_for(cfg: SteeringConfig, languages: list[str]) -> dict[str, tuple[str, ...]]:
    """The prompts of each language of the run (the config's, else ``DEFAULT_PROMPTS``)."""
    given = dict(cfg.prompts) if cfg.prompts else DEFAULT_PROMPTS
    missing = [lang for lang in languages if lang not in given]
    if missing:
        source = "the prompt file" if cfg.prompts else "the built-in prompts"
        raise PrecomputeError(
            f"{source} have no prompts for {', '.join(missing)} (a language of this run); "
            f"pass --prompts FILE with a JSON object holding a list of prompts for each of "
            f"{', '.join(languages)}"
        )
    return {lang: tuple(given[lang]) for lang in languages}


# ------------------------------------------------------ run statistics ---


def typical_max(run: Run, features: list[int]) -> dict[int, float]:
    """Per feature: the median of its per-sentence maxima (every language pooled)."""
    frame = run.read(
        SENTENCE_MAX,
        columns=["feature", "max_activation"],
        filters=[("feature", "in", [int(f) for f in features])],
    ).to_pandas()
    med = frame.groupby("feature")["max_activation"].median()
    return {int(f): float(med.get(f, 0.0)) for f in features}


def peak_tokens(
    run: Run, features: list[int], n: int
) -> tuple[dict[tuple[int, str], list[int]], str]:
    """``({(feature, lang): token ids}, source)``: per feature and language its ``n``
    commonest peak tokens (the token at its maximum in each sentence where it fires;
    ties by token id), from ``sentence_max.parquet``'s ``peak_token_id`` when present."""
    feats = [int(f) for f in features]
    if PEAK_COLUMN in run.parquet(SENTENCE_MAX).schema_arrow.names:
        peaks = run.read(
            SENTENCE_MAX,
            columns=["feature", "lang", PEAK_COLUMN],
            filters=[("feature", "in", feats)],
        ).to_pandas()
        peaks = peaks.rename(columns={PEAK_COLUMN: "token_id"}).dropna(subset=["token_id"])
        source = f"{SENTENCE_MAX}:{PEAK_COLUMN}"
    else:
        acts = run.read(
            ACTIVATIONS,
            columns=["feature", "pair_id", "lang", "position", "activation"],
            filters=[("feature", "in", feats)],
        ).to_pandas()
        acts["lang"] = acts["lang"].astype(str)
        top = acts.sort_values("activation", ascending=False, kind="stable").drop_duplicates(
            ["feature", "pair_id", "lang"]
        )
        pairs = sorted(set(top["pair_id"].astype(int)))
        tokens = run.read(
            TOKENS,
            columns=["pair_id", "lang", "position", "token_id"],
            filters=[("pair_id", "in", pairs)],
        ).to_pandas()
        tokens["lang"] = tokens["lang"].astype(str)
        peaks = top.merge(tokens, on=["pair_id", "lang", "position"], how="inner")
        source = f"{ACTIVATIONS}+{TOKENS}"
    peaks["lang"] = peaks["lang"].astype(str)
    peaks["token_id"] = peaks["token_id"].astype(np.int64)
    counts = peaks.groupby(["feature", "lang", "token_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["feature", "lang", "n", "token_id"], ascending=[1, 1, 0, 1])
    out = {
        (int(f), str(lang)): part["token_id"].head(n).astype(int).tolist()
        for (f, lang), part in counts.groupby(["feature", "lang"], sort=False)
    }
    return out, source


# ----------------------------------------------------------- the model ---


@dataclass
class Generation:
    tokens: np.ndarray
    """(rows, n_tokens) greedy continuation ids."""
    watched: np.ndarray
    """(rows, n_tokens, len(watch)) log-probabilities of the watched tokens at each step."""


class Steerer:
    """Greedy continuations of one prompt, each row steered along its own vector."""

    def __init__(self, model, hook_name: str, device: str, *, kv_cache: bool = True) -> None:
        self.model, self.hook_name = model, hook_name
        self.device = torch.device(device)
        self.kv_cache = kv_cache and _cache_class() is not None

    def hooks_left(self) -> int:
        """Forward hooks attached anywhere on the model (0 outside ``generate``)."""
        return sum(len(hp.fwd_hooks) for hp in self.model.hook_dict.values())

    @torch.no_grad()
    def generate(
        self, prompt: np.ndarray, vectors: torch.Tensor, n_tokens: int, watch: np.ndarray
    ) -> Generation:
        """Continue ``prompt`` (ids, BOS included) greedily for ``n_tokens`` tokens, once per
        row of ``vectors`` (rows x d_model), adding that row's vector at the hook from the
        prompt's last position on; also the log-probabilities of ``watch`` at each step."""
        rows = vectors.shape[0]
        ids = torch.as_tensor(np.asarray(prompt), device=self.device)[None].repeat(rows, 1)
        vec = vectors.to(self.device)
        state = {"start": ids.shape[1] - 1}

        def steer(x: torch.Tensor, hook: Any) -> torch.Tensor:
            start = state["start"]
            add = vec[:, None, :].to(x.dtype)
            if start == 0:
                return x + add
            out = x.clone()
            out[:, start:] = out[:, start:] + add
            return out

        watch_ids = torch.as_tensor(np.asarray(watch, np.int64), device=self.device)
        out_ids = torch.zeros((rows, n_tokens), dtype=torch.long, device=self.device)
        watched = torch.zeros((rows, n_tokens, len(watch_ids)), device=self.device)
        with self.model.hooks(fwd_hooks=[(self.hook_name, steer)]):
            cache = (
                _cache_class().init_cache(self.model.cfg, self.model.cfg.device, rows)
                if self.kv_cache
                else None
            )
            seq = ids
            logits = self.model(seq, past_kv_cache=cache) if cache else self.model(seq)
            for step in range(n_tokens):
                logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
                watched[:, step] = logp[:, watch_ids]
                nxt = logp.argmax(dim=-1)
                out_ids[:, step] = nxt
                if step + 1 == n_tokens:
                    break
                seq = torch.cat([seq, nxt[:, None]], dim=1)
                if cache is not None:
                    state["start"] = 0
                    logits = self.model(nxt[:, None], past_kv_cache=cache)
                else:
                    logits = self.model(seq)
        return Generation(out_ids.cpu().numpy(), watched.cpu().numpy())


def _cache_class():
    try:
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
    except ImportError:  # older TransformerLens
        try:
            from transformer_lens.past_key_value_caching import (
                HookedTransformerKeyValueCache as TransformerLensKeyValueCache,
            )
        except ImportError:
            return None
    return TransformerLensKeyValueCache


# ------------------------------------------------------------ measuring ---


@dataclass(frozen=True)
class Steered:
    candidate: int
    feature: int
    role: str
    scale: float


def _concept(watched: np.ndarray, cols: list[int], n_valid: int) -> tuple[float, float]:
    """(mean over the first ``n_valid`` steps, first step) of log sum p over ``cols``."""
    if not cols or n_valid == 0:
        return float("nan"), float("nan")
    lp = watched[:n_valid][:, cols].astype(np.float64)
    per_step = np.logaddexp.reduce(lp, axis=1)
    return float(per_step.mean()), float(per_step[0])


def compute_steering(
    run: Run,
    models,
    cfg: SteeringConfig | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The steering rows of the run's top candidates and their baselines, and a manifest record."""
    cfg = cfg or SteeringConfig()
    strengths = check_strengths(cfg.strengths)
    if cfg.n_tokens < 1:
        raise PrecomputeError(f"--tokens must be at least 1, got {cfg.n_tokens}")
    from precompute.common.tokenization import bos_token_id, token_strings

    t0 = time.perf_counter()
    languages = run.languages
    prompts = prompts_for(cfg, languages)
    feats = run.read_pandas(FEATURES)
    rank_column = ranking_column(feats.columns, cfg.score)
    if cfg.features:
        unknown = [f for f in cfg.features if not 0 <= f < run.manifest.d_sae]
        if unknown:
            raise PrecomputeError(
                f"--features: {unknown} outside this run's features 0..{run.manifest.d_sae - 1}"
            )
    candidates, baseline, all_feats = candidates_with_baseline(
        feats,
        rank_column,
        cfg.top,
        cfg.features,
        languages,
        n_baseline=cfg.n_baseline,
        pool=cfg.baseline_pool,
        rng=np.random.default_rng(cfg.seed),
    )
    scales = typical_max(run, all_feats)
    silent = [f for f in candidates["feature"] if scales[int(f)] <= 0]
    if silent:
        raise PrecomputeError(
            f"feature(s) {silent} never fire in this run, so they have no typical activation to steer with"
        )
    peaks, peak_source = peak_tokens(run, all_feats, cfg.n_peak)
    steered = []
    for c in candidates["feature"]:
        c = int(c)
        steered.append(Steered(c, c, CANDIDATE, scales[c]))
        steered += [Steered(c, b, BASELINE, scales[b]) for b in baseline[c]]
    ranks = dict(zip(candidates["feature"].astype(int), candidates[rank_column], strict=True))

    tokens = run.read_pandas(TOKENS, columns=["lang", "position", "token_id"])
    shares = token_language_shares(tokens, languages)
    tags = shares["lang_tag"]
    tok = models.tokenizer
    bos = bos_token_id(tok)
    eos = getattr(tok, "eos_token_id", None)
    sae = models.sae
    w_dec = sae.W_dec.detach().to(torch.device(device), torch.float32)
    steerer = Steerer(models.model, models.hook_name, device, kv_cache=cfg.kv_cache)
    nonzero = [a for a in strengths if a != 0]
    jobs = [(s, a) for s in steered for a in nonzero]
    n_rows = sum(len(p) for p in prompts.values()) * (len(jobs) + 1)
    progress_bar = bar(n_rows, "steering", "continuation", show=progress)
    records: list[dict[str, Any]] = []
    strings: dict[int, str] = {}
    for lang in languages:
        watch = sorted({t for s in steered for t in peaks.get((s.feature, lang), [])})
        col = {t: i for i, t in enumerate(watch)}
        for p_index, prompt in enumerate(prompts[lang]):
            ids = tok(prompt, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            prompt_ids = np.asarray([bos, *ids], np.int64)
            rows = [(None, 0.0), *jobs]  # the unsteered continuation first
            gens: list[tuple[np.ndarray, np.ndarray]] = []
            for lo in range(0, len(rows), cfg.batch_size):
                chunk = rows[lo : lo + cfg.batch_size]
                vectors = torch.stack(
                    [
                        torch.zeros(w_dec.shape[1], device=w_dec.device)
                        if s is None
                        else float(a) * s.scale * w_dec[s.feature]
                        for s, a in chunk
                    ]
                )
                gen = steerer.generate(prompt_ids, vectors, cfg.n_tokens, np.asarray(watch))
                gens += list(zip(gen.tokens, gen.watched, strict=True))
                if progress_bar is not None:
                    progress_bar.update(len(chunk))
            strings.update(
                token_strings(tok, np.concatenate([g[0] for g in gens] + [np.asarray(watch)]))
            )
            clean = gens[0]
            for s in steered:
                for a, gen in [(0.0, clean)] + [
                    (a, gens[1 + i]) for i, (js, a) in enumerate(jobs) if js is s
                ]:
                    records.append(
                        _row(
                            s,
                            a,
                            lang,
                            p_index,
                            prompt,
                            gen,
                            peaks.get((s.feature, lang), []),
                            col,
                            eos,
                            tags,
                            tok,
                            strings,
                            rank_column,
                            ranks.get(s.candidate),
                            peak_source,
                        )
                    )
    if progress_bar is not None:
        progress_bar.close()
    frame = pd.DataFrame.from_records(records)
    seconds = time.perf_counter() - t0
    record = {
        **asdict(cfg),
        "strengths": list(strengths),
        "prompts": {lang: list(p) for lang, p in prompts.items()},
        "prompts_source": "file" if cfg.prompts else "built-in",
        "rank_by": rank_column,
        "n_candidates": len(candidates),
        "n_features_steered": len(all_feats),
        "baseline": {str(k): v for k, v in baseline.items()},
        "peak_source": peak_source,
        "positions": "the prompt's last token and every generated token",
        "kv_cache": steerer.kv_cache,
        "n_continuations": n_rows,
        "device": device,
        "seconds": round(seconds, 3),
        "seconds_per_candidate": round(seconds / max(len(candidates), 1), 4),
    }
    return frame, record


def _row(
    s: Steered,
    strength: float,
    lang: str,
    p_index: int,
    prompt: str,
    gen: tuple[np.ndarray, np.ndarray],
    peak: list[int],
    col: dict[int, int],
    eos: int | None,
    tags: pd.Series,
    tok,
    strings: dict[int, str],
    rank_by: str,
    rank: Any,
    peak_source: str,
) -> dict[str, Any]:
    ids, watched = gen
    ids = [int(t) for t in ids]
    stopped = eos is not None and eos in ids
    n = ids.index(eos) if stopped else len(ids)
    kept = ids[:n]
    lang_tags = [str(tags.get(t, UNKNOWN)) for t in kept]
    mean_lp, first_lp = _concept(watched, [col[t] for t in peak if t in col], n)
    peak_set = set(peak)
    return {
        "candidate": s.candidate,
        "feature": s.feature,
        "role": s.role,
        "rank_by": rank_by,
        "candidate_rank": None if rank is None or pd.isna(rank) else int(rank),
        "lang": lang,
        "prompt_index": p_index,
        "prompt": prompt,
        "strength": float(strength),
        "scale": s.scale,
        "continuation": tok.decode(kept, skip_special_tokens=False),
        "tokens": [strings.get(t, "") for t in kept],
        "token_ids": kept,
        "token_langs": lang_tags,
        "n_tokens": n,
        "stopped": stopped,
        "peak_source": peak_source,
        "concept_tokens": " · ".join(strings.get(t, "?") for t in peak),
        "concept_token_ids": [int(t) for t in peak],
        "concept_logprob": mean_lp,
        "concept_logprob_first": first_lp,
        "n_concept": sum(t in peak_set for t in kept),
        "n_lang": sum(t == lang for t in lang_tags),
        "n_tagged": sum(t not in (MIXED, UNKNOWN) for t in lang_tags),
        "n_mixed": sum(t == MIXED for t in lang_tags),
        "n_unknown": sum(t == UNKNOWN for t in lang_tags),
    }


def to_table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=STEERING_SCHEMA, preserve_index=False)


def summary_lines(frame: pd.DataFrame, languages: list[str]) -> list[str]:
    """Per candidate: where it writes its concept; then how many do so in every language."""
    verdict = steering_verdict(frame)
    writes = writes_every_language(verdict, languages).set_index("feature")
    lines = []
    for feature, part in verdict.groupby("feature", sort=False):
        w = writes.loc[feature]
        verdict_text = (
            f"writes its concept in every language from strength {w['writes_at']:g}"
            if w["writes_every_language"]
            else f"writes its concept in {w['writes_in'] or 'no language'}"
        )
        steered = part[part["strength"] > 0]
        gains = " · ".join(
            f"{lang} {steered.loc[steered['lang'] == lang, 'concept_gain'].max():+.2f}"
            for lang in languages
        )
        kept = " · ".join(
            f"{lang} {steered.loc[steered['lang'] == lang, 'lang_kept'].min():.2f}"
            for lang in languages
        )
        lines.append(
            f"  feature {feature}: {verdict_text} (largest concept gain {gains}; "
            f"language kept, worst strength {kept})"
        )
    n = int(writes["writes_every_language"].sum())
    every = ", ".join(str(f) for f in writes.index[writes["writes_every_language"]])
    lines.append(
        f"  {n} of {len(writes)} candidates write their concept in every language"
        + (f": {every}" if every else "")
    )
    return lines


def steer_run(
    location: str,
    cfg: SteeringConfig,
    *,
    device: str = "auto",
    progress: bool = True,
    models=None,
    **overrides: Any,
) -> list[str]:
    """Steer the run's candidates, add ``steering.parquet`` to it atomically, return summary lines."""
    from precompute.evidence.loading import load_run_models, pick_device
    from precompute.evidence.logits import check_residual

    run = Run.open(location)
    device = pick_device(device)
    prompts_for(cfg, run.languages)  # a missing language fails before the model loads
    check_strengths(cfg.strengths)
    if models is None:
        models = load_run_models(run, device, **overrides)
    check_residual(models)
    frame, record = compute_steering(run, models, cfg, device=device, progress=progress)
    add_tables(location, {STEERING: to_table(frame)}, "steer", record)
    return [
        f"added {STEERING} to {location}: {record['n_candidates']} candidates by "
        f"{record['rank_by']}, strengths {', '.join(f'{a:g}' for a in record['strengths'])}, "
        f"{record['n_continuations']} continuations ({record['seconds_per_candidate']:.2f}s per candidate)",
        *summary_lines(frame, run.languages),
    ]
