"""The schema of every file in ``_jobs/``, checked with typed validation (pydantic).

Job files are written by the app, the worker and ``python -m precompute jobs``,
but anyone with write access to the results root can write them too, and a
store without atomic writes can leave them half written. So each file is
parsed into one of the models below (``strict``: a number is not a time, a
string is not a progress record), and a file that does not fit is a
:class:`JobFileError` whose message names the field and the problem, never
the value (the message is shown on ``/recompute``). ``contract.queue`` turns such
a job into a failed one with that reason, so one bad file never stops the
queue or a page.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
M = TypeVar("M", bound=BaseModel)


class JobFileError(ValueError):
    """A job file that does not match its schema; the message says which field is wrong."""


def _iso_time(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None  # the message never quotes the value
    return value


Time = Annotated[str, AfterValidator(_iso_time)]
"""An ISO 8601 time as a string."""
Text = Annotated[str, Field(max_length=2000)]
Number = float | int


class _File(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class StatusProgress(_File):
    """The schema of ``status.json``'s ``progress``: the latest progress records of the
    run command, condensed by the worker (``precompute.common.progress_log.ProgressFile``
    follows the command's progress file and makes this; it is the reader of a file,
    this the shape of one field, hence two names)."""

    stage: Text | None = None
    unit: Text | None = None
    done: Number | None = None
    total: Number | None = None
    fraction: Number | None = None
    rate: Number | None = None
    eta_s: Number | None = None
    elapsed_s: Number | None = None
    tokens_done: int | None = None
    tokens_total: int | None = None
    tokens_per_s: Number | None = None
    tokens_eta_s: Number | None = None
    updated_at: Time | None = None


def _progress(value: Any) -> dict[str, Any]:
    """``progress`` checked against :class:`StatusProgress`, kept as a plain dict."""
    try:
        return StatusProgress.model_validate(value).model_dump(exclude_none=True)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: {err['msg']}" if where else err["msg"]) from None


class JobStatus(BaseModel):
    """``status.json``: what the worker running a job says about it (the one model the
    worker writes, the queue reads and the page shows; mutable: the worker updates it)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    state: State = "queued"
    worker: Text | None = None
    """Id of the worker that claimed the job."""
    host: Text | None = None
    claimed_at: Time | None = None
    started_at: Time | None = None
    finished_at: Time | None = None
    heartbeat_at: Time | None = None
    """Last time the worker said it was alive (every few seconds while running)."""
    heartbeat_seconds: Number | None = None
    """How often that worker renews ``heartbeat_at`` (readers judge silence by it)."""
    progress: Annotated[dict[str, Any], BeforeValidator(_progress)] = {}
    """The run command's progress (:class:`StatusProgress`): stage, done, total, unit,
    tokens_done, tokens_per_s, tokens_eta_s (see ``precompute.common.progress_log``)."""
    error: Annotated[str, Field(max_length=20_000)] | None = None
    """Why the job failed or was cancelled, in one or a few lines."""
    returncode: int | None = None
    run_location: Text | None = None
    """Where the finished run is (path or URL)."""
    published: list[Text] = []
    """Results roots the finished run was published to."""

    def __init__(self, state: State = "queued", /, **data: Any) -> None:
        super().__init__(state=data.pop("state", state), **data)

    @classmethod
    def from_dict(cls, data: Any) -> JobStatus:
        """A status from parsed JSON, checked field by field (JobFileError when malformed)."""
        return parse(cls, data, "status.json")

    @classmethod
    def malformed(cls, reason: str) -> JobStatus:
        """The status of a job whose files cannot be read: failed, saying why."""
        from datetime import UTC

        now = datetime.now(UTC).isoformat(timespec="seconds")
        return cls("failed", error=f"{reason}; the job was not run", finished_at=now)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class ClaimFile(_File):
    """``claim.json``: created exclusively by the worker that runs the job."""

    worker: Text
    host: Text
    token: Text
    claimed_at: Time


class CancelFile(_File):
    """``cancel.json``: a maintainer asked to cancel."""

    by: Annotated[str, Field(max_length=200)] = "a maintainer"
    at: Time | None = None


class WorkerFile(_File):
    """``_workers/<worker>.json``: a worker's heartbeat."""

    worker: Text
    seen_at: Time
    host: Text | None = None
    pid: int | None = None
    gpus: list[Text] = []
    job: Text | None = None
    push_to: list[Text] = []
    stale_after_seconds: Number | None = None


MAX_JOB_FILE_BYTES = 256 * 1024
"""Largest ``request.json``, ``status.json``, ``claim.json``, ``cancel.json`` or heartbeat
read (the ones the app and worker write are a few kilobytes)."""


def read_local(path: str, name: str, limit: int, *, tail: bool = False) -> bytes:
    """The bytes of a job file on a local disk, read safely (at most ``limit``: the
    last ``limit`` when ``tail``, else a larger file is a JobFileError).

    Anyone who can write to the results root can plant a link or a special
    file there, so the file is opened without following a link (``O_NOFOLLOW``)
    and without blocking (a FIFO would hang the reader), and only a regular file
    is read. FileNotFoundError when there is none."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError:  # ELOOP: a symbolic link; anything else unreadable is no better
        if os.path.islink(path):
            raise JobFileError(f"{name} is a symbolic link, not a file; it is not read") from None
        raise JobFileError(f"{name} cannot be opened") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise JobFileError(f"{name} is not a regular file; it is not read")
        if info.st_size > limit:
            if not tail:
                raise JobFileError(f"{name} is larger than {limit:,} bytes; it is not read")
            handle.seek(info.st_size - limit)
        return handle.read(limit)


def parse(model: type[M], data: Any, file: str) -> M:
    """``data`` (parsed JSON) as ``model``, or JobFileError naming the file and fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(the file)'}: "
            + err["msg"].removeprefix("Value error, ")
            for err in exc.errors(include_input=False, include_url=False)[:3]
        ]
        raise JobFileError(f"{file} is malformed ({'; '.join(problems)})") from None
