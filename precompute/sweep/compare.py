"""``python -m precompute sweep-compare``: do a layer's translation features reappear at another layer?

For every ordered pair of layers ``(a, b)`` of a sweep and every translation
feature of layer ``a`` (``features.parquet`` ``is_translation``, alive), the
feature of layer ``b`` whose decoder direction has the highest cosine with it:
``best_match``, ``best_cosine``, and ``matched`` (``best_cosine >= threshold``).
Written to ``<results root>/_sweeps/<sweep id>/compare.parquet``
(``bilingual_core.sweep.COMPARE_COLUMNS``), which the ``/layers`` page lists.

Every layer writes into the same residual stream, so decoder directions of two
layers' SAEs are comparable as vectors of the same space. The default threshold
:data:`MATCH_COSINE` is 0.7: two unit directions with cosine 0.7 share about
half their variance (0.7² ≈ 0.49), far above what chance gives (the best of
16,384 random unit directions in Gemma 3 270M's 640 dimensions has a cosine of
about 0.17 with a given one, ``sqrt(2 ln n / d)``), yet loose enough for a
direction that the residual stream has rotated a little between layers.
``--threshold`` changes it.
The comparison runs at the end of ``python -m precompute sweep`` (the SAEs are
loaded then) and by itself from a sweep's manifest (the SAEs are loaded again,
each from where its run's manifest says).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bilingual_core.sweep import COMPARE_COLUMNS, COMPARE_FILE, SweepManifest, sweep_dir
from contract.commands import MATCH_COSINE, SweepCompareSettings
from precompute.common.errors import PrecomputeError

BLOCK = 4096
"""Features of layer b per block of the cosine matrix."""


def unit_rows(decoder: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    decoder = np.asarray(decoder, dtype=np.float32)
    norms = np.linalg.norm(decoder, axis=1, keepdims=True)
    return decoder / np.where(norms > 0, norms, 1.0)


def best_matches(queries: np.ndarray, decoder: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``queries`` (n, d), the row of ``decoder`` (m, d) with the highest
    cosine and that cosine, computed in blocks of ``decoder`` rows."""
    q = unit_rows(queries)
    best = np.full(len(q), -np.inf, dtype=np.float32)
    index = np.zeros(len(q), dtype=np.int64)
    for lo in range(0, len(decoder), BLOCK):
        cos = q @ unit_rows(decoder[lo : lo + BLOCK]).T
        arg = cos.argmax(axis=1)
        top = cos[np.arange(len(q)), arg]
        better = top > best
        best[better], index[better] = top[better], arg[better] + lo
    return index, best


def compare_layers(
    decoders: Mapping[int, np.ndarray],
    translation: Mapping[int, np.ndarray],
    threshold: float = MATCH_COSINE,
) -> pd.DataFrame:
    """The comparison table (:data:`COMPARE_COLUMNS`) for every ordered pair of layers.

    ``decoders[layer]``: that layer's ``W_dec`` (d_sae, d_model); ``translation[layer]``: its
    translation features' ids (layers missing there are skipped as ``a``, still used as ``b``)."""
    if not -1.0 <= threshold <= 1.0:
        raise PrecomputeError(f"--threshold must be a cosine in -1..1, got {threshold}")
    widths = {int(np.asarray(d).shape[1]) for d in decoders.values()}
    if len(widths) > 1:
        raise PrecomputeError(
            f"the layers' SAEs read residual streams of different widths {sorted(widths)}"
        )
    parts = []
    for a in sorted(translation):
        features = np.asarray(translation[a], dtype=np.int64)
        if not len(features):
            continue
        queries = np.asarray(decoders[a])[features]
        for b in sorted(decoders):
            if b == a:
                continue
            index, cos = best_matches(queries, np.asarray(decoders[b]))
            parts.append(
                pd.DataFrame(
                    {
                        "layer_a": np.full(len(features), a, dtype=np.int32),
                        "layer_b": np.full(len(features), b, dtype=np.int32),
                        "feature": features.astype(np.int64),
                        "best_match": index,
                        "best_cosine": cos.astype(np.float64),
                        "matched": cos >= threshold,
                    }
                )
            )
    if not parts:
        return pd.DataFrame(
            {
                "layer_a": pd.Series(dtype="int32"),
                "layer_b": pd.Series(dtype="int32"),
                "feature": pd.Series(dtype="int64"),
                "best_match": pd.Series(dtype="int64"),
                "best_cosine": pd.Series(dtype="float64"),
                "matched": pd.Series(dtype="bool"),
            }
        )
    return pd.concat(parts, ignore_index=True)[list(COMPARE_COLUMNS)]


def translation_features(location: str) -> np.ndarray | None:
    """Alive translation features of a run (None when its features lack ``is_translation``,
    i.e. it was scored before that column existed)."""
    from bilingual_core import Run
    from bilingual_core.schema import FEATURES

    run = Run.open(location)
    names = run.parquet(FEATURES).schema_arrow.names
    if "is_translation" not in names:
        return None
    columns = [c for c in ("feature", "alive", "is_translation") if c in names]
    feats = run.read_pandas(FEATURES, columns=columns)
    keep = feats["is_translation"].fillna(False).astype(bool)
    if "alive" in feats:
        keep &= feats["alive"].fillna(False).astype(bool)
    return feats.loc[keep, "feature"].to_numpy(dtype=np.int64)


def decoder_of(sae) -> np.ndarray:
    """An SAE-Lens SAE's decoder directions as a (d_sae, d_model) float32 array."""
    return sae.W_dec.detach().float().cpu().numpy()


def write_comparison(
    out: str,
    sweep: SweepManifest,
    decoders: Mapping[int, np.ndarray],
    threshold: float = MATCH_COSINE,
) -> tuple[str, pd.DataFrame, list[int]]:
    """Compare the sweep's layers and write ``compare.parquet``; ``(path, table, layers
    whose runs need a rescore)``."""
    from bilingual_core.storage import join, open_root

    fs, root = open_root(out)
    translation, stale = {}, []
    for entry in sweep.layers:
        found = translation_features(join(root, entry.run_id))
        if found is None:
            stale.append(entry.layer)
            continue
        n_rows = len(decoders[entry.layer])
        if len(found) and found.max() >= n_rows:
            raise PrecomputeError(
                f"the SAE of layer {entry.layer} has {n_rows} features but run "
                f"{entry.run_id!r} has feature {found.max()}: not the SAE the run was made with"
            )
        translation[entry.layer] = found
    table = compare_layers(decoders, translation, threshold)
    directory = sweep_dir(root, sweep.sweep_id)
    fs.makedirs(directory, exist_ok=True)
    path = join(directory, COMPARE_FILE)
    with fs.open(path, "wb") as handle:
        table.to_parquet(handle, index=False)
    return path, table, stale


def summary(table: pd.DataFrame, stale: list[int], threshold: float) -> str:
    lines = []
    for (a, b), rows in table.groupby(["layer_a", "layer_b"], sort=True):
        lost = int((~rows["matched"]).sum())
        lines.append(
            f"  layer {a} -> {b}: {lost} of {len(rows)} translation features without a "
            f"match (cosine < {threshold:g})"
        )
    if stale:
        lines.append(
            f"  layers {', '.join(map(str, stale))}: scored before is_translation existed; "
            "rescore them (python -m precompute score --run DIR) and run sweep-compare again"
        )
    if table.empty and not stale:
        lines.append("  no translation features in any layer")
    return "\n".join(lines)


def load_decoders(out: str, sweep: SweepManifest, device: str = "cpu") -> dict[int, np.ndarray]:
    """Each layer's decoder, its SAE loaded from the sweep's ``sae`` entry when it is a local
    directory, else from what the layer's run manifest records."""
    from pathlib import Path

    from bilingual_core import Run
    from bilingual_core.storage import join, open_root
    from contract.config import SaeSource
    from precompute.evidence.loading import config_from_manifest
    from precompute.models.loading import load_sae

    _, root = open_root(out)
    decoders = {}
    for entry in sweep.layers:
        if entry.sae and Path(entry.sae).is_dir():
            source, tiny = SaeSource(path=entry.sae), None
        else:
            config = config_from_manifest(Run.open(join(root, entry.run_id)))
            source, tiny = config.sae, config.tiny
        try:
            sae = load_sae(source, device, tiny)
        except Exception as exc:
            raise PrecomputeError(
                f"cannot load the SAE of layer {entry.layer} ({entry.sae or entry.run_id}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        decoders[entry.layer] = decoder_of(sae)
    return decoders


def compare_command(settings: SweepCompareSettings) -> int:
    """``python -m precompute sweep-compare``."""
    from bilingual_core import results_root_from_env
    from bilingual_core.sweep import read_sweep

    out = settings.out or results_root_from_env()
    sweep = read_sweep(out, settings.sweep)
    decoders = load_decoders(out, sweep)
    path, table, stale = write_comparison(out, sweep, decoders, settings.threshold)
    print(f"wrote {path} ({len(table)} rows)\n{summary(table, stale, settings.threshold)}")
    return 0
