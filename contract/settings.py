"""The settings of ``python -m precompute run`` and ``sweep``, declared once, as pydantic models.

Each setting is one field declared with :func:`contract.fields.option`: its
type (bounds, pattern and choices included), its help text, its help section
(``group``), whether a queued job may set it (``job``), where the
``/recompute`` form shows it (``form``/``label``/``example``), and, for a
preset override, the dotted path of the config field it replaces
(``target``). Everything else is derived from these models:

* the command-line options (``precompute.cli.add_options``);
* job validation (``contract.request``: the job-settable view, :data:`JobSettings`);
* applying overrides to a preset (``contract.overrides.with_overrides`` sets each
  given field at its ``target``);
* the ``/recompute`` form (``explorer.jobs_view``);
* the docs' option tables (:func:`options_markdown`).

Validation is pydantic's, on every path (flags, ``--config`` files, jobs): a
bad value is a :class:`SettingsError` whose message names the field and the
problem, never the value (it may come from a browser, and be long).
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    ValidationError,
    create_model,
    model_validator,
)

from bilingual_core.manifest import LANG_PATTERN, RUN_ID_PATTERN
from contract.commands import CommandSettings
from contract.fields import option, options
from contract.presets import GS2_L0S, GS2_WIDTHS, PRESETS

Group = Literal["run", "executor", "model", "sae", "corpus", "extraction"]
GROUP_TITLES: dict[str, str] = {
    "run": "how the command runs",
    "sweep": "the sweep",
    "executor": "where the extraction runs",
    "model": "model (overrides the preset)",
    "sae": "SAE (overrides the preset)",
    "corpus": "corpus (overrides the preset)",
    "extraction": "extraction (overrides the preset)",
}
"""Help sections, in the order ``--help`` lists them (a field's ``group``)."""
MAX_LANGUAGES = 8
MAX_SAMPLE_SIZE = 10_000_000
M = TypeVar("M", bound=BaseModel)


class SettingsError(ValueError):
    """Settings that fail validation; the message names the field, never the value."""


class RequestError(SettingsError):
    """A job request that fails validation; the message names the field."""


# ------------------------------------------------------------- types ---


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"not a valid {what}")
        return value

    return AfterValidator(check)


def _no_parent(value: str) -> str:
    if ".." in value.split("/"):
        raise ValueError("'..' is not allowed in paths")
    return value


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("not a number")
    return value


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Name = Annotated[str, _matching(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "name (no slashes)")]
"""A model name, SAE release, dataset config, column name."""
RepoId = Annotated[
    str,
    _matching(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?", "repo id"),
]
"""A Hugging Face id: ``name`` or ``owner/name``."""
SaeId = Annotated[str, _matching(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}", "SAE id")]
Hook = Annotated[str, _matching(r"[A-Za-z0-9_][A-Za-z0-9_.]{0,127}", "hook name")]
Split = Annotated[str, _matching(r"[A-Za-z0-9_][A-Za-z0-9_.:%\[\]+-]{0,63}", "dataset split")]
HostPath = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9_./~][A-Za-z0-9_./~+@=,-]{0,1023}",
        "path on the worker host (letters, digits, . _ / ~ + @ = , -)",
    ),
    AfterValidator(_no_parent),
]
"""A path on the worker host: plain characters, no ``..`` component."""
JOB_PATH = "host path"
"""Marks a path field (:data:`LocalPath`) that a queued job must give as a :data:`HostPath`."""
LocalPath = Annotated[str, JOB_PATH]
"""A local path: any text on the command line; :func:`job_view` makes it a strict
:data:`HostPath` (a browser may send it)."""
Int = Annotated[int, BeforeValidator(_not_bool), BeforeValidator(_strip)]
"""An integer (a string of digits too: form fields are text), never a boolean."""
Float = Annotated[float, BeforeValidator(_not_bool)]
RunId = Annotated[str, _matching(RUN_ID_PATTERN.pattern, "run id (letters, digits, . _ -)")]
Person = Annotated[str, _matching(r"[^\x00-\x1f\x7f]{1,200}", "name or email")]
DType = Literal["float32", "bfloat16", "float16", "float64"]
Device = Literal["auto", "cpu", "cuda"]
PresetName = Literal[tuple(sorted(PRESETS))]  # type: ignore[valid-type]


def _languages(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [x.strip() for x in value.split(",") if x.strip()]
    if not isinstance(value, list | tuple) or not 2 <= len(value) <= MAX_LANGUAGES:
        raise ValueError(f"give 2 to {MAX_LANGUAGES} language codes")
    for code in value:
        if not isinstance(code, str) or not LANG_PATTERN.fullmatch(code) or code == "global":
            raise ValueError("give language codes such as 'en' or 'es'")
    if len(set(value)) != len(value):
        raise ValueError("languages repeat")
    return list(value)


def _sample_size(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,12}\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("give a number of pairs, or 'all'")
    if not 1 <= value <= MAX_SAMPLE_SIZE:
        raise ValueError(f"give 1..{MAX_SAMPLE_SIZE} pairs, or 'all'")
    return value


Languages = Annotated[list[str], BeforeValidator(_languages)]
SampleSize = Annotated[int | str, BeforeValidator(_sample_size)]


# ------------------------------------------------------------ models ---


class _Settings(CommandSettings):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


GS2 = "gemma-scope-2-270m: "
FORM_PATH = "on the worker host, in <results root>/_models/ or another --model-dir of the worker"


class PresetOverrides(_Settings):
    """Overrides of a preset's config; ``None`` keeps the preset's value. ``target``: the
    config field each replaces (``contract.overrides.with_overrides`` sets it there)."""

    # -- the model
    model: RepoId | None = option(
        None,
        "TransformerLens model name (architecture when --model-path is given)",
        group="model",
        job=True,
        form="main",
        label="Model",
        example="gemma-2-2b",
        target="model.name",
    )
    model_path: LocalPath | None = option(
        None,
        "local Hugging Face checkpoint directory (weights + tokenizer)",
        group="model",
        job=True,
        form="more",
        label="Model path",
        example=FORM_PATH,
        target="model.path",
    )
    dtype: DType | None = option(
        None,
        "model dtype (gemma-2-2b: bfloat16)",
        group="model",
        job=True,
        form="main",
        label="Model dtype",
        target="model.dtype",
    )
    # -- the SAE
    sae_release: Name | None = option(
        None,
        "SAE-Lens release",
        group="sae",
        job=True,
        form="main",
        label="SAE release",
        example="gemma-scope-2b-pt-res-canonical",
        target="sae.release",
    )
    sae_id: SaeId | None = option(
        None,
        "SAE id in the release",
        group="sae",
        job=True,
        form="main",
        label="SAE id",
        example="layer_20/width_16k/canonical",
        target="sae.sae_id",
    )
    sae_path: LocalPath | None = option(
        None,
        "local SAE-Lens directory (SAE.save_model output)",
        group="sae",
        job=True,
        form="more",
        label="SAE path",
        example=FORM_PATH,
        target="sae.path",
    )
    layer: Int | None = option(
        None,
        GS2 + "the block whose residual-stream SAE to use (default 12)",
        group="sae",
        job=True,
        form="more",
        label="SAE layer (Gemma Scope 2)",
        metavar="N",
        ge=0,
        le=255,
    )
    width: Literal[GS2_WIDTHS] | None = option(  # type: ignore[valid-type]
        None,
        GS2 + "SAE width (default 16k)",
        group="sae",
        job=True,
        form="more",
        label="SAE width (Gemma Scope 2)",
    )
    l0: Literal[GS2_L0S] | None = option(  # type: ignore[valid-type]
        None,
        GS2 + "SAE sparsity, small/medium/big L0 (default medium)",
        group="sae",
        job=True,
        form="more",
        label="SAE L0 (Gemma Scope 2)",
    )
    hook: Hook | None = option(
        None,
        "hook the SAE reads (default: the SAE's own metadata)",
        group="sae",
        job=True,
        form="more",
        label="Hook",
        target="sae.hook_name",
    )
    neuronpedia_id: SaeId | None = option(
        None,
        "Neuronpedia model/SAE id for feature links",
        group="sae",
        job=True,
        form="more",
        label="Neuronpedia id",
        target="sae.neuronpedia_id",
    )
    sae_dtype: DType | None = option(
        None,
        "SAE dtype (default float32)",
        group="sae",
        job=True,
        form="main",
        label="SAE dtype",
        target="sae.dtype",
    )
    # -- the corpus
    dataset: RepoId | None = option(
        None,
        "Hugging Face dataset id",
        group="corpus",
        job=True,
        form="main",
        label="Dataset",
        example="Helsinki-NLP/opus_books",
        target="corpus.dataset",
    )
    dataset_config: Name | None = option(
        None,
        "dataset configuration",
        group="corpus",
        job=True,
        form="main",
        label="Dataset config",
        example="en-es",
        target="corpus.config",
    )
    split: Split | None = option(
        None,
        "dataset split (default train)",
        group="corpus",
        job=True,
        form="main",
        label="Split",
        example="train",
        target="corpus.split",
    )
    field: Annotated[str, _matching(r"|[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "column name")] | None = (
        option(
            None,
            "dataset column holding {lang: text} dicts; '' for one column per language",
            group="corpus",
            job=True,
            form="more",
            label="Dataset field",
            example="translation",
            target="corpus.field",
        )
    )
    corpus_file: LocalPath | None = option(
        None,
        "local TSV/CSV/JSONL/Parquet file with one column per language",
        group="corpus",
        job=True,
        form="main",
        label="Corpus file",
        example="on the worker host, in <results root>/_corpora/ or another --corpus-dir of the worker",
        target="corpus.path",
    )
    languages: Languages | None = option(
        None,
        "comma-separated language codes in run order",
        group="corpus",
        job=True,
        form="main",
        label="Languages",
        example="en,es",
        target="corpus.languages",
    )
    sample_size: SampleSize | None = option(
        None,
        "pairs to sample (shuffle(seed).select(range(n))), or 'all'",
        group="corpus",
        job=True,
        form="main",
        label="Sample size",
        example="a number, or all",
        target="corpus.sample_size",
    )
    seed: Int | None = option(
        None,
        "sampling seed (the post: 42)",
        group="corpus",
        job=True,
        form="main",
        label="Seed",
        target="corpus.seed",
        ge=0,
        le=2**32 - 1,
    )
    # -- the extraction
    max_tokens: Int | None = option(
        None,
        "real tokens kept per sentence (longer: truncated, counted)",
        group="extraction",
        job=True,
        form="main",
        label="Max tokens",
        target="extraction.max_tokens",
        ge=1,
        le=8192,
    )
    batch_size: Int | None = option(
        None,
        "sentences per forward pass",
        group="extraction",
        job=True,
        form="main",
        label="Batch size",
        target="extraction.batch_size",
        ge=1,
        le=4096,
    )
    batch_tokens: Int | None = option(
        None,
        "padded tokens per forward pass, at most",
        group="extraction",
        job=True,
        form="more",
        label="Batch tokens",
        target="extraction.batch_tokens",
        ge=1,
        le=10_000_000,
    )
    chunk_pairs: Int | None = option(
        None,
        "pairs per staged chunk (the unit of --resume)",
        group="extraction",
        job=True,
        form="more",
        label="Chunk pairs",
        target="extraction.chunk_pairs",
        ge=1,
        le=1_000_000,
    )
    device: Device | None = option(
        None,
        "auto (default) picks CUDA when present",
        group="extraction",
        job=True,
        form="main",
        label="Device",
        target="extraction.device",
    )

    def given(self) -> dict[str, Any]:
        """The overrides that are set (not None), by name."""
        return {
            name: getattr(self, name)
            for name in PresetOverrides.model_fields
            if getattr(self, name) is not None
        }


class ExecutorSettings(_Settings):
    """Where the extraction runs (``python -m precompute worker`` takes these too and passes
    them on to every run it starts)."""

    executor: Literal["local", "ray"] = option(
        "local",
        "local: this process (default); ray: shards on the actors of a Ray cluster "
        "(docs/cluster.md)",
        group="executor",
    )
    ray_address: str | None = option(
        None,
        "Ray cluster to use (e.g. auto, or ray://head:10001); default: start a local one",
        group="executor",
        metavar="ADDRESS",
    )
    workers: Int | None = option(
        None,
        "Ray actors extracting at once, each loading the model once (default 1)",
        group="executor",
        metavar="N",
        ge=1,
    )
    gpus_per_worker: Float | None = option(
        None,
        "GPUs each Ray actor reserves (default: 1 when the cluster has GPUs and --device "
        "is not cpu, else 0; with 0 the actors reserve CPUs)",
        group="executor",
        metavar="G",
        ge=0,
    )

    @model_validator(mode="after")
    def _ray_only(self) -> ExecutorSettings:
        ray_flags = [
            flag
            for name, flag in (
                ("ray_address", "--ray-address"),
                ("workers", "--workers"),
                ("gpus_per_worker", "--gpus-per-worker"),
            )
            if getattr(self, name) is not None
        ]
        if self.executor != "ray" and ray_flags:
            raise ValueError(f"{', '.join(ray_flags)} only apply with --executor ray")
        return self

    def executor_values(self) -> dict[str, Any]:
        """The executor settings that differ from the defaults (what a worker passes on)."""
        return self.model_dump(include=set(ExecutorSettings.model_fields), exclude_defaults=True)


PRESET_HELP = (
    "starting config: gemma-2-2b is the post's setup (GPU), gemma-3-270m the offline "
    "Gemma 3 checkpoint, gemma-scope-2-270m Gemma 3 270M with Gemma Scope 2 SAEs, tiny an "
    "offline CPU model in seconds"
)
PROGRESS_HELP = "also append machine-readable progress, one JSON object per line, to this file"


class RunSettings(PresetOverrides, ExecutorSettings):
    """Every setting of ``python -m precompute run``."""

    preset: PresetName = option(..., PRESET_HELP, group="run", job=True, label="Preset")
    out: str | None = option(
        None, "results root (default: $BILINGUAL_RESULTS_DIR or results/)", group="run"
    )
    run_id: RunId | None = option(
        None,
        "run directory name (default: the preset's name)",
        group="run",
        job=True,
        label="Run id",
        example="<preset>-<job id>",
    )
    overwrite: StrictBool = option(
        False,
        "replace an existing run (and discard its staging)",
        group="run",
        job=True,
        label="Replace an existing run of this id",
    )
    resume: StrictBool = option(
        False,
        "continue a killed run from its last finished chunk",
        group="run",
        job=True,
        label="Resume a staged, unfinished run",
    )
    shard: Int = option(0, "this host's shard index (0-based)", group="run", ge=0)
    num_shards: Int = option(1, "number of shards the corpus is split into", group="run", ge=1)
    staging: str | None = option(
        None, "local directory for staged chunks (default: <out>/.<run id>.staging)", group="run"
    )
    dry_run: StrictBool = option(
        False, "print the resolved config and offline checks, run nothing", group="run"
    )
    quiet: StrictBool = option(False, "no progress bars", group="run")
    no_logits: StrictBool = option(
        False,
        "skip the logit effects and decoder neighbours computed after the run (docs/evidence.md)",
        group="run",
    )
    progress_jsonl: str | None = option(None, PROGRESS_HELP, group="run", metavar="PATH")
    push_to: list[str] = option(
        default_factory=list,
        help="then publish the finished run to this results root, e.g. "
        "hf://datasets/<user>/<repo> (repeatable)",
        group="run",
        metavar="URL",
    )

    @model_validator(mode="after")
    def _shard_in_range(self) -> RunSettings:
        if self.shard >= self.num_shards:
            raise ValueError(f"--shard must be in 0..{self.num_shards - 1}")
        return self


class SweepSettings(PresetOverrides):
    """Every setting of ``python -m precompute sweep`` (one run per layer)."""

    preset: PresetName = option(..., PRESET_HELP, group="run", job=True)
    layers: str | list[int] = option(
        ..., "comma-separated layers, e.g. 3,6,9,12 (one run each)", group="sweep", job=True
    )
    sweep_id: RunId | None = option(
        None, "sweep name (default: <preset>-sweep); runs <id>-l<N>", group="sweep", job=True
    )
    sae_paths: str | None = option(
        None,
        "local SAE directories, one per layer in the order of --layers (comma-separated)",
        group="sweep",
    )
    sae_pattern: str | None = option(
        None,
        "local SAE directory with {layer} in it, e.g. 'saes/gemma3-270m-l{layer}-topk48-4096'",
        group="sweep",
        job=True,
    )
    compare_threshold: Float = option(
        0.7,
        "decoder cosine that counts as the same direction in the cross-layer comparison "
        "written at the end (default 0.7; docs/sweep.md)",
        group="sweep",
        ge=-1,
        le=1,
    )
    out: str | None = option(
        None, "results root (default: $BILINGUAL_RESULTS_DIR or results/)", group="run"
    )
    overwrite: StrictBool = option(
        False, "replace existing runs of the sweep", group="run", job=True
    )
    resume: StrictBool = option(False, "continue a killed sweep", group="run", job=True)
    quiet: StrictBool = option(False, "no progress bars", group="run")
    progress_jsonl: str | None = option(None, PROGRESS_HELP, group="run", metavar="PATH")

    @model_validator(mode="after")
    def _no_single_layer(self) -> SweepSettings:
        if self.layer is not None:
            raise ValueError("a sweep takes --layers (several), not --layer")
        return self


def _strict(annotation: Any) -> Any:
    """``annotation`` with every :data:`LocalPath` made a :data:`HostPath`."""
    if annotation == LocalPath:
        return HostPath
    if get_origin(annotation) in (Union, types.UnionType):
        return Union[tuple(_strict(a) for a in get_args(annotation))]  # noqa: UP007
    return annotation


JOB_OVERRIDES: tuple[str, ...] = tuple(
    name for name, _, meta in options(PresetOverrides) if meta.job
)
"""Names of the overrides a queued job may carry (derived from the fields)."""
ROOT_HELP = (
    "results root holding the _jobs queue (path or fsspec URL; default $BILINGUAL_RESULTS_DIR "
    "or results/)"
)


class WorkerSettings(ExecutorSettings):
    """``worker``: serve the recompute queue of a results root. The executor settings it
    inherits are passed on to every run it starts."""

    root: str | None = option(None, ROOT_HELP)
    once: StrictBool = option(False, "run the jobs queued now, then exit")
    poll_seconds: Float = option(10.0, "pause between looks at an empty queue", ge=0)
    heartbeat_seconds: Float = option(
        2.0, "how often progress, log and cancel requests are synced while a job runs", gt=0
    )
    stale_after: Float = option(
        120.0,
        "seconds without a heartbeat after which another worker's running job is marked failed",
        gt=0,
    )
    push_to: list[str] = option(
        default_factory=list,
        help="also publish every finished run here (repeatable; e.g. hf://datasets/<user>/<repo>)",
        metavar="URL",
    )
    work_dir: str | None = option(
        None, "local directory runs are computed in when --root is not local"
    )
    corpus_dir: list[str] | None = option(
        None,
        "a directory jobs may read corpus_file from (repeatable; default: the results "
        "root's _corpora/ folder and the bundled data/)",
        metavar="DIR",
    )
    model_dir: list[str] | None = option(
        None,
        "a directory jobs may read model_path and sae_path from (repeatable; default: "
        "the results root's _models/ folder and the cache of built local models)",
        metavar="DIR",
    )


JobAction = Literal["list", "submit", "cancel", "log"]


class JobsSettings(_Settings):
    """``jobs``: list, submit, cancel or show the log of the jobs of a results root."""

    action: JobAction = option(..., "what to do", positional=True)
    job_id: str | None = option(None, "job id (cancel, log)", positional=True)
    root: str | None = option(None, ROOT_HELP)
    preset: PresetName | None = option(None, "submit: " + PRESET_HELP)
    run_id: str | None = option(None, "submit: run directory name (default <preset>-<job id>)")
    overrides: list[str] = option(
        default_factory=list,
        help="submit: an override, e.g. sample_size=200 or languages=en,es (repeatable; "
        f"one of: {', '.join(JOB_OVERRIDES)})",
        flag="--set",
        metavar="FIELD=VALUE",
    )
    overwrite: StrictBool = option(False, "submit: replace an existing run")
    no_publish: StrictBool = option(False, "submit: do not push to the worker's --push-to roots")
    by: Person = option("command line", "who is asking (recorded in the job)")

    def override_values(self) -> dict[str, str]:
        """``--set FIELD=VALUE`` items as ``{field: value}`` (ValueError for an item
        without ``=``)."""
        values = {}
        for item in self.overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
            values[key.strip()] = value
        return values


def job_view(model: type[M]) -> type[M]:
    """The fields of ``model`` a queued job may set (``job=True``), as a model that
    refuses every other field; its local paths are strict :data:`HostPath` s."""
    fields = {
        name: (_strict(info.annotation), info)
        for name, info, meta in options(model)
        if meta.job and name in model.model_fields
    }
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"Job{model.__name__}",
        __config__=ConfigDict(extra="forbid", frozen=True, protected_namespaces=()),
        **fields,
    )


JobSettings = job_view(RunSettings)
"""What a queued run job may set: :class:`RunSettings`' fields with ``job=True``."""
JobOverrides = job_view(PresetOverrides)
"""The preset overrides a queued job may carry, with their job types (strict paths)."""


# ------------------------------------------------------- validation ---


def error_text(exc: ValidationError, limit: int = 3) -> str:
    """``field: problem; ...`` for a pydantic error, without the values."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False)[:limit]:
        name = next((str(p) for p in err["loc"] if isinstance(p, str)), "")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required"
        problems.append(f"{name}: {msg[:200]}" if name else msg[:200])
    return "; ".join(problems)


def validate(
    model: type[M], data: Mapping[str, Any], error: type[SettingsError] = SettingsError
) -> M:
    """``data`` as ``model`` or ``error`` naming the fields that are wrong."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise error(error_text(exc)) from None


def check_value(model: type[BaseModel], name: str, value: Any) -> Any:
    """One field's value, validated by its declared type (RequestError naming it)."""
    info = model.model_fields[name]
    probe = create_model("Probe", **{name: (info.annotation, info)})
    try:
        return getattr(probe.model_validate({name: value}), name)
    except ValidationError as exc:
        raise RequestError(error_text(exc)) from None


# --------------------------------------------------------- docs table ---


def _base(annotation: Any) -> Any:
    """``X | None`` -> ``X``; ``Annotated[X, ...]`` -> ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def choices(annotation: Any) -> tuple[Any, ...] | None:
    """The choices of a ``Literal`` field (None for other types)."""
    base = _base(annotation)
    return get_args(base) if get_origin(base) is Literal else None


def is_flag(annotation: Any) -> bool:
    """A switch (``--quiet``): a boolean field."""
    return _base(annotation) is bool


def is_multi(annotation: Any) -> bool:
    """Repeatable (``--push-to a --push-to b``): a plain list or tuple field (a list parsed
    from one text, such as ``languages``, is ``Annotated``)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    return get_origin(annotation) in (list, tuple)


def kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    """``(kind, choices)`` of a field's type, as the CLI builds its option: ``bool`` (a
    switch), ``choice`` (with its choices), ``list`` (repeatable) or ``value``."""
    if is_flag(annotation):
        return "bool", ()
    found = choices(annotation)
    if found is not None:
        return "choice", tuple(str(c) for c in found)
    return ("list" if is_multi(annotation) else "value"), ()


def type_text(annotation: Any, info: Any) -> str:
    """A short description of a field's type and bounds for the docs."""
    found = choices(annotation)
    if found is not None:
        return " \\| ".join(f"`{c}`" for c in found)
    base = _base(annotation)
    name = {int: "integer", float: "number", bool: "switch", str: "text"}.get(base, "")
    if not name:
        name = "list" if get_origin(base) is list else "text"
    lo = hi = None
    for item in info.metadata:
        lo = getattr(item, "ge", lo)
        hi = getattr(item, "le", hi)
    if lo is not None or hi is not None:
        name += f" {'' if lo is None else lo}..{'' if hi is None else hi}"
    return name


def grouped_options(model: type[BaseModel]) -> list[tuple[str, Any, Any]]:
    """``model``'s options ordered by help section (:data:`GROUP_TITLES`), then declaration."""
    order = list(GROUP_TITLES)
    return sorted(
        options(model), key=lambda o: order.index(o[2].group) if o[2].group in order else -1
    )


def options_markdown(model: type[BaseModel]) -> str:
    """A markdown table of ``model``'s options: flag, type, default, job-settable, help."""
    rows = [
        "| option | type | default | job | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, info, meta in grouped_options(model):
        if info.is_required():
            default = "required"
        elif info.default_factory is not None:
            default = "none"
        elif info.default is None:
            default = "preset's" if meta.target or name in ("layer", "width", "l0") else "none"
        else:
            default = f"`{info.default}`"
        help_text = (info.description or "").replace("|", "\\|")
        rows.append(
            f"| `{meta.flag}` | {type_text(info.annotation, info)} | {default} | "
            f"{'yes' if meta.job else ''} | {help_text} |"
        )
    return "\n".join(rows) + "\n"
