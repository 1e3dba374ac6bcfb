"""Score a run: recompute features, thresholds and curves from its activations.

``score_run`` reads only ``manifest.json``, ``pairs.parquet``,
``tokens.parquet`` and ``activations.parquet`` (plus ``pad_activations.parquet``
for the notebook variant when present), so a run written by any tool in the
contract format can be scored. The new tables are written next to carried-over
copies (hard links on a local disk) of the input files in a temporary
directory that replaces the run only when complete.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from . import peaks
from . import score_kernels as scores
from . import score_registry as registry
from .errors import RunFormatError
from .manifest import utc_now
from .progress import bar as progress_bar
from .reduce import BlockSums, sentence_max_blocks, threshold_pass
from .run import Run, rewrite_run
from .schema import (
    ACTIVATIONS,
    COACTIVATION_THRESHOLDS,
    GLOBAL_SCOPE,
    PAD_ACTIVATIONS,
    SCORE_FILES,
    SENTENCE_MAX,
    feature_columns,
)
from .score_registry import FeatureQuantities, NotebookInputs
from .score_tables import ScoreResult, SentenceMaxWriter, write_score_tables
from .sparse import SentenceMax, merge_sentence_max
from .stats import activation_frequency_curves, curve_counts_from, curve_cuts, thresholds_table
from .storage import open_root
from .token_index import TokenIndex
from .validate import check_pairs, real_token_counts

Variant = Literal["blog", "notebook"]
NOTEBOOK_MIN_FIRING = 10
NOTEBOOK_SCALE = 100.0
QUEUED_WHILE_PLANNING = 16
"""Blocks read ahead, beyond ``threads``, while the thresholds pass is still
running (about 20 MB each; 16 rather than 6: 1 s less at full OPUS size)."""
IN_FLIGHT_SPARE = 4
"""Blocks in flight (being scored or written), beyond ``threads``, once the
thresholds are known: enough that the scoring workers and the one writer thread
rarely wait for each other (at full OPUS size 59 -> 52 s for 0.15 GiB more)."""


@dataclass(frozen=True)
class ScoreConfig:
    """How to score a run."""

    variant: Variant = "blog"
    """``blog``: the post's text; ``notebook`` adds ``notebook_*`` columns reproducing its notebook."""
    k: int = 300
    """The jsd order statistic (0-indexed) that sets the idaf weight beta."""
    block_features: int | None = None
    """Features scored at once; bounds the memory of the per-block arrays.
    None: about 2 million activations per block (small blocks keep the temporaries
    in cache and let worker threads score while the next block is read)."""
    threads: int = 2
    """Worker threads scoring blocks while the main thread reads the next ones
    (and summarising chunks in the thresholds pass)."""

    def __post_init__(self) -> None:
        if self.variant not in ("blog", "notebook"):
            raise ValueError(f"unknown variant {self.variant!r} (blog or notebook)")
        if (
            self.k < 0
            or (self.block_features is not None and self.block_features <= 0)
            or self.threads < 1
        ):
            raise ValueError("k must be >= 0 and block_features > 0")


def _nullable_rank(rank: np.ndarray) -> pd.Series:
    return pd.Series(rank, dtype="Int32").mask(rank == 0)


SentenceMaxSink = Callable[[SentenceMax], None]


@dataclass(frozen=True)
class _Plan:
    """What the thresholds pass decided for the block pass."""

    languages: list[str]
    n_pairs: int
    coact_cuts: np.ndarray
    """One cut per COACTIVATION_THRESHOLDS name (NaN where the threshold is unknown)."""
    curve_keys: list[tuple[str, str]]
    curve_cuts: np.ndarray
    notebook_scale: np.ndarray | None
    """Per-language factor of the notebook variant; None for the blog variant."""
    tokens: TokenIndex | None = None
    """tokens.parquet as lookup arrays (peak tokens and their string classes)."""

    @property
    def all_cuts(self) -> np.ndarray:
        """Curve cuts then co-activation cuts (an unknown threshold is never exceeded)."""
        finite = np.where(np.isfinite(self.coact_cuts), self.coact_cuts, np.inf)
        return np.concatenate([self.curve_cuts, finite])


def _pad_sentence_max(run: Run) -> SentenceMax | None:
    """Per-sentence maxima over pad positions (imported published runs only)."""
    if not run.has(PAD_ACTIVATIONS):
        return None
    man = run.manifest
    blocks = sentence_max_blocks(
        run.parquet(PAD_ACTIVATIONS),
        languages=run.languages,
        n_pairs=man.n_pairs,
        d_sae=man.d_sae,
        file=PAD_ACTIVATIONS,
        block_features=man.d_sae,
    )
    return next(iter(blocks))


def _thresholds_pass(
    run: Run, activations: pq.ParquetFile, config: ScoreConfig
) -> tuple[pd.DataFrame, _Plan, SentenceMax | None]:
    """Pass 1 (``lang`` and ``activation`` columns only): the thresholds table, and
    from it the cuts of the curves and of the co-activation; the notebook scale.
    Also returns the pad-position maxima of the notebook variant, when present."""
    langs, n = run.languages, run.manifest.n_pairs
    notebook = config.variant == "notebook"
    thresholds, lang_max = threshold_pass(
        activations, langs, ACTIVATIONS, track_max=notebook, threads=config.threads
    )
    thr = thresholds_table(thresholds)
    coact_cuts = np.array(
        [
            0.0 if name == "any" else thr.get(name, {}).get(GLOBAL_SCOPE, np.nan)
            for name in COACTIVATION_THRESHOLDS
        ]
    )
    curve_keys, curve_cut_values = curve_cuts(langs, thr)
    pad = _pad_sentence_max(run) if notebook else None
    scale = None
    if notebook:
        if pad is not None:
            lang_max = np.maximum(lang_max, pad.lang_max())
        scale = np.where(lang_max > 0, NOTEBOOK_SCALE / np.where(lang_max > 0, lang_max, 1.0), 1.0)
    return thresholds, _Plan(langs, n, coact_cuts, curve_keys, curve_cut_values, scale), pad


def _timed_thresholds_pass(
    run: Run, activations: pq.ParquetFile, config: ScoreConfig
) -> tuple[pd.DataFrame, _Plan, SentenceMax | None, float]:
    """:func:`_thresholds_pass` and its seconds."""
    t = time.perf_counter()
    return (*_thresholds_pass(run, activations, config), time.perf_counter() - t)


def _coactivation_frames(
    feature_ids: np.ndarray, plan: _Plan, coacts: list[scores.Coactivation]
) -> list[pd.DataFrame]:
    """coactivation.parquet rows of one block, one frame per threshold."""
    frames = []
    for name, t, c in zip(COACTIVATION_THRESHOLDS, plan.coact_cuts, coacts, strict=True):
        frame = {
            "feature": feature_ids,
            "threshold": name,
            "threshold_value": t,
            "n_intersection": c.n_intersection.astype(np.int32),
            "n_union": c.n_union.astype(np.int32),
            "jaccard": c.jaccard,
            "log10_pvalue": c.log10_pvalue,
        }
        for li, lang in enumerate(plan.languages):
            frame[f"cond_{lang}"] = c.conditional[:, li]
            frame[f"n_fire_{lang}"] = c.sizes[:, li].astype(np.int32)
        frames.append(pd.DataFrame(frame))
    return frames


def _pad_slice(pad: SentenceMax | None, block: SentenceMax) -> SentenceMax | None:
    """The pad-position maxima of ``block``'s features."""
    if pad is None:
        return None
    return pad.features(block.feature_offset, block.n_features)


def _score_planned(
    block: SentenceMax, planned: Future, tokens: TokenIndex | None
) -> dict[str, object]:
    """:func:`_score_block` once the thresholds pass (``planned``) is done."""
    _, plan, pad, _ = planned.result()
    plan = dataclasses.replace(plan, tokens=tokens)
    return _score_block(block, _pad_slice(pad, block), plan)


def _score_block(
    block: SentenceMax, pad_block: SentenceMax | None, plan: _Plan
) -> dict[str, object]:
    """Every per-feature quantity of one block (runs in a worker thread)."""
    block.prepare()
    n_curve = len(plan.curve_keys)
    tc = scores.threshold_counts(block, plan.all_cuts)
    coacts = scores.coactivation_from_counts(
        scores.ThresholdCounts(
            tc.sizes[:, :, n_curve:],
            tc.intersection[:, n_curve:],
            tc.union[:, n_curve:],
            {k: v[:, n_curve:] for k, v in tc.pair_overlap.items()},
        ),
        plan.n_pairs,
    )
    feature_ids = np.arange(
        block.feature_offset, block.feature_offset + block.n_features, dtype=np.int32
    )
    out: dict[str, object] = {
        "counts": scores.firing_counts(block),
        "n_tok": block.token_counts(),
        "qmax": block.max_per_feature_lang(),
        "scores": registry.compute_block_scores(block),
        "coact": coacts[COACTIVATION_THRESHOLDS.index("any")],
        "coact_frames": _coactivation_frames(feature_ids, plan, coacts),
        "curves": curve_counts_from(plan.curve_keys, tc.sizes[:, :, :n_curve], plan.languages),
    }
    if plan.tokens is not None:
        out["peaks"] = peaks.peak_evidence(block, plan.tokens.norm_of_id)
    if plan.notebook_scale is not None:
        nb_block = block if pad_block is None else merge_sentence_max(block, pad_block)
        nb_block = nb_block.scaled(plan.notebook_scale)
        out["nb_jsd"] = scores.softmax_jsd(nb_block) / plan.n_pairs
        out["nb_counts"] = scores.firing_counts(nb_block)
    return out


def _block_pass(
    activations: pq.ParquetFile,
    run: Run,
    tokens: TokenIndex | None,
    planned: Future,
    config: ScoreConfig,
    block_features: int,
    sentence_max_sink: SentenceMaxSink | None,
    progress: bool,
) -> tuple[list[dict[str, object]], BlockSums, int]:
    """Pass 2: score each block of features as soon as it is complete, in worker
    threads, handing its per-sentence maxima to ``sentence_max_sink``. The
    reading starts while the thresholds pass (``planned``, whose cuts the
    scoring needs) still runs in a thread of its own.

    Returns the per-block results in feature order, the per-language token
    sums and the number of per-sentence maxima.
    """
    languages, d_sae = run.languages, run.manifest.d_sae
    sums = BlockSums(np.zeros((d_sae, len(languages))))
    bar = progress_bar(activations.metadata.num_rows, "scoring", "row", show=progress)
    n_groups = 0
    blocks = sentence_max_blocks(
        activations,
        languages=languages,
        n_pairs=run.manifest.n_pairs,
        d_sae=d_sae,
        file=ACTIVATIONS,
        block_features=block_features,
        sums=sums,
        progress=bar,
        sentence_len=None if tokens is None else tokens.sentence_len,
        token_at=None if tokens is None else (tokens.offset, tokens.token_at),
    )
    # numpy releases the GIL: blocks are scored in worker threads while the
    # main thread reduces the next batches (and a third decodes Parquet).
    # sentence_max.parquet is written by a thread of its own, in block order,
    # while the block is scored.
    results: list[Future] = []
    writes: list[Future] = []
    in_flight: list[list[Future]] = []  # per block not yet scored and written, its futures
    with (
        ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="score") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="write") as write_pool,
    ):
        for block in blocks:
            n_groups += len(block)
            if sentence_max_sink is not None:
                writes.append(write_pool.submit(sentence_max_sink, block))
            results.append(pool.submit(_score_planned, block, planned, tokens))
            # Bound memory: at most `threads` + IN_FLIGHT_SPARE blocks in flight
            # (being scored or written), more while the thresholds pass still
            # runs (the reading goes on meanwhile; a block of ~2M activations is
            # ~20 MB).
            in_flight.append([f for f in (results[-1], writes[-1] if writes else None) if f])
            while True:
                in_flight = [fs for fs in in_flight if not all(f.done() for f in fs)]
                spare = IN_FLIGHT_SPARE if planned.done() else QUEUED_WHILE_PLANNING
                if len(in_flight) <= config.threads + spare:
                    break
                next(f for f in in_flight[0] if not f.done()).result()
        parts = [r.result() for r in results]
        for w in writes:
            w.result()
    if bar is not None:
        bar.close()
    return parts, sums, n_groups


def _cat(parts: list[dict[str, object]], key: str) -> np.ndarray:
    return np.concatenate([p[key] for p in parts])


def _cat_coactivation(parts: list[dict[str, object]]) -> scores.Coactivation:
    blocks = [p["coact"] for p in parts]
    names = ("n_intersection", "n_union", "jaccard", "conditional", "log10_pvalue", "sizes")
    return scores.Coactivation(
        *(np.concatenate([getattr(c, name) for c in blocks]) for name in names)
    )


def _quantities(
    parts: list[dict[str, object]],
    sums: BlockSums,
    n_real: np.ndarray,
    plan: _Plan,
    config: ScoreConfig,
) -> FeatureQuantities:
    """The per-feature quantities of the whole run, from the per-block results."""
    n = plan.n_pairs
    counts = _cat(parts, "counts").astype(np.int64)
    notebook = None
    if plan.notebook_scale is not None:
        nb_counts = _cat(parts, "nb_counts").astype(np.int64)
        nb_idaf = np.where(
            nb_counts.sum(axis=1) < NOTEBOOK_MIN_FIRING, 1.0, scores.idaf(nb_counts, n)
        )
        notebook = NotebookInputs(_cat(parts, "nb_jsd"), nb_idaf)
    return FeatureQuantities(
        n_pairs=n,
        languages=plan.languages,
        k=config.k,
        alive=scores.alive(counts),
        counts=counts,
        idaf=scores.idaf(counts, n),
        coact=_cat_coactivation(parts),
        mean_activation=sums.token_sum / np.maximum(n_real, 1)[None, :],
        block_scores={
            key: np.concatenate([p["scores"][key] for p in parts]) for key in parts[0]["scores"]
        },
        notebook=notebook,
        peaks=peaks.concat([p["peaks"] for p in parts]) if "peaks" in parts[0] else None,
    )


def _peak_columns(
    columns: dict[str, object], q: FeatureQuantities, plan: _Plan, n_sentences: np.ndarray
) -> None:
    """The peak-token columns, labels and families (after the scores: families
    are named by their best-ranked member under the default ranking)."""
    cross, ev = q.cross, q.peaks
    assert cross is not None and ev is not None and plan.tokens is not None
    columns["n_cross"] = cross.n_cross.astype(np.int32)
    columns["n_shared"] = cross.n_shared.astype(np.int32)
    columns["cross_share"] = cross.cross_share
    columns["cross_log10p"] = cross.cross_log10p
    columns["cross_repeated"] = cross.cross_repeated
    columns["is_translation"] = cross.is_translation
    columns["is_shared_surface"] = cross.is_shared_surface
    label, token_pairs = peaks.labels(ev, cross, plan.tokens.display, q.languages, len(q.counts))
    columns["label"], columns["token_pairs"] = label, token_pairs
    rank = np.asarray(columns[registry.DEFAULT.rank_column], dtype=np.int64)
    columns["family"], columns["family_size"] = peaks.families(ev.sketch, rank, n_sentences)


def _features_frame(
    parts: list[dict[str, object]], q: FeatureQuantities, plan: _Plan
) -> pd.DataFrame:
    """features.parquet: the quantities and every registered score, in the order
    of ``schema.feature_columns``; rank columns are null where not ranked."""
    n_tok, qmax = _cat(parts, "n_tok"), _cat(parts, "qmax")
    columns: dict[str, object] = {
        "feature": np.arange(len(q.counts), dtype=np.int32),
        "alive": q.alive,
        "idaf": q.idaf,
        "n_both": q.support.astype(np.int32),
    }
    for li, lang in enumerate(q.languages):
        columns[f"n_fire_{lang}"] = q.counts[:, li].astype(np.int32)
        columns[f"n_tokens_{lang}"] = n_tok[:, li].astype(np.int64)
        columns[f"max_act_{lang}"] = qmax[:, li].astype(np.float32)
        columns[f"mean_act_{lang}"] = q.mean_activation[:, li]
        columns[f"cond_{lang}"] = q.coact.conditional[:, li]
    if q.notebook is not None:
        columns["notebook_jsd"], columns["notebook_idaf"] = q.notebook.jsd, q.notebook.idaf
    columns.update(registry.compute_run_scores(q))
    _peak_columns(columns, q, plan, q.counts.sum(axis=1))
    feats = pd.DataFrame(
        {
            c.name: columns[c.name]
            for c in feature_columns(q.languages, notebook=q.notebook is not None)
        }
    )
    for name in registry.rank_columns():
        if name in feats:
            feats[name] = _nullable_rank(feats[name].to_numpy())
    return feats


def _scoring_record(
    q: FeatureQuantities,
    plan: _Plan,
    sums: BlockSums,
    n_real: np.ndarray,
    n_groups: int,
    pad: SentenceMax | None,
    config: ScoreConfig,
) -> dict:
    """What the manifest records about the scoring."""
    langs = plan.languages
    scoring = {
        "variant": config.variant,
        "k": config.k,
        "k_used": q.blog.k,
        "beta": q.blog.beta,
        "n_alive": int(q.alive.sum()),
        "n_activation_rows": sums.n_rows,
        "n_real_tokens": {lang: int(n_real[i]) for i, lang in enumerate(langs)},
        "n_sentence_max_rows": n_groups,
        "scored_at": utc_now(),
    }
    if q.notebook_blog is not None:
        scoring["notebook"] = {
            "beta": q.notebook_blog.beta,
            "k_used": q.notebook_blog.k,
            "scale": {lang: float(plan.notebook_scale[i]) for i, lang in enumerate(langs)},
            "pad_positions": pad is not None,
        }
    return scoring


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
    per-sentence maxima to ``sentence_max_sink``; the tables are then assembled
    from the per-block results.
    """
    t0 = time.perf_counter()
    check_pairs(run)
    n_real = real_token_counts(run)
    activations = run.parquet(ACTIVATIONS)
    n_rows = activations.metadata.num_rows
    if n_rows == 0:
        raise RunFormatError(ACTIVATIONS, None, "has no rows: no feature ever fires (an empty run)")
    d_sae = run.manifest.d_sae
    block_features = config.block_features or _auto_block(d_sae, n_rows)
    # The thresholds pass runs in a thread of its own (with its own file
    # handle) while the main thread reads tokens.parquet and then reduces the
    # activations; only the scoring of the blocks waits for its cuts.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="thresholds") as side:
        planned = side.submit(_timed_thresholds_pass, run, run.parquet(ACTIVATIONS), config)
        try:
            token_index = TokenIndex.from_run(run)
            parts, sums, n_groups = _block_pass(
                activations,
                run,
                token_index,
                planned,
                config,
                block_features,
                sentence_max_sink,
                progress,
            )
        finally:
            if not planned.done():
                planned.cancel()
    thresholds, plan, pad, t_thresholds = planned.result()
    plan = dataclasses.replace(plan, tokens=token_index)
    q = _quantities(parts, sums, n_real, plan, config)
    feats = _features_frame(parts, q, plan)
    curves = activation_frequency_curves(
        {key: np.concatenate([p["curves"][key] for p in parts]) for key in parts[0]["curves"]},
        plan.n_pairs,
        len(plan.languages),
    )
    # Threshold-major, then feature order, whatever the block size.
    coactivation = pd.concat(
        [p["coact_frames"][j] for j in range(len(COACTIVATION_THRESHOLDS)) for p in parts],
        ignore_index=True,
    )
    scoring = _scoring_record(q, plan, sums, n_real, n_groups, pad, config)
    scoring["seconds"] = round(time.perf_counter() - t0, 3)
    scoring["seconds_thresholds"] = round(t_thresholds, 3)
    return ScoreResult(feats, thresholds, curves, coactivation, scoring)


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
    with rewrite_run(fs, root, run_id, SCORE_FILES) as (run, writer):
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


def _auto_block(d_sae: int, n_rows: int, rows_per_block: int = 2_000_000) -> int:
    """Features per block so that a block holds about ``rows_per_block`` activations."""
    per_feature = max(n_rows / d_sae, 1.0)
    return int(min(d_sae, max(64, rows_per_block // per_feature)))
