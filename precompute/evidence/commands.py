"""The handlers of ``logits``, ``validate`` and ``steer`` (torch is imported when they run)."""

from __future__ import annotations

from contract.commands import LogitsSettings, SteerSettings, ValidateSettings


def logits_command(settings: LogitsSettings) -> int:
    """``python -m precompute logits``."""
    from precompute.evidence.logits import add_logit_evidence

    result = add_logit_evidence(
        settings.run,
        device=settings.device,
        k=settings.k,
        n_neighbours=settings.neighbours,
        block_size=settings.block_size,
        progress=not settings.quiet,
        **settings.model_overrides(),
    )
    print_logit_summary(settings.run, result)
    return 0


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


def validate_command(settings: ValidateSettings) -> int:
    """``python -m precompute validate``."""
    from precompute.evidence.config import AblationConfig, NullConfig
    from precompute.evidence.validate import validate_run

    top = settings.top if settings.top is not None else (0 if settings.null else 20)
    top = len(settings.features) or top
    ablation = AblationConfig(
        top=top,
        score=settings.score,
        features=settings.features,
        max_sentences=settings.max_sentences,
        n_baseline=settings.baseline,
        batch_size=settings.batch_size,
        batch_tokens=settings.batch_tokens,
        seed=settings.seed,
    )
    null = NullConfig(seed=settings.seed, max_pairs=settings.null_pairs) if settings.null else None
    report = validate_run(
        settings.run,
        ablation=ablation if top > 0 else None,
        null=null,
        device=settings.device,
        progress=not settings.quiet,
        **settings.model_overrides(),
    )
    for line in report:
        print(line)
    return 0


def steer_command(settings: SteerSettings) -> int:
    """``python -m precompute steer``."""
    from precompute.evidence.config import SteeringConfig
    from precompute.evidence.steering import check_strengths, load_prompts, steer_run

    cfg = SteeringConfig(
        top=len(settings.features) or settings.top,
        score=settings.score,
        features=settings.features,
        strengths=check_strengths(settings.strengths)
        if settings.strengths is not None
        else SteeringConfig.strengths,
        n_tokens=settings.tokens,
        prompts=load_prompts(settings.prompts) if settings.prompts else (),
        n_peak=settings.peak_tokens,
        n_baseline=settings.baseline,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )
    for line in steer_run(
        settings.run,
        cfg,
        device=settings.device,
        progress=not settings.quiet,
        **settings.model_overrides(),
    ):
        print(line)
    return 0
