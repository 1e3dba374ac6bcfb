"""The staging directory of one shard: finished chunks and a small progress file.

An extraction streams each finished chunk of pairs to three Parquet files
(``acts-*``, ``tokens-*``, ``pairs-*``) plus a per-feature row count
(``counts-*.npy``), each written under a temporary name and renamed, and only
then records the chunk in ``shard.json`` (also replaced atomically). A killed
run therefore leaves whole chunks and a progress file that names only those;
``--resume`` skips them. The directory lives next to the results, hidden
(``<root>/.<run id>.staging/shard-<i>-of-<n>``), so no reader mistakes it
for a run; ``merge`` turns complete shards into the run.

Chunk tables use ``lang`` as an int8 index into the run's languages; the
merge converts it to the run format's dictionary column.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from precompute.common.errors import StagingError

STATE = "shard.json"
STAGING_VERSION = 1
CHUNK_ROW_GROUP = 1 << 16
KINDS = ("acts", "tokens", "pairs")

CHUNK_ACTS_SCHEMA = pa.schema(
    [
        ("pair_id", pa.int32()),
        ("lang", pa.int8()),
        ("position", pa.int32()),
        ("feature", pa.int32()),
        ("activation", pa.float32()),
    ]
)
CHUNK_TOKENS_SCHEMA = pa.schema(
    [
        ("pair_id", pa.int32()),
        ("lang", pa.int8()),
        ("position", pa.int32()),
        ("token_id", pa.int32()),
        ("token", pa.string()),
    ]
)
CHUNK_PAIRS_SCHEMA = pa.schema(
    [("pair_id", pa.int32()), ("lang", pa.int8()), ("text", pa.string())]
)


def staging_root(out: str | os.PathLike[str], run_id: str) -> Path:
    """Default staging directory of a run: hidden, beside the run in a local results root."""
    return Path(out) / f".{run_id}.staging"


def shard_dir_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:03d}-of-{num_shards:03d}"


def shard_range(n_pairs: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Contiguous pair range ``[lo, hi)`` of shard ``shard`` out of ``num_shards``."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"--shard must be in 0..{num_shards - 1}, got {shard}")
    return n_pairs * shard // num_shards, n_pairs * (shard + 1) // num_shards


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


@dataclass
class ShardStaging:
    """One shard's staging directory and its progress state (``shard.json``)."""

    directory: Path
    state: dict[str, Any]

    @classmethod
    def prepare(
        cls, directory: Path, header: dict[str, Any], *, resume: bool, discard: bool
    ) -> ShardStaging:
        """Open for a new run or a resumed one.

        ``header`` (run id, config fingerprint, shard) must equal a resumed
        shard's; without ``resume`` an existing directory is an error unless
        ``discard`` (``--overwrite``) says to throw it away.
        """
        state_path = directory / STATE
        if state_path.exists():
            old = json.loads(state_path.read_text())
            if not old.get("chunks") and not old.get("complete"):
                shutil.rmtree(directory)  # nothing was extracted yet: nothing to keep
            elif discard and not resume:
                shutil.rmtree(directory)
            elif not resume:
                done = len(old.get("chunks", {}))
                raise StagingError(
                    f"an unfinished extraction of this run is staged in {directory} "
                    f"({done} chunk(s) done): pass --resume to continue it, or --overwrite "
                    "to discard it and start again"
                )
            else:
                changed = [k for k, v in header.items() if old.get(k) != v]
                if changed:
                    raise StagingError(
                        f"cannot resume from {directory}: it was staged with a different "
                        f"{', '.join(changed)} (pass --overwrite to discard it and start again)"
                    )
                return cls(directory, old)
        directory.mkdir(parents=True, exist_ok=True)
        staging = cls(
            directory,
            {"staging_version": STAGING_VERSION, **header, "chunks": {}, "complete": False},
        )
        staging.save()
        return staging

    def save(self) -> None:
        write_json(self.directory / STATE, self.state)

    def bind(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key``; a resumed shard must see the same value (e.g. the corpus)."""
        if key in self.state and self.state[key] != value:
            raise StagingError(
                f"cannot resume from {self.directory}: its {key} differs from this run's "
                f"({self.state[key]!r} != {value!r}); pass --overwrite to start again"
            )
        self.state[key] = value
        self.save()

    @property
    def chunks_done(self) -> set[int]:
        return {int(k) for k in self.state["chunks"]}

    def path(self, kind: str, index: int) -> Path:
        suffix = "npy" if kind == "counts" else "parquet"
        return self.directory / f"{kind}-{index:05d}.{suffix}"

    def write_chunk(
        self, index: int, tables: dict[str, pa.Table], counts: np.ndarray, stats: dict[str, Any]
    ) -> None:
        """Write one finished chunk's files, then record it as done."""
        for kind in KINDS:
            final = self.path(kind, index)
            tmp = final.with_name(final.name + ".tmp")
            pq.write_table(
                tables[kind],
                tmp,
                compression="lz4",
                row_group_size=CHUNK_ROW_GROUP if kind == "acts" else None,
            )
            os.replace(tmp, final)
        final = self.path("counts", index)
        with open(final.with_name(final.name + ".tmp"), "wb") as handle:
            np.save(handle, counts.astype(np.int64))
        os.replace(final.with_name(final.name + ".tmp"), final)
        self.state["chunks"][str(index)] = stats
        self.save()

    def mark_complete(self) -> None:
        self.state["complete"] = True
        self.save()


def load_shard(directory: str | os.PathLike[str]) -> ShardStaging:
    """A staged shard for merging (StagingError when it is not a shard directory)."""
    directory = Path(directory)
    state_path = directory / STATE
    if not state_path.exists():
        raise StagingError(f"{directory} is not a shard staging directory (no {STATE})")
    return ShardStaging(directory, json.loads(state_path.read_text()))
