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


@command(
    "steer",
    "steer with the top candidates per language: does each write its concept in the prompt's language?",
)
def _steer_args(p: argparse.ArgumentParser) -> Handler:
    from precompute.evidence.config import SteeringConfig

    _model_args(p)
    p.add_argument(
        "--top",
        type=int,
        default=SteeringConfig.top,
        help="steer the best N candidates (default %(default)s)",
    )
    p.add_argument(
        "--score",
        help="ranking to take candidates from, e.g. jaccard (default: the app's default ranking)",
    )
    p.add_argument(
        "--features", help="steer these features (comma-separated ids) instead of the top N"
    )
    p.add_argument(
        "--strengths",
        nargs="+",
        default=None,
        metavar="ALPHA",
        help="multiples of each feature's typical maximum activation added along its "
        "decoder direction (default 0 1 2 4; 0, the unsteered model, is always included)",
    )
    p.add_argument(
        "--prompts",
        help='JSON file {"en": ["I think that", ...], "es": [...]} replacing the built-in '
        "neutral prompts (every language of the run needed)",
    )
    p.add_argument(
        "--tokens",
        type=int,
        default=SteeringConfig.n_tokens,
        help="greedy continuation length (default %(default)s)",
    )
    p.add_argument(
        "--baseline",
        type=int,
        default=SteeringConfig.n_baseline,
        help="random features of similar firing frequency per candidate (default %(default)s)",
    )
    p.add_argument(
        "--peak-tokens",
        type=int,
        default=SteeringConfig.n_peak,
        help="peak tokens per feature and language the concept gain follows (default %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=SteeringConfig.batch_size)
    p.add_argument("--seed", type=int, default=0)

    def run(args: argparse.Namespace) -> int:
        from precompute.common.errors import PrecomputeError
        from precompute.evidence.steering import load_prompts, parse_strengths, steer_run

        try:
            features = tuple(int(f) for f in args.features.split(",")) if args.features else ()
        except ValueError:
            raise PrecomputeError(
                f"--features: {args.features!r} is not a comma-separated list of feature ids"
            ) from None
        for name, value, low in (
            ("--top", args.top, 1),
            ("--tokens", args.tokens, 1),
            ("--baseline", args.baseline, 0),
            ("--peak-tokens", args.peak_tokens, 1),
            ("--batch-size", args.batch_size, 1),
        ):
            if value < low:
                raise PrecomputeError(f"{name} must be at least {low}, got {value}")
        cfg = SteeringConfig(
            top=len(features) or args.top,
            score=args.score,
            features=features,
            strengths=parse_strengths(args.strengths)
            if args.strengths is not None
            else SteeringConfig.strengths,
            n_tokens=args.tokens,
            prompts=load_prompts(args.prompts) if args.prompts else (),
            n_peak=args.peak_tokens,
            n_baseline=args.baseline,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        for line in steer_run(
            args.run, cfg, device=args.device, progress=not args.quiet, **_overrides(args)
        ):
            print(line)
        return 0

    return run
