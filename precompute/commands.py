"""The handlers of ``run``, ``score``, ``sort-activations``, ``synthetic``, ``merge`` and
``export-feature`` (torch is imported only when they run; ``precompute.cli`` calls them
with the validated settings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from contract.commands import (
    ExportFeatureSettings,
    MergeSettings,
    ScoreSettings,
    SortActivationsSettings,
    SyntheticSettings,
)
from contract.overrides import config_from_settings
from contract.settings import (
    RunSettings,
)


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


def merge_command(settings: MergeSettings) -> int:
    from precompute.extract.merge import finalize

    manifest = finalize(
        settings.shards,
        settings.out,
        settings.run_id,
        overwrite=settings.overwrite,
        progress=not settings.quiet,
    )
    _print_summary(manifest, settings.out)
    return 0


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


def export_feature_command(settings: ExportFeatureSettings) -> int:
    from bilingual_core import Run
    from bilingual_core.export import feature_json

    text = feature_json(Run.open(settings.run), settings.feature, settings.pairs)
    if settings.out:
        Path(settings.out).write_text(text + "\n", encoding="utf-8")
        print(f"wrote feature {settings.feature} to {settings.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def score_command(settings: ScoreSettings) -> int:
    from bilingual_core import ScoreConfig, score_run
    from bilingual_core.score_registry import SCORES, score_by_key

    result = score_run(
        settings.run,
        config=ScoreConfig(variant=settings.variant, k=settings.k),
        progress=not settings.quiet,
    )
    s = result.scoring
    print(
        f"scored {settings.run}: {s['n_alive']} alive features, beta={s['beta']:.6g}, "
        f"{s['n_activation_rows']:,} activations in {s['seconds']:.2f}s"
    )
    for spec in (SCORES[0], score_by_key("bi")):  # the default ranking, and the post's
        top = (
            result.features.dropna(subset=[spec.rank_column]).sort_values(spec.rank_column).head(10)
        )
        print(f"top features by {spec.key}:", ", ".join(str(f) for f in top["feature"]))
    return 0


def sort_command(settings: SortActivationsSettings) -> int:
    from bilingual_core.sorting import sort_run_activations

    rows = sort_run_activations(settings.run)
    print(
        f"sorted {rows:,} activations of {settings.run}; score it with: "
        f"python -m precompute score --run {settings.run}"
    )
    return 0


def synthetic_command(settings: SyntheticSettings) -> int:
    from bilingual_core import ScoreConfig, SyntheticConfig, score_run, write_synthetic_run
    from bilingual_core.storage import join, open_root

    cfg = SyntheticConfig(
        n_pairs=settings.n_pairs,
        d_sae=settings.d_sae,
        mean_tokens=settings.mean_tokens,
        features_per_token=settings.features_per_token,
        seed=settings.seed,
        run_id=settings.run_id,
    )
    write_synthetic_run(settings.out, cfg, overwrite=settings.overwrite)
    _, root = open_root(settings.out)
    result = score_run(settings.out, settings.run_id, ScoreConfig(), progress=True)
    print(
        f"wrote {join(root, settings.run_id)}: {result.scoring['n_activation_rows']:,} activations"
    )
    return 0
