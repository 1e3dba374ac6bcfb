"""The schema of every file in ``_jobs/``, checked with typed validation (pydantic).

Job files are written by the app, the worker and ``python -m precompute jobs``,
but anyone with write access to the results root can write them too, and a
store without atomic writes can leave them half written. So each file is
parsed into one of the models below (``strict``: a number is not a time, a
string is not a progress record), and a file that does not fit is a
:class:`JobFileError` whose message names the field and the problem, never
the value (the message is shown on ``/recompute``). ``jobs.queue`` turns such
a job into a failed one with that reason, so one bad file never stops the
queue or a page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

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


class ProgressFile(_File):
    """``status.json``'s ``progress``: the run command's progress bar, parsed."""

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


class StatusFile(_File):
    """``status.json``: what the worker running a job says about it."""

    state: State = "queued"
    worker: Text | None = None
    host: Text | None = None
    claimed_at: Time | None = None
    started_at: Time | None = None
    finished_at: Time | None = None
    heartbeat_at: Time | None = None
    heartbeat_seconds: Number | None = None
    progress: ProgressFile = ProgressFile()
    error: Annotated[str, Field(max_length=20_000)] | None = None
    returncode: int | None = None
    run_location: Text | None = None
    published: list[Text] = []


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


def parse(model: type[M], data: Any, file: str) -> M:
    """``data`` (parsed JSON) as ``model``, or JobFileError naming the file and fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(the file)'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)[:3]
        ]
        raise JobFileError(f"{file} is malformed ({'; '.join(problems)})") from None
