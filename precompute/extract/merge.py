"""Join staged shards into one scored run, atomically.

Chunks are taken in pair order (shard by shard, chunk by chunk). ``pairs``
and ``tokens`` are streamed through chunk by chunk. ``activations`` must be
sorted by feature over the whole run, while each chunk is sorted by feature
only within itself: the merge reads the run one *feature block* at a time
(the row groups of every chunk that overlap the block, sliced to it), and a
stable sort by feature of their concatenation gives the full order
``(feature, pair, lang, position)``, since the chunks already come in pair
order. Blocks are cut from the per-chunk feature counts so that each holds at
most ``block_rows`` rows: memory stays flat however large the corpus.

The run is assembled and scored out of sight, then moved into place in one
step; a failure leaves no run behind (and an existing run untouched).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bilingual_core import Manifest, Run, RunExistsError, RunWriter, ScoreConfig, score_run
from bilingual_core.manifest import check_run_id
from bilingual_core.progress import bar as progress_bar
from bilingual_core.schema import (
    ACTIVATION_ROW_GROUP,
    ACTIVATIONS,
    ACTIVATIONS_SCHEMA,
    MANIFEST,
    PAIRS,
    PAIRS_SCHEMA,
    TOKENS,
    TOKENS_SCHEMA,
)
from bilingual_core.storage import (
    TMP_MARK,
    TemporaryLock,
    activation_writer,
    clean_stale_temporaries,
    join,
    open_root,
)
from precompute.common.errors import StagingError
from precompute.extract.staging import ShardStaging, load_shard

BLOCK_ROWS = 1 << 23
_SAME = ("run_fingerprint", "num_shards", "n_pairs", "languages", "d_sae", "corpus", "model", "sae")


@dataclass
class ShardSet:
    """Complete shards of one run, in shard order."""

    shards: list[ShardStaging]

    @property
    def first(self) -> dict[str, Any]:
        return self.shards[0].state

    def chunk_files(self, kind: str) -> Iterator[Path]:
        for shard in self.shards:
            for index in sorted(shard.chunks_done):
                yield shard.path(kind, index)


def collect_shards(directories: list[str | os.PathLike[str]]) -> ShardSet:
    """Load and validate shard directories: one run, every shard once, each complete."""
    if not directories:
        raise StagingError("no shard directories given")
    shards = sorted((load_shard(d) for d in directories), key=lambda s: s.state["shard"])
    first = shards[0].state
    for shard in shards:
        state = shard.state
        if not state.get("complete"):
            raise StagingError(
                f"shard {state['shard']} in {shard.directory} is not finished "
                f"({len(state['chunks'])}/{state.get('n_chunks', '?')} chunks): "
                "rerun it with --resume, then merge"
            )
        differ = [k for k in _SAME if state.get(k) != first.get(k)]
        if differ:
            raise StagingError(
                f"{shard.directory} belongs to another run than {shards[0].directory} "
                f"(different {', '.join(differ)})"
            )
    indices = [s.state["shard"] for s in shards]
    expected = list(range(first["num_shards"]))
    if indices != expected:
        missing = sorted(set(expected) - set(indices))
        dupes = sorted({i for i in indices if indices.count(i) > 1})
        raise StagingError(
            f"need each of shards 0..{first['num_shards'] - 1} exactly once; "
            f"missing {missing}, repeated {dupes}"
        )
    return ShardSet(shards)


def _lang_dict(languages: list[str]) -> pa.Array:
    return pa.array(languages, pa.string())


def _to_run_schema(table: pa.Table, schema: pa.Schema, lang_dict: pa.Array) -> pa.Table:
    lang = pa.DictionaryArray.from_arrays(table.column("lang").combine_chunks(), lang_dict)
    columns = [lang if name == "lang" else table.column(name) for name in schema.names]
    return pa.table(columns, schema=schema)


def _stream_tables(
    writer: RunWriter, name: str, schema: pa.Schema, files: Iterator[Path], lang_dict: pa.Array
) -> None:
    with (
        writer.fs.open(writer.path(name), "wb") as handle,
        pq.ParquetWriter(handle, schema, compression="zstd") as out,
    ):
        for path in files:
            out.write_table(_to_run_schema(pq.read_table(path), schema, lang_dict))


class _ChunkReader:
    """Reads the rows of one staged activation chunk whose feature is in ``[lo, hi)``."""

    def __init__(self, path: Path) -> None:
        self.pf = pq.ParquetFile(path)
        col = self.pf.schema_arrow.get_field_index("feature")
        meta = self.pf.metadata
        self.ranges = []
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(col).statistics
            self.ranges.append(
                (stats.min, stats.max) if stats is not None and stats.has_min_max else (None, None)
            )

    def read(self, lo: int, hi: int) -> pa.Table | None:
        groups = [
            i for i, (mn, mx) in enumerate(self.ranges) if mn is None or (mx >= lo and mn < hi)
        ]
        if not groups:
            return None
        table = self.pf.read_row_groups(groups)
        feature = table.column("feature").to_numpy()
        a, b = np.searchsorted(feature, lo), np.searchsorted(feature, hi)
        return table.slice(a, b - a) if b > a else None


def feature_blocks(counts: np.ndarray, block_rows: int) -> list[tuple[int, int]]:
    """Cut features ``0..d-1`` into consecutive blocks of at most ``block_rows`` rows
    (a single feature with more rows gets a block of its own)."""
    cum = np.concatenate([[0], np.cumsum(counts)])
    blocks, lo, d = [], 0, len(counts)
    while lo < d:
        hi = int(np.searchsorted(cum, cum[lo] + block_rows, side="right")) - 1
        hi = min(max(hi, lo + 1), d)
        blocks.append((lo, hi))
        lo = hi
    return blocks


def _sorted_block(readers: list[_ChunkReader], lo: int, hi: int) -> pa.Table | None:
    """Rows of features ``[lo, hi)`` from every chunk, in (feature, pair, lang, position) order."""
    parts = [t for t in (r.read(lo, hi) for r in readers) if t is not None]
    if not parts:
        return None
    table = pa.concat_tables(parts)
    # Stable: within a feature, rows keep chunk order (= pair order) and their order inside the chunk.
    order = np.argsort(table.column("feature").to_numpy(), kind="stable")
    return table.take(order)


def write_activations(
    writer: RunWriter,
    shards: ShardSet,
    lang_dict: pa.Array,
    block_rows: int = BLOCK_ROWS,
    progress: Any = None,
) -> int:
    """Merge every chunk into ``activations.parquet`` sorted by (feature, pair, lang, position).

    The next block is read and sorted in a background thread while the current
    one is encoded and written (both release the GIL)."""
    counts = sum(np.load(p) for p in shards.chunk_files("counts"))
    readers = [_ChunkReader(p) for p in shards.chunk_files("acts")]
    blocks = feature_blocks(np.asarray(counts), block_rows)
    n_rows = 0
    with (
        writer.fs.open(writer.path(ACTIVATIONS), "wb") as handle,
        activation_writer(handle) as out,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="merge-reader") as pool,
    ):
        pending = pool.submit(_sorted_block, readers, *blocks[0]) if blocks else None
        for i in range(len(blocks)):
            table = pending.result()
            pending = (
                pool.submit(_sorted_block, readers, *blocks[i + 1]) if i + 1 < len(blocks) else None
            )
            if table is None:
                continue
            out.write_table(
                _to_run_schema(table, ACTIVATIONS_SCHEMA, lang_dict),
                row_group_size=ACTIVATION_ROW_GROUP,
            )
            n_rows += table.num_rows
            if progress is not None:
                progress.update(table.num_rows)
    return n_rows


def extraction_summary(shards: ShardSet) -> dict[str, Any]:
    """Extraction settings of the first shard plus counters summed over every chunk.

    ``extraction_seconds`` sums the chunks' device time (all shards, all
    sessions of a resumed run); ``tokens_per_second`` is per device."""
    first = shards.first
    totals: dict[str, Any] = {}
    for shard in shards.shards:
        for stats in shard.state["chunks"].values():
            for key, value in stats.items():
                if isinstance(value, dict):
                    bucket = totals.setdefault(key, {})
                    for lang, n in value.items():
                        bucket[lang] = bucket.get(lang, 0) + n
                else:
                    totals[key] = totals.get(key, 0) + value
    n_tokens = sum(totals.get("n_tokens", {}).values())
    seconds = float(totals.pop("seconds", 0.0))
    summary = {
        **first["extraction"],
        **totals,
        "num_shards": first["num_shards"],
        "resumed": any(s.state.get("resumed") for s in shards.shards),
        "extraction_seconds": round(seconds, 3),
        "tokens_per_second": round(n_tokens / seconds, 1) if seconds > 0 else None,
        "mean_l0": round(totals.get("n_activations", 0) / n_tokens, 3) if n_tokens else None,
    }
    return summary


def build_manifest(shards: ShardSet, run_id: str) -> Manifest:
    first = shards.first
    return Manifest(
        run_id=run_id,
        languages=list(first["languages"]),
        n_pairs=int(first["n_pairs"]),
        d_sae=int(first["d_sae"]),
        model=first["model"],
        sae=first["sae"],
        corpus=first["corpus"],
        extraction=extraction_summary(shards),
        versions=first["versions"],
    )


def finalize(
    directories: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    run_id: str,
    *,
    overwrite: bool = False,
    progress: bool = False,
    block_rows: int = BLOCK_ROWS,
) -> Manifest:
    """Merge complete shards into run ``run_id`` under ``out``, score it, commit it.

    The run is assembled and scored in a hidden scratch root beside it
    (``.<run id>.tmp-assemble-*``, removed afterwards and by
    ``clean_stale_temporaries`` if killed), then moved into place by a
    ``RunWriter`` (hard links on a local disk): readers never see a run
    without its scores.
    """
    check_run_id(run_id)
    shards = collect_shards(directories)
    fs, root = open_root(out)
    if fs.exists(join(root, run_id)) and not overwrite:
        raise RunExistsError(
            f"run {run_id!r} already exists under {root}; pass --overwrite to replace it"
        )
    clean_stale_temporaries(root, run_id, fs=fs)  # those of killed merges of this run
    scratch = join(root, f".{run_id}{TMP_MARK}assemble-{uuid.uuid4().hex[:12]}")
    fs.makedirs(scratch, exist_ok=True)
    lock = TemporaryLock(fs, scratch)
    try:
        assemble(shards, scratch, run_id, fs=fs, block_rows=block_rows, progress=progress)
        score_run(fs.unstrip_protocol(scratch), run_id, ScoreConfig(), progress=progress)
        built = Run.open_fs(fs, join(scratch, run_id))
        files = [p.rsplit("/", 1)[-1] for p in fs.ls(built.path, detail=False)]
        with RunWriter(
            root,
            run_id,
            overwrite=overwrite,
            keep_from=built.path,
            keep_files=[f for f in files if f != MANIFEST],
            fs=fs,
        ) as writer:
            writer.commit(built.manifest)
        return built.manifest
    finally:
        if fs.exists(scratch):
            fs.rm(scratch, recursive=True)
        lock.release()


def assemble(
    shards: ShardSet,
    root: str,
    run_id: str,
    *,
    fs,
    block_rows: int = BLOCK_ROWS,
    progress: bool = False,
) -> Manifest:
    """Write the unscored run (pairs, tokens, activations, manifest) under ``root`` on ``fs``."""
    manifest = build_manifest(shards, run_id)
    lang_dict = _lang_dict(manifest.languages)
    with RunWriter(root, run_id, overwrite=True, fs=fs) as writer:
        _stream_tables(writer, PAIRS, PAIRS_SCHEMA, shards.chunk_files("pairs"), lang_dict)
        _stream_tables(writer, TOKENS, TOKENS_SCHEMA, shards.chunk_files("tokens"), lang_dict)
        bar = progress_bar(
            manifest.extraction.get("n_activations", 0), "merging activations", "row", show=progress
        )
        try:
            write_activations(writer, shards, lang_dict, block_rows, bar)
        finally:
            if bar is not None:
                bar.close()
        writer.commit(manifest)
    return manifest
