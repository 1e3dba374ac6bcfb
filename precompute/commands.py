"""The ``run``, ``merge`` and ``export-feature`` subcommands (torch is imported only when they run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from contract.fields import options
from contract.overrides import with_overrides
from contract.presets import preset
from contract.settings import (
    GROUP_TITLES,
    RunSettings,
    SettingsError,
    choices,
    grouped_options,
    is_flag,
    is_multi,
    validate,
)
from precompute.cli import Handler, command

CONFIG_HELP = (
    "read the settings from this JSON file (an object of setting: value, as the worker "
    "writes it); flags given as well replace its values"
)


def add_settings(
    p: argparse.ArgumentParser, model: type[BaseModel], groups: tuple[str, ...] | None = None
) -> None:
    """One option per field of ``model`` (those of ``groups``, or all), under its help section.

    Options default to absent (``argparse.SUPPRESS``) and take text: the model's
    pydantic validation (:func:`settings_from_args`) checks and converts every value."""
    sections: dict[str | None, argparse._ActionsContainer] = {None: p, "run": p}
    for name, info, meta in grouped_options(model):
        if groups is not None and meta.group not in groups:
            continue
        if meta.group not in sections:
            sections[meta.group] = p.add_argument_group(GROUP_TITLES.get(meta.group, meta.group))
        target = sections[meta.group]
        kwargs: dict = {"dest": name, "default": argparse.SUPPRESS, "help": info.description}
        if is_flag(info.annotation):
            target.add_argument(meta.flag, action="store_true", **kwargs)
            continue
        found = choices(info.annotation)
        metavar = meta.metavar or ("{" + ",".join(map(str, found)) + "}" if found else None)
        if is_multi(info.annotation):
            kwargs["action"] = "append"
        target.add_argument(meta.flag, metavar=metavar, **kwargs)


def add_config_option(p: argparse.ArgumentParser) -> None:
    # TODO(18b): --config becomes a generic option of every command in precompute/cli.py.
    p.add_argument("--config", metavar="FILE", default=None, help=CONFIG_HELP)


def read_config(path: str) -> dict:
    """The settings object of a ``--config`` JSON file (SettingsError when it is not one)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"--config: no such file {path}") from None
    except (OSError, ValueError) as exc:
        raise SettingsError(f"--config: {path} is not a JSON file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"--config: {path} must hold a JSON object of setting: value")
    return data


def settings_from_args(model: type[BaseModel], args: argparse.Namespace) -> BaseModel:
    """``model`` from the ``--config`` file (if any) and the flags given, validated once."""
    data = read_config(args.config) if getattr(args, "config", None) else {}
    given = {name: getattr(args, name) for name, _, _ in options(model) if hasattr(args, name)}
    return validate(model, {**data, **given})


def config_from_settings(settings: RunSettings):
    """The preset that ``settings`` names with every override it gives."""
    return with_overrides(preset(settings.preset), settings)


@command("run", "extract SAE activations over a parallel corpus into a scored run directory")
def _run_args(p: argparse.ArgumentParser) -> Handler:
    add_config_option(p)
    add_settings(p, RunSettings)
    return lambda args: run(settings_from_args(RunSettings, args))  # type: ignore[arg-type]


def run(settings: RunSettings) -> int:
    """``python -m precompute run`` with validated settings."""
    from bilingual_core import results_root_from_env

    config = config_from_settings(settings)
    out = settings.out or results_root_from_env()
    run_id = settings.run_id or config.preset or "run"
    if settings.dry_run:
        return _dry_run(config, out, run_id)
    from bilingual_core.progress import stream_to

    with stream_to(settings.progress_jsonl):
        if settings.executor == "ray":
            from precompute.cluster.ray_executor import run_from_args

            result = run_from_args(config, out, run_id, settings)
        else:
            from precompute.extract.pipeline import run_extraction

            result = run_extraction(
                config,
                out,
                run_id,
                overwrite=settings.overwrite,
                resume=settings.resume,
                shard=settings.shard,
                num_shards=settings.num_shards,
                staging=settings.staging,
                progress=not settings.quiet,
            )
    if settings.num_shards > 1:
        print(
            f"shard {settings.shard} of {settings.num_shards} staged in {result.directory}; when "
            f"every shard is done: python -m precompute merge --shards <each shard dir> --out {out} "
            f"--run-id {run_id}"
        )
        return 0
    _print_summary(result, out)
    if not settings.no_logits:  # logit effects + decoder neighbours (precompute/evidence)
        from precompute.evidence.commands import logits_after_run

        logits_after_run(f"{str(out).rstrip('/')}/{run_id}", progress=not settings.quiet)
    for url in settings.push_to:
        from precompute.publishing.publish import publish_run

        location = publish_run(
            f"{str(out).rstrip('/')}/{run_id}", url, overwrite=settings.overwrite
        )
        print(f"published to {location}")
    return 0


@command("merge", "join the staged shards of a sharded run into one scored run directory")
def _merge_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument(
        "--shards", nargs="+", required=True, help="shard staging directories (shard-*-of-*)"
    )
    p.add_argument("--out", required=True, help="results root to write the run into")
    p.add_argument("--run-id", required=True, help="run directory name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        from precompute.extract.merge import finalize

        manifest = finalize(
            args.shards, args.out, args.run_id, overwrite=args.overwrite, progress=not args.quiet
        )
        _print_summary(manifest, args.out)
        return 0

    return run


def _print_summary(manifest, out: str) -> None:
    ex, sc = manifest.extraction, manifest.scoring
    tokens = sum(ex.get("n_tokens", {}).values())
    truncated = sum(ex.get("n_truncated", {}).values())
    print(
        f"wrote run {manifest.run_id!r} under {out}: {manifest.n_pairs} pairs, {tokens:,} tokens "
        f"({truncated} sentences truncated to {ex.get('max_tokens')} tokens), "
        f"{ex.get('n_activations', 0):,} activations (L0 {ex.get('mean_l0')}), "
        f"{ex.get('tokens_per_second')} tokens/s; {sc.get('n_alive')} alive features"
    )


def _dry_run(config, out: str, run_id: str) -> int:
    from precompute.models.checks import offline_plan

    print(
        json.dumps(
            {
                "run_id": run_id,
                "out": out,
                "config": config.to_dict(),
                "fingerprint": config.fingerprint(),
            },
            indent=2,
            default=str,
        )
    )
    if not config.model.is_tiny:
        print(json.dumps({"offline_checks": offline_plan(config)}, indent=2, default=str))
    print("dry run: nothing was extracted", file=sys.stderr)
    return 0


@command(
    "export-feature",
    "write one feature of a run as JSON: scores, label, top pairs with tokens, logit effects, evidence",
)
def _export_feature_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--run", required=True, help="run directory (a path or fsspec URL)")
    p.add_argument("--feature", required=True, type=int, help="feature id")
    p.add_argument("--pairs", type=int, default=10, help="top pairs to include (default 10)")
    p.add_argument("--out", help="file to write (default: standard output)")

    def run(args: argparse.Namespace) -> int:
        from bilingual_core import Run
        from bilingual_core.export import feature_json

        if args.pairs < 0:
            raise ValueError("--pairs must be >= 0")
        text = feature_json(Run.open(args.run), args.feature, args.pairs)
        if args.out:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
            print(f"wrote feature {args.feature} to {args.out}", file=sys.stderr)
        else:
            print(text)
        return 0

    return run
