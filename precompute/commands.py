"""The ``run`` and ``merge`` subcommands (torch is imported only when they run)."""

from __future__ import annotations

import argparse
import json
import sys

from .cli import Handler, command
from .config import DEVICES, DTYPES
from .executor_args import add_executor_args, check_executor_args
from .presets import PRESETS, preset, with_overrides

_OVERRIDES = {
    # flag: (destination, help)
    "--model": ("model", "TransformerLens model name (architecture when --model-path is given)"),
    "--model-path": ("model_path", "local Hugging Face checkpoint directory (weights + tokenizer)"),
    "--sae-release": ("sae_release", "SAE-Lens release, e.g. gemma-scope-2b-pt-res-canonical"),
    "--sae-id": ("sae_id", "SAE id in the release, e.g. layer_20/width_16k/canonical"),
    "--sae-path": ("sae_path", "local SAE-Lens directory (SAE.save_model output)"),
    "--hook": ("hook", "hook the SAE reads (default: the SAE's own metadata)"),
    "--neuronpedia-id": ("neuronpedia_id", "Neuronpedia model/SAE id for feature links"),
    "--dataset": ("dataset", "Hugging Face dataset id, e.g. Helsinki-NLP/opus_books"),
    "--dataset-config": ("dataset_config", "dataset configuration, e.g. en-es"),
    "--split": ("split", "dataset split (default train)"),
    "--field": ("field", "column holding {lang: text} dicts; '' for one column per language"),
    "--corpus-file": ("corpus_file", "local TSV/CSV/JSONL/Parquet file with one column per language"),
    "--languages": ("languages", "comma-separated language codes in run order, e.g. en,es"),
}


def _add_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides of the preset")
    for flag, (dest, help_text) in _OVERRIDES.items():
        g.add_argument(flag, dest=dest, help=help_text)
    g.add_argument("--sample-size", help="pairs to sample (shuffle(seed).select(range(n))), or 'all'")
    g.add_argument("--seed", type=int, help="sampling seed (the post: 42)")
    g.add_argument("--max-tokens", type=int, help="real tokens kept per sentence (longer: truncated, counted)")
    g.add_argument("--batch-size", type=int, help="sentences per forward pass")
    g.add_argument("--batch-tokens", type=int, help="padded tokens per forward pass, at most")
    g.add_argument("--chunk-pairs", type=int, help="pairs per staged chunk (the unit of --resume)")
    g.add_argument("--dtype", choices=DTYPES, help="model dtype (gemma-2-2b: bfloat16)")
    g.add_argument("--sae-dtype", choices=DTYPES, help="SAE dtype (default float32)")
    g.add_argument("--device", choices=DEVICES, help="auto (default) picks CUDA when present")


def config_from_args(args: argparse.Namespace):
    names = [dest for dest, _ in _OVERRIDES.values()] + [
        "sample_size", "seed", "max_tokens", "batch_size", "batch_tokens", "chunk_pairs", "dtype", "sae_dtype", "device"]
    return with_overrides(preset(args.preset), **{name: getattr(args, name) for name in names})


@command("run", "extract SAE activations over a parallel corpus into a scored run directory")
def _run_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--preset", choices=sorted(PRESETS), required=True,
                   help="gemma-2-2b: the post's setup (GPU); tiny: offline CPU model in seconds")
    p.add_argument("--out", help="results root (default: $BILINGUAL_RESULTS_DIR or results/)")
    p.add_argument("--run-id", help="run directory name (default: the preset's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run (and discard its staging)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last finished chunk")
    p.add_argument("--shard", type=int, default=0, help="this host's shard index (0-based)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards the corpus is split into")
    p.add_argument("--staging", help="local directory for staged chunks (default: <out>/.<run id>.staging)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and offline checks, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--push-to", action="append", default=[], metavar="URL",
                   help="then publish the finished run to this results root, e.g. hf://datasets/<user>/<repo> (repeatable)")
    _add_overrides(p)
    add_executor_args(p)

    def run(args: argparse.Namespace) -> int:
        from bilingual_core import results_root_from_env

        check_executor_args(args)
        config = config_from_args(args)
        out = args.out or results_root_from_env()
        run_id = args.run_id or config.preset or "run"
        if args.dry_run:
            return _dry_run(config, out, run_id)
        if args.executor == "ray":
            from .ray_executor import run_from_args

            result = run_from_args(config, out, run_id, args)
        else:
            from .pipeline import run_extraction

            result = run_extraction(config, out, run_id, overwrite=args.overwrite, resume=args.resume,
                                    shard=args.shard, num_shards=args.num_shards, staging=args.staging,
                                    progress=not args.quiet)
        if args.num_shards > 1:
            print(f"shard {args.shard} of {args.num_shards} staged in {result.directory}; when every shard "
                  f"is done: python -m precompute merge --shards <each shard dir> --out {out} --run-id {run_id}")
            return 0
        _print_summary(result, out)
        for url in args.push_to:
            from .publish import publish_run

            location = publish_run(f"{str(out).rstrip('/')}/{run_id}", url, overwrite=args.overwrite)
            print(f"published to {location}")
        return 0

    return run


@command("merge", "join the staged shards of a sharded run into one scored run directory")
def _merge_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--shards", nargs="+", required=True, help="shard staging directories (shard-*-of-*)")
    p.add_argument("--out", required=True, help="results root to write the run into")
    p.add_argument("--run-id", required=True, help="run directory name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        from .merge import finalize

        manifest = finalize(args.shards, args.out, args.run_id, overwrite=args.overwrite, progress=not args.quiet)
        _print_summary(manifest, args.out)
        return 0

    return run


def _print_summary(manifest, out: str) -> None:
    ex, sc = manifest.extraction, manifest.scoring
    tokens = sum(ex.get("n_tokens", {}).values())
    truncated = sum(ex.get("n_truncated", {}).values())
    print(f"wrote run {manifest.run_id!r} under {out}: {manifest.n_pairs} pairs, {tokens:,} tokens "
          f"({truncated} sentences truncated to {ex.get('max_tokens')} tokens), "
          f"{ex.get('n_activations', 0):,} activations (L0 {ex.get('mean_l0')}), "
          f"{ex.get('tokens_per_second')} tokens/s; {sc.get('n_alive')} alive features")


def _dry_run(config, out: str, run_id: str) -> int:
    from .checks import offline_plan

    print(json.dumps({"run_id": run_id, "out": out, "config": config.to_dict(),
                      "fingerprint": config.fingerprint()}, indent=2, default=str))
    if not config.model.is_tiny:
        print(json.dumps({"offline_checks": offline_plan(config)}, indent=2, default=str))
    print("dry run: nothing was extracted", file=sys.stderr)
    return 0
