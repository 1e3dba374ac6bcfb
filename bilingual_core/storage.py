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

import contextlib
import os
import posixpath
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

try:
    import fcntl
except ImportError:  # not on POSIX: temporaries are judged by age alone
    fcntl = None  # type: ignore[assignment]

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


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]*)@")


def redact_url(text: object) -> str:
    """``text`` with the user and password of every URL in it left out
    (``s3://key:secret@bucket`` becomes ``s3://***@bucket``): credentials in
    URLs are never stored in job files or shown."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", str(text))


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


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``);
    False when this system or filesystem cannot, and nothing was changed."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(errno, os.strerror(errno), b)


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
        clean_stale_temporaries(self.root, run_id, fs=self.fs)
        self.tmp = join(self.root, f".{run_id}{TMP_MARK}{uuid.uuid4().hex[:12]}")
        self.fs.makedirs(self.tmp, exist_ok=True)
        self.lock = TemporaryLock(self.fs, self.tmp)
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
            raise ValueError(
                f"manifest run_id {manifest.run_id!r} != writer run_id {self.run_id!r}"
            )
        manifest.status = "complete"
        write_text(self.fs, self.path(MANIFEST), manifest.to_json())
        if is_local(self.fs):
            self._commit_local()
        else:
            self._commit_remote()
        self.committed = True
        self.lock.release()
        return self.final

    def _commit_local(self) -> None:
        """Move the temporary into place. Replacing a run swaps the two directories
        in one step where the kernel can (``renameat2(RENAME_EXCHANGE)``), so an
        interruption leaves the old or the new run complete, never neither.
        Elsewhere it is two renames; a writer killed between them leaves the old
        run as ``.<run>.old-*``, which :func:`clean_stale_temporaries` moves back."""
        if not os.path.exists(self.final):
            os.rename(self.tmp, self.final)
            return
        if exchange(self.tmp, self.final):
            shutil.rmtree(self.tmp, ignore_errors=True)  # now the old run
            return
        old = join(self.root, f".{self.run_id}{OLD_MARK}{uuid.uuid4().hex[:12]}")
        os.rename(self.final, old)
        try:
            os.rename(self.tmp, self.final)
        except BaseException:
            os.rename(old, self.final)
            raise
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
        self.lock.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.committed:
            self.abort()


STALE_AFTER_S = 3600.0
"""A temporary untouched this long, and not locked, was left by a killed writer."""
LOCK_SUFFIX = ".lock"


class TemporaryLock:
    """An exclusive ``flock`` on ``<temporary>.lock`` (a sibling file) while a writer uses it.

    ``clean_stale_temporaries`` never removes a temporary whose lock is held,
    however old it looks. Only on a local disk; elsewhere the age alone decides."""

    def __init__(self, fs: fsspec.AbstractFileSystem, temporary: str) -> None:
        self.path = temporary + LOCK_SUFFIX
        self.handle = None
        if is_local(fs) and fcntl is not None:
            self.handle = open(self.path, "w")  # noqa: SIM115 - held until release()
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.handle.close()  # closing drops the lock
        self.handle = None


def _is_locked(path: str) -> bool:
    """A writer holds ``path``'s lock file (False when there is none, or off a local disk)."""
    if fcntl is None or not os.path.exists(path + LOCK_SUFFIX):
        return False
    try:
        with open(path + LOCK_SUFFIX, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return True  # cannot tell: keep it
    return False


def _newest_mtime(fs: fsspec.AbstractFileSystem, path: str) -> float | None:
    """The latest modification time of ``path`` and its direct entries (None: unknown)."""
    times = []
    try:
        entries = [fs.info(path)]
        if entries[0].get("type") == "directory":
            entries += fs.ls(path, detail=True)
    except (OSError, ValueError):
        return None
    for entry in entries:
        stamp = (
            entry.get("mtime")
            or entry.get("LastModified")
            or entry.get("last_modified")
            or entry.get("created")
        )
        if hasattr(stamp, "timestamp"):
            stamp = stamp.timestamp()
        if isinstance(stamp, int | float):
            times.append(float(stamp))
    return max(times) if times else None


def _writer_at_work(fs: fsspec.AbstractFileSystem, base: str, run_id: str) -> bool:
    """Some writer holds the lock of one of ``run_id``'s temporaries."""
    prefix = f".{run_id}{TMP_MARK}"
    for entry in fs.ls(base, detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        if (
            name.startswith(prefix)
            and not name.endswith(LOCK_SUFFIX)
            and _is_locked(entry.rstrip("/"))
        ):
            return True
    return False


def clean_stale_temporaries(
    root: str | os.PathLike[str],
    run_id: str | None = None,
    max_age_s: float = STALE_AFTER_S,
    *,
    fs: fsspec.AbstractFileSystem | None = None,
) -> list[str]:
    """Remove ``.<run>.tmp-*`` and ``.<run>.old-*`` entries left by killed writers; their names.

    A ``.<run>.old-*`` whose run is missing is the only copy of that run (its
    writer was killed between two renames): it is moved back into place, never
    removed, as soon as no writer of that run is at work.

    Only those untouched for ``max_age_s`` (newest modification time of the
    directory and its entries) and whose lock (:class:`TemporaryLock`) no
    writer holds: a writer at work on another shard or run is never disturbed.
    ``run_id``: only that run's temporaries. Entries whose age is unknown stay.
    ``fs``: ``root`` is a path on this filesystem (else a path or URL).
    """
    if fs is None:
        fs, base = open_root(root)
    else:
        base = str(root).rstrip("/") or "/"
    if not fs.exists(base):
        return []
    prefix = f".{run_id}" if run_id is not None else "."
    now = time.time()
    removed = []
    for entry in fs.ls(base, detail=False):
        path = entry.rstrip("/")
        name = posixpath.basename(path)
        if not name.startswith(prefix) or not (TMP_MARK in name or OLD_MARK in name):
            continue
        if run_id is not None and not name.startswith(
            (f".{run_id}{TMP_MARK}", f".{run_id}{OLD_MARK}")
        ):
            continue  # ".demo2.tmp-" is not a temporary of run "demo"
        if name.endswith(LOCK_SUFFIX):
            if fs.exists(path.removesuffix(LOCK_SUFFIX)):
                continue  # goes with its temporary
            target = path.removesuffix(LOCK_SUFFIX)
        else:
            target = path
        if _is_locked(target):
            continue
        if OLD_MARK in name and not name.endswith(LOCK_SUFFIX):
            # A writer killed between its two renames: this may be the only copy of the run.
            run = name[1:].split(OLD_MARK, 1)[0]
            final = join(base, run)
            if not fs.exists(final):
                if _writer_at_work(fs, base, run):
                    continue
                fs.mv(path, final, recursive=True)
                removed.append(name)
                continue
        age = _newest_mtime(fs, path)
        if age is None or now - age < max_age_s:
            continue
        fs.rm(path, recursive=True)
        if not name.endswith(LOCK_SUFFIX) and fs.exists(path + LOCK_SUFFIX):
            fs.rm(path + LOCK_SUFFIX)
        removed.append(name)
    return removed
