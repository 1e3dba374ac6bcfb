"""The ``run``, ``merge`` and ``export-feature`` subcommands (torch is imported only when they run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contract.overrides import with_overrides
from contract.presets import preset
from contract.settings import GROUP_TITLES, OVERRIDES, SETTINGS
from precompute.cli import Handler, command
from precompute.cluster.executor_args import check_executor_args


def add_settings(p: argparse.ArgumentParser, groups: tuple[str, ...] | None = None) -> None:
    """Options for the entries of ``contract.settings.SETTINGS`` (those of ``groups``, or all:
    the run command's options)."""
    targets = {
        group: (p if group == "run" else p.add_argument_group(title))
        for group, title in GROUP_TITLES.items()
        if groups is None or group in groups
    }
    for s in SETTINGS:
        if s.group not in targets:
            continue
        target = targets[s.group]
        if s.kind == "flag":
            target.add_argument(s.flag, dest=s.name, action="store_true", help=s.help)
            continue
        if s.kind == "multi":
            target.add_argument(
                s.flag,
                dest=s.name,
                action="append",
                default=list(s.default),
                metavar=s.metavar,
                help=s.help,
            )
            continue
        kwargs = (
            {"type": {"int": int, "float": float}[s.kind]} if s.kind in ("int", "float") else {}
        )
        if s.kind == "choice":
            kwargs["choices"] = s.choices
        target.add_argument(
            s.flag,
            dest=s.name,
            default=s.default,
            required=s.required,
            metavar=s.metavar,
            help=s.help,
            **kwargs,
        )


def config_from_args(args: argparse.Namespace):
    """The preset named by ``--preset`` with every override the command line gave."""
    return with_overrides(preset(args.preset), **{name: getattr(args, name) for name in OVERRIDES})


@command("run", "extract SAE activations over a parallel corpus into a scored run directory")
def _run_args(p: argparse.ArgumentParser) -> Handler:
    add_settings(p)

    def run(args: argparse.Namespace) -> int:
        from bilingual_core import results_root_from_env

        check_executor_args(args)
        config = config_from_args(args)
        out = args.out or results_root_from_env()
        run_id = args.run_id or config.preset or "run"
        if args.dry_run:
            return _dry_run(config, out, run_id)
        from bilingual_core.progress import stream_to

        with stream_to(args.progress_jsonl):
            if args.executor == "ray":
                from precompute.cluster.ray_executor import run_from_args

                result = run_from_args(config, out, run_id, args)
            else:
                from precompute.extract.pipeline import run_extraction

                result = run_extraction(
                    config,
                    out,
                    run_id,
                    overwrite=args.overwrite,
                    resume=args.resume,
                    shard=args.shard,
                    num_shards=args.num_shards,
                    staging=args.staging,
                    progress=not args.quiet,
                )
        if args.num_shards > 1:
            print(
                f"shard {args.shard} of {args.num_shards} staged in {result.directory}; when every shard "
                f"is done: python -m precompute merge --shards <each shard dir> --out {out} --run-id {run_id}"
            )
            return 0
        _print_summary(result, out)
        if not args.no_logits:  # logit effects + decoder neighbours (precompute/evidence)
            from precompute.evidence.commands import logits_after_run

            logits_after_run(f"{str(out).rstrip('/')}/{run_id}", progress=not args.quiet)
        for url in args.push_to:
            from precompute.publishing.publish import publish_run

            location = publish_run(
                f"{str(out).rstrip('/')}/{run_id}", url, overwrite=args.overwrite
            )
            print(f"published to {location}")
        return 0

    return run


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
