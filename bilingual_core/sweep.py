"""The layer-sweep manifest: which runs of a results root belong to one sweep, at which layer.

``python -m precompute sweep`` extracts one run per layer from one forward pass
per batch and writes ``<results root>/_sweeps/<sweep id>/sweep.json``
(the ``_`` keeps the folder out of the run listing). The file is parsed into
:class:`SweepManifest` (pydantic, strict): a file that does not fit is a
:class:`SweepFormatError` naming the field and the problem. Optional
``compare.parquet`` beside it (``python -m precompute sweep-compare``) holds
the cross-layer decoder comparison (:data:`COMPARE_COLUMNS`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .manifest import check_run_id, utc_now
from .storage import join, open_root, read_text, write_text

SWEEPS_DIR = "_sweeps"
SWEEP_FILE = "sweep.json"
COMPARE_FILE = "compare.parquet"
SWEEP_FORMAT_VERSION = 1
COMPARE_COLUMNS = (
    "layer_a",
    "layer_b",
    "feature",
    "best_match",
    "best_cosine",
    "matched",
)
"""One row per translation feature of ``layer_a`` compared with every feature of ``layer_b``:
its decoder direction's best cosine there, and whether that reaches the threshold."""


class SweepFormatError(ValueError):
    """A sweep manifest that does not match its schema; the message names the field."""


def _run_id(value: str) -> str:
    check_run_id(value)
    return value


RunId = Annotated[str, AfterValidator(_run_id)]


class SweepLayer(BaseModel):
    """One layer of the sweep and the run extracted there."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    layer: int = Field(ge=0, le=1023)
    run_id: RunId
    hook_name: str = Field(min_length=1, max_length=200)
    sae: str = Field(default="", max_length=500)
    """Where the SAE came from: ``release/id`` or a local path."""


class SweepManifest(BaseModel):
    """``_sweeps/<sweep id>/sweep.json``."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    format_version: int = Field(ge=1, le=SWEEP_FORMAT_VERSION)
    sweep_id: RunId
    created_at: str = Field(max_length=64)
    model: str = Field(default="", max_length=300)
    languages: list[str] = Field(default_factory=list, max_length=64)
    n_pairs: int = Field(default=0, ge=0)
    layers: list[SweepLayer] = Field(min_length=1, max_length=256)
    extraction: dict[str, Any] = Field(default_factory=dict)
    """How the shared forward passes ran (device, seconds, stop_at_layer, ...)."""

    @model_validator(mode="after")
    def _distinct(self) -> SweepManifest:
        layers = [entry.layer for entry in self.layers]
        if layers != sorted(set(layers)):
            raise ValueError("layers must be distinct and in increasing order")
        runs = [entry.run_id for entry in self.layers]
        if len(set(runs)) != len(runs):
            raise ValueError("each layer needs its own run id")
        return self

    @property
    def run_ids(self) -> list[str]:
        return [entry.run_id for entry in self.layers]

    def run_for(self, layer: int) -> str:
        for entry in self.layers:
            if entry.layer == layer:
                return entry.run_id
        raise KeyError(layer)


def parse_sweep(data: Any, where: str = SWEEP_FILE) -> SweepManifest:
    """A :class:`SweepManifest` from parsed JSON, or SweepFormatError naming the field."""
    try:
        return SweepManifest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{field}: {err['msg']}")
        raise SweepFormatError(f"{where}: " + "; ".join(problems)) from None


def sweep_dir(root: str, sweep_id: str) -> str:
    return join(root, SWEEPS_DIR, check_run_id(sweep_id))


def read_sweep(location: str, sweep_id: str) -> SweepManifest:
    """Read and validate ``<location>/_sweeps/<sweep_id>/sweep.json``."""
    fs, root = open_root(location)
    path = join(sweep_dir(root, sweep_id), SWEEP_FILE)
    if not fs.exists(path):
        raise SweepFormatError(f"{path}: no such sweep manifest")
    try:
        data = json.loads(read_text(fs, path))
    except json.JSONDecodeError as exc:
        raise SweepFormatError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_sweep(data, path)


def write_sweep(location: str, manifest: SweepManifest) -> str:
    """Write the manifest (validated again) and return its path."""
    parse_sweep(manifest.model_dump())
    fs, root = open_root(location)
    directory = sweep_dir(root, manifest.sweep_id)
    fs.makedirs(directory, exist_ok=True)
    path = join(directory, SWEEP_FILE)
    write_text(fs, path, json.dumps(manifest.model_dump(), indent=2) + "\n")
    return path


def list_sweeps(location: str) -> list[str]:
    """Sweep ids under a results root (folders of ``_sweeps`` with a manifest), sorted."""
    fs, root = open_root(location)
    base = join(root, SWEEPS_DIR)
    if not fs.exists(base):
        return []
    out = []
    for entry in fs.ls(base, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") == "directory" and fs.exists(join(base, name, SWEEP_FILE)):
            out.append(name)
    return sorted(out)


def new_sweep(
    sweep_id: str,
    layers: list[dict[str, Any]],
    *,
    model: str = "",
    languages: list[str] | None = None,
    n_pairs: int = 0,
    extraction: dict[str, Any] | None = None,
) -> SweepManifest:
    return parse_sweep(
        {
            "format_version": SWEEP_FORMAT_VERSION,
            "sweep_id": sweep_id,
            "created_at": utc_now(),
            "model": model,
            "languages": list(languages or []),
            "n_pairs": n_pairs,
            "layers": layers,
            "extraction": dict(extraction or {}),
        }
    )
