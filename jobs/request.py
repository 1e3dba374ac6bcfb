"""A recompute job request: what a maintainer may ask the GPU worker to run.

A request is a small JSON document written by the app's ``/recompute`` page
(or ``python -m precompute jobs submit``) and read by the worker. Every field
is whitelisted with a type and a range or pattern, and the worker turns the
request into the argument list of ``python -m precompute run`` with
``--flag=value`` items only (never a shell, never a value that could be read
as an option). The page and the worker validate with the same function,
:func:`validate_request`.

Paths (``model_path``, ``sae_path``, ``corpus_file``) are paths on the worker's
host. Building the request also builds the run config with
``presets.with_overrides`` (no I/O), so combinations the run command would
refuse (the tiny model with a pretrained SAE, ...) are refused at submission.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from bilingual_core.manifest import LANG_PATTERN, check_run_id
from jobs.config import DEVICES, DTYPES
from jobs.presets import PRESETS, preset, with_overrides

JOB_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-\d{3}-[0-9a-f]{4}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A model name, SAE release, dataset config: no slashes."""
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
"""A Hugging Face id: ``name`` or ``owner/name``."""
_SAE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_HOOK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,127}$")
_SPLIT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:%\[\]+-]{0,63}$")
_PATH = re.compile(r"^[A-Za-z0-9_./~][A-Za-z0-9_./~+@=,-]{0,1023}$")
_PERSON = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
MAX_LANGUAGES = 8
MAX_SAMPLE_SIZE = 10_000_000


class RequestError(ValueError):
    """A job request that fails validation; the message names the field."""


def _text(pattern: re.Pattern[str], what: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise RequestError(f"{name}: {value!r} is not a valid {what}")
        return value

    return check


def _path(name: str, value: Any) -> str:
    value = _text(_PATH, "path on the worker host (letters, digits, . _ / ~ + @ = , -)")(
        name, value
    )
    if ".." in value.split("/"):
        raise RequestError(f"{name}: '..' is not allowed in paths")
    return value


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"\d{1,12}", value.strip()):
                value = int(value)
            else:
                raise RequestError(f"{name}: {value!r} is not an integer")
        if not lo <= value <= hi:
            raise RequestError(f"{name}: {value} is outside {lo}..{hi}")
        return value

    return check


def _choice(options: tuple[str, ...] | list[str]) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise RequestError(f"{name}: {value!r} is not one of {list(options)}")
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"{name}: {value!r} is not true or false")
    return value


def _sample_size(name: str, value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    return _int(1, MAX_SAMPLE_SIZE)(name, value)


def _languages(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [x.strip() for x in value.split(",") if x.strip()]
    if not isinstance(value, list | tuple) or not 2 <= len(value) <= MAX_LANGUAGES:
        raise RequestError(f"{name}: give 2 to {MAX_LANGUAGES} language codes, got {value!r}")
    for code in value:
        if not isinstance(code, str) or not LANG_PATTERN.match(code) or code == "global":
            raise RequestError(f"{name}: {code!r} is not a language code such as 'en' or 'es'")
    if len(set(value)) != len(value):
        raise RequestError(f"{name}: languages repeat in {value!r}")
    return list(value)


def _run_id(name: str, value: Any) -> str:
    try:
        return check_run_id(value)
    except ValueError as exc:
        raise RequestError(f"{name}: {exc}") from None


# Override fields: name -> (validator, flag of `python -m precompute run`).
OVERRIDES: dict[str, tuple[Callable[[str, Any], Any], str]] = {
    "model": (_text(_REPO_ID, "model name"), "--model"),
    "model_path": (_path, "--model-path"),
    "sae_release": (_text(_NAME, "SAE-Lens release"), "--sae-release"),
    "sae_id": (_text(_SAE_ID, "SAE id"), "--sae-id"),
    "sae_path": (_path, "--sae-path"),
    "hook": (_text(_HOOK, "hook name"), "--hook"),
    "neuronpedia_id": (_text(_SAE_ID, "Neuronpedia model/SAE id"), "--neuronpedia-id"),
    "dataset": (_text(_REPO_ID, "Hugging Face dataset id"), "--dataset"),
    "dataset_config": (_text(_NAME, "dataset configuration"), "--dataset-config"),
    "split": (_text(_SPLIT, "dataset split"), "--split"),
    "corpus_file": (_path, "--corpus-file"),
    "languages": (_languages, "--languages"),
    "sample_size": (_sample_size, "--sample-size"),
    "seed": (_int(0, 2**32 - 1), "--seed"),
    "max_tokens": (_int(1, 8192), "--max-tokens"),
    "batch_size": (_int(1, 4096), "--batch-size"),
    "batch_tokens": (_int(1, 10_000_000), "--batch-tokens"),
    "chunk_pairs": (_int(1, 1_000_000), "--chunk-pairs"),
    "dtype": (_choice(DTYPES), "--dtype"),
    "sae_dtype": (_choice(DTYPES), "--sae-dtype"),
    "device": (_choice(DEVICES), "--device"),
}
"""Every preset override a request may carry (DESIGN.md section 5)."""


@dataclass(frozen=True)
class JobRequest:
    """One queued recompute (``_jobs/<id>/request.json``), already validated."""

    id: str
    """``YYYYmmdd-HHMMSS-mmm-xxxx`` (UTC time of submission + random hex): sorts by age."""
    created_at: str
    """ISO 8601 UTC time of submission."""
    requested_by: str
    """Who asked: a signed-in maintainer's email, or ``maintainer (password)``."""
    preset: str
    """Starting config (``tiny``, ``gemma-2-2b``)."""
    run_id: str
    """Directory name of the run the job writes."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Validated overrides of the preset (keys of ``OVERRIDES``)."""
    overwrite: bool = False
    """Replace an existing run of the same id (it stays in place until the new one is complete)."""
    resume: bool = True
    """Continue a staged, unfinished extraction of the same run and config, if any."""
    publish: bool = True
    """Also publish the finished run to the worker's ``--push-to`` targets."""

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_args(self) -> list[str]:
        """Arguments after ``python -m precompute run`` (``--flag=value`` items only)."""
        args = [f"--preset={self.preset}", f"--run-id={self.run_id}"]
        for name, value in self.overrides.items():
            flag = OVERRIDES[name][1]
            text = ",".join(value) if isinstance(value, list) else str(value)
            args.append(f"{flag}={text}")
        if self.overwrite:
            args.append("--overwrite")
        if self.resume:
            args.append("--resume")
        return args

    def describe(self) -> str:
        """One line for tables: preset and overrides."""
        parts = [self.preset] + [
            f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in self.overrides.items()
        ]
        return " ".join(parts)


_last_id_time = datetime.min.replace(tzinfo=UTC)
_id_lock = threading.Lock()


def new_job_id(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-mmm-xxxx``: UTC time to the millisecond (strictly increasing
    within a process, so ids sort in submission order) and 16 random bits."""
    global _last_id_time
    with _id_lock:
        now = now or datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if now <= _last_id_time:
            now = _last_id_time + timedelta(milliseconds=1)
        _last_id_time = now
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{secrets.token_hex(2)}"


def validate_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Check every override against its whitelist entry; empty values mean 'keep the preset's'."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise RequestError(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(OVERRIDES)}"
        )
    clean: dict[str, Any] = {}
    for name, value in overrides.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        clean[name] = OVERRIDES[name][0](name, value.strip() if isinstance(value, str) else value)
    return clean


def validate_request(data: Mapping[str, Any]) -> JobRequest:
    """A :class:`JobRequest` from untrusted JSON-like data, or RequestError saying which field is wrong.

    Required: ``preset``. Optional: ``id``, ``created_at``, ``requested_by``
    (filled in when absent), ``run_id`` (default ``<preset>-<job id>``),
    ``overrides``, ``overwrite``, ``resume``, ``publish``.
    """
    if not isinstance(data, Mapping):
        raise RequestError("a job request must be a JSON object")
    allowed = {f.name for f in fields(JobRequest)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}")
    name = _choice(sorted(PRESETS))("preset", data.get("preset"))
    job_id = data.get("id") or new_job_id()
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise RequestError(f"id: {job_id!r} is not a job id")
    created_at = data.get("created_at") or datetime.now(UTC).replace(microsecond=0).isoformat()
    if not isinstance(created_at, str):
        raise RequestError("created_at: not a string")
    try:
        datetime.fromisoformat(created_at)
    except ValueError:
        raise RequestError(f"created_at: {created_at!r} is not an ISO 8601 time") from None
    requested_by = _text(_PERSON, "name or email")(
        "requested_by", data.get("requested_by") or "unknown"
    )
    run_id = _run_id("run_id", data.get("run_id") or f"{name}-{job_id}")
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise RequestError("overrides: must be an object of field: value")
    request = JobRequest(
        id=job_id,
        created_at=created_at,
        requested_by=requested_by,
        preset=name,
        run_id=run_id,
        overrides=validate_overrides(overrides),
        overwrite=_bool("overwrite", data.get("overwrite", False)),
        resume=_bool("resume", data.get("resume", True)),
        publish=_bool("publish", data.get("publish", True)),
    )
    check_config(request)
    return request


def check_config(request: JobRequest) -> None:
    """Build the run config the request describes (no I/O) and surface its errors."""
    flat = dict(request.overrides)
    if "languages" in flat:
        flat["languages"] = ",".join(flat["languages"])
    if "sample_size" in flat:
        flat["sample_size"] = str(flat["sample_size"])
    try:
        with_overrides(preset(request.preset), **flat)
    except (ValueError, TypeError) as exc:
        raise RequestError(
            f"the {request.preset} preset with these overrides is not a valid run: {exc}"
        ) from None
