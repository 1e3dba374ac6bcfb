"""``python -m precompute <command>``: the command-line entry point.

Each subcommand registers its arguments here and imports its implementation
lazily, so that ``score`` (and ``--help``) never import torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]
Builder = Callable[[argparse.ArgumentParser], Handler]
# name -> (builder that adds the arguments and returns the handler, help text)
_COMMANDS: dict[str, tuple[Builder, str]] = {}


def command(name: str, help: str) -> Callable[[Builder], Builder]:
    """Register a subcommand: the decorated function adds its arguments and returns its handler."""

    def register(builder: Builder) -> Builder:
        _COMMANDS[name] = (builder, help)
        return builder

    return register


@command("score", "recompute features, thresholds and curves of a run from its activations")
def _score_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--run", required=True, help="run directory (local path or fsspec URL)")
    p.add_argument(
        "--variant",
        choices=["blog", "notebook"],
        default="blog",
        help="blog: the post's text (default); notebook: also the post's notebook score",
    )
    p.add_argument(
        "--k", type=int, default=300, help="jsd order statistic that sets beta (default 300)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from bilingual_core import ScoreConfig, score_run
        from bilingual_core.score_registry import SCORES, score_by_key

        result = score_run(
            args.run, config=ScoreConfig(variant=args.variant, k=args.k), progress=not args.quiet
        )
        s = result.scoring
        print(
            f"scored {args.run}: {s['n_alive']} alive features, beta={s['beta']:.6g}, "
            f"{s['n_activation_rows']:,} activations in {s['seconds']:.2f}s"
        )
        for spec in (SCORES[0], score_by_key("bi")):  # the default ranking, and the post's
            top = (
                result.features.dropna(subset=[spec.rank_column])
                .sort_values(spec.rank_column)
                .head(10)
            )
            print(f"top features by {spec.key}:", ", ".join(str(f) for f in top["feature"]))
        return 0

    return run


@command(
    "sort-activations", "sort a run's activations.parquet into the order the contract requires"
)
def _sort_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--run", required=True, help="run directory (local path or fsspec URL)")

    def run(args: argparse.Namespace) -> int:
        from bilingual_core.sorting import sort_run_activations

        rows = sort_run_activations(args.run)
        print(
            f"sorted {rows:,} activations of {args.run}; score it with: python -m precompute score --run {args.run}"
        )
        return 0

    return run


@command("synthetic", "write (and score) a synthetic run with planted features")
def _synthetic_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--out", required=True, help="results root to write into")
    p.add_argument("--run-id", default="synthetic")
    p.add_argument("--n-pairs", type=int, default=500)
    p.add_argument("--d-sae", type=int, default=2048)
    p.add_argument("--mean-tokens", type=float, default=20.0)
    p.add_argument("--features-per-token", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    def run(args: argparse.Namespace) -> int:
        from bilingual_core import ScoreConfig, SyntheticConfig, score_run, write_synthetic_run
        from bilingual_core.storage import join, open_root

        cfg = SyntheticConfig(
            n_pairs=args.n_pairs,
            d_sae=args.d_sae,
            mean_tokens=args.mean_tokens,
            features_per_token=args.features_per_token,
            seed=args.seed,
            run_id=args.run_id,
        )
        write_synthetic_run(args.out, cfg, overwrite=args.overwrite)
        _, root = open_root(args.out)
        result = score_run(args.out, args.run_id, ScoreConfig(), progress=True)
        print(
            f"wrote {join(root, args.run_id)}: {result.scoring['n_activation_rows']:,} activations"
        )
        return 0

    return run


def _load_plugins() -> None:
    """Import modules that register further subcommands (cheap: they import torch lazily)."""
    import importlib

    for module in (
        "precompute.commands",
        "precompute.publishing.importer",
        "precompute.serve.worker_commands",
        "precompute.models.gemma3",
        "precompute.train.train_sae",
        "precompute.evidence.commands",
        "precompute.sweep.layers",
        "precompute.sweep.compare",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_plugins()
    parser = argparse.ArgumentParser(
        prog="python -m precompute", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (builder, help_text) in _COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(handler=builder(sub_parser))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from bilingual_core import RunExistsError, RunFormatError

    try:
        return args.handler(args)
    except (RunFormatError, RunExistsError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: nothing was replaced (partial output, if any, is kept for --resume)",
            file=sys.stderr,
        )
        return 130
