"""Thresholds and ordered activation-frequency curves (docs/scores.md).

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

from . import fused
from .schema import GLOBAL_SCOPE, THRESHOLD_NAMES, THRESHOLD_QUANTILES
from .score_kernels import FLOAT_BUCKET_SHIFT, float_bucket, threshold_counts
from .sparse import SentenceMax

_BUCKET_SHIFT = FLOAT_BUCKET_SHIFT
_N_BUCKETS = 1 << (32 - _BUCKET_SHIFT)
# Below this many values per scope, keep them in memory and skip the second pass
# (5 bytes a value: at most 100 MB).
IN_MEMORY_LIMIT = 20_000_000


class ExactQuantiles:
    """Mean and exact quantiles of positive float32 values per language and pooled.

    Call :meth:`add` with each chunk's language indices and values; then
    :meth:`result`, passing a callable that re-streams the same chunks when more
    than ``in_memory_limit`` values were seen (the second pass keeps only the
    values in the buckets that hold the wanted order statistics). Scopes are
    the languages, then ``global`` (all languages pooled).
    """

    def __init__(
        self,
        languages: list[str],
        in_memory_limit: int = IN_MEMORY_LIMIT,
        *,
        track_max: bool = False,
        compiled: bool = False,
    ) -> None:
        self.languages = list(languages)
        self.compiled = compiled
        """Per-chunk work by the compiled kernels (``fused``, the same numbers) when numba is there."""
        m = len(languages)
        self.hist = np.zeros((m, _N_BUCKETS), dtype=np.int64)
        self.total = np.zeros(m, dtype=np.float64)
        self.lang_max = np.zeros(m, dtype=np.float64)
        """Largest value per language, when ``track_max``."""
        self.track_max = track_max
        self.in_memory_limit = in_memory_limit
        self._seen = 0
        self._kept: list[tuple[np.ndarray, np.ndarray]] | None = []

    @property
    def scopes(self) -> list[str]:
        return [*self.languages, GLOBAL_SCOPE]

    def summary(self, lang: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One chunk's histogram (m, buckets) and per-language sums, without
        touching this object (so chunks can be summarised in threads)."""
        m = len(self.languages)
        if self.compiled:
            made = fused.bucket_histogram(lang, values, m, _BUCKET_SHIFT)
            if made is not None:
                return made
        # bucket | lang << 16 in uint32: the histogram index, in a quarter of
        # the memory traffic of int64 arithmetic.
        index = float_bucket(values)
        index |= lang.astype(np.uint32) << (32 - _BUCKET_SHIFT)
        hist = np.bincount(index, minlength=m * _N_BUCKETS).reshape(m, _N_BUCKETS)
        return hist, np.bincount(lang, weights=values, minlength=m)

    def add(
        self,
        lang: np.ndarray,
        values: np.ndarray,
        summary: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """One chunk: ``lang`` (int, index into languages) and ``values`` (float32 > 0),
        with its :meth:`summary` when already made. Chunks are added in file
        order (the sums, and so the mean, are the same whatever the threads)."""
        if len(values) == 0:
            return
        hist, total = self.summary(lang, values) if summary is None else summary
        self.hist += hist
        self.total += total
        if self.track_max:
            np.maximum.at(self.lang_max, lang, values)
        self._seen += len(values)
        if self._kept is not None:
            if self._seen > self.in_memory_limit:
                self._kept = None
            else:
                self._kept.append(
                    (np.array(lang, dtype=np.int8), np.array(values, dtype=np.float32))
                )

    def _scope_hist(self, s: int) -> np.ndarray:
        return self.hist.sum(axis=0) if s == len(self.languages) else self.hist[s]

    @staticmethod
    def _targets(n: int) -> dict[str, tuple[int, int, float]]:
        out = {}
        for name, q in THRESHOLD_QUANTILES.items():
            pos = q * (n - 1)
            lo = int(np.floor(pos))
            out[name] = (lo, min(lo + 1, n - 1), pos - lo)
        return out

    def result(
        self,
        rescan: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]] | None = None,
        map_chunks: Callable[[Callable, Iterable], Iterable] = map,
    ) -> pd.DataFrame:
        """Thresholds table: columns threshold, scope, value, n_activations.

        ``map_chunks`` applies the per-chunk selection (``map`` by default; an
        ordered thread-pool map spreads the rescan over cores)."""
        m = len(self.languages)
        hists = [self._scope_hist(s) for s in range(m + 1)]
        counts = [int(h.sum()) for h in hists]
        totals = [*self.total.tolist(), float(self.total.sum())]
        targets = [self._targets(n) if n else {} for n in counts]
        cum_before = [np.concatenate([[0], np.cumsum(h)]) for h in hists]
        needed = [
            sorted(
                {int(np.searchsorted(c[1:], r, side="right")) for t in tg.values() for r in t[:2]}
            )
            for c, tg in zip(cum_before, targets, strict=True)
        ]
        kept = self._kept
        if kept is None and rescan is None:
            raise ValueError("too many values to keep in memory: a rescan callable is needed")
        # The values kept in memory, or a second pass over the file: either
        # way only those in the buckets holding a wanted order statistic are
        # collected and sorted (sorting every value took seconds at 20 M).
        source = rescan if kept is None else lambda: iter(kept)
        # One lookup over the union of every scope's needed buckets; the
        # (few) collected values are split by scope afterwards.
        lookup = np.zeros(_N_BUCKETS, dtype=bool)
        for buckets in needed:
            lookup[buckets] = True

        def select(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            lang, values = chunk
            if self.compiled:
                made = fused.select_buckets(lang, values, _BUCKET_SHIFT, lookup)
                if made is not None:
                    return made
            keep = lookup[float_bucket(values)]
            return lang[keep], values[keep]

        got_lang, got_values = [], []
        for lang, values in map_chunks(select, source()):
            got_lang.append(lang)
            got_values.append(values)
        all_lang = np.concatenate(got_lang) if got_lang else np.zeros(0, np.int8)
        all_values = np.concatenate(got_values) if got_values else np.zeros(0, np.float32)
        parts = []
        for s in range(m + 1):
            in_scope = all_values if s == m else all_values[all_lang == s]
            parts.append([in_scope[np.isin(float_bucket(in_scope), needed[s])]])
        rows = []
        for s, scope in enumerate(self.scopes):
            n = counts[s]
            rows.append(("mean", scope, totals[s] / n if n else np.nan, n))
            if n == 0:
                rows.extend((name, scope, np.nan, 0) for name in THRESHOLD_QUANTILES)
                continue
            values = np.sort(np.concatenate(parts[s])) if parts[s] else np.zeros(0, np.float32)
            offset = self._offsets(hists[s], cum_before[s], needed[s])
            for name, (lo, hi, frac) in targets[s].items():
                v_lo = values[offset(lo)]
                v_hi = values[offset(hi)]
                rows.append((name, scope, float(v_lo) + (float(v_hi) - float(v_lo)) * frac, n))
        return pd.DataFrame(rows, columns=["threshold", "scope", "value", "n_activations"])

    @staticmethod
    def _offsets(
        hist: np.ndarray, cum_before: np.ndarray, needed: list[int]
    ) -> Callable[[int], int]:
        """Map an overall rank to its index among the collected (needed-bucket) values."""

        def offset(rank: int) -> int:
            bucket = int(np.searchsorted(cum_before[1:], rank, side="right"))
            below = sum(int(hist[b]) for b in needed if b < bucket)
            return below + rank - int(cum_before[bucket])

        return offset


def thresholds_table(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{threshold name: {scope: value}}`` from a thresholds table."""
    out: dict[str, dict[str, float]] = {}
    for row in frame.itertuples(index=False):
        out.setdefault(row.threshold, {})[row.scope] = float(row.value)
    return out


def curve_cuts(
    languages: list[str], thresholds: dict[str, dict[str, float]]
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The (threshold, scope) keys of the curves and their threshold values (inf when missing)."""
    keys = [(name, scope) for name in THRESHOLD_NAMES for scope in [*languages, GLOBAL_SCOPE]]
    cuts = np.array([thresholds.get(name, {}).get(scope, np.nan) for name, scope in keys])
    return keys, np.where(np.isfinite(cuts), cuts, np.inf)


def curve_counts_from(
    keys: list[tuple[str, str]], sizes: np.ndarray, languages: list[str]
) -> dict[tuple[str, str], np.ndarray]:
    """Per key, the number of the scope's sentences above its threshold; ``sizes`` is (f, m, len(keys))."""
    out = {}
    for j, (name, scope) in enumerate(keys):
        out[(name, scope)] = (
            sizes[:, :, j].sum(axis=1)
            if scope == GLOBAL_SCOPE
            else sizes[:, languages.index(scope), j]
        )
    return out


def curve_counts(
    block: SentenceMax, thresholds: dict[str, dict[str, float]]
) -> dict[tuple[str, str], np.ndarray]:
    """Per feature of the block, the number of a scope's sentences whose max exceeds each threshold.

    Keys ``(threshold, scope)``; a language scope counts that language's
    sentences, the global scope counts all ``m n`` sentences with the global
    threshold value. A missing (NaN) threshold counts nothing.
    """
    keys, cuts = curve_cuts(block.languages, thresholds)
    return curve_counts_from(keys, threshold_counts(block, cuts).sizes, block.languages)


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
