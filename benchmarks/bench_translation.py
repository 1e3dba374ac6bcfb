"""The default ranking's top 20 on scored runs: how many are shared-surface, how
many translation features (co-firing mostly cross-token and significant).

    python benchmarks/bench_translation.py results/gemma3-en-es-l9 results/gemma3-en-fr-l9
    python benchmarks/bench_translation.py results/gemma3-en-es-l9 --top 50

Targets (README, "The scores"): at most 2 shared-surface features and at least
15 translation features in the top 20. Also prints how many families the top
50 form. A run scored before peak-token evidence is reported as such.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bilingual_core.run import Run  # noqa: E402
from bilingual_core.schema import FEATURES  # noqa: E402
from bilingual_core.score_registry import DEFAULT  # noqa: E402

MAX_SHARED = 2
MIN_TRANSLATION = 15


def report(path: Path, top: int) -> bool:
    """Print one run's table; True when it meets both targets."""
    feats = Run.open(path).read_pandas(FEATURES)
    if DEFAULT.rank_column not in feats:
        print(
            f"## {path.name}: scored before peak-token evidence; run "
            f"`python -m precompute score --run {path}`\n"
        )
        return False
    ranked = feats.dropna(subset=[DEFAULT.rank_column]).sort_values(DEFAULT.rank_column)
    head = ranked.head(top)
    n_shared = int(head["is_shared_surface"].sum())
    n_trans = int(head["is_translation"].sum())
    print(f"## {path.name}: default ranking `{DEFAULT.key}`, top {top}\n")
    print("| rank | feature | label | cross/shared | cross_log10p | kind | token pairs |")
    print("|---:|---:|---|---:|---:|---|---|")
    for r in head.itertuples():
        kind = "translation" if r.is_translation else "shared token" if r.is_shared_surface else ""
        print(
            f"| {int(getattr(r, DEFAULT.rank_column))} | {r.feature} | {r.label} | "
            f"{r.n_cross}/{r.n_shared} | {r.cross_log10p:.1f} | {kind} | {r.token_pairs} |"
        )
    fam = ranked.head(50)["family"].nunique()
    ok = n_shared <= MAX_SHARED and n_trans >= MIN_TRANSLATION
    print(
        f"\nshared-surface in top {top}: {n_shared} (target <= {MAX_SHARED}); "
        f"translation features: {n_trans} (target >= {MIN_TRANSLATION}); "
        f"the top 50 form {fam} families; {'MET' if ok else 'NOT MET'}\n"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    results = [report(run, args.top) for run in args.runs]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main()
