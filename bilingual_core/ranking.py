"""The one ranking rule of the project: the scorer's ``*_rank`` columns and the
app's rankings both come from :func:`rank_features`."""

from __future__ import annotations

import numpy as np


def rank_features(
    values: np.ndarray,
    eligible: np.ndarray,
    *,
    higher_is_better: bool,
    support: np.ndarray | None = None,
    feature_ids: np.ndarray | None = None,
) -> np.ndarray:
    """1-based ranks of the eligible features with a finite value; 0 elsewhere.

    Best value first. Equal values are ordered by larger ``support`` (the pairs
    where the feature fires in every language) when it is given, so a tie never
    puts a feature seen on one pair above one seen on thirty, and then by the
    smaller feature id (``feature_ids``, default the position in ``values``).
    """
    values = np.asarray(values, dtype=np.float64)
    ids = np.arange(len(values)) if feature_ids is None else np.asarray(feature_ids)
    idx = np.flatnonzero(np.asarray(eligible, dtype=bool) & np.isfinite(values))
    primary = -values[idx] if higher_is_better else values[idx]
    keys: tuple[np.ndarray, ...] = (ids[idx],)
    if support is not None:
        keys = (*keys, -np.nan_to_num(np.asarray(support, dtype=np.float64)[idx], nan=0.0))
    order = idx[np.lexsort((*keys, primary))]
    rank = np.zeros(len(values), dtype=np.int32)
    rank[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return rank
