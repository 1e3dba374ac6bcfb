"""The layer sweep vs separate runs: Gemma 3 270M, one SAE per layer, CPU-sized inputs.

    python benchmarks/bench_sweep.py                      # 60 pairs, layers 3,6,9,12
    python benchmarks/bench_sweep.py --pairs 100 --layers 3,6,9,12

Each measurement runs in its own subprocess (so its peak memory is its own), on the same
pairs of the bundled corpus, the offline Gemma 3 270M checkpoint
(``python -m precompute gemma3-checkpoint``) and the same SAEs:

* *sweep*: ``precompute.sweep.layers.run_sweep``, one forward pass per batch up to the deepest
  layer, every SAE encoding its own hook, one committed (merged, scored) run per layer;
* *separate*: ``run_extraction`` once per layer, each in a fresh process (the model is
  loaded and run once per layer, as four ``python -m precompute run`` would).

SAEs: the SAEs this project trains (``saes/gemma3-270m-l{layer}-topk48-4096``) when all of
them exist, else random JumpReLU SAEs calibrated on each layer
(``precompute.models.gemma3.sae_directory``, 4,096 features, L0 50; built once into
the checkpoint's cache, outside the timed processes). Timings: loading (model + SAEs) and
extraction to committed runs, separately; memory: the process's peak resident set
(``ru_maxrss``, loading included). Prints a Markdown table, then the tokens/s of the sweep
and the time for 1,000 pairs extrapolated from it.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

TRAINED = "saes/gemma3-270m-l{layer}-topk48-4096"


def sae_paths(layers: list[int]) -> tuple[list[str], str]:
    """One SAE directory per layer and what they are."""
    trained = [ROOT / TRAINED.format(layer=layer) for layer in layers]
    if all((p / "cfg.json").exists() for p in trained):
        return [str(p) for p in trained], "trained TopK SAEs (k=48, 4,096 latents)"
    from precompute.models.gemma3 import SaeSpec, checkpoint_directory, sae_directory

    checkpoint = checkpoint_directory()
    paths = [str(sae_directory(checkpoint, SaeSpec(layer=layer))) for layer in layers]
    return paths, "random JumpReLU SAEs calibrated per layer (4,096 latents, L0 50)"


def base_config(pairs_file: Path, batch_size: int):
    from contract.overrides import with_overrides
    from contract.presets import preset
    from precompute.models.gemma3 import checkpoint_directory

    return with_overrides(
        preset("gemma-3-270m"),
        model_path=str(checkpoint_directory()),
        corpus_file=str(pairs_file),
        sample_size="all",
        device="cpu",
        batch_size=batch_size,
        max_tokens=128,
    )


def worker(mode: str, layers: list[int], paths: list[str], pairs_file: Path, batch: int) -> dict:
    """Load, extract, return the figures (one JSON line on stdout)."""
    import torch

    from contract.overrides import sweep_configs
    from precompute.extract.pipeline import run_extraction
    from precompute.models.loading import load_models
    from precompute.sweep.layers import load_sweep_models, run_sweep

    config = base_config(pairs_file, batch)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        if mode == "sweep":
            configs = sweep_configs(config, layers, sae_paths=paths)
            models = load_sweep_models(configs, "cpu")
            t1, c1 = time.perf_counter(), cpu_seconds()
            sweep = run_sweep(
                configs,
                out,
                "bench",
                overwrite=True,
                progress=False,
                models=models,
                compare_threshold=None,
            )
            from bilingual_core import Run

            manifest = Run.open(f"{out}/{sweep.run_ids[0]}").manifest
        else:
            layer = int(mode.removeprefix("layer-"))
            (one,) = sweep_configs(config, [layer], sae_paths=[paths[layers.index(layer)]])
            loaded = load_models(one[1], "cpu")
            t1, c1 = time.perf_counter(), cpu_seconds()
            manifest = run_extraction(one[1], out, "bench", progress=False, models=loaded)
        t2, c2 = time.perf_counter(), cpu_seconds()
    ex = manifest.extraction
    return {
        "mode": mode,
        "threads": torch.get_num_threads(),
        "load_s": t1 - t0,
        "extract_s": t2 - t1,
        "load_cpu": c1 - c0,
        "extract_cpu": c2 - c1,
        "forward_s": ex["extraction_seconds"],
        "tokens": sum(ex["n_tokens"].values()),
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (less sensitive to a busy machine
    than wall time: a process waiting for a core accrues none)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(mode: str, args: argparse.Namespace, paths: list[str], pairs_file: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--layers",
        args.layers,
        "--sae-paths",
        ",".join(paths),
        "--pairs-file",
        str(pairs_file),
        "--batch-size",
        str(args.batch_size),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def print_table(
    results: dict[str, dict], layers: list[int], n_pairs: int, saes: str, loads: list[str]
) -> None:
    import os

    sweep = results["sweep"]
    singles = [results[f"layer-{layer}"] for layer in layers]
    print(
        f"\nGemma 3 270M (offline checkpoint, fp32), CPU ({sweep['threads']} torch threads, "
        f"{os.cpu_count()} cores; 1-min load average before->after each run, in the order run "
        f"(sweep first): {', '.join(loads)}), "
        f"{n_pairs} pairs of data/parallel_en_es.tsv ({sweep['tokens']:,} real tokens), "
        f"layers {','.join(map(str, layers))}; {saes}\n"
    )
    print(
        "| what | load: wall (s) | load: CPU (s) | extract to committed runs: wall (s) | "
        "extract: CPU (s) | total wall (s) | total CPU (s) | peak RSS (MiB) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def row(label: str, r: dict) -> None:
        print(
            f"| {label} | {r['load_s']:.1f} | {r['load_cpu']:.1f} | {r['extract_s']:.1f} | "
            f"{r['extract_cpu']:.1f} | {r['load_s'] + r['extract_s']:.1f} | "
            f"{r['load_cpu'] + r['extract_cpu']:.1f} | {r['maxrss_mib']:,.0f} |"
        )

    for layer, r in zip(layers, singles, strict=True):
        row(f"separate run, layer {layer}", r)
    keys = ("load_s", "load_cpu", "extract_s", "extract_cpu")
    total = {k: sum(r[k] for r in singles) for k in keys}
    total["maxrss_mib"] = max(r["maxrss_mib"] for r in singles)
    row(f"**{len(layers)} separate runs** (sum; memory: the largest)", total)
    row(f"**one sweep over {len(layers)} layers**", sweep)
    ratio = {k: total[k] / sweep[k] for k in keys}
    print(
        f"| separate / sweep | {ratio['load_s']:.2f}x | {ratio['load_cpu']:.2f}x | "
        f"{ratio['extract_s']:.2f}x | {ratio['extract_cpu']:.2f}x | "
        f"{(total['load_s'] + total['extract_s']) / (sweep['load_s'] + sweep['extract_s']):.2f}x | "
        f"{(total['load_cpu'] + total['extract_cpu']) / (sweep['load_cpu'] + sweep['extract_cpu']):.2f}x | "
        f"{total['maxrss_mib'] / sweep['maxrss_mib']:.2f}x |"
    )
    deepest = results[f"layer-{max(layers)}"]
    print(
        f"\nThe sweep's extraction vs one run at the deepest layer alone: "
        f"{sweep['extract_cpu'] / deepest['extract_cpu']:.2f}x CPU time, "
        f"{sweep['extract_s'] / deepest['extract_s']:.2f}x wall time."
    )
    per_pair = sweep["tokens"] / n_pairs
    for what, seconds in (("wall", sweep["extract_s"]), ("CPU", sweep["extract_cpu"])):
        rate = sweep["tokens"] / seconds
        print(
            f"Sweep throughput ({what} time): {rate:,.0f} real tokens/s ({per_pair:.1f} tokens "
            f"per pair), end to end; 1,000 pairs: about {1000 * per_pair / rate:,.0f} s of "
            f"extraction -- extrapolated from this measurement, not measured."
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=60, help="pairs of the bundled corpus")
    p.add_argument("--layers", default="3,6,9,12", help="comma-separated layers")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per forward pass")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--sae-paths", help=argparse.SUPPRESS)
    p.add_argument("--pairs-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    layers = sorted(int(x) for x in args.layers.split(","))
    if args.worker:
        paths = args.sae_paths.split(",")
        result = worker(args.worker, layers, paths, args.pairs_file, args.batch_size)
        print(json.dumps(result))
        return 0
    from bench_extraction import bench_pairs

    from precompute.common.testing import write_corpus

    paths, saes = sae_paths(layers)  # built once, outside the timed subprocesses
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        pairs_file = write_corpus(Path(tmp) / "pairs.tsv", bench_pairs(args.pairs))
        results = {}
        for mode in ["sweep", *(f"layer-{layer}" for layer in layers)]:
            before = load_average()
            results[mode] = run_worker(mode, args, paths, pairs_file)
            loads.append(f"{before}->{load_average()}")
            print(f"{mode}: {results[mode]}", file=sys.stderr)
    print_table(results, layers, args.pairs, saes, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
