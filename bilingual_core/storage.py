"""Results roots as local paths or fsspec URLs, and atomic run writes.

A results root is a directory of run directories. It may be a local path or
any fsspec URL (``file://``, ``memory://`` in tests, ``hf://datasets/<user>/<repo>``
or ``s3://bucket/prefix`` for hosted results), so one code path serves the
local app, the hosted app and the GPU worker.

A run is written into a temporary sibling directory (``.<run id>.tmp-<uuid>``)
and moved into place only when every file is written, with ``manifest.json``
(``status: complete``) last. On a local disk the move is one ``rename``; on an
object store the files are copied with the manifest last, so a reader never
sees a run marked complete whose files are not all there.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from .errors import RunExistsError
from .manifest import Manifest, check_run_id
from .schema import ACTIVATIONS_SCHEMA, MANIFEST

RESULTS_ENV = "BILINGUAL_RESULTS_DIR"
DEFAULT_RESULTS = "results"
TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def results_root_from_env(default: str = DEFAULT_RESULTS) -> str:
    """The results root named by ``BILINGUAL_RESULTS_DIR``, else ``results``."""
    return os.environ.get(RESULTS_ENV) or default


def open_root(url: str | os.PathLike[str]) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve a local path or fsspec URL to ``(filesystem, path without trailing /)``."""
    fs, path = fsspec.core.url_to_fs(str(url))
    path = path.rstrip("/") or "/"
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def write_parquet(
    fs: fsspec.AbstractFileSystem, path: str, table: pa.Table, **options: Any
) -> None:
    """Write one Parquet file through ``fs`` (zstd unless told otherwise)."""
    options.setdefault("compression", "zstd")
    with fs.open(path, "wb") as handle:
        pq.write_table(table, handle, **options)


def activation_writer(handle: Any, **options: Any) -> pq.ParquetWriter:
    """A ParquetWriter for ``activations.parquet`` rows (ACTIVATIONS_SCHEMA).

    Delta encoding for the sorted integer columns and byte-stream-split for the
    activations compress well under zstd and decode fast. Write tables already
    sorted by (feature, pair_id, lang, position) with
    ``row_group_size=schema.ACTIVATION_ROW_GROUP``.
    """
    options.setdefault("compression", "zstd")
    return pq.ParquetWriter(
        handle,
        ACTIVATIONS_SCHEMA,
        use_dictionary=["lang"],
        column_encoding={
            "pair_id": "DELTA_BINARY_PACKED",
            "position": "DELTA_BINARY_PACKED",
            "feature": "DELTA_BINARY_PACKED",
            "activation": "BYTE_STREAM_SPLIT",
        },
        **options,
    )


def read_text(fs: fsspec.AbstractFileSystem, path: str) -> str:
    with fs.open(path, "rb") as handle:
        return handle.read().decode("utf-8")


def write_text(fs: fsspec.AbstractFileSystem, path: str, text: str) -> None:
    with fs.open(path, "wb") as handle:
        handle.write(text.encode("utf-8"))


class RunWriter:
    """Write a run into a temporary sibling directory, then move it into place.

    Use as a context manager: an exception (or Ctrl-C) inside the block removes
    the temporary directory and leaves any existing run untouched.

    >>> with RunWriter("results", "my-run") as w:          # doctest: +SKIP
    ...     w.write_table("pairs.parquet", pairs)
    ...     w.commit(manifest)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        run_id: str,
        *,
        overwrite: bool = False,
        keep_from: str | None = None,
        keep_files: Iterable[str] = (),
        fs: fsspec.AbstractFileSystem | None = None,
    ) -> None:
        """``root``: a results root (path or URL), or a path inside ``fs`` when given.

        ``keep_from``/``keep_files``: carry these files of an existing run
        directory over unchanged (hard links on a local disk, copies elsewhere);
        used when rescoring a run in place."""
        check_run_id(run_id)
        if fs is None:
            self.fs, self.root = open_root(root)
        else:
            self.fs, self.root = fs, str(root).rstrip("/") or "/"
        self.run_id = run_id
        self.final = join(self.root, run_id)
        self.overwrite = overwrite
        if self.fs.exists(self.final) and not overwrite:
            raise RunExistsError(
                f"run {run_id!r} already exists under {self.root}; pass overwrite=True "
                "(--overwrite on the command line) to replace it"
            )
        self.tmp = join(self.root, f".{run_id}{TMP_MARK}{uuid.uuid4().hex[:12]}")
        self.fs.makedirs(self.tmp, exist_ok=True)
        self.committed = False
        for name in keep_files:
            self._carry(join(keep_from or self.final, name), self.path(name))

    def _carry(self, src: str, dst: str) -> None:
        if is_local(self.fs):
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        self.fs.copy(src, dst)

    def path(self, name: str) -> str:
        """Where ``name`` is written before the commit."""
        return join(self.tmp, name)

    def write_table(self, name: str, table: pa.Table, **options: Any) -> None:
        write_parquet(self.fs, self.path(name), table, **options)

    def commit(self, manifest: Manifest) -> str:
        """Write the manifest (``status: complete``) and move the run into place."""
        if manifest.run_id != self.run_id:
            raise ValueError(f"manifest run_id {manifest.run_id!r} != writer run_id {self.run_id!r}")
        manifest.status = "complete"
        write_text(self.fs, self.path(MANIFEST), manifest.to_json())
        if is_local(self.fs):
            self._commit_local()
        else:
            self._commit_remote()
        self.committed = True
        return self.final

    def _commit_local(self) -> None:
        old = None
        if os.path.exists(self.final):
            old = join(self.root, f".{self.run_id}{OLD_MARK}{uuid.uuid4().hex[:12]}")
            os.rename(self.final, old)
        try:
            os.rename(self.tmp, self.final)
        except BaseException:
            if old is not None:
                os.rename(old, self.final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _commit_remote(self) -> None:
        names = [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.tmp, detail=False)]
        old: list[str] = []
        if self.fs.exists(self.final):
            # Mark the old run incomplete first so no reader mixes old and new files.
            old = [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.final, detail=False)]
            if MANIFEST in old:
                self.fs.rm(join(self.final, MANIFEST))
        for name in names:
            if name != MANIFEST:
                self.fs.copy(join(self.tmp, name), join(self.final, name))
        for name in set(old) - set(names):  # files of the old run the new one does not have
            if name != MANIFEST:
                self.fs.rm(join(self.final, name), recursive=True)
        self.fs.copy(join(self.tmp, MANIFEST), join(self.final, MANIFEST))
        self.fs.rm(self.tmp, recursive=True)

    def abort(self) -> None:
        """Remove the temporary directory (the previous run, if any, stays)."""
        if self.fs.exists(self.tmp):
            self.fs.rm(self.tmp, recursive=True)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.committed:
            self.abort()


def clean_stale_temporaries(root: str | os.PathLike[str]) -> list[str]:
    """Remove ``.<run>.tmp-*`` and ``.<run>.old-*`` directories left by killed writers."""
    fs, base = open_root(root)
    if not fs.exists(base):
        return []
    removed = []
    for entry in fs.ls(base, detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        if name.startswith(".") and (TMP_MARK in name or OLD_MARK in name):
            fs.rm(entry, recursive=True)
            removed.append(name)
    return removed
