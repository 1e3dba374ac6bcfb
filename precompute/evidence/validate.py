"""``python -m precompute validate``: ablation, purity and the null, added to a run in one commit."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from bilingual_core import Run
from bilingual_core.evidence import (
    ABLATION,
    NULL_SCORES,
    PURITY,
    add_tables,
    null_comparison,
    purity_table,
)
from bilingual_core.schema import FEATURES
from precompute.evidence.config import AblationConfig, NullConfig


def validate_run(
    location: str,
    *,
    ablation: AblationConfig | None,
    null: NullConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    models=None,
    **overrides: Any,
) -> list[str]:
    """Compute what was asked (ablation of the top candidates, the null's scores) and
    the run's purity, add them to the run atomically, and return summary lines."""
    from precompute.evidence.loading import load_run_models, pick_device
    from precompute.evidence.logits import check_residual

    run = Run.open(location)
    device = pick_device(device)
    tables: dict[str, pa.Table] = {}
    record: dict[str, Any] = {}
    lines = []
    if ablation is not None or null is not None:
        if models is None:
            models = load_run_models(run, device, **overrides)
        check_residual(models)
    if ablation is not None:
        from precompute.evidence.ablation import compute_ablation
        from precompute.evidence.ablation import to_table as ablation_table

        frame, record["ablation"] = compute_ablation(
            run, models, ablation, device=device, progress=progress
        )
        tables[ABLATION] = ablation_table(frame)
        hurt = frame.groupby("feature")["hurts"].all()
        lines.append(
            f"ablation: {record['ablation']['n_candidates']} candidates by {record['ablation']['rank_by']} "
            f"({record['ablation']['seconds_per_candidate']:.2f}s each); ablating hurts every language "
            f"for {int(hurt.sum())} of them"
        )
    if null is not None:
        from precompute.evidence.null import compute_null

        frame, record["null"] = compute_null(
            location, models, null, device=device, progress=progress
        )
        tables[NULL_SCORES] = pa.Table.from_pandas(frame, preserve_index=False)
        comparison = null_comparison(run.read_pandas(FEATURES), frame)
        record["null"]["beat_null"] = {r.score: r.n_beat_null for r in comparison.itertuples()}
        lines.append(
            f"null: {record['null']['null_alive']} alive random features "
            f"(L0 {record['null']['null_mean_l0']} vs the SAE's {record['null']['real_mean_l0']})"
        )
        lines.extend(
            f"  {r.score}: {r.n_beat_null} of {r.n_alive} alive features beat the null's best "
            f"({r.null_best:.4g})"
            for r in comparison.itertuples()
        )
    purity = purity_table(run)
    tables[PURITY] = pa.Table.from_pandas(
        purity.astype({"top_pairs": "string"}), preserve_index=False
    )
    lines.append(
        f"purity: {len(purity):,} co-firing features, median purity "
        f"{pd.to_numeric(purity['purity']).median():.3f}"
        if len(purity)
        else "purity: no co-firing features"
    )
    add_tables(location, tables, "validate", record)
    lines.insert(0, f"added {', '.join(sorted(tables))} to {location}")
    return lines
