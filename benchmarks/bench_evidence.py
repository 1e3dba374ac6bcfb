"""Speed and memory of the evidence commands: ``logits`` and ``validate`` (ablation, null).

    python benchmarks/bench_evidence.py                       # tiny model + Gemma 3 270M, CPU
    python benchmarks/bench_evidence.py --no-gemma3           # tiny only
    python benchmarks/bench_evidence.py --gemma3-pairs 64 --gemma3-top 2 --gemma3-max-sentences 8

Each model gets a fresh run (``precompute run ... --no-logits``), then each
command runs in its own subprocess so that its peak resident set
(``ru_maxrss``, model loading included) is its own. Timings exclude loading
the model: ``logits`` in seconds per 1,000 features, ablation in seconds per
candidate (each candidate: its sentences plus its baseline features'
sentences, ``n_baseline`` of them), the null in seconds for the whole run.
Gemma 3 270M comes from ``python -m precompute gemma3-checkpoint`` (cached in
the home directory). Prints a Markdown table, then the Gemma 2 2B GPU
estimate from FLOP counts (an estimate, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _step(args: argparse.Namespace) -> None:
    """One measurement, in this (fresh) process; prints one JSON line."""
    from bilingual_core import Run
    from precompute.evidence.config import AblationConfig, NullConfig
    from precompute.evidence.loading import load_run_models

    run = Run.open(args.run)
    t0 = time.perf_counter()
    models = load_run_models(run, "cpu")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out: dict = {"step": args.step, "d_sae": run.manifest.d_sae, "load_s": round(load_s, 2)}
    if args.step == "logits":
        from precompute.evidence.logits import add_logit_evidence

        add_logit_evidence(args.run, device="cpu", progress=False, models=models)
        seconds = time.perf_counter() - t0
        out.update(seconds=seconds, per_1000_features=1000 * seconds / run.manifest.d_sae)
    elif args.step == "ablation":
        from precompute.evidence.validate import validate_run

        cfg = AblationConfig(
            top=args.top, max_sentences=args.max_sentences, n_baseline=args.baseline
        )
        validate_run(args.run, ablation=cfg, device="cpu", progress=False, models=models)
        seconds = time.perf_counter() - t0
        rec = Run.open(args.run).manifest.evidence["validate"]["ablation"]
        out.update(
            seconds=seconds,
            per_candidate=rec["seconds_per_candidate"],
            top=args.top,
            max_sentences=args.max_sentences,
            baseline=args.baseline,
            forward_rows=rec["n_forward_rows"],
        )
    else:
        from precompute.evidence.validate import validate_run

        validate_run(
            args.run, ablation=None, null=NullConfig(), device="cpu", progress=False, models=models
        )
        seconds = time.perf_counter() - t0
        rec = Run.open(args.run).manifest.evidence["validate"]["null"]
        out.update(
            seconds=seconds,
            n_pairs=rec["n_pairs"],
            null_l0=rec["null_mean_l0"],
            real_l0=rec["real_mean_l0"],
        )
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(out))


def _measure(run: Path, step: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "--step", step, "--run", str(run)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _precompute(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "precompute", *args, "--quiet", "--no-logits"], cwd=ROOT, check=True
    )


def _rows(name: str, run: Path, top: int, max_sentences: int, baseline: int) -> list[str]:
    logits = _measure(run, "logits")
    ablation = _measure(run, "ablation", top=top, max_sentences=max_sentences, baseline=baseline)
    null = _measure(run, "null")
    return [
        f"| {name} | logits | {logits['d_sae']:,} features | {logits['per_1000_features']:.2f} s / 1,000 features "
        f"({logits['seconds']:.1f} s) | {logits['peak_rss_gib']:.2f} |",
        f"| {name} | validate --top {top} (max {max_sentences} sentences/lang, {baseline} baseline) | "
        f"{ablation['forward_rows']:,} sentence passes | {ablation['per_candidate']:.2f} s / candidate "
        f"({ablation['seconds']:.1f} s) | {ablation['peak_rss_gib']:.2f} |",
        f"| {name} | validate --null random | {null['n_pairs']} pairs (L0 {null['null_l0']} vs {null['real_l0']}) | "
        f"{null['seconds']:.1f} s | {null['peak_rss_gib']:.2f} |",
    ]


def gpu_estimate() -> list[str]:
    """Gemma 2 2B + the 16k Gemma Scope SAE on one GPU, from FLOP counts."""
    d_sae, d_model, vocab, params = 16_384, 2_304, 256_000, 2.6e9
    logits = 2 * d_sae * d_model * vocab
    tokens, rows = (
        35,
        2 * 64 * (1 + 3),
    )  # sentence length with BOS; 64 sentences x 2 languages x (1 + 3 features)
    per_candidate = rows * 2 * params * tokens
    return [
        f"* logits: 2 x {d_sae:,} x {d_model:,} x {vocab:,} = {logits:.2e} FLOP; at ~50 TFLOP/s (fp32/TF32 on an "
        f"H100) about {logits / 50e12:.1f} s, plus reading the {d_sae * vocab * 4 / 1e9:.0f} GB of logits once for "
        "the top-k (memory bound, ~0.01 s per block pass): about a second for all 16,384 features.",
        f"* validate, per candidate at the defaults ({rows} sentence passes of ~{tokens} tokens): "
        f"{per_candidate:.2e} FLOP; at ~300 TFLOP/s (bf16, ~30% of peak) about {per_candidate / 300e12:.2f} s, "
        "so --top 100 in about a minute (estimate, not measured).",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--step", choices=["logits", "ablation", "null"], help=argparse.SUPPRESS)
    p.add_argument("--run", help=argparse.SUPPRESS)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--max-sentences", type=int, default=64)
    p.add_argument("--baseline", type=int, default=3)
    p.add_argument("--no-gemma3", action="store_true")
    p.add_argument("--gemma3-pairs", type=int, default=64)
    p.add_argument("--gemma3-top", type=int, default=2)
    p.add_argument("--gemma3-max-sentences", type=int, default=8)
    p.add_argument("--gemma3-baseline", type=int, default=1)
    args = p.parse_args()
    if args.step:
        _step(args)
        return
    lines = ["| model | command | size | time | peak RSS GiB |", "|---|---|---|---|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        _precompute("run", "--preset", "tiny", "--out", tmp, "--run-id", "tiny")
        lines += _rows(
            "tiny (d_sae 512, vocab 5,242)",
            Path(tmp) / "tiny",
            args.top,
            args.max_sentences,
            args.baseline,
        )
        print("\n".join(lines), flush=True)
        if not args.no_gemma3:
            from precompute.models.gemma3 import (
                MODEL_NAME,
                checkpoint_directory,
                sae_directory,
            )

            checkpoint = checkpoint_directory()
            sae = sae_directory(checkpoint)
            _precompute(
                "run",
                "--preset",
                "gemma-2-2b",
                "--model",
                MODEL_NAME,
                "--model-path",
                str(checkpoint),
                "--sae-path",
                str(sae),
                "--corpus-file",
                "data/parallel_en_es.tsv",
                "--sample-size",
                str(args.gemma3_pairs),
                "--dtype",
                "float32",
                "--device",
                "cpu",
                "--batch-size",
                "32",
                "--out",
                tmp,
                "--run-id",
                "gemma3",
            )
            rows = _rows(
                "Gemma 3 270M (d_sae 4,096, vocab 262,144)",
                Path(tmp) / "gemma3",
                args.gemma3_top,
                args.gemma3_max_sentences,
                args.gemma3_baseline,
            )
            print("\n".join(rows), flush=True)
    print("\nGemma 2 2B on one GPU (estimate from FLOP counts, not measured):")
    print("\n".join(gpu_estimate()))


if __name__ == "__main__":
    main()
