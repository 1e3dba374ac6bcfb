"""The run manifest: what ran, on what, and whether the run is complete."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import RunFormatError
from .schema import FORMAT_VERSION, MANIFEST

RunStatus = Literal["writing", "complete"]
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A run id (match it with ``fullmatch``: ``$`` would accept a trailing newline)."""
LANG_PATTERN = re.compile(r"[a-z]{2,3}([_-][A-Za-z0-9]+)?")
"""A language code (match it with ``fullmatch``)."""
# Keys a credential might hide under; the manifest never records them.
_SECRET_KEY = re.compile(
    r"secret|passw(or)?d|credential|api_?key|access_key|private_key"
    r"|(^|_)(auth|access|hf|api|bearer|refresh|id|session)_token$|^token$",
    re.IGNORECASE,
)


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a safe directory name, else raise ValueError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' or '-' "
            "(at most 128 characters, not starting with '.' or '-')"
        )
    return run_id


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC, second precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass
class Manifest:
    """Contents of ``manifest.json`` (docs/run-format.md).

    The nested sections are plain dictionaries so that tools may record more
    than the required keys.
    """

    run_id: str
    """Directory name of the run under the results root."""
    languages: list[str]
    """ISO codes, in display order; the first is the 'source' language."""
    n_pairs: int
    """Number of aligned sentence pairs (pair ids are 0 .. n_pairs - 1)."""
    d_sae: int
    """Number of SAE features (feature ids are 0 .. d_sae - 1)."""
    model: dict[str, Any] = field(default_factory=dict)
    """Model name, and ``path`` when loaded from a local checkpoint."""
    sae: dict[str, Any] = field(default_factory=dict)
    """``release`` + ``id`` or ``path``, ``hook_name``, ``neuronpedia_id`` when known."""
    corpus: dict[str, Any] = field(default_factory=dict)
    """``source``, ``config``, ``split``, ``seed``, ``sample_size``."""
    extraction: dict[str, Any] = field(default_factory=dict)
    """``dtype``, ``batch_size``, ``max_tokens``, ``device`` and extraction counters."""
    versions: dict[str, str] = field(default_factory=dict)
    """Package versions that produced the run."""
    scoring: dict[str, Any] = field(default_factory=dict)
    """Filled by the scorer: variant, K, beta, when scored."""
    evidence: dict[str, Any] = field(default_factory=dict)
    """Filled by the evidence commands (``logits``, ``validate``): per added table, how and when."""
    status: RunStatus = "writing"
    created_at: str = field(default_factory=utc_now)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        if len(self.languages) < 2 or len(set(self.languages)) != len(self.languages):
            raise ValueError(f"need two or more distinct languages, got {self.languages}")
        for lang in self.languages:
            if not LANG_PATTERN.fullmatch(lang) or lang == "global":
                raise ValueError(f"invalid language code {lang!r} (expected e.g. 'en', 'es')")
        if self.n_pairs < 0 or self.d_sae <= 0:
            raise ValueError(
                f"n_pairs must be >= 0 and d_sae > 0 (got {self.n_pairs}, {self.d_sae})"
            )
        for section in ("model", "sae", "corpus", "extraction"):
            _reject_secrets(getattr(self, section), section)

    @property
    def neuronpedia_id(self) -> str | None:
        """Neuronpedia's model/SAE id (``gemma-2-2b/20-gemmascope-res-16k``), when known."""
        return self.sae.get("neuronpedia_id") or None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse and check a manifest (RunFormatError naming the field at fault).

        The text is checked against :class:`ManifestFile` first, so a section of
        the wrong type (``"model": "x"``, ``"sae": null``), deeply nested arrays
        or an oversized file is an error for this run, never a crash."""
        if len(text) > MAX_MANIFEST_BYTES:
            raise RunFormatError(MANIFEST, None, f"larger than {MAX_MANIFEST_BYTES:,} bytes")
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunFormatError(MANIFEST, None, f"not valid JSON ({exc})") from exc
        except RecursionError:
            raise RunFormatError(MANIFEST, None, "nested too deeply to be a manifest") from None
        if not isinstance(raw, dict):
            raise RunFormatError(MANIFEST, None, "expected a JSON object")
        required = ("format_version", "run_id", "status", "created_at", "languages")
        missing = [k for k in (*required, "n_pairs", "d_sae") if k not in raw]
        if missing:
            raise RunFormatError(
                MANIFEST, missing[0], f"missing required key(s): {', '.join(missing)}"
            )
        if raw["format_version"] != FORMAT_VERSION:
            raise RunFormatError(
                MANIFEST,
                "format_version",
                f"format version {raw['format_version']!r} is not supported (this tool reads {FORMAT_VERSION})"
                if isinstance(raw["format_version"], int)
                else f"format version is not supported (this tool reads {FORMAT_VERSION})",
            )
        try:
            checked = ManifestFile.model_validate(raw)
        except ValidationError as exc:
            raise RunFormatError(MANIFEST, *_schema_problem(exc)) from None
        except RecursionError:
            raise RunFormatError(MANIFEST, None, "nested too deeply to be a manifest") from None
        kwargs = {k: getattr(checked, k) for k in ManifestFile.model_fields}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError, RecursionError) as exc:
            raise RunFormatError(MANIFEST, None, str(exc)) from exc


MAX_MANIFEST_BYTES = 1_000_000
"""Largest manifest read (real ones are a few kilobytes)."""


class ManifestFile(BaseModel):
    """The typed schema ``manifest.json`` is checked against before it is used
    (``strict``: a string is not a section, null is not an empty one)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    format_version: int
    run_id: str
    status: RunStatus
    created_at: str
    languages: list[str]
    n_pairs: int
    d_sae: int
    model: dict[str, Any] = {}
    sae: dict[str, Any] = {}
    corpus: dict[str, Any] = {}
    extraction: dict[str, Any] = {}
    versions: dict[str, Any] = {}
    scoring: dict[str, Any] = {}
    evidence: dict[str, Any] = {}


def _schema_problem(exc: ValidationError) -> tuple[str | None, str]:
    """The first field at fault and what is wrong, without the value."""
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return field, f"{first['msg']}{more}"


def _reject_secrets(section: dict[str, Any], name: str) -> None:
    for key, value in section.items():
        if _SECRET_KEY.search(str(key)):
            raise ValueError(f"manifest section {name!r} must not record credentials (key {key!r})")
        if isinstance(value, dict):
            _reject_secrets(value, f"{name}.{key}")
