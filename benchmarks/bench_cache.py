"""The training cache's forward pass on Gemma 3 270M: before (one hook per pass) and after.

    python benchmarks/bench_cache.py                       # 4 layers, 128 packed rows of 64 tokens
    python benchmarks/bench_cache.py --rows 256 --layers 3,6,9,12 --repeats 3

``train-sae`` caches activations for one SAE per layer. Before this change it
ran SAE-Lens's ``CacheActivationsRunner`` once per hook: every layer paid for
its own forward pass (to its block), in float32, 16 rows per pass. Now one
pass per batch hooks every layer and stops after the deepest
(``train_sae.forward_hooks``). This script times, on the same packed Tatoeba
rows and the same loaded model, the forward passes that each way needs:

* ``separate passes``: one pass per layer, ``stop_at_layer`` at that layer
  (what the runner does, without its disk writes), float32;
* ``one pass``: every hook in one pass, float32 and bfloat16, at several
  batch sizes.

Only the forward passes are timed (the disk writes are the same either way).
It also prints how far the bfloat16 pass's activations are from the float32
ones per layer (relative L2 error over real, non-BOS tokens), since the SAEs
trained on a bfloat16 cache are applied to float32 activations by the runs.
Each configuration runs ``--repeats`` times; the table gives the median
tokens/s and its ratio to the separate passes, measured in one process one
after the other. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=128, help="packed rows of --context tokens")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--layers", default="3,6,9,12")
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from precompute.train.train_sae import (
        GEMMA_MODEL,
        TrainSpec,
        corpus_texts,
        forward_hooks,
        hook_name,
        load_language_model,
        pack_rows,
    )

    layers = [int(x) for x in args.layers.split(",")]
    hooks = [hook_name(layer) for layer in layers]
    model = load_language_model(GEMMA_MODEL, None)
    train, _, _ = corpus_texts(None, None)
    spec = TrainSpec()
    rows, _ = pack_rows(model.tokenizer, train[:20_000], args.context, args.rows, spec.seed)
    n_tokens = rows.numel()

    def timed(step, batch_size: int) -> float:
        start = time.perf_counter()
        for lo in range(0, len(rows), batch_size):
            step(rows[lo : lo + batch_size])
        return n_tokens / (time.perf_counter() - start)

    def separate(batch):
        for h in hooks:
            forward_hooks(model, batch, [h])

    def together(batch):
        forward_hooks(model, batch, hooks)

    configs = [("separate passes (before)", "float32", 16, separate)]
    for dtype in ("float32", "bfloat16"):
        for bs in (int(x) for x in args.batch_sizes.split(",")):
            configs.append((f"one pass, {len(hooks)} hooks", dtype, bs, together))
    results = []
    for name, dtype, bs, step in configs:
        model.to(getattr(torch, dtype))
        timed(step, bs)  # warm-up
        rates = [timed(step, bs) for _ in range(args.repeats)]
        results.append((name, dtype, bs, statistics.median(rates), min(rates), max(rates)))
        print(f"{name} {dtype} bs={bs}: {statistics.median(rates):.0f} tokens/s", file=sys.stderr)
    base = results[0][3]
    errors = {}
    batch = rows[:16]
    real = batch != batch[0, 0]  # every packed row starts with <bos> and separates with it
    model.to(torch.float32)
    exact = forward_hooks(model, batch, hooks)
    model.to(torch.bfloat16)
    approx = forward_hooks(model, batch, hooks)
    for h in hooks:
        diff = (approx[h] - exact[h])[real].norm() / exact[h][real].norm()
        errors[h] = float(diff)
    print(
        f"\n{n_tokens:,} tokens ({args.rows} rows of {args.context}), layers {args.layers}, "
        f"{torch.get_num_threads()} torch threads, {args.repeats} repeats\n"
    )
    print("| forward passes | dtype | rows/batch | tokens/s (median) | range | vs before |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    for name, dtype, bs, median, low, high in results:
        print(
            f"| {name} | {dtype} | {bs} | {median:,.0f} | {low:,.0f}–{high:,.0f} | "
            f"{median / base:.2f}x |"
        )
    print("\n| hook | bfloat16 vs float32 activations, relative L2 error (real tokens) |")
    print("| --- | ---: |")
    for h, e in errors.items():
        print(f"| {h} | {e:.4f} |")


if __name__ == "__main__":
    main()
