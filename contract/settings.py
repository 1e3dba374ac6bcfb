"""Every setting of ``python -m precompute run``, declared once.

One :class:`Setting` per knob: its name, kind, help text, the group it belongs
to, how a queued job's value is checked (or that a queued job may not set it),
and its label on the ``/recompute`` form. Four readers derive what they need
from :data:`SETTINGS` and nothing else:

* ``precompute.commands`` builds the ``run`` command's argparse options;
* ``contract.request`` validates a job request and turns it into ``--flag=value``
  arguments of the run command;
* ``contract.overrides.with_overrides`` knows which names override a preset;
* ``explorer.jobs_view`` draws the job form.

So adding a setting is one entry here (plus, for a preset override, the line
in ``with_overrides`` that puts its value into the config). The validators
below take ``(name, value)`` and return the clean value or raise
:class:`RequestError`; they treat every value as untrusted (it may come from
a browser).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from bilingual_core.manifest import LANG_PATTERN, check_run_id
from contract.config import DEVICES, DTYPES
from contract.presets import GS2_L0S, GS2_WIDTHS, PRESETS

Group = Literal["run", "executor", "model", "sae", "corpus", "extraction"]
Kind = Literal["text", "int", "float", "choice", "flag", "multi"]
OVERRIDE_GROUPS: tuple[Group, ...] = ("model", "sae", "corpus", "extraction")
EXECUTORS = ("local", "ray")
FormPlace = Literal["main", "more"]
Validator = Callable[[str, Any], Any]

MAX_LANGUAGES = 8
MAX_SAMPLE_SIZE = 10_000_000


class RequestError(ValueError):
    """A job request that fails validation; the message names the field."""


# ----------------------------------------------------------- validators ---

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A model name, SAE release, dataset config: no slashes."""
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
"""A Hugging Face id: ``name`` or ``owner/name``."""
_SAE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_HOOK = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]{0,127}")
_SPLIT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:%\[\]+-]{0,63}")
_PATH = re.compile(r"[A-Za-z0-9_./~][A-Za-z0-9_./~+@=,-]{0,1023}")
PERSON = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def text(pattern: re.Pattern[str], what: str) -> Validator:
    """A string matching ``pattern`` as a whole."""

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise RequestError(f"{name}: {value!r} is not a valid {what}")
        return value

    return check


def path(name: str, value: Any) -> str:
    """A path on the worker host: plain characters, no ``..`` component."""
    value = text(_PATH, "path on the worker host (letters, digits, . _ / ~ + @ = , -)")(name, value)
    if ".." in value.split("/"):
        raise RequestError(f"{name}: '..' is not allowed in paths")
    return value


def integer(lo: int, hi: int) -> Validator:
    """An integer in ``lo..hi`` (a string of digits is accepted: form fields are text)."""

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


def choice(options: Iterable[str]) -> Validator:
    options = tuple(options)

    def check(name: str, value: Any) -> str:
        if value not in options:
            raise RequestError(f"{name}: {value!r} is not one of {list(options)}")
        return value

    return check


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"{name}: {value!r} is not true or false")
    return value


def sample_size(name: str, value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    return integer(1, MAX_SAMPLE_SIZE)(name, value)


def languages(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [x.strip() for x in value.split(",") if x.strip()]
    if not isinstance(value, list | tuple) or not 2 <= len(value) <= MAX_LANGUAGES:
        raise RequestError(f"{name}: give 2 to {MAX_LANGUAGES} language codes, got {value!r}")
    for code in value:
        if not isinstance(code, str) or not LANG_PATTERN.fullmatch(code) or code == "global":
            raise RequestError(f"{name}: {code!r} is not a language code such as 'en' or 'es'")
    if len(set(value)) != len(value):
        raise RequestError(f"{name}: languages repeat in {value!r}")
    return list(value)


def run_id(name: str, value: Any) -> str:
    try:
        return check_run_id(value)
    except ValueError as exc:
        raise RequestError(f"{name}: {exc}") from None


# ---------------------------------------------------------- declaration ---


@dataclass(frozen=True)
class Setting:
    """One setting of the run command."""

    name: str
    """Python name: the argparse destination, the job request key, the override name."""
    help: str
    """One line for ``--help`` and the form's tooltip."""
    group: Group
    """``run``: how the command runs; ``executor``: where the extraction runs (also options of
    ``python -m precompute worker``, which passes them on); the others: overrides of the
    preset's config."""
    kind: Kind = "text"
    """``flag``: a switch; ``multi``: repeatable; ``choice``: one of ``choices``."""
    choices: tuple[str, ...] = ()
    check: Validator | None = None
    """Validates a queued job's value; None: a queued job may not set this (the worker decides)."""
    label: str | None = None
    """Label on the ``/recompute`` form; None: not on the form."""
    form: FormPlace = "main"
    """Where the form shows it: the main grid or the "More options" expander."""
    example: str = ""
    """Short hint after the help text on the form."""
    default: Any = None
    """The command's default; None for overrides ("keep the preset's")."""
    required: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def override(self) -> bool:
        """Overrides a field of the preset's config (and None keeps the preset's value)."""
        return self.group in OVERRIDE_GROUPS

    @property
    def queueable(self) -> bool:
        """A queued job may set it."""
        return self.check is not None


_S = Setting
SETTINGS: tuple[Setting, ...] = (
    # -- how the command runs
    _S(
        "preset",
        "starting config: gemma-2-2b is the post's setup (GPU), gemma-3-270m the offline "
        "Gemma 3 checkpoint, gemma-scope-2-270m Gemma 3 270M with Gemma Scope 2 SAEs, tiny an "
        "offline CPU model in seconds",
        "run",
        "choice",
        tuple(sorted(PRESETS)),
        check=choice(sorted(PRESETS)),
        label="Preset",
        required=True,
    ),
    _S("out", "results root (default: $BILINGUAL_RESULTS_DIR or results/)", "run"),
    _S(
        "run_id",
        "run directory name (default: the preset's name)",
        "run",
        check=run_id,
        label="Run id",
        example="<preset>-<job id>",
    ),
    _S(
        "overwrite",
        "replace an existing run (and discard its staging)",
        "run",
        "flag",
        check=boolean,
        label="Replace an existing run of this id",
        default=False,
    ),
    _S(
        "resume",
        "continue a killed run from its last finished chunk",
        "run",
        "flag",
        check=boolean,
        label="Resume a staged, unfinished run",
        default=False,
    ),
    _S("shard", "this host's shard index (0-based)", "run", "int", default=0),
    _S("num_shards", "number of shards the corpus is split into", "run", "int", default=1),
    _S("staging", "local directory for staged chunks (default: <out>/.<run id>.staging)", "run"),
    _S(
        "dry_run",
        "print the resolved config and offline checks, run nothing",
        "run",
        "flag",
        default=False,
    ),
    _S("quiet", "no progress bars", "run", "flag", default=False),
    _S(
        "no_logits",
        "skip the logit effects and decoder neighbours computed after the run (docs/evidence.md)",
        "run",
        "flag",
        default=False,
    ),
    _S(
        "progress_jsonl",
        "also append machine-readable progress, one JSON object per line, to this file",
        "run",
        metavar="PATH",
    ),
    _S(
        "push_to",
        "then publish the finished run to this results root, e.g. hf://datasets/<user>/<repo> "
        "(repeatable)",
        "run",
        "multi",
        metavar="URL",
        default=(),
    ),
    # -- where the extraction runs (the worker passes these on to every run it starts)
    _S(
        "executor",
        "local: this process (default); ray: shards on the actors of a Ray cluster "
        "(docs/cluster.md)",
        "executor",
        "choice",
        EXECUTORS,
        default="local",
    ),
    _S(
        "ray_address",
        "Ray cluster to use (e.g. auto, or ray://head:10001); default: start a local one",
        "executor",
        metavar="ADDRESS",
    ),
    _S(
        "workers",
        "Ray actors extracting at once, each loading the model once (default 1)",
        "executor",
        "int",
        metavar="N",
    ),
    _S(
        "gpus_per_worker",
        "GPUs each Ray actor reserves (default: 1 when the cluster has GPUs and --device "
        "is not cpu, else 0; with 0 the actors reserve CPUs)",
        "executor",
        "float",
        metavar="G",
    ),
    # -- the model
    _S(
        "model",
        "TransformerLens model name (architecture when --model-path is given)",
        "model",
        check=text(_REPO_ID, "model name"),
        label="Model",
        example="gemma-2-2b",
    ),
    _S(
        "model_path",
        "local Hugging Face checkpoint directory (weights + tokenizer)",
        "model",
        check=path,
        label="Model path",
        form="more",
        example="on the worker host, in <results root>/_models/ or another --model-dir of the worker",
    ),
    _S(
        "dtype",
        "model dtype (gemma-2-2b: bfloat16)",
        "model",
        "choice",
        DTYPES,
        check=choice(DTYPES),
        label="Model dtype",
    ),
    # -- the SAE
    _S(
        "sae_release",
        "SAE-Lens release",
        "sae",
        check=text(_NAME, "SAE-Lens release"),
        label="SAE release",
        example="gemma-scope-2b-pt-res-canonical",
    ),
    _S(
        "sae_id",
        "SAE id in the release",
        "sae",
        check=text(_SAE_ID, "SAE id"),
        label="SAE id",
        example="layer_20/width_16k/canonical",
    ),
    _S(
        "sae_path",
        "local SAE-Lens directory (SAE.save_model output)",
        "sae",
        check=path,
        label="SAE path",
        form="more",
        example="on the worker host, in <results root>/_models/ or another --model-dir of the worker",
    ),
    _S(
        "layer",
        "gemma-scope-2-270m: the block whose residual-stream SAE to use (default 12)",
        "sae",
        "int",
        check=integer(0, 255),
        label="SAE layer (Gemma Scope 2)",
        form="more",
        metavar="N",
    ),
    _S(
        "width",
        "gemma-scope-2-270m: SAE width (default 16k)",
        "sae",
        "choice",
        GS2_WIDTHS,
        check=choice(GS2_WIDTHS),
        label="SAE width (Gemma Scope 2)",
        form="more",
    ),
    _S(
        "l0",
        "gemma-scope-2-270m: SAE sparsity, small/medium/big L0 (default medium)",
        "sae",
        "choice",
        GS2_L0S,
        check=choice(GS2_L0S),
        label="SAE L0 (Gemma Scope 2)",
        form="more",
    ),
    _S(
        "hook",
        "hook the SAE reads (default: the SAE's own metadata)",
        "sae",
        check=text(_HOOK, "hook name"),
        label="Hook",
        form="more",
    ),
    _S(
        "neuronpedia_id",
        "Neuronpedia model/SAE id for feature links",
        "sae",
        check=text(_SAE_ID, "Neuronpedia model/SAE id"),
        label="Neuronpedia id",
        form="more",
    ),
    _S(
        "sae_dtype",
        "SAE dtype (default float32)",
        "sae",
        "choice",
        DTYPES,
        check=choice(DTYPES),
        label="SAE dtype",
    ),
    # -- the corpus
    _S(
        "dataset",
        "Hugging Face dataset id",
        "corpus",
        check=text(_REPO_ID, "Hugging Face dataset id"),
        label="Dataset",
        example="Helsinki-NLP/opus_books",
    ),
    _S(
        "dataset_config",
        "dataset configuration",
        "corpus",
        check=text(_NAME, "dataset configuration"),
        label="Dataset config",
        example="en-es",
    ),
    _S(
        "split",
        "dataset split (default train)",
        "corpus",
        check=text(_SPLIT, "dataset split"),
        label="Split",
        example="train",
    ),
    _S(
        "field",
        "dataset column holding {lang: text} dicts; '' for one column per language",
        "corpus",
        check=text(_NAME, "column name"),
        label="Dataset field",
        form="more",
        example="translation",
    ),
    _S(
        "corpus_file",
        "local TSV/CSV/JSONL/Parquet file with one column per language",
        "corpus",
        check=path,
        label="Corpus file",
        example="on the worker host, in <results root>/_corpora/ or another --corpus-dir of the worker",
    ),
    _S(
        "languages",
        "comma-separated language codes in run order",
        "corpus",
        check=languages,
        label="Languages",
        example="en,es",
    ),
    _S(
        "sample_size",
        "pairs to sample (shuffle(seed).select(range(n))), or 'all'",
        "corpus",
        check=sample_size,
        label="Sample size",
        example="a number, or all",
    ),
    _S(
        "seed",
        "sampling seed (the post: 42)",
        "corpus",
        "int",
        check=integer(0, 2**32 - 1),
        label="Seed",
    ),
    # -- the extraction
    _S(
        "max_tokens",
        "real tokens kept per sentence (longer: truncated, counted)",
        "extraction",
        "int",
        check=integer(1, 8192),
        label="Max tokens",
    ),
    _S(
        "batch_size",
        "sentences per forward pass",
        "extraction",
        "int",
        check=integer(1, 4096),
        label="Batch size",
    ),
    _S(
        "batch_tokens",
        "padded tokens per forward pass, at most",
        "extraction",
        "int",
        check=integer(1, 10_000_000),
        label="Batch tokens",
        form="more",
    ),
    _S(
        "chunk_pairs",
        "pairs per staged chunk (the unit of --resume)",
        "extraction",
        "int",
        check=integer(1, 1_000_000),
        label="Chunk pairs",
        form="more",
    ),
    _S(
        "device",
        "auto (default) picks CUDA when present",
        "extraction",
        "choice",
        DEVICES,
        check=choice(DEVICES),
        label="Device",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
OVERRIDES: dict[str, Setting] = {s.name: s for s in SETTINGS if s.override}
"""Settings that override a field of the preset's config."""
JOB_OVERRIDES: dict[str, Setting] = {s.name: s for s in OVERRIDES.values() if s.queueable}
"""The overrides a queued job may carry."""
GROUP_TITLES: dict[Group, str] = {
    "run": "how the command runs",
    "executor": "where the extraction runs",
    "model": "model (overrides the preset)",
    "sae": "SAE (overrides the preset)",
    "corpus": "corpus (overrides the preset)",
    "extraction": "extraction (overrides the preset)",
}


def setting(name: str) -> Setting:
    return BY_NAME[name]


def form_settings(place: FormPlace) -> list[Setting]:
    """The job overrides the ``/recompute`` form shows at ``place``, in declaration order."""
    return [s for s in JOB_OVERRIDES.values() if s.label and s.form == place]
