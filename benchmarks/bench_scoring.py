"""Scoring speed, peak memory and storage size on synthetic runs.

    python benchmarks/bench_scoring.py --root /tmp/bench-runs            # post size + full OPUS size
    python benchmarks/bench_scoring.py --root /tmp/bench-runs --sizes 500 10000 --repeats 3

Each size is a synthetic run with Gemma Scope-like density (about 33 real
tokens per sentence and 71 active features per token, d_sae 16384), generated
once and cached under ``--root``. Scoring runs in a fresh subprocess per repeat
so that peak resident memory (ru_maxrss) is the scorer's alone. Prints a
Markdown table: median seconds, peak RSS, activations, and the size of
activations.parquet in bytes per token against the dense float32 layout of the
post's published dataset (16,384 x 4 bytes per token).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bilingual_core import SyntheticConfig, write_synthetic_run  # noqa: E402
from bilingual_core.run import Run  # noqa: E402

FULL_OPUS_PAIRS = 93_470

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from bilingual_core import ScoreConfig, score_run
t = time.perf_counter()
result = score_run({run!r}, config=ScoreConfig())
elapsed = time.perf_counter() - t
print(json.dumps({{"seconds": elapsed, "thresholds": result.scoring["seconds_thresholds"],
                   "compute": result.scoring["seconds"],
                   "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def ensure_run(root: Path, n_pairs: int, d_sae: int, fpt: float, tokens: float) -> Path:
    run_id = f"synth-{n_pairs}-{d_sae}-{fpt:g}"
    path = root / run_id
    if (path / "manifest.json").exists():
        return path
    t = time.perf_counter()
    # Span capping and de-duplication lose ~8% of the drawn activations;
    # ask for a little more so the realised density is close to ``fpt``.
    cfg = SyntheticConfig(
        n_pairs=n_pairs,
        d_sae=d_sae,
        mean_tokens=tokens,
        features_per_token=fpt * 1.09,
        vocab_size=5000,
        run_id=run_id,
        block_features=256,
    )
    write_synthetic_run(root, cfg)
    print(f"generated {run_id} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    return path


def score_once(run: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT), run=str(run))],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("bench-out/runs"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, FULL_OPUS_PAIRS])
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--features-per-token", type=float, default=71.0)
    parser.add_argument("--tokens-per-sentence", type=float, default=33.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        run = ensure_run(
            args.root, n, args.d_sae, args.features_per_token, args.tokens_per_sentence
        )
        manifest = Run.open(run).manifest
        n_tokens = manifest.extraction["n_tokens"]
        n_act = manifest.extraction["n_activations"]
        size = (run / "activations.parquet").stat().st_size
        results = [score_once(run) for _ in range(args.repeats)]
        secs = statistics.median(r["seconds"] for r in results)
        pass_s = statistics.median(r["thresholds"] for r in results)
        rss = max(r["maxrss_kb"] for r in results) / 2**20
        rows.append((n, n_tokens, n_act, secs, pass_s, rss, size, size / n_tokens))
    print(
        f"\nscoring on {os.cpu_count()} cores, median of {args.repeats} (peak RSS: max over repeats)\n"
    )
    print(
        "| pairs | tokens | activations | score s (median) | of which thresholds s | peak RSS GiB "
        "| activations.parquet MB | bytes/token | dense bytes/token | dense/ours |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    dense = 16384 * 4
    for n, t, a, s, p, r, size, bpt in rows:
        print(
            f"| {n:,} | {t:,} | {a:,} | {s:.2f} | {p:.2f} | {r:.2f} | {size / 1e6:.1f} | {bpt:.0f} "
            f"| {dense:,} | {dense / bpt:.0f}x |"
        )


if __name__ == "__main__":
    main()
