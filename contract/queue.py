"""The recompute job queue, kept in the results root under ``_jobs/``.

The app and the worker may run on different machines: all they share is the
results root (a local directory or an fsspec URL such as
``hf://datasets/<user>/<repo>`` or ``s3://bucket/prefix``), so the queue is
plain files, written whole (no appends, no renames needed on object stores)::

    <root>/_jobs/<job id>/request.json   the validated request (written once, by the app)
    <root>/_jobs/<job id>/claim.json     created exclusively by the worker that runs it
    <root>/_jobs/<job id>/status.json    state, heartbeat, progress, error (written by that worker)
    <root>/_jobs/<job id>/log.txt        the run command's output (progress bars collapsed)
    <root>/_jobs/<job id>/cancel.json    a maintainer asked to cancel
    <root>/_jobs/_workers/<worker>.json  each worker's heartbeat: host, GPU, current job

``bilingual_core.list_runs`` skips names starting with ``_``, so the queue is
never mistaken for a run. A job's state is ``queued`` (request only),
``running`` (claimed), then ``succeeded``, ``failed`` or ``cancelled``; a
queued job with a cancel file is ``cancelled`` without any worker.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import fsspec

from bilingual_core.storage import is_local, join, open_root
from contract.files import (
    MAX_JOB_FILE_BYTES,
    CancelFile,
    ClaimFile,
    JobFileError,
    JobStatus,
    State,
    WorkerFile,
    parse,
    read_local,
)
from contract.request import JOB_ID_PATTERN, JobRequest, validate_request

JOBS_DIR = "_jobs"
WORKERS_DIR = "_workers"
REQUEST = "request.json"
CLAIM = "claim.json"
STATUS = "status.json"
LOG = "log.txt"
CANCEL = "cancel.json"

EXCLUSIVE_CREATE = frozenset({"memory", "s3", "s3a"})
"""fsspec protocols whose ``open(path, "xb")`` refuses an existing file (s3fs: a
conditional write, atomic on S3)."""

STATES: tuple[State, ...] = get_args(State)
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def _protocols(fs: fsspec.AbstractFileSystem) -> set[str]:
    return set(fs.protocol) if isinstance(fs.protocol, tuple | list) else {fs.protocol}


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def unquoted(message: object) -> str:
    """A validation message with every quoted value left out: a job file's reason
    names the field and the problem, never what the file holds."""
    return _QUOTED.sub("(value not shown)", str(message))


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def age_seconds(stamp: str | None, now: float | None = None) -> float | None:
    """Seconds since an ISO 8601 time (None when there is none)."""
    if not stamp or not isinstance(stamp, str):
        return None
    try:
        then = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
    return (time.time() if now is None else now) - then


@dataclass
class Job:
    """A request with what is known about it now."""

    request: JobRequest
    status: JobStatus
    cancel: dict[str, Any] | None = None
    """Contents of cancel.json when a cancel was requested (``by``, ``at``)."""
    problem: str | None = None
    """Why the job's files are malformed (the job is then ``failed``); None when they are fine."""

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def state(self) -> State:
        return self.status.state

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


class JobQueue:
    """The ``_jobs`` folder of one results root (any fsspec filesystem)."""

    def __init__(
        self, root: str | os.PathLike[str], *, fs: fsspec.AbstractFileSystem | None = None
    ) -> None:
        if fs is None:
            self.fs, self.root = open_root(root)
        else:
            self.fs, self.root = fs, str(root).rstrip("/") or "/"
        self.url = str(root)
        self.dir = join(self.root, JOBS_DIR)

    # ---------------------------------------------------------- paths ---

    def job_dir(self, job_id: str) -> str:
        if not JOB_ID_PATTERN.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return join(self.dir, job_id)

    def path(self, job_id: str, name: str) -> str:
        return join(self.job_dir(job_id), name)

    # ------------------------------------------------------------ I/O ---

    def refresh(self, path: str | None = None) -> None:
        """Forget cached listings and file details (``hf://`` and object stores cache
        ``ls``/``info``; another machine may have changed the queue since)."""
        if not is_local(self.fs):
            self.fs.invalidate_cache(path or self.dir)

    def _guard(self, path: str) -> None:
        """On a local disk: refuse ``path`` unless its folder is the real folder below
        the results root (a job folder, or ``_jobs``, that is a link could point
        anywhere; the worker would write its claim and status there)."""
        if not is_local(self.fs):
            return
        folder = os.path.dirname(path)
        expected = os.path.join(os.path.realpath(self.root), os.path.relpath(folder, self.root))
        if os.path.realpath(folder) != os.path.normpath(expected):
            raise JobFileError(
                "the job folder is a link or lies outside the results root; it is not used"
            )

    def _read_bytes(self, path: str, limit: int = MAX_JOB_FILE_BYTES, tail: bool = False) -> bytes:
        """A job file's bytes: never through a link or from a special file, never more
        than ``limit`` (JobFileError otherwise; FileNotFoundError when absent)."""
        name = posixpath.basename(path)
        if is_local(self.fs):
            self._guard(path)
            return read_local(path, name, limit, tail=tail)
        self.refresh(path)
        info = self.fs.info(path)
        if info.get("type") not in (None, "file"):
            raise JobFileError(f"{name} is not a regular file; it is not read")
        size = int(info.get("size") or 0)
        if size > limit and not tail:
            raise JobFileError(f"{name} is larger than {limit:,} bytes; it is not read")
        with self.fs.open(path, "rb") as handle:
            if size > limit:
                handle.seek(size - limit)
            return handle.read(limit)

    def _read_json(self, path: str) -> dict[str, Any] | None:
        """A job file's JSON object; None when absent or half written, JobFileError when
        it is a link, a special file or too large."""
        try:
            raw = self._read_bytes(path)
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            # A half-written file (only possible on stores without atomic writes): treat as absent.
            return None
        return data if isinstance(data, dict) else None

    def _write_bytes(self, path: str, payload: bytes) -> None:
        """Replace ``path`` whole: rename on a local disk, one PUT on object stores."""
        if is_local(self.fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._guard(path)
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "xb") as handle:
                handle.write(payload)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, payload)

    def _write_json(self, path: str, data: dict[str, Any]) -> None:
        self._write_bytes(path, (json.dumps(data, indent=1, default=str) + "\n").encode("utf-8"))

    def _create_exclusive(self, path: str, payload: bytes) -> bool:
        """Create ``path`` only if it does not exist (O_EXCL locally). False if it existed."""
        if is_local(self.fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._guard(path)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            return True
        if _protocols(self.fs) & EXCLUSIVE_CREATE:
            try:
                with self.fs.open(path, "xb") as handle:
                    handle.write(payload)
                return True
            except FileExistsError:
                return False
        # Stores without an exclusive-create mode (hf://): check, then write;
        # ``claim`` reads the claim back after a settle delay.
        self.refresh(path)
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, payload)
        return True

    # --------------------------------------------------------- requests ---

    def submit(self, request: JobRequest) -> Job:
        """Queue a validated request (ValueError if its id is taken)."""
        payload = (json.dumps(request.to_json_dict(), indent=1) + "\n").encode("utf-8")
        if not self._create_exclusive(self.path(request.id, REQUEST), payload):
            raise ValueError(f"job {request.id} already exists")
        return Job(request, JobStatus())

    def job_ids(self) -> list[str]:
        """Every job id, oldest first."""
        self.refresh()
        if not self.fs.exists(self.dir):
            return []
        names = (posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.dir, detail=False))
        found = [n for n in names if JOB_ID_PATTERN.fullmatch(n)]
        if is_local(self.fs):  # a link is no job folder (it could point outside the root)
            found = [n for n in found if not os.path.islink(join(self.dir, n))]
        return sorted(found)

    def get(self, job_id: str) -> Job | None:
        """The job with its current state; None when it has no request (yet).

        Every file is checked against its schema (``contract.files``). A job with a
        malformed file, or whose request names another job id than its folder,
        comes back ``failed`` with the reason in ``problem`` and
        ``status.error`` (the worker records that and never runs it).
        """
        try:
            data = self._read_json(self.path(job_id, REQUEST))
        except JobFileError as exc:
            return self._broken(job_id, str(exc))
        if data is None:
            return None
        try:
            request = validate_request(data)
        except ValueError as exc:
            return self._broken(job_id, f"{REQUEST} is invalid ({unquoted(exc)})")
        if request.id != job_id:
            return self._broken(job_id, f"{REQUEST} names another job id than its folder {job_id}")
        try:
            return Job(request, *self._status(job_id))
        except JobFileError as exc:
            return self._broken(job_id, str(exc), request)

    def _status(self, job_id: str) -> tuple[JobStatus, dict[str, Any] | None]:
        raw = self._read_json(self.path(job_id, STATUS))
        cancel_raw = self._read_json(self.path(job_id, CANCEL))
        cancel = (
            parse(CancelFile, cancel_raw, CANCEL).model_dump() if cancel_raw is not None else None
        )
        if raw is not None:
            return JobStatus.from_dict(raw), cancel
        claim_raw = self._read_json(self.path(job_id, CLAIM))
        if claim_raw is not None:
            claim = parse(ClaimFile, claim_raw, CLAIM)
            status = JobStatus(
                "running",
                worker=claim.worker,
                host=claim.host,
                claimed_at=claim.claimed_at,
                heartbeat_at=claim.claimed_at,
            )
        elif cancel is not None:
            status = JobStatus(
                "cancelled",
                finished_at=cancel["at"],
                error=f"cancelled by {cancel['by']} before it started",
            )
        else:
            status = JobStatus()
        return status, cancel

    def _broken(self, job_id: str, reason: str, request: JobRequest | None = None) -> Job:
        """A failed stand-in for a job whose files are malformed (shown, never run)."""
        if request is None or request.id != job_id:
            request = JobRequest(
                id=job_id,
                created_at="",
                requested_by="unknown",
                preset="(unreadable)",
                run_id="(unreadable)",
            )
        try:  # the worker already recorded the failure: keep its time
            recorded = self._read_json(self.path(job_id, STATUS))
            status = JobStatus.from_dict(recorded) if recorded is not None else None
        except JobFileError:
            status = None
        if (
            status is None
            or status.state != "failed"
            or status.error != f"{reason}; the job was not run"
        ):
            status = JobStatus.malformed(reason)
        return Job(request, status, None, problem=reason)

    def jobs(self, limit: int | None = None) -> list[Job]:
        """Jobs newest first (at most ``limit``)."""
        ids = self.job_ids()[::-1]
        out = []
        for job_id in ids[:limit] if limit else ids:
            job = self.get(job_id)
            if job is not None:
                out.append(job)
        return out

    def queued(self) -> list[Job]:
        """Jobs waiting for a worker, oldest first."""
        out = []
        for job_id in self.job_ids():
            if self.fs.exists(self.path(job_id, CLAIM)):
                continue
            job = self.get(job_id)
            if job is not None and job.state == "queued":
                out.append(job)
        return out

    def cancel(self, job_id: str, by: str) -> Job:
        """Ask for a job to be cancelled (a queued one is cancelled at once)."""
        job = self.get(job_id)
        if job is None:
            raise ValueError(f"no job {job_id}")
        if job.finished:
            raise ValueError(f"job {job_id} has already {job.state}")
        self._write_json(self.path(job_id, CANCEL), {"by": by, "at": utc_now()})
        return self.get(job_id) or job

    def cancel_requested(self, job_id: str) -> dict[str, Any] | None:
        """``{"by", "at"}`` when a cancel was requested (a malformed cancel.json still counts)."""
        try:
            raw = self._read_json(self.path(job_id, CANCEL))
        except JobFileError:
            return CancelFile().model_dump()
        if raw is None:
            return None
        try:
            return parse(CancelFile, raw, CANCEL).model_dump()
        except JobFileError:
            return CancelFile().model_dump()

    # ------------------------------------------------------ the worker ---

    def claim(self, job_id: str, worker: str, host: str, settle_seconds: float = 0.0) -> bool:
        """Claim a job for ``worker``; exactly one of several competing workers gets True.

        The claim file is created exclusively (O_EXCL on a local disk, mode
        ``xb`` on fsspec stores that support it). It is then read back after
        ``settle_seconds``: on a store whose exclusive create is only
        check-then-write, a later writer's claim replaces ours and we back off.
        """
        token = uuid.uuid4().hex
        record = {"worker": worker, "host": host, "token": token, "claimed_at": utc_now()}
        if not self._create_exclusive(self.path(job_id, CLAIM), json.dumps(record).encode("utf-8")):
            return False
        if settle_seconds > 0:
            time.sleep(settle_seconds)
        try:
            back = self._read_json(self.path(job_id, CLAIM))
        except JobFileError:
            return False
        return back is not None and back.get("token") == token  # a foreign token: not ours

    def read_status(self, job_id: str) -> JobStatus | None:
        """The job's status.json (a failed status saying why when it is malformed)."""
        try:
            raw = self._read_json(self.path(job_id, STATUS))
            if raw is None:
                return None
            return JobStatus.from_dict(raw)
        except JobFileError as exc:
            return JobStatus.malformed(str(exc))

    def write_status(self, job_id: str, status: JobStatus) -> None:
        self._write_json(self.path(job_id, STATUS), status.to_dict())

    def record_problem(self, job: Job) -> bool:
        """Write a malformed job's failed status (once); True when it was written now."""
        try:
            raw = self._read_json(self.path(job.id, STATUS))
            current = JobStatus.from_dict(raw) if raw is not None else None
        except JobFileError:
            current = None
        if current is not None and current.state == "failed" and current.error == job.status.error:
            return False
        self.write_status(job.id, job.status)
        return True

    def write_log(self, job_id: str, text: str) -> None:
        self._write_bytes(self.path(job_id, LOG), text.encode("utf-8"))

    def log_tail(self, job_id: str, max_lines: int = 40, max_bytes: int = 64_000) -> str:
        """The last lines of a job's log ('' when it has none yet; a sentence saying why
        when it is a link or a special file, which is never read)."""
        try:
            data = self._read_bytes(self.path(job_id, LOG), max_bytes, tail=True)
        except FileNotFoundError:
            return ""
        except JobFileError as exc:
            return f"({exc})"
        lines = data.decode("utf-8", errors="replace").splitlines()
        return "\n".join(lines[-max_lines:])

    def worker_heartbeat(self, worker: str, info: dict[str, Any]) -> None:
        self._write_json(
            join(self.dir, WORKERS_DIR, f"{worker}.json"),
            {**info, "worker": worker, "seen_at": utc_now()},
        )

    def workers(self) -> list[dict[str, Any]]:
        """Every worker that ever wrote a heartbeat here, most recently seen first."""
        folder = join(self.dir, WORKERS_DIR)
        self.fs.invalidate_cache(folder)
        if not self.fs.exists(folder):
            return []
        found = []
        for path in self.fs.ls(folder, detail=False):
            if path.endswith(".json"):
                try:
                    data = self._read_json(path)
                    found.append(parse(WorkerFile, data, "worker heartbeat").model_dump())
                except JobFileError:
                    continue  # a malformed heartbeat is no worker
        return sorted(found, key=lambda w: w["seen_at"], reverse=True)
