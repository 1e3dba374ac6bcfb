"""Checks of a run's small tables against its manifest, before scoring."""

from __future__ import annotations

import numpy as np

from .errors import RunFormatError
from .reduce import lang_indices
from .run import Run
from .schema import MANIFEST, PAIRS, TOKENS, check_columns


def real_token_counts(run: Run) -> np.ndarray:
    """Number of real tokens (position >= 1) per language, checking tokens.parquet."""
    langs = run.languages
    check_columns(run.parquet(TOKENS).schema_arrow, TOKENS)
    table = run.read(TOKENS, columns=["pair_id", "lang", "position"])
    if table.num_rows == 0:
        raise RunFormatError(TOKENS, None, "is empty: the run has no tokens")
    pair = table.column("pair_id").to_numpy()
    if pair.min() < 0 or pair.max() >= run.manifest.n_pairs:
        raise RunFormatError(TOKENS, "pair_id", f"pair id outside 0..{run.manifest.n_pairs - 1}")
    li = lang_indices(table.column("lang"), langs, TOKENS)
    real = table.column("position").to_numpy() >= 1
    return np.bincount(li[real], minlength=len(langs)).astype(np.int64)


def check_pairs(run: Run) -> None:
    """pairs.parquet has one row per (pair, language), matching the manifest."""
    n, langs = run.manifest.n_pairs, run.languages
    if n == 0:
        raise RunFormatError(MANIFEST, "n_pairs", "is 0: the run is empty (no sentence pairs)")
    check_columns(run.parquet(PAIRS).schema_arrow, PAIRS)
    table = run.read(PAIRS, columns=["pair_id", "lang", "text"])
    li = lang_indices(table.column("lang"), langs, PAIRS)
    pair = table.column("pair_id").to_numpy()
    if len(pair) != n * len(langs):
        raise RunFormatError(
            PAIRS, None, f"has {len(pair)} rows, expected n_pairs x languages = {n} x {len(langs)}"
        )
    if pair.min() < 0 or pair.max() >= n:
        raise RunFormatError(
            PAIRS, "pair_id", f"pair id outside 0..{n - 1} (manifest n_pairs = {n})"
        )
    if len(np.unique(pair.astype(np.int64) * len(langs) + li)) != len(pair):
        raise RunFormatError(PAIRS, None, "duplicate (pair_id, lang) rows")
