"""Score a run: recompute features, thresholds and curves from its activations.

``score_run`` reads only ``manifest.json``, ``pairs.parquet``,
``tokens.parquet`` and ``activations.parquet`` (plus ``pad_activations.parquet``
for the notebook variant when present), so a run written by any tool in the
contract format can be scored. The new tables are written next to carried-over
copies (hard links on a local disk) of the input files in a temporary
directory that replaces the run only when complete.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import scores
from .errors import RunFormatError
from .manifest import utc_now
from .reduce import activation_pass, lang_indices, rescan_values
from .run import Run
from .schema import (
    ACTIVATIONS,
    COACTIVATION,
    COACTIVATION_THRESHOLDS,
    CURVES,
    FEATURES,
    GLOBAL_SCOPE,
    MANIFEST,
    PAD_ACTIVATIONS,
    PAIRS,
    SCORE_FILES,
    SENTENCE_MAX,
    SENTENCE_MAX_SCHEMA,
    THRESHOLDS,
    TOKENS,
)
from .sparse import SentenceMax
from .stats import activation_frequency_curves, curve_counts, thresholds_table
from .storage import RunWriter, join, open_root

Variant = Literal["blog", "notebook"]
PAIR_BLOCK_SHIFT = 10  # sentence_max.parquet row groups hold 1024 pairs each
NOTEBOOK_MIN_FIRING = 10
NOTEBOOK_SCALE = 100.0


@dataclass(frozen=True)
class ScoreConfig:
    """How to score a run."""

    variant: Variant = "blog"
    """``blog``: the post's text; ``notebook`` adds ``notebook_*`` columns reproducing its notebook."""
    k: int = 300
    """The jsd order statistic (0-indexed) that sets the idaf weight beta."""
    block_features: int = 2048
    """Features scored at once; bounds the memory of the per-block arrays."""

    def __post_init__(self) -> None:
        if self.variant not in ("blog", "notebook"):
            raise ValueError(f"unknown variant {self.variant!r} (blog or notebook)")
        if self.k < 0 or self.block_features <= 0:
            raise ValueError("k must be >= 0 and block_features > 0")


@dataclass
class ScoreResult:
    features: pd.DataFrame
    thresholds: pd.DataFrame
    curves: pd.DataFrame
    coactivation: pd.DataFrame
    sentence_max: SentenceMax
    scoring: dict = field(default_factory=dict)


def real_token_counts(run: Run) -> np.ndarray:
    """Number of real tokens (position >= 1) per language, checking tokens.parquet."""
    langs = run.languages
    table = run.read(TOKENS, columns=["pair_id", "lang", "position"])
    if table.num_rows == 0:
        raise RunFormatError(TOKENS, None, "is empty: the run has no tokens")
    pair = table.column("pair_id").to_numpy()
    if pair.min() < 0 or pair.max() >= run.manifest.n_pairs:
        raise RunFormatError(TOKENS, "pair_id", f"pair id outside 0..{run.manifest.n_pairs - 1}")
    li = lang_indices(table.column("lang"), langs, TOKENS)
    real = table.column("position").to_numpy() >= 1
    return np.bincount(li[real], minlength=len(langs)).astype(np.int64)


def check_pairs(run: Run) -> None:
    """pairs.parquet has one row per (pair, language), matching the manifest."""
    n, langs = run.manifest.n_pairs, run.languages
    if n == 0:
        raise RunFormatError(MANIFEST, "n_pairs", "is 0: the run is empty (no sentence pairs)")
    table = run.read(PAIRS, columns=["pair_id", "lang", "text"])
    li = lang_indices(table.column("lang"), langs, PAIRS)
    pair = table.column("pair_id").to_numpy()
    if len(pair) != n * len(langs):
        raise RunFormatError(PAIRS, None, f"has {len(pair)} rows, expected n_pairs x languages = {n} x {len(langs)}")
    if pair.min() < 0 or pair.max() >= n:
        raise RunFormatError(PAIRS, "pair_id", f"pair id outside 0..{n - 1} (manifest n_pairs = {n})")
    if len(np.unique(pair.astype(np.int64) * len(langs) + li)) != len(pair):
        raise RunFormatError(PAIRS, None, "duplicate (pair_id, lang) rows")


def merge_sentence_max(a: SentenceMax, b: SentenceMax) -> SentenceMax:
    """Element-wise max of two SentenceMax over the same features (token counts add)."""
    feature = np.concatenate([a.feature, b.feature])
    pair = np.concatenate([a.pair, b.pair])
    lang = np.concatenate([a.lang, b.lang])
    value = np.concatenate([a.value, b.value])
    n_tok = np.concatenate([a.n_tokens, b.n_tokens])
    order = np.lexsort((lang, pair, feature))
    feature, pair, lang, value, n_tok = feature[order], pair[order], lang[order], value[order], n_tok[order]
    new = np.ones(len(value), dtype=bool)
    if len(value):
        new[1:] = (np.diff(feature) != 0) | (np.diff(pair) != 0) | (np.diff(lang) != 0)
    starts = np.flatnonzero(new)
    if len(starts) == 0:
        return a
    return SentenceMax(
        feature[starts], pair[starts], lang[starts], np.maximum.reduceat(value, starts),
        np.add.reduceat(n_tok, starts).astype(np.int32), a.n_pairs, a.languages, a.feature_offset, a.n_features,
    )


def _rank(values: np.ndarray, eligible: np.ndarray, *, descending: bool) -> np.ndarray:
    """1-based ranks of eligible, finite values (ties by feature id); 0 elsewhere."""
    idx = np.flatnonzero(eligible & np.isfinite(values))
    key = -values[idx] if descending else values[idx]
    order = idx[np.lexsort((idx, key))]
    rank = np.zeros(len(values), dtype=np.int32)
    rank[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return rank


def _nullable_rank(rank: np.ndarray) -> pd.Series:
    return pd.Series(rank, dtype="Int32").mask(rank == 0)


def compute_scores(run: Run, config: ScoreConfig = ScoreConfig(), progress: bool = False) -> ScoreResult:
    """Everything ``score_run`` writes, computed in memory bounded by the non-zeros."""
    t0 = time.perf_counter()
    man = run.manifest
    langs, n, d_sae, m = run.languages, man.n_pairs, man.d_sae, len(run.languages)
    check_pairs(run)
    n_real = real_token_counts(run)
    bar = _progress(progress, run.parquet(ACTIVATIONS).metadata.num_rows, "scoring: reading activations")
    pf = run.parquet(ACTIVATIONS)
    act = activation_pass(pf, languages=langs, n_pairs=n, d_sae=d_sae, file=ACTIVATIONS, progress=bar)
    if bar is not None:
        bar.close()
    if act.n_rows == 0:
        raise RunFormatError(ACTIVATIONS, None, "has no rows: no feature ever fires (an empty run)")
    thresholds = act.quantiles.result(lambda: rescan_values(run.parquet(ACTIVATIONS), langs, ACTIVATIONS))
    thr = thresholds_table(thresholds)
    t_pass = time.perf_counter() - t0

    nb_sm = None
    nb_scale = None
    if config.variant == "notebook":
        nb_sm = act.sentence_max
        lang_max = act.lang_max.copy()
        if run.has(PAD_ACTIVATIONS):
            pad = activation_pass(run.parquet(PAD_ACTIVATIONS), languages=langs, n_pairs=n, d_sae=d_sae,
                                  file=PAD_ACTIVATIONS, quantiles=False)
            nb_sm = merge_sentence_max(nb_sm, pad.sentence_max)
            lang_max = np.maximum(lang_max, pad.lang_max)
        with np.errstate(divide="ignore"):
            nb_scale = np.where(lang_max > 0, NOTEBOOK_SCALE / lang_max, 1.0)
        nb_sm = nb_sm.scaled(nb_scale)

    cols: dict[str, list[np.ndarray]] = {}

    def put(name: str, values: np.ndarray) -> None:
        cols.setdefault(name, []).append(values)

    coact_frames = []
    curve_parts: dict[tuple[str, str], list[np.ndarray]] = {}
    nb_blocks = nb_sm.blocks(config.block_features) if nb_sm is not None else None
    for block in act.sentence_max.blocks(config.block_features):
        counts = scores.firing_counts(block)
        put("counts", counts)
        put("n_tok", block.per_feature_lang(block.n_tokens.astype(np.float64)))
        put("qmax", block.max_per_feature_lang())
        put("jsd", scores.softmax_jsd(block))
        put("mass_jsd", scores.mass_jsd(block))
        for name in COACTIVATION_THRESHOLDS:
            t = 0.0 if name == "any" else thr.get(name, {}).get(GLOBAL_SCOPE, np.nan)
            c = scores.coactivation(block, t)
            if name == "any":
                put("jaccard", c.jaccard)
                put("log10p", c.log10_pvalue)
                put("cond", c.conditional)
            frame = {
                "feature": np.arange(block.feature_offset, block.feature_offset + block.n_features, dtype=np.int32),
                "threshold": name, "threshold_value": t,
                "n_intersection": c.n_intersection.astype(np.int32), "n_union": c.n_union.astype(np.int32),
                "jaccard": c.jaccard, "log10_pvalue": c.log10_pvalue,
            }
            for li, lang in enumerate(langs):
                frame[f"cond_{lang}"] = c.conditional[:, li]
            coact_frames.append(pd.DataFrame(frame))
        for key, c in curve_counts(block, thr).items():
            curve_parts.setdefault(key, []).append(c)
        if nb_blocks is not None:
            nb_block = next(nb_blocks)
            put("nb_jsd", scores.softmax_jsd(nb_block) / n)
            put("nb_counts", scores.firing_counts(nb_block))

    cat = {k: np.concatenate(v) for k, v in cols.items()}
    counts = cat["counts"].astype(np.int64)
    is_alive = scores.alive(counts)
    idaf = scores.idaf(counts, n)
    blog = scores.bilingual_score(cat["jsd"], idaf, is_alive, k=config.k)
    mean_act = act.token_sum / np.maximum(n_real, 1)[None, :]
    mono = scores.monolinguality(mean_act)

    feats = pd.DataFrame({"feature": np.arange(d_sae, dtype=np.int32), "alive": is_alive,
                          "jsd": cat["jsd"], "idaf": idaf, "bi": blog.bi})
    feats["bi_rank"] = _nullable_rank(blog.rank)
    feats["mass_jsd"] = cat["mass_jsd"]
    feats["mass_jsd_rank"] = _nullable_rank(_rank(cat["mass_jsd"], is_alive, descending=False))
    feats["jaccard"] = cat["jaccard"]
    feats["jaccard_rank"] = _nullable_rank(_rank(cat["jaccard"], is_alive, descending=True))
    feats["coact_log10p"] = cat["log10p"]
    for li, lang in enumerate(langs):
        feats[f"n_fire_{lang}"] = counts[:, li].astype(np.int32)
        feats[f"n_tokens_{lang}"] = cat["n_tok"][:, li].astype(np.int64)
        feats[f"max_act_{lang}"] = cat["qmax"][:, li].astype(np.float32)
        feats[f"mean_act_{lang}"] = mean_act[:, li]
        feats[f"mono_{lang}"] = mono[:, li]
        feats[f"cond_{lang}"] = cat["cond"][:, li]
    scoring = {
        "variant": config.variant, "k": config.k, "k_used": blog.k, "beta": blog.beta,
        "n_alive": int(is_alive.sum()), "n_activation_rows": act.n_rows,
        "n_real_tokens": {lang: int(n_real[i]) for i, lang in enumerate(langs)},
        "n_sentence_max_rows": len(act.sentence_max), "scored_at": utc_now(),
    }
    if nb_sm is not None:
        nb_counts = cat["nb_counts"].astype(np.int64)
        nb_idaf = scores.idaf(nb_counts, n)
        nb_idaf = np.where(nb_counts.sum(axis=1) < NOTEBOOK_MIN_FIRING, 1.0, nb_idaf)
        nb = scores.bilingual_score(cat["nb_jsd"], nb_idaf, is_alive, k=config.k, beta_sign=+1.0)
        feats["notebook_jsd"] = cat["nb_jsd"]
        feats["notebook_idaf"] = nb_idaf
        feats["notebook_bi"] = nb.bi
        feats["notebook_rank"] = _nullable_rank(nb.rank)
        scoring["notebook"] = {
            "beta": nb.beta, "k_used": nb.k, "scale": {lang: float(nb_scale[i]) for i, lang in enumerate(langs)},
            "pad_positions": run.has(PAD_ACTIVATIONS),
        }
    curves = activation_frequency_curves(
        {key: np.concatenate(parts) for key, parts in curve_parts.items()}, n, m
    )
    scoring["seconds"] = round(time.perf_counter() - t0, 3)
    scoring["seconds_activation_pass"] = round(t_pass, 3)
    return ScoreResult(feats, thresholds, curves, pd.concat(coact_frames, ignore_index=True), act.sentence_max, scoring)


def sentence_max_batches(sm: SentenceMax) -> list[pa.Table]:
    """sentence_max rows grouped into blocks of 1024 pairs (one row group each),
    so a query for one pair reads one row group."""
    block = (sm.pair >> PAIR_BLOCK_SHIFT).astype(np.uint16)
    order = np.argsort(block, kind="stable")
    starts = np.searchsorted(block[order], np.arange(int(block.max(initial=0)) + 2))
    lang_dict = pa.array(sm.languages, pa.string())
    tables = []
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        if hi <= lo:
            continue
        idx = order[lo:hi]
        tables.append(pa.table({
            "pair_id": pa.array(sm.pair[idx], pa.int32()),
            "lang": pa.DictionaryArray.from_arrays(pa.array(sm.lang[idx], pa.int8()), lang_dict),
            "feature": pa.array(sm.feature[idx], pa.int32()),
            "max_activation": pa.array(sm.value[idx], pa.float32()),
            "n_tokens": pa.array(sm.n_tokens[idx], pa.int32()),
        }, schema=SENTENCE_MAX_SCHEMA))
    return tables or [SENTENCE_MAX_SCHEMA.empty_table()]


def write_scores(writer: RunWriter, result: ScoreResult) -> None:
    """Write the five score tables into a RunWriter's temporary directory."""
    writer.write_table(FEATURES, pa.Table.from_pandas(result.features, preserve_index=False))
    writer.write_table(THRESHOLDS, pa.Table.from_pandas(result.thresholds, preserve_index=False))
    writer.write_table(CURVES, pa.Table.from_pandas(result.curves, preserve_index=False))
    writer.write_table(COACTIVATION, pa.Table.from_pandas(result.coactivation, preserve_index=False))
    with writer.fs.open(writer.path(SENTENCE_MAX), "wb") as handle, pq.ParquetWriter(
        handle, SENTENCE_MAX_SCHEMA, compression="zstd"
    ) as pw:
        for table in sentence_max_batches(result.sentence_max):
            pw.write_table(table, row_group_size=max(table.num_rows, 1))


def score_run(
    location: str | os.PathLike[str],
    run_id: str | None = None,
    config: ScoreConfig = ScoreConfig(),
    *,
    progress: bool = False,
) -> ScoreResult:
    """Recompute and atomically replace a run's score tables; returns what was written.

    ``location`` is the run directory itself (``run_id=None``) or a results root.
    On any error the run is left exactly as it was.
    """
    fs, path = open_root(location)
    if run_id is None:
        root, run_id = path.rsplit("/", 1) if "/" in path else (".", path)
    else:
        root = path
    run = Run.open_fs(fs, join(root, run_id))
    result = compute_scores(run, config, progress=progress)
    keep = [
        name for name in (p.rsplit("/", 1)[-1] for p in fs.ls(run.path, detail=False))
        if name not in SCORE_FILES and name != MANIFEST
    ]
    with RunWriter(root, run_id, overwrite=True, keep_from=run.path, keep_files=keep, fs=fs) as writer:
        write_scores(writer, result)
        manifest = run.manifest
        manifest.scoring = result.scoring
        writer.commit(manifest)
    return result


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", unit_scale=True)

