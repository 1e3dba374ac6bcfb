"""Open run directories and list the runs under a results root."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import RunFormatError
from .manifest import MAX_MANIFEST_BYTES, RUN_ID_PATTERN, Manifest
from .schema import MANIFEST
from .storage import RunWriter, is_local, join, open_root


@dataclass
class Run:
    """A run directory on some filesystem, with its parsed manifest."""

    fs: fsspec.AbstractFileSystem
    path: str
    manifest: Manifest

    @classmethod
    def open(cls, location: str | os.PathLike[str], run_id: str | None = None) -> Run:
        """Open ``<location>/<run_id>`` (or ``location`` itself when run_id is None).

        Raises RunFormatError when the directory or its manifest is missing or
        malformed. A run whose status is not ``complete`` opens (so tools can
        inspect it) but ``is_complete`` is False.
        """
        fs, base = open_root(location)
        path = join(base, run_id) if run_id else base
        return cls.open_fs(fs, path)

    @classmethod
    def open_fs(cls, fs: fsspec.AbstractFileSystem, path: str) -> Run:
        if not fs.isdir(path):
            raise RunFormatError(MANIFEST, None, f"no run directory at {path}")
        manifest_path = join(path, MANIFEST)
        if not fs.exists(manifest_path):
            raise RunFormatError(
                MANIFEST, None, f"missing in {path} (not a run directory, or still being written)"
            )
        try:
            with fs.open(manifest_path, "rb") as handle:
                data = handle.read(MAX_MANIFEST_BYTES + 1)  # never more, whatever it is
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RunFormatError(MANIFEST, None, "not UTF-8 text") from None
        except OSError as exc:
            raise RunFormatError(MANIFEST, None, f"cannot be read ({exc})") from None
        return cls(fs, path, Manifest.from_json(text))

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def is_complete(self) -> bool:
        return self.manifest.status == "complete"

    @property
    def languages(self) -> list[str]:
        return list(self.manifest.languages)

    def file(self, name: str) -> str:
        return join(self.path, name)

    def has(self, name: str) -> bool:
        return self.fs.exists(self.file(name))

    def parquet(self, name: str) -> pq.ParquetFile:
        """An open ParquetFile for streaming reads (row groups, batches)."""
        if not self.has(name):
            raise RunFormatError(name, None, f"missing from run {self.run_id!r} ({self.path})")
        # Local files are memory-mapped by pyarrow itself (no Python-level reads).
        source = self.file(name) if is_local(self.fs) else None
        try:
            pf = pq.ParquetFile(
                source or self.fs.open(self.file(name), "rb"), memory_map=source is not None
            )
            if "lang" in pf.schema_arrow.names:
                pf = pq.ParquetFile(
                    source or self.fs.open(self.file(name), "rb"),
                    read_dictionary=["lang"],
                    memory_map=source is not None,
                )
            return pf
        except (pa.ArrowInvalid, OSError) as exc:
            raise RunFormatError(name, None, f"not a readable Parquet file ({exc})") from exc

    def read(self, name: str, columns: list[str] | None = None, **options: Any) -> pa.Table:
        """Read a whole table (or some columns); ``options`` go to ``pq.read_table``."""
        if not self.has(name):
            raise RunFormatError(name, None, f"missing from run {self.run_id!r} ({self.path})")
        try:
            return pq.read_table(self.file(name), filesystem=self.fs, columns=columns, **options)
        except (pa.ArrowInvalid, OSError) as exc:
            raise RunFormatError(name, None, f"could not be read ({exc})") from exc
        except KeyError as exc:  # pragma: no cover - pyarrow raises ArrowInvalid for columns
            raise RunFormatError(name, str(exc), "column missing") from exc

    def read_pandas(self, name: str, columns: list[str] | None = None, **options: Any):
        return self.read(name, columns, **options).to_pandas()


@dataclass(frozen=True)
class RunListing:
    """One entry of a results root: a usable run, or a directory with its problem."""

    run_id: str
    path: str
    manifest: Manifest | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def list_runs(location: str | os.PathLike[str]) -> list[RunListing]:
    """Every run directory under a results root, complete ones first.

    Hidden directories (temporaries of writers in progress) are skipped. A
    directory whose manifest is missing, malformed or not complete, or whose
    name is not a run id (``check_run_id``: no glob characters, no spaces), is
    listed with its problem so that a UI can say what is wrong instead of
    hiding it; its files are not read.
    """
    fs, base = open_root(location)
    fs.invalidate_cache(base)  # object stores cache listings; a new run must show up
    if not fs.exists(base):
        return []
    listings = []
    for entry in fs.ls(base, detail=True):
        if entry.get("type") != "directory":
            continue
        path = entry["name"].rstrip("/")
        name = posixpath.basename(path)
        if name.startswith((".", "_")):
            continue
        if not RUN_ID_PATTERN.fullmatch(name):
            listings.append(
                RunListing(
                    name,
                    path,
                    None,
                    "the directory name is not a valid run id "
                    "(letters, digits, '.', '_' or '-'); rename it to use it",
                )
            )
            continue
        try:
            run = Run.open_fs(fs, path)
        except (RunFormatError, ValueError, TypeError, RecursionError) as exc:
            # One unusable run is listed with its reason; the others are still served.
            listings.append(RunListing(name, path, None, str(exc)))
            continue
        problem = None if run.is_complete else f"status is {run.manifest.status!r}, not complete"
        listings.append(RunListing(name, path, run.manifest, problem))
    listings.sort(key=lambda r: (not r.ok, r.run_id))
    return listings


@contextmanager
def rewrite_run(
    fs: fsspec.AbstractFileSystem, root: str, run_id: str, replaced: Collection[str]
) -> Iterator[tuple[Run, RunWriter]]:
    """The run ``root/run_id`` and a writer that replaces it atomically: every file
    but the manifest and the ``replaced`` ones is carried over (hard links on a
    local disk); the caller writes those and commits the manifest. On any error
    the run is left exactly as it was."""
    run = Run.open_fs(fs, join(root, run_id))
    keep = [
        name
        for name in (p.rsplit("/", 1)[-1] for p in fs.ls(run.path, detail=False))
        if name not in replaced and name != MANIFEST
    ]
    with RunWriter(
        root, run_id, overwrite=True, keep_from=run.path, keep_files=keep, fs=fs
    ) as writer:
        yield run, writer
