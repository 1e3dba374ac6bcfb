"""``python -m precompute run``: config -> staged chunks -> (merged, scored) run.

1. Refuse early what would fail late: an existing run without ``--overwrite``,
   a missing GPU, an unfinished staging directory without ``--resume``.
2. Load the corpus sample, take this shard's contiguous pair range.
3. Load model, tokenizer and SAE (checked to fit), tokenize the shard once.
4. Extract chunk after chunk; each finished chunk is written to the staging
   directory by a background thread while the device works on the next one.
5. With one shard, merge and score into the run directory (atomically) and
   drop the staging directory; with several, leave the shard for ``merge``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bilingual_core import Manifest, RunExistsError
from bilingual_core.manifest import check_run_id
from bilingual_core.progress import bar as progress_bar
from bilingual_core.storage import is_local, join, open_root
from contract.config import ExtractionConfig, RunConfig
from precompute.common.corpus import ParallelCorpus, load_corpus
from precompute.common.errors import PrecomputeError
from precompute.common.tokenization import (
    TokenizedSentences,
    bos_token_id,
    token_strings,
    token_texts,
    tokenize_sentences,
)
from precompute.extract.chunks import chunk_layout, chunk_stats, chunk_tables
from precompute.extract.staging import ShardStaging, shard_dir_name, shard_range, staging_root

if TYPE_CHECKING:
    from precompute.models.loading import LoadedModels

ChunkCallback = Callable[[int, dict[str, Any]], None]


def check_can_write(out: str | os.PathLike[str], run_id: str, overwrite: bool) -> None:
    fs, root = open_root(out)
    if fs.exists(join(root, run_id)) and not overwrite:
        raise RunExistsError(
            f"run {run_id!r} already exists under {root}; pass --overwrite to replace it"
        )


def default_staging(out: str | os.PathLike[str], run_id: str) -> Path:
    fs, root = open_root(out)
    if not is_local(fs):
        raise PrecomputeError(
            f"results root {out} is not a local directory: pass --staging DIR "
            "(a local directory for the chunks of the extraction)"
        )
    return staging_root(root, run_id)


def shard_texts(corpus: ParallelCorpus, lo: int, hi: int) -> list[str]:
    """Sentences of pairs ``lo..hi-1`` in (pair, lang) order."""
    return [corpus.texts[lang][k] for k in range(lo, hi) for lang in corpus.languages]


def run_extraction(
    config: RunConfig,
    out: str | os.PathLike[str],
    run_id: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    shard: int = 0,
    num_shards: int = 1,
    staging: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_chunk: ChunkCallback | None = None,
    models: LoadedModels | None = None,
) -> Manifest | ShardStaging:
    """Extract (one shard of) a run. Returns the committed run's manifest, or the
    finished shard's staging when ``num_shards > 1`` (merge it with ``merge.finalize``).

    ``models``: already loaded model/SAE/tokenizer (a warm worker, a benchmark);
    by default they are loaded from ``config``. ``on_chunk(index, stats)`` is
    called after each chunk is safely on disk."""
    from precompute.common.devices import resolve_device

    check_run_id(run_id)
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise PrecomputeError(
            f"need --num-shards >= 1 and 0 <= --shard < --num-shards (got {shard}, {num_shards})"
        )
    if num_shards == 1:
        check_can_write(out, run_id, overwrite)
    device = resolve_device(config)
    if models is None:
        from precompute.models.loading import check_access, check_sae_access

        check_sae_access(config.sae)
        check_access(config.model)
    root = Path(staging) if staging is not None else default_staging(out, run_id)
    header = {
        "run_id": run_id,
        "run_fingerprint": config.fingerprint(),
        "shard": shard,
        "num_shards": num_shards,
    }
    stage = ShardStaging.prepare(
        root / shard_dir_name(shard, num_shards), header, resume=resume, discard=overwrite
    )
    try:
        _stage_shard(config, stage, device, progress, on_chunk, models)
    except BaseException:
        if not stage.chunks_done:  # nothing worth resuming: leave no trace
            _remove_staging(stage.directory, root)
        raise
    if num_shards > 1:
        return stage
    from precompute.extract.merge import finalize

    manifest = finalize([stage.directory], out, run_id, overwrite=overwrite, progress=progress)
    _remove_staging(stage.directory, root)
    return manifest


def _stage_shard(
    config: RunConfig,
    stage: ShardStaging,
    device: str,
    progress: bool,
    on_chunk: ChunkCallback | None,
    models: LoadedModels | None,
) -> None:
    """Load the corpus, take the shard's pairs and extract the chunks not yet staged."""
    shard, num_shards = stage.state["shard"], stage.state["num_shards"]
    corpus = load_corpus(config.corpus)
    for key, value in (
        ("n_pairs", corpus.n_pairs),
        ("languages", list(corpus.languages)),
        ("corpus", corpus.info),
    ):
        stage.bind(key, value)
    lo, hi = shard_range(corpus.n_pairs, shard, num_shards)
    if hi <= lo:
        raise PrecomputeError(
            f"shard {shard} of {num_shards} gets no pairs: the sample has only "
            f"{corpus.n_pairs} pairs; use fewer shards"
        )
    if not stage.state.get("complete"):  # a resumed shard may only lack the merge
        _extract_shard(config, corpus, stage, device, lo, hi, progress, on_chunk, models)


def stage_pair_range(
    config: RunConfig,
    corpus: ParallelCorpus,
    stage: ShardStaging,
    device: str,
    lo: int,
    hi: int,
    *,
    on_chunk: ChunkCallback | None = None,
    models: LoadedModels | None = None,
) -> None:
    """Extract pairs ``lo..hi-1`` of ``corpus`` into ``stage`` (only the chunks not yet staged):
    the loop ``--shard`` runs, for executors that cut the shards themselves (``ray_executor``)."""
    if not stage.state.get("complete"):
        _extract_shard(config, corpus, stage, device, lo, hi, False, on_chunk, models)


def _remove_staging(shard_dir: Path, root: Path) -> None:
    shutil.rmtree(shard_dir, ignore_errors=True)
    if root.exists() and not any(root.iterdir()):
        root.rmdir()


def _extract_shard(
    config: RunConfig,
    corpus: ParallelCorpus,
    stage: ShardStaging,
    device: str,
    lo: int,
    hi: int,
    progress: bool,
    on_chunk: ChunkCallback | None,
    loaded: LoadedModels | None,
) -> None:
    from precompute.models.loading import load_models

    loaded = loaded if loaded is not None else load_models(config, device)
    extract_stages([(config, stage, loaded)], corpus, device, lo, hi, progress, on_chunk)


def extract_stages(
    entries: list[tuple[RunConfig, ShardStaging, LoadedModels]],
    corpus: ParallelCorpus,
    device: str,
    lo: int,
    hi: int,
    progress: bool,
    on_chunk: ChunkCallback | None = None,
) -> None:
    """Extract pairs ``lo..hi-1`` into one staging per ``(config, stage, models)`` entry.

    The entries share the model and the tokenizer (a layer sweep: one SAE per
    hook); each batch is tokenised once and runs through the model once, up to
    the deepest hook, and every SAE encodes its own hook's activation. A chunk
    is extracted unless every stage already has it (``--resume``); a stage
    that has it is not rewritten. ``on_chunk`` reports the first entry's chunks."""
    from precompute.common.activations import Extractor
    from precompute.common.provenance import package_versions

    config, _, first = entries[0]
    hooks = [m.hook_name for _, _, m in entries]
    for _cfg, stage, loaded in entries:
        for key, value in (
            ("d_sae", int(loaded.sae.cfg.d_sae)),
            ("model", loaded.model_info),
            ("sae", loaded.sae_info),
        ):
            stage.bind(key, value)
    ex = config.extraction
    chunks = [
        (i, a, min(a + ex.chunk_pairs, hi)) for i, a in enumerate(range(lo, hi, ex.chunk_pairs))
    ]
    for cfg, stage, loaded in entries:
        stage.state.update(
            pair_start=lo,
            pair_stop=hi,
            n_chunks=len(chunks),
            versions=package_versions(),
            resumed=bool(stage.state.get("resumed") or stage.chunks_done),
            extraction=_settings(cfg, device, loaded, hooks),
        )
        stage.save()
    todo = [c for c in chunks if any(c[0] not in st.chunks_done for _, st, _ in entries)]
    if todo:
        bos = bos_token_id(first.tokenizer)
        texts = shard_texts(corpus, lo, hi)
        tokens = tokenize_sentences(first.tokenizer, texts, ex.max_tokens)
        strings = token_strings(first.tokenizer, np.append(tokens.ids, bos))
        text = token_texts(first.tokenizer, tokens, strings)
        extractor = Extractor(
            first.model,
            first.sae,
            first.tokenizer,
            first.hook_name,
            bos,
            _torch_device(device),
            more=tuple((m.hook_name, m.sae) for _, _, m in entries[1:]),
        )
        writers = [
            _ChunkWriter(
                stage,
                tokens,
                texts,
                text,
                strings[bos],
                bos,
                list(corpus.languages),
                lo,
                int(loaded.sae.cfg.d_sae),
                on_chunk if i == 0 else None,
            )
            for i, (_, stage, loaded) in enumerate(entries)
        ]
        names = ", ".join(st.state["run_id"] for _, st, _ in entries)
        _run_chunks(
            extractor,
            tokens,
            todo,
            writers,
            ex,
            lo,
            len(corpus.languages),
            progress,
            desc=f"extracting {names} (shard {entries[0][1].state['shard']})",
        )
    for _, stage, _ in entries:
        stage.mark_complete()


def _settings(
    config: RunConfig, device: str, loaded: LoadedModels, hooks: list[str]
) -> dict[str, Any]:
    """The manifest's record of how the extraction ran (counters are added at the merge);
    ``hooks``: every hook read from the same forward passes (more than one in a sweep)."""
    from contract.overrides import changed_from_preset
    from precompute.common.activations import sweep_stop_layer
    from precompute.common.devices import device_description

    ex = config.extraction
    return {
        "preset": config.preset,
        "changed_from_preset": changed_from_preset(config),
        "config_fingerprint": config.fingerprint(),
        "dtype": config.model.dtype,
        "sae_dtype": config.sae.dtype,
        "batch_size": ex.batch_size,
        "batch_tokens": ex.batch_tokens,
        "max_tokens": ex.max_tokens,
        "chunk_pairs": ex.chunk_pairs,
        "device": device,
        "device_name": device_description(device),
        "prepend_bos": True,
        "padding_side": loaded.tokenizer.padding_side,
        "stop_at_layer": sweep_stop_layer(hooks),
        **({"shared_pass_hooks": hooks} if len(hooks) > 1 else {}),
    }


def _torch_device(device: str):
    import torch

    return torch.device(device)


class _ChunkWriter:
    """Builds a chunk's tables and writes them in a background thread, one chunk at a time."""

    def __init__(
        self,
        stage: ShardStaging,
        tokens: TokenizedSentences,
        texts: list[str],
        token_text: np.ndarray,
        bos_text: str,
        bos: int,
        languages: list[str],
        shard_start: int,
        d_sae: int,
        on_chunk: ChunkCallback | None,
    ) -> None:
        self.stage, self.tokens, self.texts, self.bos = stage, tokens, texts, bos
        self.token_text, self.bos_text = token_text, bos_text
        self.languages, self.shard_start, self.d_sae, self.on_chunk = (
            languages,
            shard_start,
            d_sae,
            on_chunk,
        )
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-writer")
        self.pending: tuple[int, Future, dict[str, Any]] | None = None

    def submit(self, index: int, layout, acts, seconds: float) -> None:
        stats = {
            **chunk_stats(layout, self.tokens, acts, self.languages),
            "seconds": round(seconds, 4),
        }
        self.wait()
        self.pending = (index, self.pool.submit(self._write, index, layout, acts, stats), stats)

    def _write(self, index: int, layout, acts, stats: dict[str, Any]) -> None:
        tables = chunk_tables(
            layout,
            self.tokens,
            acts,
            self.texts[layout.lo : layout.hi],
            self.token_text,
            self.bos,
            self.bos_text,
        )
        counts = np.bincount(acts.feature, minlength=self.d_sae)
        self.stage.write_chunk(index, tables, counts, stats)

    def wait(self) -> None:
        """Let the chunk in flight finish (its errors surface here), then report it."""
        if self.pending is None:
            return
        index, future, stats = self.pending
        self.pending = None
        future.result()
        if self.on_chunk is not None:
            self.on_chunk(index, stats)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)


def _run_chunks(
    extractor,
    tokens: TokenizedSentences,
    todo: list[tuple[int, int, int]],
    writers: list[_ChunkWriter],
    ex: ExtractionConfig,
    shard_start: int,
    n_langs: int,
    progress: bool,
    desc: str,
) -> None:
    from precompute.common.activations import extract_chunk_hooks

    layouts = [(i, chunk_layout(a, b, shard_start, n_langs)) for i, a, b in todo]
    total = int(sum(tokens.lengths[lay.lo : lay.hi].sum() for _, lay in layouts))
    bar = progress_bar(total, desc, "tok", show=progress, smoothing=0.1)
    try:
        for index, layout in layouts:
            t0 = time.perf_counter()
            per_hook = extract_chunk_hooks(
                extractor,
                tokens,
                layout.sentences,
                ex.batch_size,
                on_batch=bar.update if bar is not None else None,
                batch_tokens=ex.batch_tokens,
            )
            seconds = time.perf_counter() - t0
            for writer, acts in zip(writers, per_hook, strict=True):
                if index not in writer.stage.chunks_done:
                    writer.submit(index, layout, acts, seconds)
    finally:
        try:
            for writer in writers:
                writer.close()
        finally:
            if bar is not None:
                bar.close()
