"""What ``--executor ray`` costs on top of one process: start-up, per run, per shard.

    python benchmarks/bench_ray.py                  # tiny preset, whole bundled corpus, CPU
    python benchmarks/bench_ray.py --repeats 5 --cli-repeats 2

Measured, each as the median of the repeats (interleaved, so a change of load
on the host hits every variant alike):

* **command line, cold**: wall time of ``python -m precompute run --preset
  tiny`` without and with ``--executor ray --workers 1|2`` (a local Ray
  cluster started and stopped by the command; every actor imports torch and
  builds the model);
* **in process, warm**: the model already loaded (``run_extraction(models=)``)
  against a Ray cluster whose workers already hold it (``keep_workers``), for
  1 and 2 workers, so what remains is extraction + scheduling + merge + score;
* **start-up parts**: ``ray.init`` of a local 2-CPU cluster, and an actor's
  start to its model being loaded;
* **per-shard cost**: one warm worker, the same run cut into 2 and into 14
  shards; the difference over 12 extra shards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract.presets import preset  # noqa: E402


def config(chunk_pairs: int):
    base = preset("tiny")
    return replace(base, extraction=replace(base.extraction, chunk_pairs=chunk_pairs))


def cli_seconds(
    out: Path, extra: list[str], chunk_pairs: int, env: dict[str, str] | None = None
) -> float:
    cmd = [
        sys.executable,
        "-m",
        "precompute",
        "run",
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--run-id",
        "bench",
        "--overwrite",
        "--quiet",
        f"--chunk-pairs={chunk_pairs}",
        *extra,
    ]
    t0 = time.perf_counter()
    subprocess.run(
        cmd,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    return time.perf_counter() - t0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--repeats", type=int, default=3, help="warm in-process measurements per variant"
    )
    p.add_argument(
        "--cli-repeats",
        type=int,
        default=1,
        help="cold command-line measurements per variant (0: none)",
    )
    p.add_argument(
        "--chunk-pairs", type=int, default=32, help="pairs per chunk (421 pairs: 14 chunks)"
    )
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the in-process Ray cluster")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("BILINGUAL_CACHE_DIR", str(tmp_path / "cache"))
        # label: (flags, environment); Ray gives each actor OMP_NUM_THREADS=1 (one CPU each).
        variants = {
            "run (single process)": ([], None),
            "run (single process), OMP_NUM_THREADS=1": ([], {"OMP_NUM_THREADS": "1"}),
            "run --executor ray --workers 1": (["--executor=ray", "--workers=1"], None),
            "run --executor ray --workers 2": (["--executor=ray", "--workers=2"], None),
        }
        cli: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.cli_repeats):
            for label, (flags, env) in variants.items():
                cli[label].append(cli_seconds(tmp_path / "cli", flags, args.chunk_pairs, env))
        rows += [(f"command line, cold: {label}", times) for label, times in cli.items() if times]
        rows += warm_rows(args, tmp_path)
    print_table(rows, args)
    return 0


def warm_rows(args: argparse.Namespace, tmp_path: Path) -> list[tuple[str, list[float]]]:
    import ray

    from precompute.cluster.ray_executor import RayOptions, run_with_ray, stop_warm_workers
    from precompute.extract.pipeline import run_extraction
    from precompute.models.loading import load_models

    cfg = config(args.chunk_pairs)
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    init = time.perf_counter() - t0
    rows: list[tuple[str, list[float]]] = [(f"ray.init, local cluster of {args.cpus} CPUs", [init])]
    try:
        import torch

        models = load_models(cfg, "cpu")
        threads = torch.get_num_threads()

        def single(n_threads: int):
            torch.set_num_threads(n_threads)
            try:
                return run_extraction(
                    cfg, tmp_path / "warm", "bench", overwrite=True, progress=False, models=models
                )
            finally:
                torch.set_num_threads(threads)

        variants = {
            f"in process, warm: single process, model loaded, {threads} torch threads": lambda: (
                single(threads)
            ),
            "in process, warm: single process, model loaded, 1 torch thread": lambda: single(1),
        }
        for workers in (1, 2):
            variants[f"in process, warm: ray, {workers} worker(s) holding the model"] = (
                lambda w=workers: run_with_ray(
                    cfg,
                    tmp_path / "warm",
                    "bench",
                    RayOptions(workers=w, keep_workers=True),
                    overwrite=True,
                    progress=False,
                )
            )
        for shards in (2, 14):
            variants[f"in process, warm: ray, 1 worker, {shards} shards"] = lambda s=shards: (
                run_with_ray(
                    cfg,
                    tmp_path / "warm",
                    "bench",
                    RayOptions(workers=1, num_shards=s, keep_workers=True),
                    overwrite=True,
                    progress=False,
                )
            )
        # Cold actor start: a fresh actor up to its model being loaded (one run, 1 worker, 1 shard).
        stop_warm_workers()
        t0 = time.perf_counter()
        run_with_ray(
            cfg,
            tmp_path / "warm",
            "bench",
            RayOptions(workers=1, num_shards=1, keep_workers=True),
            overwrite=True,
            progress=False,
        )
        cold_one = time.perf_counter() - t0
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.repeats):
            for label, run in variants.items():
                t0 = time.perf_counter()
                run()
                times[label].append(time.perf_counter() - t0)
        rows.append(
            (
                "in process, cold: ray, 1 new worker, 1 shard (actor start + model load + run)",
                [cold_one],
            )
        )
        rows += list(times.items())
        per_shard = [
            (b - a) / 12
            for a, b in zip(
                times["in process, warm: ray, 1 worker, 2 shards"],
                times["in process, warm: ray, 1 worker, 14 shards"],
                strict=True,
            )
        ]
        rows.append(("per extra shard (14 vs 2 shards, 1 warm worker)", per_shard))
        stop_warm_workers()
    finally:
        ray.shutdown()
    return rows


def print_table(rows: list[tuple[str, list[float]]], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(
        f"\ntiny preset, 421 pairs, 7,944 tokens, --chunk-pairs {args.chunk_pairs}; {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} at the end; medians (n = number of measurements)\n"
    )
    print("| what | seconds (median) | n |")
    print("| --- | ---: | ---: |")
    for label, values in rows:
        print(f"| {label} | {statistics.median(values):.2f} | {len(values)} |")


if __name__ == "__main__":
    raise SystemExit(main())
