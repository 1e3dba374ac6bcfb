"""The ``/layers`` page's data: per layer of a sweep, how many alive features are
translation features and shared-surface features, against the random-dictionary null.

A layer's counts come from its run's ``features.parquet`` (``alive``,
``is_translation``, ``is_shared_surface``, written by ``precompute score``) and,
when ``validate --null random`` has run, from ``null_scores.parquet`` (the same
columns for a random dictionary of matched firing rates). A run scored before
those columns existed is reported as needing a rescore, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from bilingual_core import Run
from bilingual_core.evidence import NULL_SCORES
from bilingual_core.schema import FEATURES
from bilingual_core.storage import join
from bilingual_core.sweep import COMPARE_FILE, SWEEP_FILE, SWEEPS_DIR, list_sweeps, read_sweep

FLAGS = ("is_translation", "is_shared_surface")
RESCORE = "python -m precompute score --run {dir}"


@dataclass(frozen=True)
class Counts:
    """One table's counts: alive features and the flagged ones (None: column missing)."""

    n_alive: int
    n_translation: int | None
    n_shared: int | None


def count_flags(frame: pd.DataFrame) -> Counts:
    """Alive features, and how many of them carry each flag (None when it is not a column)."""
    alive = frame["alive"].fillna(False).astype(bool) if "alive" in frame else None
    if alive is None:
        alive = pd.Series(True, index=frame.index)
    counts = []
    for flag in FLAGS:
        if flag in frame:
            counts.append(int((frame[flag].fillna(False).astype(bool) & alive).sum()))
        else:
            counts.append(None)
    return Counts(int(alive.sum()), counts[0], counts[1])


def _table(location: str, name: str) -> pd.DataFrame | None:
    run = Run.open(location)
    if not run.has(name):
        return None
    columns = [c for c in ("alive", *FLAGS) if c in run.parquet(name).schema_arrow.names]
    return run.read_pandas(name, columns=columns)


@st.cache_data(show_spinner=False, max_entries=256)
def layer_counts(location: str, token: str) -> tuple[Counts, Counts | None]:
    """``(run counts, null counts or None)`` of one run (``token`` keys the cache)."""
    feats = _table(location, FEATURES)
    if feats is None:
        raise FileNotFoundError(f"{FEATURES} is missing from the run")
    null = _table(location, NULL_SCORES)
    return count_flags(feats), (count_flags(null) if null is not None else None)


def _fraction(part: int | None, whole: int) -> float | None:
    return None if part is None or whole == 0 else part / whole


def layer_row(layer: int | None, run_id: str, counts: Counts, null: Counts | None) -> dict:
    """One row of the page's table."""
    return {
        "layer": layer,
        "run": run_id,
        "alive": counts.n_alive,
        "translation": counts.n_translation,
        "translation_frac": _fraction(counts.n_translation, counts.n_alive),
        "shared": counts.n_shared,
        "shared_frac": _fraction(counts.n_shared, counts.n_alive),
        "null_translation_frac": _fraction(null.n_translation, null.n_alive) if null else None,
        "null_shared_frac": _fraction(null.n_shared, null.n_alive) if null else None,
        "needs_rescore": counts.n_translation is None or counts.n_shared is None,
    }


@st.cache_data(ttl=30, show_spinner=False)
def sweeps(root: str) -> list[str]:
    return list_sweeps(root)


@st.cache_data(ttl=30, show_spinner=False)
def sweep(root: str, sweep_id: str):
    """The validated manifest (``SweepFormatError`` says what is wrong with it)."""
    return read_sweep(root, sweep_id)


def sweep_file(root: str, sweep_id: str) -> str:
    return join(root.rstrip("/"), SWEEPS_DIR, sweep_id, SWEEP_FILE)


@st.cache_data(ttl=30, show_spinner=False)
def comparison(root: str, sweep_id: str) -> pd.DataFrame | None:
    """The sweep's cross-layer decoder comparison (``precompute sweep-compare``), if written."""
    from bilingual_core.storage import open_root

    fs, base = open_root(root)
    path = join(base, SWEEPS_DIR, sweep_id, COMPARE_FILE)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        return pd.read_parquet(handle)


def unmatched(compare: pd.DataFrame, layer_a: int, layer_b: int) -> pd.DataFrame:
    """Translation features of ``layer_a`` with no decoder direction at ``layer_b`` within the
    comparison's cosine threshold, best first by how far they are from any match."""
    rows = compare[
        (compare["layer_a"] == layer_a) & (compare["layer_b"] == layer_b) & ~compare["matched"]
    ]
    return rows.sort_values(["best_cosine", "feature"]).reset_index(drop=True)
