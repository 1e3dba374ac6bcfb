"""``python -m precompute sweep``: one forward pass per batch, one SAE per layer, one run per layer.

The layers' runs share the corpus sample, the tokenisation and the model's
forward passes (run up to the deepest layer, ``stop_at_layer``); every SAE
encodes its own hook's activation, and each layer's chunks are staged and then
merged and scored into its own run ``<sweep id>-l<layer>``, exactly as
``python -m precompute run`` would write it. The sweep manifest
``<out>/_sweeps/<sweep id>/sweep.json`` (``bilingual_core.sweep``) names the
runs and layers; the app's ``/layers`` page reads it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bilingual_core.sweep import SweepManifest, new_sweep, write_sweep
from contract.config import RunConfig
from contract.overrides import parse_layers, sweep_configs
from contract.settings import SweepSettings
from precompute.common.errors import IncompatibleSaeError
from precompute.sweep.compare import MATCH_COSINE, decoder_of, summary, write_comparison


def layer_run_id(sweep_id: str, layer: int) -> str:
    return f"{sweep_id}-l{layer}"


def load_sweep_models(configs: list[tuple[int, RunConfig]], device: str) -> list[Any]:
    """The model and tokenizer once (from the first config), and each layer's SAE, checked
    to read that layer's hook and to fit it."""
    from precompute.common.activations import stop_layer
    from precompute.models.checks import check_hook, check_sae_width
    from precompute.models.loading import LoadedModels, load_models, load_sae, model_info, sae_info

    first = load_models(configs[0][1], device)
    loaded = [first]
    for _, cfg in configs[1:]:
        sae = load_sae(cfg.sae, device, cfg.tiny)
        hook = cfg.sae.hook_name or sae.cfg.metadata.hook_name
        check_hook(first.model, hook, cfg.model.name)
        check_sae_width(first.model, sae, hook, cfg.model.name)
        loaded.append(
            LoadedModels(
                first.model,
                sae,
                first.tokenizer,
                hook,
                model_info(cfg, first.model),
                sae_info(cfg, sae, hook),
            )
        )
    for (layer, _), models in zip(configs, loaded, strict=True):
        if stop_layer(models.hook_name) != layer + 1:
            raise IncompatibleSaeError(
                f"the SAE given for layer {layer} reads {models.hook_name}, another layer: "
                "list the SAEs in the order of --layers"
            )
    return loaded


def run_sweep(
    configs: list[tuple[int, RunConfig]],
    out: str | os.PathLike[str],
    sweep_id: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    models: list[Any] | None = None,
    compare_threshold: float | None = MATCH_COSINE,
) -> SweepManifest:
    """Extract every layer's run from shared forward passes; write and return the manifest.

    ``models``: already loaded (one ``LoadedModels`` per layer sharing the model), e.g. in a
    benchmark; by default loaded from ``configs``. ``compare_threshold``: then compare the
    layers' translation features by decoder direction (``precompute.sweep.compare``) with
    this cosine threshold and print a summary; None skips that."""
    from bilingual_core.manifest import check_run_id
    from precompute.common.corpus import load_corpus
    from precompute.common.devices import resolve_device
    from precompute.extract.merge import finalize
    from precompute.extract.pipeline import (
        _remove_staging,
        check_can_write,
        default_staging,
        extract_stages,
    )
    from precompute.extract.staging import ShardStaging, shard_dir_name

    check_run_id(sweep_id)
    run_ids = [layer_run_id(sweep_id, layer) for layer, _ in configs]
    for run_id in run_ids:
        check_run_id(run_id)
        check_can_write(out, run_id, overwrite)
    config = configs[0][1]
    device = resolve_device(config)
    if models is None:
        from precompute.models.loading import check_access, check_sae_access

        for _, cfg in configs:
            check_sae_access(cfg.sae)
        check_access(config.model)
    corpus = load_corpus(config.corpus)
    if models is None:
        models = load_sweep_models(configs, device)
    roots = [default_staging(out, run_id) for run_id in run_ids]
    stages = []
    for (_, cfg), run_id, root in zip(configs, run_ids, roots, strict=True):
        header = {
            "run_id": run_id,
            "run_fingerprint": cfg.fingerprint(),
            "shard": 0,
            "num_shards": 1,
        }
        stage = ShardStaging.prepare(
            root / shard_dir_name(0, 1), header, resume=resume, discard=overwrite
        )
        for key, value in (
            ("n_pairs", corpus.n_pairs),
            ("languages", list(corpus.languages)),
            ("corpus", corpus.info),
        ):
            stage.bind(key, value)
        stages.append(stage)
    t0 = time.perf_counter()
    entries = [(cfg, stage, m) for (_, cfg), stage, m in zip(configs, stages, models, strict=True)]
    try:
        extract_stages(entries, corpus, device, 0, corpus.n_pairs, progress)
    except BaseException:
        for stage, root in zip(stages, roots, strict=True):
            if not stage.chunks_done:
                _remove_staging(stage.directory, root)
        raise
    extract_seconds = time.perf_counter() - t0
    manifests = []
    for stage, run_id, root in zip(stages, run_ids, roots, strict=True):
        manifests.append(
            finalize([stage.directory], out, run_id, overwrite=overwrite, progress=progress)
        )
        _remove_staging(stage.directory, root)
    layers = []
    for (layer, cfg), run_id, m in zip(configs, run_ids, models, strict=True):
        source = cfg.sae.path if cfg.sae.path is not None else f"{cfg.sae.release}/{cfg.sae.sae_id}"
        layers.append(
            {"layer": layer, "run_id": run_id, "hook_name": m.hook_name, "sae": str(source)}
        )
    sweep = new_sweep(
        sweep_id,
        layers,
        model=config.model.name,
        languages=list(corpus.languages),
        n_pairs=corpus.n_pairs,
        extraction={
            "device": device,
            "stop_at_layer": manifests[0].extraction.get("stop_at_layer"),
            "extract_seconds": round(extract_seconds, 3),
            "seconds_total": round(time.perf_counter() - t0, 3),
            "preset": config.preset,
        },
    )
    write_sweep(str(out), sweep)
    if compare_threshold is not None:
        decoders = {layer: decoder_of(m.sae) for (layer, _), m in zip(configs, models, strict=True)}
        path, table, stale = write_comparison(str(out), sweep, decoders, compare_threshold)
        print(f"cross-layer comparison: {path}\n{summary(table, stale, compare_threshold)}")
    return sweep


def publish_sweep_files(local_root: str, sweep_id: str, dest_root: str) -> str:
    """Copy ``_sweeps/<sweep id>/`` (the comparison first, the manifest last) from a local
    results root to another one (after its runs were published); the folder there."""
    from bilingual_core.storage import join, open_root
    from bilingual_core.sweep import COMPARE_FILE, SWEEP_FILE, sweep_dir
    from precompute.publishing.publish import _copy

    src_fs, src_root = open_root(local_root)
    dst_fs, dst_root = open_root(dest_root)
    src, dst = sweep_dir(src_root, sweep_id), sweep_dir(dst_root, sweep_id)
    for name in (COMPARE_FILE, SWEEP_FILE):
        if src_fs.exists(join(src, name)):
            _copy(src_fs, join(src, name), dst_fs, join(dst, name))
    return dst


def sweep(settings: SweepSettings) -> int:
    """``python -m precompute sweep`` with validated settings (``contract.settings.SweepSettings``;
    ``precompute.cli`` calls it)."""
    from bilingual_core import results_root_from_env
    from contract.overrides import config_from_settings

    layers = parse_layers(settings.layers)
    config = config_from_settings(settings)
    paths = [x.strip() for x in settings.sae_paths.split(",")] if settings.sae_paths else None
    configs = sweep_configs(config, layers, sae_paths=paths, sae_pattern=settings.sae_pattern)
    out = settings.out or results_root_from_env()
    sweep_id = settings.sweep_id or f"{config.preset or 'run'}-sweep"
    from bilingual_core.progress import stream_to

    with stream_to(settings.progress_jsonl):
        manifest = run_sweep(
            configs,
            out,
            sweep_id,
            overwrite=settings.overwrite,
            resume=settings.resume,
            progress=not settings.quiet,
            compare_threshold=settings.compare_threshold,
        )
    ex = manifest.extraction
    print(
        f"wrote sweep {sweep_id!r} under {out}: runs {', '.join(manifest.run_ids)} "
        f"({manifest.n_pairs} pairs, one pass per batch up to layer {ex['stop_at_layer']}, "
        f"{ex['extract_seconds']:.1f}s extracting)"
    )
    return 0
