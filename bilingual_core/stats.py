"""Thresholds and ordered activation-frequency curves (DESIGN.md section 4).

Thresholds are the mean and the 0.05 / 0.25 / 0.5 / 0.75 / 0.95 quantiles of
all positive token activations in a scope (each language, and all languages
pooled: ``global``). They are exact (numpy's linear interpolation) at any
scale: :class:`ExactQuantiles` streams the values twice, once into a histogram
over the top 16 bits of their float32 representation (monotonic for positive
floats) and once to collect only the values in the buckets that hold the wanted
order statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from .schema import GLOBAL_SCOPE, THRESHOLD_NAMES, THRESHOLD_QUANTILES
from .sparse import SentenceMax

_BUCKET_SHIFT = 16
_N_BUCKETS = 1 << (32 - _BUCKET_SHIFT)
# Below this many values per scope, keep them in memory and skip the second pass.
IN_MEMORY_LIMIT = 20_000_000


def _bucket(values: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) >> _BUCKET_SHIFT).astype(np.int64)


class ExactQuantiles:
    """Mean and exact quantiles of positive float32 values per scope, streamed.

    Call :meth:`add` for every chunk; then :meth:`result` with a callable that
    re-streams the same chunks when more than ``in_memory_limit`` values were
    seen (the second pass collects only the buckets that matter).
    """

    def __init__(self, scopes: list[str], in_memory_limit: int = IN_MEMORY_LIMIT) -> None:
        self.scopes = list(scopes)
        self.count = np.zeros(len(scopes), dtype=np.int64)
        self.total = np.zeros(len(scopes), dtype=np.float64)
        self.hist = np.zeros((len(scopes), _N_BUCKETS), dtype=np.int64)
        self.in_memory_limit = in_memory_limit
        self._kept: list[list[np.ndarray]] | None = [[] for _ in scopes]

    def add(self, scope: int, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        values = np.asarray(values, dtype=np.float32)
        self.count[scope] += len(values)
        self.total[scope] += float(values.sum(dtype=np.float64))
        self.hist[scope] += np.bincount(_bucket(values), minlength=_N_BUCKETS)
        if self._kept is not None:
            if self.count.max() > self.in_memory_limit:
                self._kept = None
            else:
                self._kept[scope].append(values.copy())

    @staticmethod
    def _targets(n: int) -> dict[str, tuple[int, int, float]]:
        out = {}
        for name, q in THRESHOLD_QUANTILES.items():
            pos = q * (n - 1)
            lo = int(np.floor(pos))
            out[name] = (lo, min(lo + 1, n - 1), pos - lo)
        return out

    def result(
        self, rescan: Callable[[], Iterable[tuple[int, np.ndarray]]] | None = None
    ) -> pd.DataFrame:
        """Thresholds table: columns threshold, scope, value, n_activations."""
        needed_buckets: list[set[int]] = []
        ranks_needed: list[dict[str, tuple[int, int, float]]] = []
        for s in range(len(self.scopes)):
            n = int(self.count[s])
            targets = self._targets(n) if n else {}
            ranks_needed.append(targets)
            cum = np.cumsum(self.hist[s])
            needed_buckets.append({int(np.searchsorted(cum, r, side="right")) for t in targets.values() for r in t[:2]})
        if self._kept is not None:
            collected = [np.concatenate(k) if k else np.zeros(0, np.float32) for k in self._kept]
        else:
            if rescan is None:
                raise ValueError("too many values to keep in memory: a rescan callable is needed")
            parts: list[list[np.ndarray]] = [[] for _ in self.scopes]
            lookup = np.zeros((len(self.scopes), _N_BUCKETS), dtype=bool)
            for s, buckets in enumerate(needed_buckets):
                lookup[s, list(buckets)] = True
            for s, values in rescan():
                values = np.asarray(values, dtype=np.float32)
                parts[s].append(values[lookup[s, _bucket(values)]])
            collected = [np.concatenate(p) if p else np.zeros(0, np.float32) for p in parts]
        rows = []
        for s, scope in enumerate(self.scopes):
            n = int(self.count[s])
            mean = self.total[s] / n if n else np.nan
            rows.append(("mean", scope, mean, n))
            values = np.sort(collected[s])
            # Rank r overall -> rank within the collected values: subtract the
            # counts of all buckets below the first collected bucket that are
            # not themselves collected.
            cum_before = np.concatenate([[0], np.cumsum(self.hist[s])])
            for name, (lo, hi, frac) in ranks_needed[s].items():
                v_lo = self._order_stat(values, lo, s, cum_before, needed_buckets[s], in_memory=self._kept is not None)
                v_hi = self._order_stat(values, hi, s, cum_before, needed_buckets[s], in_memory=self._kept is not None)
                rows.append((name, scope, float(v_lo + (v_hi - v_lo) * frac), n))
            if n == 0:
                rows.extend((name, scope, np.nan, 0) for name in THRESHOLD_QUANTILES)
        frame = pd.DataFrame(rows, columns=["threshold", "scope", "value", "n_activations"])
        return frame

    def _order_stat(
        self, values: np.ndarray, rank: int, s: int, cum_before: np.ndarray,
        buckets: set[int], *, in_memory: bool,
    ) -> float:
        if in_memory:
            return float(values[rank])
        bucket = int(np.searchsorted(cum_before[1:], rank, side="right"))
        # Collected values are the union of the needed buckets, sorted; the
        # values before `bucket` inside the collection are those of needed
        # buckets below it.
        below_in_collection = sum(int(self.hist[s, b]) for b in buckets if b < bucket)
        return float(values[below_in_collection + rank - int(cum_before[bucket])])


def thresholds_table(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{threshold name: {scope: value}}`` from a thresholds table."""
    out: dict[str, dict[str, float]] = {}
    for row in frame.itertuples(index=False):
        out.setdefault(row.threshold, {})[row.scope] = float(row.value)
    return out


def curve_counts(block: SentenceMax, thresholds: dict[str, dict[str, float]]) -> dict[tuple[str, str], np.ndarray]:
    """Per feature of the block, the number of a scope's sentences whose max exceeds each threshold.

    Keys ``(threshold, scope)``; a language scope counts that language's
    sentences, the global scope counts all ``m n`` sentences with the global
    threshold value.
    """
    out: dict[tuple[str, str], np.ndarray] = {}
    f = block.n_features
    local = block.local_feature
    for name in THRESHOLD_NAMES:
        values = thresholds.get(name, {})
        for li, lang in enumerate(block.languages):
            t = values.get(lang, np.nan)
            mask = (block.lang == li) & (block.value > t) if np.isfinite(t) else np.zeros(len(block), bool)
            out[(name, lang)] = np.bincount(local[mask], minlength=f)
        t = values.get(GLOBAL_SCOPE, np.nan)
        mask = block.value > t if np.isfinite(t) else np.zeros(len(block), bool)
        out[(name, GLOBAL_SCOPE)] = np.bincount(local[mask], minlength=f)
    return out


def activation_frequency_curves(
    counts: dict[tuple[str, str], np.ndarray], n_pairs: int, m: int
) -> pd.DataFrame:
    """Ordered activation-frequency curves: per (threshold, scope), the fraction of
    the scope's sentences on which each feature's max exceeds the threshold,
    sorted descending and ranked 1..d_sae (ties by feature id)."""
    frames = []
    for (name, scope), c in counts.items():
        n_sentences = n_pairs * (m if scope == GLOBAL_SCOPE else 1)
        fraction = c / n_sentences if n_sentences else np.zeros(len(c))
        features = np.arange(len(c), dtype=np.int32)
        order = np.lexsort((features, -fraction))
        frames.append(
            pd.DataFrame(
                {
                    "threshold": name,
                    "scope": scope,
                    "rank": np.arange(1, len(c) + 1, dtype=np.int32),
                    "fraction": fraction[order],
                    "feature": features[order],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
