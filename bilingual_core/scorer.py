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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from . import score_kernels as scores
from .errors import RunFormatError
from .manifest import utc_now
from .reduce import BlockSums, sentence_max_blocks, threshold_pass
from .run import Run
from .schema import (
    ACTIVATIONS,
    COACTIVATION_THRESHOLDS,
    GLOBAL_SCOPE,
    MANIFEST,
    PAD_ACTIVATIONS,
    SCORE_FILES,
    SENTENCE_MAX,
)
from .score_tables import SentenceMaxWriter, write_score_tables
from .sparse import SentenceMax, merge_sentence_max
from .stats import activation_frequency_curves, curve_counts_from, curve_cuts, thresholds_table
from .storage import RunWriter, join, open_root
from .validate import check_pairs, real_token_counts

Variant = Literal["blog", "notebook"]
NOTEBOOK_MIN_FIRING = 10
NOTEBOOK_SCALE = 100.0


@dataclass(frozen=True)
class ScoreConfig:
    """How to score a run."""

    variant: Variant = "blog"
    """``blog``: the post's text; ``notebook`` adds ``notebook_*`` columns reproducing its notebook."""
    k: int = 300
    """The jsd order statistic (0-indexed) that sets the idaf weight beta."""
    block_features: int | None = None
    """Features scored at once; bounds the memory of the per-block arrays.
    None: about 25 million activations per block (all features of a small run)."""
    threads: int = 2
    """Worker threads scoring blocks while the main thread reads the next ones."""

    def __post_init__(self) -> None:
        if self.variant not in ("blog", "notebook"):
            raise ValueError(f"unknown variant {self.variant!r} (blog or notebook)")
        if self.k < 0 or (self.block_features is not None and self.block_features <= 0) or self.threads < 1:
            raise ValueError("k must be >= 0 and block_features > 0")


@dataclass
class ScoreResult:
    features: pd.DataFrame
    thresholds: pd.DataFrame
    curves: pd.DataFrame
    coactivation: pd.DataFrame
    scoring: dict = field(default_factory=dict)


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


SentenceMaxSink = Callable[[SentenceMax], None]


def _pad_sentence_max(run: Run) -> SentenceMax | None:
    """Per-sentence maxima over pad positions (imported published runs only)."""
    if not run.has(PAD_ACTIVATIONS):
        return None
    man = run.manifest
    blocks = sentence_max_blocks(run.parquet(PAD_ACTIVATIONS), languages=run.languages, n_pairs=man.n_pairs,
                                 d_sae=man.d_sae, file=PAD_ACTIVATIONS, block_features=man.d_sae)
    return next(iter(blocks))


def compute_scores(
    run: Run,
    config: ScoreConfig = ScoreConfig(),
    progress: bool = False,
    sentence_max_sink: SentenceMaxSink | None = None,
) -> ScoreResult:
    """Everything ``score_run`` writes, in memory bounded by one block of features.

    Passes over activations.parquet: the thresholds (``lang`` and ``activation``
    columns only; twice when the values do not fit in memory), then one pass
    that scores each block of features as soon as it is complete and hands its
    per-sentence maxima to ``sentence_max_sink``.
    """
    t0 = time.perf_counter()
    man = run.manifest
    langs, n, d_sae, m = run.languages, man.n_pairs, man.d_sae, len(run.languages)
    check_pairs(run)
    n_real = real_token_counts(run)
    activations = run.parquet(ACTIVATIONS)  # one handle (and footer read) for every pass
    n_rows = activations.metadata.num_rows
    if n_rows == 0:
        raise RunFormatError(ACTIVATIONS, None, "has no rows: no feature ever fires (an empty run)")
    notebook = config.variant == "notebook"
    block_features = config.block_features or _auto_block(d_sae, n_rows)
    thresholds, lang_max = threshold_pass(activations, langs, ACTIVATIONS, track_max=notebook)
    thr = thresholds_table(thresholds)
    t_thresholds = time.perf_counter() - t0
    coact_cuts = np.array([0.0 if name == "any" else thr.get(name, {}).get(GLOBAL_SCOPE, np.nan)
                           for name in COACTIVATION_THRESHOLDS])
    coact_cuts_finite = np.where(np.isfinite(coact_cuts), coact_cuts, np.inf)
    curve_keys, curve_cut_values = curve_cuts(langs, thr)
    n_curve = len(curve_keys)

    pad = _pad_sentence_max(run) if notebook else None
    nb_scale = None
    if notebook:
        if pad is not None:
            lang_max = np.maximum(lang_max, pad.lang_max())
        nb_scale = np.where(lang_max > 0, NOTEBOOK_SCALE / np.where(lang_max > 0, lang_max, 1.0), 1.0)
    pad_blocks = pad.blocks(block_features) if pad is not None else None

    def score_block(block: SentenceMax, pad_block: SentenceMax | None) -> dict[str, object]:
        """Every per-feature quantity of one block (runs in a worker thread)."""
        out: dict[str, object] = {
            "counts": scores.firing_counts(block),
            "n_tok": block.per_feature_lang(block.n_tokens.astype(np.float64)),
            "qmax": block.max_per_feature_lang(),
            "jsd": scores.softmax_jsd(block),
            "mass_jsd": scores.mass_jsd(block),
        }
        feature_ids = np.arange(block.feature_offset, block.feature_offset + block.n_features, dtype=np.int32)
        tc = scores.threshold_counts(block, np.concatenate([curve_cut_values, coact_cuts_finite]))
        coacts = scores.coactivation_from_counts(
            scores.ThresholdCounts(tc.sizes[:, :, n_curve:], tc.intersection[:, n_curve:], tc.union[:, n_curve:],
                                   {k: v[:, n_curve:] for k, v in tc.pair_overlap.items()}), n)
        frames = []
        for name, t, c in zip(COACTIVATION_THRESHOLDS, coact_cuts, coacts, strict=True):
            if name == "any":
                out.update(jaccard=c.jaccard, log10p=c.log10_pvalue, cond=c.conditional)
            frame = {"feature": feature_ids, "threshold": name, "threshold_value": t,
                     "n_intersection": c.n_intersection.astype(np.int32), "n_union": c.n_union.astype(np.int32),
                     "jaccard": c.jaccard, "log10_pvalue": c.log10_pvalue}
            for li, lang in enumerate(langs):
                frame[f"cond_{lang}"] = c.conditional[:, li]
                frame[f"n_fire_{lang}"] = c.sizes[:, li].astype(np.int32)
            frames.append(pd.DataFrame(frame))
        out["coact_frames"] = frames
        out["curves"] = curve_counts_from(curve_keys, tc.sizes[:, :, :n_curve], langs)
        if nb_scale is not None:
            nb_block = block if pad_block is None else merge_sentence_max(block, pad_block)
            nb_block = nb_block.scaled(nb_scale)
            out["nb_jsd"] = scores.softmax_jsd(nb_block) / n
            out["nb_counts"] = scores.firing_counts(nb_block)
        return out

    sums = BlockSums(np.zeros((d_sae, m)))
    bar = _progress(progress, n_rows, "scoring")
    n_groups = 0
    blocks = sentence_max_blocks(activations, languages=langs, n_pairs=n, d_sae=d_sae,
                                 file=ACTIVATIONS, block_features=block_features, sums=sums, progress=bar)
    # numpy releases the GIL: blocks are scored in worker threads while the
    # main thread reduces the next batches (and a third decodes Parquet).
    results: list[Future] = []
    with ThreadPoolExecutor(max_workers=config.threads) as pool:
        for block in blocks:
            n_groups += len(block)
            if sentence_max_sink is not None:
                sentence_max_sink(block)
            results.append(pool.submit(score_block, block, next(pad_blocks) if pad_blocks is not None else None))
            # Bound memory: at most `threads` blocks in flight.
            while sum(not r.done() for r in results) > config.threads:
                next(r for r in results if not r.done()).result()
        parts = [r.result() for r in results]
    if bar is not None:
        bar.close()
    cols = {k: [p[k] for p in parts] for k in parts[0] if k not in ("coact_frames", "curves")}
    coact_frames = [f for p in parts for f in p["coact_frames"]]
    curve_parts = {key: [p["curves"][key] for p in parts] for key in parts[0]["curves"]}

    cat = {k: np.concatenate(v) for k, v in cols.items()}
    counts = cat["counts"].astype(np.int64)
    is_alive = scores.alive(counts)
    idaf = scores.idaf(counts, n)
    blog = scores.bilingual_score(cat["jsd"], idaf, is_alive, k=config.k)
    mean_act = sums.token_sum / np.maximum(n_real, 1)[None, :]
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
        "n_alive": int(is_alive.sum()), "n_activation_rows": sums.n_rows,
        "n_real_tokens": {lang: int(n_real[i]) for i, lang in enumerate(langs)},
        "n_sentence_max_rows": n_groups, "scored_at": utc_now(),
    }
    if nb_scale is not None:
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
            "pad_positions": pad is not None,
        }
    curves = activation_frequency_curves({key: np.concatenate(parts) for key, parts in curve_parts.items()}, n, m)
    scoring["seconds"] = round(time.perf_counter() - t0, 3)
    scoring["seconds_thresholds"] = round(t_thresholds, 3)
    return ScoreResult(feats, thresholds, curves, pd.concat(coact_frames, ignore_index=True), scoring)


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
    keep = [
        name for name in (p.rsplit("/", 1)[-1] for p in fs.ls(run.path, detail=False))
        if name not in SCORE_FILES and name != MANIFEST
    ]
    with RunWriter(root, run_id, overwrite=True, keep_from=run.path, keep_files=keep, fs=fs) as writer:
        with writer.fs.open(writer.path(SENTENCE_MAX), "wb") as handle:
            sink = SentenceMaxWriter(handle, run.languages)
            try:
                result = compute_scores(run, config, progress=progress, sentence_max_sink=sink)
            finally:
                sink.close()
        write_score_tables(writer, result)
        manifest = run.manifest
        manifest.scoring = result.scoring
        writer.commit(manifest)
    return result


def _auto_block(d_sae: int, n_rows: int, rows_per_block: int = 25_000_000) -> int:
    """Features per block so that a block holds about ``rows_per_block`` activations."""
    per_feature = max(n_rows / d_sae, 1.0)
    return int(min(d_sae, max(64, rows_per_block // per_feature)))


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", unit_scale=True)

