"""Extraction speed: this pipeline against the post's way, side by side, same model.

    python benchmarks/bench_extraction.py                       # tiny model, CPU
    python benchmarks/bench_extraction.py --pairs 400 --repeats 5
    python benchmarks/bench_extraction.py --gemma-shape          # GPU host: Gemma 2 2B shape, 16k SAE
    python benchmarks/bench_extraction.py --gemma-shape --layers 2 --vocab 8000 --pairs 16 --repeats 1  # CPU smoke
    python benchmarks/bench_extraction.py --gemma-shape --skip-post --pairs 20000 --executor ray --workers 8  # multi-GPU

With ``--executor ray`` our pipeline also runs through ``precompute.cluster.ray_executor``
on ``--workers`` actors (one GPU each on a GPU host), each building its own
copy of the model: the first run is timed cold (actor start + model build),
the repeats with the actors kept warm.

*The post's way*: a ``datasets.map`` over pairs, one sentence per forward
pass through the whole model in float32 with the SAE spliced in
(``run_with_cache_with_saes``), the dense ``(2, L, d_sae)`` activations kept
in the mapped dataset, as in the published dataset. *Ours*:
``precompute.extract.pipeline.run_extraction`` (length-sorted padded batches, the
model stopped after the hook layer, only non-zeros leave the device, chunks
streamed to Parquet) timed to the staged chunks, and end to end (merged,
scored, committed run). Both see the same pairs and the same model weights,
already loaded (loading is not timed). Prints a Markdown table of the median
of ``--repeats`` runs: seconds, tokens/s and the ratio to the post's way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from contract.config import BUNDLED_CORPUS  # noqa: E402
from precompute.common.corpus import read_local_table  # noqa: E402
from precompute.common.testing import tiny_config, write_corpus  # noqa: E402


def bench_pairs(n: int) -> list[tuple[str, str]]:
    """``n`` pairs from the bundled corpus, cycled when ``n`` is larger."""
    frame = read_local_table(BUNDLED_CORPUS)
    pairs = list(zip(frame["en"], frame["es"], strict=True))
    return [pairs[i % len(pairs)] for i in range(n)]


def post_way(model, sae, hook: str, pairs: list[tuple[str, str]]) -> tuple[float, int]:
    """(seconds, real tokens): the post's extraction, dense activations kept."""
    import datasets

    dataset = datasets.Dataset.from_dict(
        {"translation": [{"en": en, "es": es} for en, es in pairs]}
    )
    act_name = f"{hook}.hook_sae_acts_post"

    @torch.no_grad()
    def extract(example):
        rows, lengths = [], []
        for lang in ("es", "en"):  # the published dataset: row 0 Spanish, row 1 English
            tokens = model.to_tokens(example["translation"][lang])
            _, cache = model.run_with_cache_with_saes(tokens, saes=[sae], names_filter=[act_name])
            rows.append(cache[act_name][0].float().cpu())
            lengths.append(tokens.shape[1])
        width = max(lengths)
        dense = torch.zeros(2, width, rows[0].shape[1])
        for i, r in enumerate(rows):
            dense[i, : r.shape[0]] = r
        return {"sae_features": dense.numpy(), "len_tokens": lengths}

    t0 = time.perf_counter()
    mapped = dataset.map(extract, keep_in_memory=True)
    seconds = time.perf_counter() - t0
    real = sum(n - 1 for lens in mapped["len_tokens"] for n in lens)
    return seconds, real


def ours(config, loaded, root: Path) -> tuple[float, float, int, float]:
    """(seconds to staged chunks, seconds end to end, real tokens, mean L0)."""
    from precompute.extract.pipeline import run_extraction

    t0 = time.perf_counter()
    manifest = run_extraction(config, root, "bench", overwrite=True, progress=False, models=loaded)
    total = time.perf_counter() - t0
    ex = manifest.extraction
    return ex["extraction_seconds"], total, sum(ex["n_tokens"].values()), ex["mean_l0"]


def load_tiny_models(config, device: str, dtype: str):
    from precompute.models.loading import load_models

    return load_models(replace(config, model=replace(config.model, dtype=dtype)), device)


def load_gemma_shape(args, pairs, device: str, dtype: torch.dtype):
    from contract.config import TinySpec
    from precompute.models.gemma_shape import GemmaShape, build_gemma_shape
    from precompute.models.tiny import tiny_directory
    from precompute.models.tiny_tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tiny_directory(TinySpec()) / "tokenizer")
    texts = [t for pair in pairs[:256] for t in pair]
    shape = GemmaShape(
        n_layers=args.layers, d_vocab=args.vocab, d_sae=args.d_sae, target_l0=args.l0
    )
    return build_gemma_shape(shape, tokenizer, texts, device, dtype)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=200, help="sentence pairs per measurement")
    p.add_argument(
        "--repeats", type=int, default=3, help="measurements per pipeline (the median is shown)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="our sentences per forward pass")
    p.add_argument("--chunk-pairs", type=int, default=1024, help="our pairs per staged chunk")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--gemma-shape", action="store_true", help="random Gemma 2 2B-shaped model + 16k SAE"
    )
    p.add_argument("--layers", type=int, help="(--gemma-shape) fewer blocks, for a CPU smoke test")
    p.add_argument(
        "--vocab", type=int, help="(--gemma-shape) smaller vocabulary, for a CPU smoke test"
    )
    p.add_argument("--d-sae", type=int, default=16384, help="(--gemma-shape) SAE width")
    p.add_argument(
        "--l0", type=float, default=71.0, help="(--gemma-shape) features firing per token"
    )
    p.add_argument("--skip-post", action="store_true", help="time only our pipeline")
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="ray: also time our pipeline on --workers Ray actors",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="(--executor ray) actors, one GPU each on a GPU host"
    )
    p.add_argument(
        "--ray-address", help="(--executor ray) cluster to join (default: start a local one)"
    )
    return p.parse_args(argv)


def load(args: argparse.Namespace, config, pairs, device: str):
    """(our models, the post's models or None, description, our dtype)."""
    if not args.gemma_shape:
        models = load_tiny_models(config, device, "float32")
        return models, models, "tiny (3 blocks, d_model 64) + 512-feature JumpReLU SAE", "fp32"
    ours_dtype = torch.bfloat16 if device == "cuda" else torch.float32
    our_models = load_gemma_shape(args, pairs, device, ours_dtype)
    post_models = None if args.skip_post else load_gemma_shape(args, pairs, device, torch.float32)
    return (
        our_models,
        post_models,
        "Gemma 2 2B shape (random init) + 16k JumpReLU SAE",
        "bf16" if ours_dtype == torch.bfloat16 else "fp32",
    )


def measure(
    args: argparse.Namespace, config, our_models, post_models, pairs, out: Path, our_dtype: str
) -> list[tuple]:
    """Table rows (label, median seconds, tokens, L0); repeats interleave the two
    pipelines so that changing load on the host hits both alike."""
    post_runs, our_runs = [], []
    for _ in range(args.repeats):
        if post_models is not None:
            post_runs.append(
                post_way(post_models.model, post_models.sae, post_models.hook_name, pairs)
            )
        our_runs.append(ours(config, our_models, out))
    rows = []
    if post_runs:
        rows.append(
            (
                "post's way: datasets.map, 1 sentence/forward, fp32, dense",
                statistics.median(r[0] for r in post_runs),
                post_runs[0][1],
                None,
            )
        )
    tokens, l0 = our_runs[0][2], our_runs[0][3]
    rows.append(
        (
            f"ours: batched {args.batch_size}, {our_dtype}, sparse, to staged chunks",
            statistics.median(r[0] for r in our_runs),
            tokens,
            l0,
        )
    )
    rows.append(
        (
            "ours: end to end (merged, scored, committed run)",
            statistics.median(r[1] for r in our_runs),
            tokens,
            l0,
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    import datasets

    args = parse_args(argv)
    datasets.disable_progress_bars()
    device = (
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    pairs = bench_pairs(args.pairs)
    with tempfile.TemporaryDirectory(prefix="bench-extraction-") as tmp:
        tmp_path = Path(tmp)
        corpus = write_corpus(tmp_path / "corpus.tsv", pairs)
        config = tiny_config(
            sample_size=None,
            corpus_file=corpus,
            chunk_pairs=args.chunk_pairs,
            batch_size=args.batch_size,
            max_tokens=512,
        )
        config = replace(config, extraction=replace(config.extraction, device=device))
        our_models, post_models, model_name, our_dtype = load(args, config, pairs, device)
        if args.skip_post:
            post_models = None
        rows = measure(args, config, our_models, post_models, pairs, tmp_path / "out", our_dtype)
        if args.executor == "ray":
            del our_models, post_models  # the actors build their own
            rows += ray_rows(args, config, pairs, tmp_path / "ray-out", device, our_dtype)
    print_table(rows, model_name, device, args)
    return 0


def ray_models(args: argparse.Namespace, pairs, config, device: str):
    """In each Ray actor: the benchmark's model (the actor's GPU is its ``cuda:0``)."""
    if not args.gemma_shape:
        return load_tiny_models(config, device, "float32")
    return load_gemma_shape(
        args, pairs, device, torch.bfloat16 if device == "cuda" else torch.float32
    )


def ray_rows(
    args: argparse.Namespace, config, pairs, out: Path, device: str, our_dtype: str
) -> list[tuple]:
    """Rows for our pipeline on ``--workers`` Ray actors: cold (first run), then warm (median)."""
    from functools import partial

    import ray

    from precompute.cluster.ray_executor import RayOptions, run_with_ray, stop_warm_workers

    if args.ray_address:
        ray.init(address=args.ray_address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    options = RayOptions(
        workers=args.workers,
        gpus_per_worker=1.0 if device == "cuda" else 0.0,
        models_factory=partial(ray_models, args, pairs),
        keep_workers=True,
    )
    try:
        times, manifest = [], None
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            manifest = run_with_ray(config, out, "bench", options, overwrite=True, progress=False)
            times.append(time.perf_counter() - t0)
        stop_warm_workers()
    finally:
        ray.shutdown()
    ex = manifest.extraction
    tokens, l0 = sum(ex["n_tokens"].values()), ex["mean_l0"]
    label = f"ours via Ray, {args.workers} worker(s), {our_dtype}"
    return [
        (f"{label}: cold (actor start, model build, run)", times[0], tokens, l0),
        (f"{label}: end to end, workers warm", statistics.median(times[1:]), tokens, l0),
    ]


def print_table(rows, model_name: str, device: str, args) -> None:
    name = (
        torch.cuda.get_device_name(0)
        if device == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(f"\n{model_name} on {name}; {args.pairs} pairs; median of {args.repeats}\n")
    print("| pipeline | tokens | seconds | tokens/s | vs post | L0 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    base = rows[0][2] / rows[0][1] if rows[0][0].startswith("post") else None
    for label, seconds, tokens, l0 in rows:
        rate = tokens / seconds
        ratio = f"{rate / base:.1f}x" if base else "-"
        print(
            f"| {label} | {tokens:,} | {seconds:.2f} | {rate:,.0f} | {ratio} | "
            f"{'-' if l0 is None else f'{l0:.1f}'} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
