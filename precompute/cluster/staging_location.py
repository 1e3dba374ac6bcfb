"""Where the shards of a distributed run are staged: a shared directory or an fsspec URL.

Every worker of ``--executor ray`` must reach the staging location, and so
must the driver that merges the shards:

* a **directory** (the default ``<out>/.<run id>.staging``, or ``--staging
  DIR``): workers write their shard directories there directly, exactly as
  ``--shard i --num-shards n`` does. On more than one host it must be a shared
  file system (NFS, Lustre, a mounted bucket) at the same path everywhere.
* an **fsspec URL** (``--staging s3://bucket/prefix``, ``gs://...``,
  ``file:///shared/...``): each worker stages its shard in a local temporary
  directory and copies every finished chunk up (the chunk's files first,
  ``shard.json`` last, so the remote copy only ever names whole chunks). A
  replacement worker, on any host, first copies the shard's finished chunks
  down and resumes after them. The driver copies the finished shards down
  into a local temporary directory and merges them there.

This module imports neither torch nor ray.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from precompute.extract.staging import KINDS, STATE, ShardStaging, shard_dir_name

SHARD_GLOB = "shard-*-of-*"


def is_url(location: str | os.PathLike[str]) -> bool:
    return "://" in str(location)


@dataclass(frozen=True)
class StagingLocation:
    """A staging root: a local (shared) directory, or a URL every worker can write to."""

    location: str

    @property
    def remote(self) -> bool:
        return is_url(self.location)

    def _fs(self) -> tuple[Any, str]:
        fs, path = fsspec.core.url_to_fs(self.location)
        return fs, path.rstrip("/")

    # ------------------------------------------------------------ driver ---

    def existing_shards(self) -> dict[str, dict[str, Any]]:
        """``{shard directory name: its shard.json}`` of the shards staged here."""
        fs, root = self._fs()
        found = {}
        for path in sorted(fs.glob(f"{root}/{SHARD_GLOB}/{STATE}")):
            name = path.rstrip("/").split("/")[-2]
            with fs.open(path, "r") as handle:
                found[name] = json.load(handle)
        return found

    def remove_shards(self, names: list[str]) -> None:
        fs, root = self._fs()
        for name in names:
            if fs.exists(f"{root}/{name}"):
                fs.rm(f"{root}/{name}", recursive=True)
        self.remove_if_empty()

    def remove_if_empty(self) -> None:
        fs, root = self._fs()
        try:
            if fs.exists(root) and not fs.ls(root, detail=False):
                fs.rmdir(root)
        except (OSError, NotImplementedError):
            pass

    def fetch_shards(self, names: list[str]) -> tuple[list[Path], Path | None]:
        """Local directories of the named shards (copied down from a URL into a
        temporary directory, which is returned second so it can be removed)."""
        fs, root = self._fs()
        if not self.remote:
            return [Path(root) / name for name in names], None
        scratch = Path(tempfile.mkdtemp(prefix="precompute-merge-"))
        dirs = []
        for name in names:
            local = scratch / name
            _download_shard(fs, f"{root}/{name}", local)
            dirs.append(local)
        return dirs, scratch

    # ------------------------------------------------------------ worker ---

    def open_shard(
        self, shard: int, num_shards: int, header: dict[str, Any]
    ) -> tuple[ShardStaging, ShardMirror | None]:
        """The shard's staging, resumed from whatever finished chunks are staged."""
        name = shard_dir_name(shard, num_shards)
        fs, root = self._fs()
        if not self.remote:
            return ShardStaging.prepare(Path(root) / name, header, resume=True, discard=False), None
        local = Path(tempfile.mkdtemp(prefix=f"precompute-{name}-"))
        if fs.exists(f"{root}/{name}/{STATE}"):
            _download_shard(fs, f"{root}/{name}", local)
        stage = ShardStaging.prepare(local, header, resume=True, discard=False)
        mirror = ShardMirror(fs, f"{root}/{name}", local)
        mirror.push_state()
        return stage, mirror


def _download_shard(fs: Any, remote: str, local: Path) -> None:
    """The files of a staged shard that its shard.json names (read first), copied down."""
    local.mkdir(parents=True, exist_ok=True)
    with fs.open(f"{remote}/{STATE}", "r") as handle:
        state = json.load(handle)
    for index in state.get("chunks", {}):
        for kind in (*KINDS, "counts"):
            name = ShardStaging(local, state).path(kind, int(index)).name
            fs.get_file(f"{remote}/{name}", str(local / name))
    (local / STATE).write_text(json.dumps(state, indent=1, default=str) + "\n")


@dataclass
class ShardMirror:
    """Copies a locally staged shard up to its URL, chunk by chunk, ``shard.json`` last."""

    fs: Any
    remote: str
    local: Path

    def __post_init__(self) -> None:
        self.fs.makedirs(self.remote, exist_ok=True)

    def push_chunk(self, stage: ShardStaging, index: int) -> None:
        for kind in (*KINDS, "counts"):
            path = stage.path(kind, index)
            self._put(path, f"{self.remote}/{path.name}")
        self.push_state()

    def push_state(self) -> None:
        self._put(self.local / STATE, f"{self.remote}/{STATE}")

    def _put(self, path: Path, target: str) -> None:
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        self.fs.put_file(str(path), tmp)
        self.fs.mv(tmp, target)

    def close(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)
