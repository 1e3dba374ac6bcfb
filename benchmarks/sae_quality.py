"""The shipped SAEs' held-back quality against the targets, from their ``training.json``.

    python benchmarks/sae_quality.py                 # every saes/*/training.json
    python benchmarks/sae_quality.py saes/gemma3-270m-l6-topk48-4096

``train-sae`` measures each SAE with SAE-Lens's ``run_evals`` on held-back
Tatoeba rows it never trained on and records the figures in its
``training.json``; this script only reads them. Targets: at most 25 % dead
latents, a CE loss score of at least 0.85, at least 0.80 of the variance
explained. Prints a Markdown table (one row per SAE) and the training cost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"dead": 0.25, "ce_loss_score": 0.85, "explained_variance": 0.80}


def mark(ok: bool) -> str:
    return "" if ok else " (missed)"


def main(paths: list[str]) -> None:
    dirs = [Path(p) for p in paths] or sorted((ROOT / "saes").glob("*/training.json"))
    records = []
    for d in dirs:
        f = d if d.name == "training.json" else d / "training.json"
        records.append((f.parent.name, json.loads(f.read_text())))
    print(
        "| SAE | hook | latents | k | training tokens (real, epochs) | dead latents | dense (> 10 %) "
        "| variance explained | CE loss: clean / spliced / ablated | CE loss score | train s |"
    )
    print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for name, r in records:
        m, sae, tok = r["heldout_metrics"], r["sae"], r["tokens"]
        dead = m["dead_latents"] / sae["d_sae"]
        print(
            f"| {name} | {sae['hook_name']} | {sae['d_sae']:,} | {sae['k']} | "
            f"{tok['seen_in_training']:,} ({tok['cached_real']:,}, {tok['epochs']}) | "
            f"{m['dead_latents']:,} ({dead:.1%}){mark(dead <= TARGETS['dead'])} | "
            f"{m['dense_latents']} | "
            f"{m['explained_variance']:.3f}{mark(m['explained_variance'] >= TARGETS['explained_variance'])} | "
            f"{m['ce_loss_without_sae']:.3f} / {m['ce_loss_with_sae']:.3f} / {m['ce_loss_with_ablation']:.3f} | "
            f"{m['ce_loss_score']:.3f}{mark(m['ce_loss_score'] >= TARGETS['ce_loss_score'])} | "
            f"{r['training']['seconds']:,.0f} |"
        )
    if records:
        cache = records[0][1]["cache"]
        print(
            f"\nCache: {cache['rows']:,} rows, {cache.get('hooks', [])} in one pass per batch, "
            f"forward dtype {cache.get('forward_dtype')}, {cache['seconds']:,.0f} s for "
            f"{cache['timed_tokens']:,} tokens ({cache['tokens_per_second']} tokens/s)."
        )
        held = records[0][1]["heldout_metrics"]
        print(
            f"Held-back tokens: {held['tokens_variance']:,} for variance and density, "
            f"{held['tokens_ce']:,} for the next-token loss."
        )


if __name__ == "__main__":
    main(sys.argv[1:])
