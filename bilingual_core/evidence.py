"""Evidence tables a run may carry beyond its scores, and the maths on them.

Written by ``python -m precompute logits`` and ``python -m precompute
validate`` (docs/evidence.md), each table optional and added to an existing run
atomically (``add_tables``):

* ``logits.parquet``: per feature, the top promoted and suppressed tokens of
  its decoder direction read through the unembedding, each tagged with the
  language it occurs in in this run's corpus;
* ``output_languages.parquet``: per feature, the share of its top promoted
  tokens tagged with each language;
* ``neighbours.parquet``: per feature, its nearest decoder directions (cosine);
* ``ablation.parquet``: per candidate feature and language, the change in
  next-token loss when the feature is ablated, with a random-feature baseline;
* ``null_scores.parquet``: the scores of the same pairs read through a random
  dictionary of the SAE's shape and sparsity (the null), with its purity;
* ``purity.parquet``: per feature, how much of its co-firing is taken by its
  few commonest token pairs;
* ``steering.parquet`` (``python -m precompute steer``): per candidate (and its
  random baseline features), language, strength and prompt, the greedy
  continuation with the feature's direction added, and whether it raises the
  feature's own peak tokens and keeps the prompt's language.

Everything here is torch-free: arrays and DataFrames in, DataFrames out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import score_registry
from .manifest import utc_now
from .run import Run, rewrite_run
from .schema import ACTIVATIONS, TOKENS
from .score_registry import candidate_rankings, stored_rankings
from .storage import open_root

LOGITS = "logits.parquet"
OUTPUT_LANGUAGES = "output_languages.parquet"
NEIGHBOURS = "neighbours.parquet"
ABLATION = "ablation.parquet"
NULL_SCORES = "null_scores.parquet"
PURITY = "purity.parquet"
STEERING = "steering.parquet"
EVIDENCE_FILES = (LOGITS, OUTPUT_LANGUAGES, NEIGHBOURS, ABLATION, NULL_SCORES, PURITY, STEERING)

PROMOTED, SUPPRESSED = "promoted", "suppressed"
UNKNOWN, MIXED = "unknown", "mixed"
TAG_SHARE = 0.8
"""A token is tagged with a language when at least this share of its occurrences is in it."""
PURITY_TOP = 3
"""Purity counts the share of a feature's co-firing pairs taken by this many commonest token pairs."""
DEFAULT_RANKINGS = candidate_rankings()
"""Ranking columns tried in order when no score is named: the registry's stored rankings,
the default (its first score) first and the post's ``bi`` rankings last, so runs scored
before a newer score existed fall back to the scale-free scores before the blog bi."""

NEIGHBOURS_SCHEMA = pa.schema(
    [
        pa.field("feature", pa.int32(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("neighbour", pa.int32(), nullable=False),
        pa.field("cosine", pa.float32(), nullable=False),
    ]
)


def logits_schema(languages: Iterable[str]) -> pa.Schema:
    """``feature, sign, rank, token_id, token, logit`` (the contract), then the token's
    language tag, its occurrences in the run and its share of them per language."""
    fields = [
        pa.field("feature", pa.int32(), nullable=False),
        pa.field("sign", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("token_id", pa.int32(), nullable=False),
        pa.field("token", pa.string(), nullable=False),
        pa.field("logit", pa.float32(), nullable=False),
        pa.field("lang_tag", pa.string(), nullable=False),
        pa.field("n_occurrences", pa.int64(), nullable=False),
    ]
    fields += [pa.field(f"share_{lang}", pa.float32()) for lang in languages]
    return pa.schema(fields)


# ----------------------------------------------------------- writing ---


def split_location(location: str | os.PathLike[str]) -> tuple[Any, str, str]:
    """``(fs, results root, run id)`` of a run directory path or URL."""
    fs, path = open_root(location)
    root, run_id = path.rsplit("/", 1) if "/" in path else (".", path)
    return fs, root or "/", run_id


def add_tables(
    location: str | os.PathLike[str],
    tables: dict[str, pa.Table],
    command: str,
    record: dict[str, Any] | None = None,
) -> str:
    """Add (or replace) ``tables`` in the run at ``location``, atomically.

    Every other file is carried over unchanged (hard links on a local disk),
    the manifest's ``evidence[command]`` gets the keys of ``record`` (keys an
    earlier run of the command wrote and this one does not stay), the tables'
    names and ``written_at``,
    and the new directory replaces the old one in one rename: a killed command
    leaves the run as it was. Two evidence commands writing the same run at the
    same time: the later commit wins and the earlier one's tables are lost
    (rerun it)."""
    fs, root, run_id = split_location(location)
    with rewrite_run(fs, root, run_id, tables) as (run, writer):
        for name, table in tables.items():
            writer.write_table(name, table)
        manifest = run.manifest
        before = manifest.evidence.get(command) or {}
        manifest.evidence[command] = {
            **before,
            **(record or {}),
            "written_at": utc_now(),
            "tables": sorted({*before.get("tables", []), *tables}),
        }
        return writer.commit(manifest)


def evidence_stamp(evidence: dict[str, Any]) -> str:
    """Changes whenever an evidence table is rewritten (for cache keys)."""
    return "|".join(
        f"{k}@{v.get('written_at', '')}" for k, v in sorted(evidence.items()) if isinstance(v, dict)
    )


# ------------------------------------------------- language of tokens ---


def token_language_shares(tokens: pd.DataFrame, languages: list[str]) -> pd.DataFrame:
    """Per token id occurring in the run's real tokens (position > 0): its count
    ``n_<l>`` in each language's sentences, ``n_occurrences``, ``share_<l> =
    n_<l> / n_occurrences``, and ``lang_tag``: the language holding at least
    ``TAG_SHARE`` of its occurrences, else ``mixed``. Indexed by token id."""
    real = tokens[tokens["position"] > 0]
    counts = pd.crosstab(real["token_id"].to_numpy(), real["lang"].astype(str).to_numpy())
    counts = counts.reindex(columns=languages, fill_value=0)
    out = pd.DataFrame(
        {f"n_{lang}": counts[lang].to_numpy(np.int64) for lang in languages}, index=counts.index
    )
    total = out.sum(axis=1).to_numpy()
    out["n_occurrences"] = total
    for lang in languages:
        out[f"share_{lang}"] = out[f"n_{lang}"] / np.maximum(total, 1)
    shares = out[[f"share_{lang}" for lang in languages]].to_numpy()
    best = shares.argmax(axis=1)
    tag = np.asarray(languages, dtype=object)[best]
    out["lang_tag"] = np.where(shares[np.arange(len(out)), best] >= TAG_SHARE, tag, MIXED)
    out.index.name = "token_id"
    return out


def tag_tokens(token_ids: np.ndarray, shares: pd.DataFrame, languages: list[str]) -> pd.DataFrame:
    """``lang_tag``, ``n_occurrences`` and ``share_<l>`` for each of ``token_ids``
    (``unknown``, 0 and null for a token that never occurs in the run)."""
    found = shares.reindex(np.asarray(token_ids))
    out = pd.DataFrame(
        {
            "lang_tag": found["lang_tag"].fillna(UNKNOWN).to_numpy(),
            "n_occurrences": found["n_occurrences"].fillna(0).to_numpy(np.int64),
        }
    )
    for lang in languages:
        out[f"share_{lang}"] = found[f"share_{lang}"].to_numpy(np.float32)
    return out


def output_language_shares(logits: pd.DataFrame, languages: list[str]) -> pd.DataFrame:
    """Per feature, over its promoted tokens in ``logits``: ``out_<l>`` = share
    tagged with language ``l``, ``out_mixed``, ``out_unknown``, and
    ``output_languages``, a label such as ``es 0.8 · en 0.1`` (languages with a
    share > 0, largest first; ``none`` when every top token is mixed or unknown)."""
    promoted = logits[logits["sign"] == PROMOTED]
    tags = [*languages, MIXED, UNKNOWN]
    counts = pd.crosstab(promoted["feature"].to_numpy(), promoted["lang_tag"].to_numpy())
    counts = counts.reindex(columns=tags, fill_value=0)
    total = counts.sum(axis=1).to_numpy()
    out = pd.DataFrame({"feature": counts.index.to_numpy(np.int32)})
    for tag in tags:
        out[f"out_{tag}"] = (counts[tag].to_numpy() / np.maximum(total, 1)).astype(np.float32)
    out["output_languages"] = [output_label(row, languages) for row in out.itertuples(index=False)]
    return out


def output_label(row: Any, languages: list[str]) -> str:
    parts = sorted(((getattr(row, f"out_{lang}"), lang) for lang in languages), reverse=True)
    text = " · ".join(f"{lang} {share:.1f}" for share, lang in parts if share > 0)
    return text or "none"


# -------------------------------------------------------- statistics ---


def bootstrap_ratio_ci(
    sums: np.ndarray,
    counts: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """``(ratio, low, high)`` for ``ratio = sum(sums) / sum(counts)`` (the mean
    per-token change pooled over sentences) with a percentile bootstrap CI over
    sentences: resample the ``m`` sentences with replacement ``n_boot`` times.
    NaNs when no sentence has a token; the CI is the point value for one sentence."""
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
    total = counts.sum()
    if len(sums) == 0 or total <= 0:
        return float("nan"), float("nan"), float("nan")
    ratio = float(sums.sum() / total)
    if len(sums) == 1:
        return ratio, ratio, ratio
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    num, den = sums[idx].sum(axis=1), counts[idx].sum(axis=1)
    boot = num[den > 0] / den[den > 0]
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return ratio, float(low), float(high)


def ranking_column(columns: Iterable[str], key: str | None = None) -> str:
    """The rank column to take candidates from: ``key`` (a score name such as
    ``jaccard``, its column or its rank column ``jaccard_rank``), else the first of
    ``DEFAULT_RANKINGS`` present (read off the registry at each call). ValueError naming the choices otherwise."""
    columns = list(columns)
    ranks = [c for c in candidate_rankings() if c in columns]
    if key is None:
        if ranks:
            return ranks[0]
    else:
        try:
            spec = score_registry.score_by_key(key)
        except KeyError:
            spec = next(
                (s for s in score_registry.SCORES if key in (s.column, s.rank_column)), None
            )
        if spec is not None and spec.rank_column in ranks:
            return spec.rank_column
    names = [s.key for s in score_registry.SCORES if s.rank_column in ranks]
    raise ValueError(
        f"no ranking {key!r} in features.parquet; choose one of {', '.join(names) or '(none)'}"
    )


def top_candidates(features: pd.DataFrame, rank_column: str, n: int) -> pd.DataFrame:
    """The ``n`` best-ranked features (rank 1 first) under ``rank_column``."""
    ranked = features.dropna(subset=[rank_column]).sort_values([rank_column, "feature"])
    return ranked.head(n)


def score_direction(features: pd.DataFrame, score: str, rank: str) -> bool:
    """True when a *higher* ``score`` ranks better, read off the ranking itself
    (the rank-1 feature's score against the worst-ranked one's)."""
    ranked = features.dropna(subset=[rank, score]).sort_values(rank)
    if len(ranked) < 2:
        return False
    return bool(ranked[score].iloc[0] > ranked[score].iloc[-1])


def null_percentile(
    values: np.ndarray, null_values: np.ndarray, higher_is_better: bool
) -> np.ndarray:
    """Per value, the percentage of the null's values it is at least as good as
    (100 = as good as the null's best or better); NaN for NaN values or an empty null."""
    null = np.sort(np.asarray(null_values, np.float64)[~np.isnan(null_values)])
    values = np.asarray(values, np.float64)
    if len(null) == 0:
        return np.full(len(values), np.nan)
    if higher_is_better:
        at_least = np.searchsorted(null, values, side="right")
    else:
        at_least = len(null) - np.searchsorted(null, values, side="left")
    out = 100.0 * at_least / len(null)
    out[np.isnan(values)] = np.nan
    return out


def beats_null(values: np.ndarray, null_values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Whether each value is strictly better than the null's best value."""
    null = np.asarray(null_values, np.float64)
    null = null[~np.isnan(null)]
    values = np.asarray(values, np.float64)
    if len(null) == 0:
        return np.zeros(len(values), bool)
    return values > null.max() if higher_is_better else values < null.min()


def null_comparison(features: pd.DataFrame, null: pd.DataFrame) -> pd.DataFrame:
    """Per score with a rank column in both tables: the direction, the null's
    best value, and how many alive features beat it (``n_beat_null`` of ``n_alive``)."""
    rows = []
    alive, null_alive = features[features["alive"]], null[null["alive"]]
    for spec in stored_rankings(features.columns, null.columns):
        score, rank = spec.column, spec.rank_column
        higher = score_direction(features, score, rank)
        values = null_alive[score].to_numpy(np.float64)
        best = np.nanmax(values) if higher else np.nanmin(values) if len(values) else np.nan
        rows.append(
            {
                "score": score,
                "higher_is_better": higher,
                "null_best": best,
                "n_beat_null": int(beats_null(alive[score].to_numpy(), values, higher).sum()),
                "n_alive": len(alive),
                "null_alive": len(null_alive),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------ purity ---


def purity_table(run: Run, *, top: int = PURITY_TOP, block_rows: int = 5_000_000) -> pd.DataFrame:
    """Per feature that co-fires (fires in every language of a pair) at least once:
    ``n_cofiring`` pairs, ``purity`` = share of those pairs whose tuple of tokens
    (the token at each language's maximum activation) is one of the feature's
    ``top`` commonest tuples, and ``top_pairs`` (those tuples as text, with counts).

    A feature that fires on one translated word (``said``/``dijo``) has purity
    near 1; one that fires on many different words has purity near ``top /
    n_cofiring``. Reads activations a block of features at a time."""
    langs = run.languages
    tok = run.read_pandas(TOKENS, columns=["pair_id", "lang", "position", "token_id", "token"])
    tok["li"] = pd.Categorical(tok["lang"].astype(str), categories=langs).codes
    width = int(tok["position"].max()) + 1 if len(tok) else 1
    key = (
        tok["pair_id"].to_numpy(np.int64) * len(langs) + tok["li"].to_numpy(np.int64)
    ) * width + tok["position"].to_numpy(np.int64)
    order = np.argsort(key)
    tok_key, tok_id = key[order], tok["token_id"].to_numpy(np.int64)[order]
    strings = dict(zip(tok["token_id"].to_numpy(), tok["token"].astype(str), strict=False))
    d_sae = run.manifest.d_sae
    n_rows = max(run.parquet(ACTIVATIONS).metadata.num_rows, 1)
    per_block = int(max(1, min(d_sae, block_rows * d_sae // n_rows)))
    frames = []
    for lo in range(0, d_sae, per_block):
        table = run.read(
            ACTIVATIONS,
            columns=["feature", "pair_id", "lang", "position", "activation"],
            filters=[("feature", ">=", lo), ("feature", "<", lo + per_block)],
        )
        if table.num_rows:
            frames.append(_purity_block(table, langs, width, tok_key, tok_id, strings, top))
    columns = ["feature", "n_cofiring", "purity", "top_pairs"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def _purity_block(
    table: pa.Table,
    langs: list[str],
    width: int,
    tok_key: np.ndarray,
    tok_id: np.ndarray,
    strings: dict[int, str],
    top: int,
) -> pd.DataFrame:
    m = len(langs)
    lang = (
        pc.cast(table.column("lang"), pa.string())
        if pa.types.is_dictionary(table.column("lang").type)
        else table.column("lang")
    )
    frame = pd.DataFrame(
        {
            "feature": table.column("feature").to_numpy(),
            "pair_id": table.column("pair_id").to_numpy(),
            "li": pd.Categorical(lang.to_numpy(zero_copy_only=False), categories=langs).codes,
            "position": table.column("position").to_numpy(),
            "activation": table.column("activation").to_numpy(),
        }
    )
    frame = frame.sort_values("activation", ascending=False, kind="stable")
    frame = frame.drop_duplicates(["feature", "pair_id", "li"])  # each side's max
    key = (
        frame["pair_id"].to_numpy(np.int64) * m + frame["li"].to_numpy(np.int64)
    ) * width + frame["position"].to_numpy(np.int64)
    at = np.clip(np.searchsorted(tok_key, key), 0, len(tok_key) - 1)
    frame["token_id"] = np.where(tok_key[at] == key, tok_id[at], -1)
    wide = frame.pivot_table(
        index=["feature", "pair_id"], columns="li", values="token_id", aggfunc="first"
    )
    wide = wide.reindex(columns=range(m)).dropna()  # pairs where every language fires
    if wide.empty:
        return pd.DataFrame(columns=["feature", "n_cofiring", "purity", "top_pairs"])
    wide = wide.astype(np.int64).reset_index()
    tuples = wide.groupby(["feature", *range(m)], sort=False).size().rename("count").reset_index()
    tuples = tuples.sort_values(["feature", "count"], ascending=[True, False], kind="stable")
    n_cofiring = tuples.groupby("feature")["count"].sum()
    head = tuples.groupby("feature").head(top)
    purity = head.groupby("feature")["count"].sum() / n_cofiring
    labels = head.groupby("feature").apply(
        lambda g: ", ".join(
            "/".join(strings.get(int(g[i].iloc[j]), "?") for i in range(m))
            + f" ({g['count'].iloc[j]})"
            for j in range(len(g))
        ),
        include_groups=False,
    )
    return pd.DataFrame(
        {
            "feature": n_cofiring.index.to_numpy(np.int32),
            "n_cofiring": n_cofiring.to_numpy(np.int64),
            "purity": purity.reindex(n_cofiring.index).to_numpy(np.float64),
            "top_pairs": labels.reindex(n_cofiring.index).to_numpy(),
        }
    )


# ---------------------------------------------------------- ablation ---


def firing_sentences(features: pd.DataFrame, languages: list[str]) -> np.ndarray:
    """Per row of ``features``: sentences it fires in, summed over languages (``n_fire_<l>``)."""
    return features[[f"n_fire_{lang}" for lang in languages]].sum(axis=1).to_numpy(np.int64)


def draw_baseline(
    features: pd.DataFrame,
    candidates: Iterable[int],
    languages: list[str],
    *,
    n: int = 3,
    pool: int = 20,
    rng: np.random.Generator,
) -> dict[int, list[int]]:
    """For each candidate, ``n`` random alive non-candidate features of similar firing
    frequency: drawn without replacement from the ``pool`` features whose number of
    firing sentences is closest to the candidate's on a log scale
    (``|log n_j - log n_c|``, ties by feature id)."""
    candidates = [int(c) for c in candidates]
    counts = pd.Series(firing_sentences(features, languages), index=features["feature"].to_numpy())
    others = features[features["alive"] & ~features["feature"].isin(candidates)]
    ids = others["feature"].to_numpy(np.int64)
    log_n = np.log(np.maximum(counts.reindex(ids).to_numpy(np.float64), 1))
    out = {}
    for c in candidates:
        distance = np.abs(log_n - np.log(max(float(counts.get(c, 1)), 1)))
        nearest = ids[np.lexsort((ids, distance))[:pool]]
        out[c] = sorted(
            int(x) for x in rng.choice(nearest, size=min(n, len(nearest)), replace=False)
        )
    return out


def candidates_with_baseline(
    features: pd.DataFrame,
    rank_column: str,
    top: int,
    chosen: Iterable[int] | None,
    languages: list[str],
    *,
    n_baseline: int,
    pool: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict[int, list[int]], list[int]]:
    """What ablation and steering test: the candidates (the ``chosen`` features, or the
    ``top`` best under ``rank_column``), each one's frequency-matched random baseline
    features (:func:`draw_baseline`), and every feature involved, sorted."""
    chosen = list(chosen or [])
    if chosen:
        candidates = features.set_index("feature").loc[chosen].reset_index()
    else:
        candidates = top_candidates(features, rank_column, top)
    baseline = draw_baseline(
        features, candidates["feature"], languages, n=n_baseline, pool=pool, rng=rng
    )
    involved = sorted(
        {int(f) for f in candidates["feature"]} | {b for bs in baseline.values() for b in bs}
    )
    return candidates, baseline, involved


# ---------------------------------------------------------- steering ---

CANDIDATE, BASELINE = "candidate", "baseline"
LANG_KEPT_MIN = 0.5
"""A steered continuation keeps the prompt's language when at least this share of its
language-tagged tokens are tagged with it."""
STEERING_KEY = ["candidate", "feature", "role", "lang", "strength"]

STEERING_SCHEMA = pa.schema(
    [
        pa.field("candidate", pa.int32(), nullable=False),
        pa.field("feature", pa.int32(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("rank_by", pa.string()),
        pa.field("candidate_rank", pa.int32()),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("prompt_index", pa.int32(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("strength", pa.float32(), nullable=False),
        pa.field("scale", pa.float32(), nullable=False),
        pa.field("continuation", pa.string(), nullable=False),
        pa.field("tokens", pa.list_(pa.string()), nullable=False),
        pa.field("token_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("token_langs", pa.list_(pa.string()), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("stopped", pa.bool_(), nullable=False),
        pa.field("peak_source", pa.string(), nullable=False),
        pa.field("concept_tokens", pa.string(), nullable=False),
        pa.field("concept_token_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("concept_logprob", pa.float32()),
        pa.field("concept_logprob_first", pa.float32()),
        pa.field("n_concept", pa.int32(), nullable=False),
        pa.field("n_lang", pa.int32(), nullable=False),
        pa.field("n_tagged", pa.int32(), nullable=False),
        pa.field("n_mixed", pa.int32(), nullable=False),
        pa.field("n_unknown", pa.int32(), nullable=False),
    ]
)
"""``steering.parquet``: one row per steered feature, prompt and strength (docs/evidence.md)."""


def steering_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (candidate, feature, role, language, strength), over the prompts:
    ``concept_gain`` (mean rise of the concept log-probability over the same prompt
    unsteered), ``concept_rate`` (share of continuations holding a peak token),
    ``lang_kept`` (tokens tagged with the prompt's language over tokens tagged with
    one language; NaN when none is) and ``unknown_share`` (tokens never seen in the run)."""
    f = frame.assign(lang=frame["lang"].astype(str))
    prompt_key = ["candidate", "feature", "role", "lang", "prompt_index"]
    clean = f[f["strength"] == 0].set_index(prompt_key)["concept_logprob"]
    base = clean.reindex(pd.MultiIndex.from_frame(f[prompt_key])).to_numpy(np.float64)
    f = f.assign(
        gain=f["concept_logprob"].to_numpy(np.float64) - base,
        hit=(f["n_concept"] > 0).astype(np.float64),
    )
    out = (
        f.groupby(STEERING_KEY, sort=True)
        .agg(
            n_prompts=("prompt_index", "size"),
            concept_gain=("gain", "mean"),
            concept_rate=("hit", "mean"),
            n_tokens=("n_tokens", "sum"),
            n_lang=("n_lang", "sum"),
            n_tagged=("n_tagged", "sum"),
            n_unknown=("n_unknown", "sum"),
        )
        .reset_index()
    )
    tagged = out["n_tagged"].to_numpy(np.float64)
    tokens = out["n_tokens"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["lang_kept"] = np.where(tagged > 0, out["n_lang"] / np.maximum(tagged, 1), np.nan)
        out["unknown_share"] = np.where(
            tokens > 0, out["n_unknown"] / np.maximum(tokens, 1), np.nan
        )
    return out


def steering_verdict(frame: pd.DataFrame) -> pd.DataFrame:
    """Per candidate, language and strength: its summary (``steering_summary``) beside
    its random baseline features' (``baseline_gain`` their mean gain, ``baseline_gain_max``
    the largest, ``baseline_rate``, ``baseline_lang_kept``), and ``writes_concept``:
    at a strength > 0, a continuation holds one of its peak tokens, its concept gain is
    positive and above every baseline feature's, and the prompt's language is kept
    (``lang_kept >= LANG_KEPT_MIN``)."""
    summary = steering_summary(frame)
    cand = summary[summary["role"] == CANDIDATE].drop(columns=["role"])
    base = (
        summary[summary["role"] == BASELINE]
        .groupby(["candidate", "lang", "strength"], sort=True)
        .agg(
            baseline_gain=("concept_gain", "mean"),
            baseline_gain_max=("concept_gain", "max"),
            baseline_rate=("concept_rate", "mean"),
            baseline_lang_kept=("lang_kept", "mean"),
            n_baseline=("feature", "nunique"),
        )
        .reset_index()
    )
    out = cand.merge(base, on=["candidate", "lang", "strength"], how="left")
    above = out["baseline_gain_max"].isna() | (out["concept_gain"] > out["baseline_gain_max"])
    out["writes_concept"] = (
        (out["strength"] > 0)
        & (out["concept_rate"] > 0)
        & (out["concept_gain"] > 0)
        & above
        & (out["lang_kept"] >= LANG_KEPT_MIN)
    )
    return out.drop(columns=["feature"]).rename(columns={"candidate": "feature"})


def writes_every_language(verdict: pd.DataFrame, languages: list[str]) -> pd.DataFrame:
    """Per steered candidate: ``writes_every_language`` (at one strength, ``writes_concept``
    in every language), the smallest such strength (``writes_at``, NaN when none) and
    ``writes_in``, the languages where it writes its concept at some strength."""
    rows = []
    for feature, part in verdict.groupby("feature", sort=True):
        ok = part[part["writes_concept"]]
        per_strength = ok.groupby("strength")["lang"].apply(set)
        every = sorted(s for s, langs in per_strength.items() if set(languages) <= langs)
        rows.append(
            {
                "feature": int(feature),
                "writes_every_language": bool(every),
                "writes_at": every[0] if every else np.nan,
                "writes_in": ",".join(lang for lang in languages if lang in set(ok["lang"])),
            }
        )
    return pd.DataFrame(
        rows, columns=["feature", "writes_every_language", "writes_at", "writes_in"]
    )
