"""Publish a finished run to another results root (``--push-to URL``).

A GPU host computes into a local results root; collaborators' app reads a
shared one (``hf://datasets/<user>/<repo>``, ``s3://bucket/prefix``, another
directory). :func:`publish_run` copies one complete run directory there so
that no reader ever sees half a run:

* Hugging Face repos: every file of the run in **one commit** (a commit is
  atomic: readers see the old revision or the new one), files the previous
  version had and this one lacks deleted in the same commit.
* Any other fsspec store or local directory: ``bilingual_core``'s
  ``RunWriter``: the files go to a hidden temporary sibling, then into place
  with ``manifest.json`` (``status: complete``) last (a rename on a local disk).

Credentials come from the environment of the process (``HF_TOKEN``, AWS
variables or profiles), never from the command line or the manifest.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import fsspec

from bilingual_core import Run, RunExistsError, RunWriter
from bilingual_core.schema import MANIFEST
from bilingual_core.storage import is_local, join, open_root
from contract.commands import PublishSettings

COPY_BUFFER = 8 << 20


def run_files(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """Paths of the run's files relative to its directory (manifest last)."""
    base = path.rstrip("/") + "/"
    found = [p[len(base) :] for p in fs.find(path) if p.startswith(base)]
    return sorted(found, key=lambda name: (name == MANIFEST, name))


def publish_run(
    run_dir: str | os.PathLike[str],
    dest_root: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    api: Any = None,
) -> str:
    """Copy the complete run at ``run_dir`` to ``<dest_root>/<run id>``; return its location.

    Raises ValueError when ``run_dir`` is not a complete run, RunExistsError
    when the destination has the run and ``overwrite`` is False. ``api``: a
    ``huggingface_hub.HfApi`` to use for ``hf://`` roots (tests pass a fake).
    """
    src_fs, src = open_root(run_dir)
    run = Run.open_fs(src_fs, src)
    if not run.is_complete:
        raise ValueError(
            f"{run_dir} is not a complete run (status {run.manifest.status!r}); not publishing it"
        )
    run_id = run.run_id
    dst_fs, dst = open_root(dest_root)
    names = run_files(src_fs, src)
    if _is_hf(dst_fs):
        return _publish_hf(src_fs, src, names, dst_fs, dst, run_id, overwrite, api)
    dst_fs.makedirs(dst, exist_ok=True)
    with RunWriter(dst, run_id, overwrite=overwrite, fs=dst_fs) as writer:
        for name in names:
            if name != MANIFEST:
                _copy(src_fs, join(src, name), dst_fs, writer.path(name))
        writer.commit(run.manifest)
    final = join(dst, run_id)
    return final if is_local(dst_fs) else dst_fs.unstrip_protocol(final)


def _copy(
    src_fs: fsspec.AbstractFileSystem, src: str, dst_fs: fsspec.AbstractFileSystem, dst: str
) -> None:
    parent = posixpath.dirname(dst)
    if parent:
        dst_fs.makedirs(parent, exist_ok=True)
    if is_local(src_fs) and not is_local(dst_fs):
        dst_fs.put_file(src, dst)  # multipart uploads on object stores
        return
    with src_fs.open(src, "rb") as reader, dst_fs.open(dst, "wb") as writer:
        shutil.copyfileobj(reader, writer, COPY_BUFFER)


# ------------------------------------------------------------ Hugging Face ---


def _is_hf(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "hf" in protocols


@dataclass(frozen=True)
class HfTarget:
    repo_id: str
    repo_type: str
    revision: str | None
    prefix: str
    """Folder inside the repo that is the results root ('' = repo root)."""


def hf_target(fs: fsspec.AbstractFileSystem, path: str) -> HfTarget:
    resolved = fs.resolve_path(path)
    return HfTarget(
        resolved.repo_id,
        resolved.repo_type,
        resolved.revision,
        (resolved.path_in_repo or "").strip("/"),
    )


def hf_operations(
    names: Iterable[str], sources: dict[str, Any], existing: Iterable[str], prefix: str, run_id: str
) -> list[Any]:
    """One commit's operations: add every file of the run, delete files of the
    previous version that the new one lacks. ``sources[name]``: local path or bytes."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    folder = f"{prefix}/{run_id}" if prefix else run_id
    names = list(names)
    ops: list[Any] = [
        CommitOperationAdd(path_in_repo=f"{folder}/{name}", path_or_fileobj=sources[name])
        for name in names
    ]
    keep = set(names)
    ops += [
        CommitOperationDelete(path_in_repo=f"{folder}/{name}")
        for name in sorted(set(existing) - keep)
    ]
    return ops


def _publish_hf(
    src_fs, src: str, names: list[str], dst_fs, dst: str, run_id: str, overwrite: bool, api: Any
) -> str:
    target = hf_target(dst_fs, dst)
    final = join(dst, run_id)
    dst_fs.invalidate_cache(final)
    existing = run_files(dst_fs, final) if dst_fs.exists(final) else []
    if existing and not overwrite:
        raise RunExistsError(
            f"run {run_id!r} already exists under {dst_fs.unstrip_protocol(dst)}; "
            "pass overwrite (--overwrite) to replace it"
        )
    sources = {
        name: (join(src, name) if is_local(src_fs) else src_fs.cat_file(join(src, name)))
        for name in names
    }
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_commit(
        repo_id=target.repo_id,
        repo_type=target.repo_type,
        revision=target.revision,
        operations=hf_operations(names, sources, existing, target.prefix, run_id),
        commit_message=f"Publish run {run_id}",
    )
    dst_fs.invalidate_cache(final)
    return dst_fs.unstrip_protocol(final)


def publish_command(settings: PublishSettings) -> int:
    """``python -m precompute publish --run DIR --to URL``."""
    print(f"published to {publish_run(settings.run, settings.to, overwrite=settings.overwrite)}")
    return 0
