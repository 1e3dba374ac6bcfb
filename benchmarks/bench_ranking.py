"""Planted precision@10 of every ranking, from 300 pairs to full OPUS Books size.

    python benchmarks/bench_ranking.py --root /tmp/bench-ranking
    python benchmarks/bench_ranking.py --root /tmp/bench-ranking --sizes 300 1000 --seeds 0 1 2

Each size and seed is a synthetic run planting every kind of feature
(``PlantedCounts.every_kind()``: 8 bilingual, 4 bilingual with tiny
activations, 8 single-pair, 8 two-pair, 8 language-leaning, 8 independent,
4 ubiquitous, 4 weak independent, 4 dead; the rest background), generated and
scored once and cached under ``--root``. For every score of the registry the
table gives the share of its top 10 alive features that were planted
bilingual (``bilingual`` or ``bilingual_weak``), as the mean over the seeds
and the worst seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bilingual_core import PlantedCounts, SyntheticConfig, score_run, write_synthetic_run  # noqa: E402
from bilingual_core.run import Run  # noqa: E402
from bilingual_core.schema import FEATURES  # noqa: E402
from bilingual_core.score_registry import SCORES  # noqa: E402
from bilingual_core.synthetic import SyntheticTruth, planted_precision  # noqa: E402

FULL_OPUS_PAIRS = 93_470
SIZES = [300, 1_000, 3_000, 10_000, 30_000, FULL_OPUS_PAIRS]


def ensure_scored(
    root: Path, n_pairs: int, seed: int, d_sae: int
) -> tuple[pd.DataFrame, SyntheticTruth]:
    """The features table and planted truth of one cached run (written and scored when missing)."""
    run_id = f"rank-{n_pairs}-{d_sae}-s{seed}"
    cfg = SyntheticConfig(
        n_pairs=n_pairs,
        d_sae=d_sae,
        seed=seed,
        run_id=run_id,
        planted=PlantedCounts.every_kind(),
        block_features=256,
    )
    path = root / run_id
    if not (path / FEATURES).exists():
        t = time.perf_counter()
        write_synthetic_run(root, cfg, overwrite=True)
        score_run(path)
        print(f"generated and scored {run_id} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    run = Run.open(path)
    planted = run.manifest.extraction["planted"]
    truth = SyntheticTruth({int(f): k for f, k in planted.items()}, {}, {})
    return run.read_pandas(FEATURES), truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("bench-out/ranking"))
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--d-sae", type=int, default=256)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    specs = [s for s in SCORES if not s.per_language and s.key != "notebook"]
    rows = []
    for n in args.sizes:
        per_seed = []
        for seed in args.seeds:
            features, truth = ensure_scored(args.root, n, seed, args.d_sae)
            per_seed.append(
                {
                    s.key: planted_precision(
                        features,
                        truth,
                        s.column,
                        higher_is_better=s.higher_is_better,
                        support=s.ties == "support",
                    )
                    for s in specs
                    if s.column in features
                }
            )
        rows.append((n, per_seed))
    print(
        f"\nplanted precision@10: mean over seeds {args.seeds} (worst seed), d_sae {args.d_sae}\n"
    )
    print("| pairs | " + " | ".join(s.key for s in specs) + " |")
    print("|---:|" + "---:|" * len(specs))
    for n, per_seed in rows:
        cells = []
        for s in specs:
            values = [p[s.key] for p in per_seed if s.key in p]
            cells.append(f"{sum(values) / len(values):.2f} ({min(values):.1f})" if values else "–")
        print(f"| {n:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
