"""``python -m precompute logits`` and ``python -m precompute validate`` (torch is imported when they run)."""

from __future__ import annotations

import argparse

from precompute.cli import Handler, command


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory (local path or fsspec URL)")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto (default) picks CUDA when present",
    )
    p.add_argument(
        "--model-path", help="local Hugging Face checkpoint to load instead of the manifest's model"
    )
    p.add_argument(
        "--sae-path", help="local SAE-Lens directory to load instead of the manifest's SAE"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k, v in (("model_path", args.model_path), ("sae_path", args.sae_path)) if v}


@command(
    "logits", "add each feature's top promoted/suppressed tokens and decoder neighbours to a run"
)
def _logits_args(p: argparse.ArgumentParser) -> Handler:
    _model_args(p)
    p.add_argument(
        "--k",
        type=int,
        default=10,
        help="promoted and suppressed tokens kept per feature (default 10)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=10,
        help="nearest decoder directions per feature (default 10)",
    )
    p.add_argument(
        "--block-size", type=int, help="features per block (default: ~32M logits per block)"
    )

    def run(args: argparse.Namespace) -> int:
        from precompute.evidence.logits import add_logit_evidence

        result = add_logit_evidence(
            args.run,
            device=args.device,
            k=args.k,
            n_neighbours=args.neighbours,
            block_size=args.block_size,
            progress=not args.quiet,
            **_overrides(args),
        )
        print_logit_summary(args.run, result)
        return 0

    return run


def print_logit_summary(location: str, result) -> None:
    rec = result.record
    print(
        f"added logits.parquet, output_languages.parquet and neighbours.parquet to {location}: "
        f"{result.output_languages['feature'].nunique():,} features, top {rec['k']} tokens each "
        f"({rec['seconds_logits']:.2f}s), {rec['n_neighbours']} neighbours each ({rec['seconds_neighbours']:.2f}s)"
    )


def logits_after_run(location: str, *, progress: bool = True) -> None:
    """The logit tables for a run ``python -m precompute run`` has just written
    (reloads its model and SAE from the manifest; ``--no-logits`` skips this)."""
    from precompute.evidence.logits import add_logit_evidence

    print_logit_summary(location, add_logit_evidence(location, progress=progress))


@command(
    "validate",
    "ablate the top candidates per language against a random baseline, and/or score a null dictionary",
)
def _validate_args(p: argparse.ArgumentParser) -> Handler:
    from precompute.evidence.config import AblationConfig, NullConfig

    _model_args(p)
    p.add_argument(
        "--top",
        type=int,
        help="ablate the best N candidates (default 20; 0 with --null: no ablation)",
    )
    p.add_argument(
        "--score",
        help="ranking to take candidates from, e.g. jaccard or mass_jsd "
        "(default: the first of evidence, jaccard, mass_jsd, bi in the run)",
    )
    p.add_argument(
        "--features", help="ablate these features (comma-separated ids) instead of the top N"
    )
    p.add_argument(
        "--null",
        choices=["random"],
        help="also extract the pairs through a random dictionary "
        "of the SAE's shape and sparsity and store its scores",
    )
    p.add_argument(
        "--max-sentences",
        type=int,
        default=AblationConfig.max_sentences,
        help="firing sentences per feature and language (default %(default)s)",
    )
    p.add_argument(
        "--baseline",
        type=int,
        default=AblationConfig.n_baseline,
        help="random features of similar firing frequency per candidate (default %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=AblationConfig.batch_size)
    p.add_argument(
        "--batch-tokens",
        type=int,
        default=AblationConfig.batch_tokens,
        help="padded tokens per forward pass of the ablation (default %(default)s)",
    )
    p.add_argument(
        "--null-pairs", type=int, help="null: extract only the first N pairs (default: all)"
    )
    p.add_argument("--seed", type=int, default=0)

    def run(args: argparse.Namespace) -> int:
        top = args.top if args.top is not None else (0 if args.null else 20)
        features = tuple(int(f) for f in args.features.split(",")) if args.features else ()
        top = len(features) or top
        ablation = AblationConfig(
            top=top,
            score=args.score,
            features=features,
            max_sentences=args.max_sentences,
            n_baseline=args.baseline,
            batch_size=args.batch_size,
            batch_tokens=args.batch_tokens,
            seed=args.seed,
        )
        null = NullConfig(seed=args.seed, max_pairs=args.null_pairs) if args.null else None
        from precompute.evidence.validate import validate_run

        report = validate_run(
            args.run,
            ablation=ablation if top > 0 else None,
            null=null,
            device=args.device,
            progress=not args.quiet,
            **_overrides(args),
        )
        for line in report:
            print(line)
        return 0

    return run
