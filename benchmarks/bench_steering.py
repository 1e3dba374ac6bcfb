"""Speed of ``precompute steer``, and its result on a run.

    python benchmarks/bench_steering.py                               # Gemma 3 270M on results/gemma3-en-es-l9, top 10
    python benchmarks/bench_steering.py --run results/gemma3-en-fr-l9 --top 5
    python benchmarks/bench_steering.py --check-cache                 # also: cached = uncached decoding

The run is copied to a scratch directory first (the shipped run is never
changed); its model and SAE are loaded from the manifest on the CPU, then
``steer`` runs with the given settings and prints its summary (which
candidates write their concept in every language), the seconds per candidate
(model loading excluded), peak resident memory, and an estimate for Gemma 2 2B
+ a 16k Gemma Scope SAE on one GPU from FLOP and memory-traffic counts (an
estimate, not a measurement).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Gemma 2 2B (d_model 2304, 26 layers, vocab 256,000): parameters outside the embedding,
# and the GPU figures the estimate assumes (H100: bf16 dense peak, HBM bandwidth).
GEMMA2_BODY_PARAMS = 2.0e9
GEMMA2_D_MODEL, GEMMA2_VOCAB = 2304, 256_000
GPU_FLOPS, GPU_UTIL, GPU_BYTES_PER_S = 989e12, 0.3, 3.35e12
GEMMA2_WEIGHT_BYTES = 2 * (GEMMA2_BODY_PARAMS + GEMMA2_D_MODEL * GEMMA2_VOCAB)  # bf16
STEP_OVERHEAD_S = 0.02
"""Python and kernel-launch time of one TransformerLens forward of 26 layers (a guess)."""


def gemma2_estimate(cfg, n_candidates: int, n_languages: int) -> dict[str, float]:
    """Seconds per candidate on one GPU: each generation step of a batch costs the larger of
    its FLOPs at GPU_UTIL of peak and one read of the weights, plus STEP_OVERHEAD_S."""
    prompts = 3 * n_languages
    nonzero = sum(1 for a in cfg.strengths if a != 0)
    rows = n_candidates * (1 + cfg.n_baseline) * nonzero + 1
    batches = -(-rows // cfg.batch_size)
    flop_per_token = 2 * GEMMA2_BODY_PARAMS + 2 * GEMMA2_D_MODEL * GEMMA2_VOCAB
    total = 0.0
    for b in range(batches):
        batch_rows = min(cfg.batch_size, rows - b * cfg.batch_size)
        step = max(
            batch_rows * flop_per_token / (GPU_FLOPS * GPU_UTIL),
            GEMMA2_WEIGHT_BYTES / GPU_BYTES_PER_S,
        )
        total += prompts * cfg.n_tokens * (step + STEP_OVERHEAD_S)
    return {
        "rows_per_prompt": rows,
        "batches_per_prompt": batches,
        "seconds_total": total,
        "seconds_per_candidate": total / n_candidates,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=str(ROOT / "results" / "gemma3-en-es-l9"))
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--baseline", type=int, default=2)
    p.add_argument("--strengths", nargs="+", default=None)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--check-cache", action="store_true")
    p.add_argument("--keep", help="copy the steered run here (to look at it in the app)")
    args = p.parse_args()

    from bilingual_core import Run
    from precompute.evidence.config import SteeringConfig
    from precompute.evidence.loading import load_run_models
    from precompute.evidence.steering import compute_steering, parse_strengths, steer_run

    cfg = SteeringConfig(
        top=args.top,
        n_baseline=args.baseline,
        n_tokens=args.tokens,
        strengths=parse_strengths(args.strengths) if args.strengths else SteeringConfig.strengths,
    )
    with tempfile.TemporaryDirectory(prefix="bench-steer-") as scratch:
        copy = Path(scratch) / Path(args.run).name
        shutil.copytree(args.run, copy)
        run = Run.open(copy)
        t0 = time.perf_counter()
        models = load_run_models(run, "cpu")
        print(
            f"loaded {run.manifest.model.get('name')} in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        if args.check_cache:
            small = SteeringConfig(top=1, n_baseline=1, strengths=(0.0, 4.0), n_tokens=8)
            fast, _ = compute_steering(run, models, small)
            slow, _ = compute_steering(
                run, models, SteeringConfig(**{**small.__dict__, "kv_cache": False})
            )
            same = fast["token_ids"].map(list).tolist() == slow["token_ids"].map(list).tolist()
            gap = float((fast["concept_logprob"] - slow["concept_logprob"]).abs().max())
            print(
                f"cached = uncached decoding: tokens {same}, concept log-prob gap {gap:.2e}",
                flush=True,
            )
        t0 = time.perf_counter()
        lines = steer_run(str(copy), cfg, device="cpu", progress=True, models=models)
        seconds = time.perf_counter() - t0
        for line in lines:
            print(line)
        rec = Run.open(copy).manifest.evidence["steer"]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"\n{rec['n_candidates']} candidates, {rec['n_continuations']} continuations of "
            f"{cfg.n_tokens} tokens: {seconds:.1f}s with the commit, "
            f"{rec['seconds_per_candidate']:.1f}s per candidate (CPU, model loading excluded); "
            f"peak RSS {peak:.2f} GiB"
        )
        if args.keep:
            shutil.copytree(copy, args.keep, dirs_exist_ok=True)
    est = gemma2_estimate(cfg, args.top, len(run.languages))
    print(
        f"Gemma 2 2B on one H100, ESTIMATED from FLOP and memory counts (not measured): "
        f"{est['rows_per_prompt']} continuations per prompt in {est['batches_per_prompt']} batch(es), "
        f"about {est['seconds_per_candidate']:.2f}s per candidate "
        f"({est['seconds_total']:.0f}s for the {args.top})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
