"""A recompute job request: what a maintainer may ask the GPU worker to run.

A request is a small JSON document written by the app's ``/recompute`` page
(or ``python -m precompute jobs submit``) and read by the worker. A job may
set exactly the run settings declared with ``job=True`` in
``contract.settings`` (:data:`contract.settings.JobSettings`), validated by
their pydantic types. The worker hands the validated settings as they are
(:meth:`JobRequest.settings`, a JSON file) to ``python -m precompute run
--config`` (or, for a job of kind ``sweep``, ``sweep --config``), which reads
them with the same model. The page and the worker validate with the same
function, :func:`validate_request`.

Paths (``model_path``, ``sae_path``, ``corpus_file``) are paths on the worker's
host. Building the request also builds the run config with
``contract.overrides.with_overrides`` (no I/O), so combinations the run command would
refuse (the tiny model with a pretrained SAE, ...) are refused at submission.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from contract.overrides import parse_layers, sweep_configs, with_overrides
from contract.presets import preset
from contract.settings import (
    JOB_OVERRIDES,
    HostPath,
    JobOverrides,
    JobSettings,
    Person,
    RequestError,
    RunSettings,
    StrictBool,
    SweepSettings,
    check_value,
    error_text,
    validate,
)

JOB_ID_PATTERN = re.compile(r"\d{8}-\d{6}-\d{3}-[0-9a-f]{4}")
"""A job id (match it with ``fullmatch``)."""
JOB_KINDS = ("run", "sweep")
"""``run``: one run (``python -m precompute run``); ``sweep``: one run per layer from shared
forward passes (``python -m precompute sweep``, docs/sweep.md)."""


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
    """Validated overrides of the preset (``contract.settings.PresetOverrides`` fields with
    ``job=True``: ``contract.settings.JOB_OVERRIDES``)."""
    overwrite: bool = False
    """Replace an existing run of the same id (it stays in place until the new one is complete)."""
    resume: bool = True
    """Continue a staged, unfinished extraction of the same run and config, if any."""
    publish: bool = True
    """Also publish the finished run to the worker's ``--push-to`` targets."""
    kind: str = "run"
    """One of :data:`JOB_KINDS`; the precompute command the worker runs."""
    layers: list[int] = field(default_factory=list)
    """A sweep's layers, increasing (empty for a run)."""
    sae_pattern: str | None = None
    """A sweep's local SAE directory per layer, with ``{layer}`` (None: the preset's SAEs)."""

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def command(self) -> str:
        """The ``python -m precompute`` subcommand: ``run`` or ``sweep``."""
        return self.kind

    @property
    def run_ids(self) -> list[str]:
        """The runs the job writes: its run id, or a sweep's ``<sweep id>-l<layer>`` runs."""
        if self.kind == "sweep":
            return [f"{self.run_id}-l{layer}" for layer in self.layers]
        return [self.run_id]

    def settings(self, **worker: Any) -> dict[str, Any]:
        """The settings of the job's command (``contract.settings.RunSettings``, or
        ``SweepSettings`` for a sweep), validated, as JSON-ready values without the
        defaults: what the worker writes to the ``--config`` file. ``worker``: the
        fields the worker decides (``out``, executor settings)."""
        if self.kind == "sweep":
            model: type[RunSettings | SweepSettings] = SweepSettings
            data: dict[str, Any] = {
                "sweep_id": self.run_id,
                "layers": ",".join(map(str, self.layers)),
            }
            if self.sae_pattern:
                data["sae_pattern"] = self.sae_pattern
        else:
            model, data = RunSettings, {"run_id": self.run_id}
        data = {
            "preset": self.preset,
            **data,
            **self.overrides,
            "overwrite": self.overwrite,
            "resume": self.resume,
            **worker,
        }
        settings = validate(model, data, RequestError)
        return settings.model_dump(mode="json", exclude_defaults=True) | {"preset": self.preset}

    def describe(self) -> str:
        """One line for tables: preset, a sweep's layers, and overrides."""
        sweep = []
        if self.kind == "sweep":
            sweep = [f"sweep layers={','.join(map(str, self.layers))}"]
            if self.sae_pattern:
                sweep.append(f"sae_pattern={self.sae_pattern}")
        parts = [self.preset, *sweep] + [
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
    """The job-settable overrides, validated by their declared types; empty values
    mean 'keep the preset's' and are dropped."""
    unknown = sorted(set(overrides) - set(JOB_OVERRIDES))
    if unknown:
        raise RequestError(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(JOB_OVERRIDES)}"
        )
    given = {
        name: value.strip() if isinstance(value, str) else value
        for name, value in overrides.items()
        if value is not None and not (isinstance(value, str) and not value.strip())
    }
    clean = validate(JobOverrides, given, RequestError)
    return {name: _json(getattr(clean, name)) for name in given}


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def validate_request(data: Mapping[str, Any]) -> JobRequest:
    """A :class:`JobRequest` from untrusted JSON-like data, or RequestError saying which field is wrong.

    Required: ``preset``. Optional: ``id``, ``created_at``, ``requested_by``
    (filled in when absent), ``run_id`` (default ``<preset>-<job id>``; a sweep's id),
    ``overrides``, ``overwrite``, ``resume``, ``publish``, ``kind`` (``run`` or
    ``sweep``); a sweep also takes ``layers`` (required) and ``sae_pattern``.
    The run settings among them (preset, run_id, overwrite, resume, overrides) are
    checked by :data:`contract.settings.JobSettings`: exactly the ``job=True`` fields.
    """
    if not isinstance(data, Mapping):
        raise RequestError("a job request must be a JSON object")
    allowed = {f.name for f in fields(JobRequest)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}")
    name = check_value(JobSettings, "preset", data.get("preset"))
    job_id = data.get("id") or new_job_id()
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise RequestError("id: not a job id")
    created_at = data.get("created_at") or datetime.now(UTC).replace(microsecond=0).isoformat()
    if not isinstance(created_at, str):
        raise RequestError("created_at: not a string")
    try:
        datetime.fromisoformat(created_at)
    except ValueError:
        raise RequestError("created_at: not an ISO 8601 time") from None
    requested_by = _check(Person, "requested_by", data.get("requested_by") or "unknown")
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise RequestError("overrides: must be an object of field: value")
    clean = validate_overrides(overrides)
    job = validate(
        JobSettings,
        {
            "preset": name,
            "run_id": data.get("run_id") or f"{name}-{job_id}",
            "overwrite": data.get("overwrite", False),
            "resume": data.get("resume", True),
            **clean,
        },
        RequestError,
    )
    kind = data.get("kind") or "run"
    if kind not in JOB_KINDS:
        raise RequestError(f"kind: {kind!r} is not one of {list(JOB_KINDS)}")
    layers, pattern = _sweep_fields(kind, data.get("layers"), data.get("sae_pattern"))
    request = JobRequest(
        id=job_id,
        created_at=created_at,
        requested_by=requested_by,
        preset=name,
        run_id=job.run_id,
        overrides=clean,
        overwrite=job.overwrite,
        resume=job.resume,
        publish=_check(StrictBool, "publish", data.get("publish", True)),
        kind=kind,
        layers=layers,
        sae_pattern=pattern,
    )
    if kind == "sweep":
        if "layer" in request.overrides:
            raise RequestError("layer: a sweep takes layers (several), not layer")
        for layer_run in request.run_ids:
            check_value(JobSettings, "run_id", layer_run)
    check_config(request)
    return request


def _sweep_fields(kind: str, layers: Any, pattern: Any) -> tuple[list[int], str | None]:
    """A sweep's ``layers`` (required) and ``sae_pattern``; a run has neither."""
    if kind != "sweep":
        if layers or pattern:
            raise RequestError("layers and sae_pattern are fields of a sweep (kind: sweep)")
        return [], None
    if layers is None or layers == "" or layers == []:
        raise RequestError("layers: a sweep needs its layers, e.g. 3,6,9,12")
    if isinstance(layers, list) and not all(
        isinstance(x, int) and not isinstance(x, bool) for x in layers
    ):
        raise RequestError(f"layers: {layers!r} is not a list of layer numbers")
    if not isinstance(layers, str | list):
        raise RequestError(f"layers: {layers!r} is not a list of layer numbers")
    try:
        clean = parse_layers(layers)
    except ValueError as exc:
        raise RequestError(f"layers: {str(exc).removeprefix('--layers: ')}") from None
    if max(clean) > 255:
        raise RequestError(f"layers: {max(clean)} is outside 0..255")
    if pattern is None or (isinstance(pattern, str) and not pattern.strip()):
        return clean, None
    if not isinstance(pattern, str) or pattern.count("{layer}") != 1:
        raise RequestError(
            f"sae_pattern: {pattern!r} needs '{{layer}}' once, e.g. _models/sae-l{{layer}}"
        )
    pattern = pattern.strip()
    _check(HostPath, "sae_pattern", pattern.replace("{layer}", "0"))
    return clean, pattern


def _check(kind: Any, name: str, value: Any) -> Any:
    """A request field that is not a run setting, checked by its pydantic type."""
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise RequestError(f"{name}: {error_text(exc).lstrip(': ')}") from None


def check_config(request: JobRequest) -> None:
    """Build the run config the request describes (no I/O) and surface its errors."""
    try:
        config = with_overrides(preset(request.preset), **request.overrides)
        if request.kind == "sweep":
            sweep_configs(config, request.layers, sae_pattern=request.sae_pattern)
    except (ValueError, TypeError) as exc:
        what = "sweep" if request.kind == "sweep" else "run"
        raise RequestError(
            f"the {request.preset} preset with these overrides is not a valid {what}: {exc}"
        ) from None
