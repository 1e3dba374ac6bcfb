"""The feature page's sections as pure pandas: which example pairs it shows
(the strongest, then samples from activation quantile bins), whether a feature
has too little support to judge, and the co-firing neighbours' table.

Nothing here draws a widget or reads a file; ``views/feature.py`` passes in
what ``explorer.data`` loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import table

BY_BOTH = table.BY_BOTH
LOW_SUPPORT_PAIRS: int = getattr(table, "LOW_SUPPORT_PAIRS", 3)
"""A feature firing on fewer pairs than this in some language is marked "low support"."""


def low_support(
    row: pd.Series, languages: list[str], min_pairs: int = LOW_SUPPORT_PAIRS
) -> list[str]:
    """The languages where the feature (a features-table row) fires on fewer
    than ``min_pairs`` sentences; empty when it has support everywhere."""
    return [lang for lang in languages if int(row.get(f"n_fire_{lang}") or 0) < min_pairs]


def pair_maxima(
    sentence_max: pd.DataFrame, languages: list[str], by: str, every_language: bool
) -> pd.DataFrame:
    """One row per pair the feature fires on: ``max_<lang>`` per language (0
    where silent) and ``key``, what the examples are ordered by: that
    language's maximum, or for ``both`` the smallest maximum across languages.

    ``every_language`` keeps only pairs where every language fires (meant for
    ``both``). Sorted strongest first; ties by the larger maximum, then pair id.
    """
    cols = [f"max_{lang}" for lang in languages]
    if sentence_max.empty:
        return pd.DataFrame(
            {
                "pair_id": pd.Series(dtype="int64"),
                **{c: pd.Series(dtype="float64") for c in cols},
                "key": pd.Series(dtype="float64"),
            }
        )
    wide = sentence_max.pivot_table(
        index="pair_id", columns="lang", values="max_activation", aggfunc="max", observed=True
    )
    wide = wide.reindex(columns=languages)
    if every_language:
        wide = wide.dropna()
    wide = wide.fillna(0.0).astype("float64")
    wide.columns = cols
    wide["key"] = (
        wide[cols].min(axis=1) if by == BY_BOTH or f"max_{by}" not in wide else wide[f"max_{by}"]
    )
    wide["_tie"] = wide[cols].max(axis=1)
    wide = wide.reset_index().sort_values(
        ["key", "_tie", "pair_id"], ascending=[False, False, True]
    )
    return wide.drop(columns="_tie").reset_index(drop=True)


@dataclass(frozen=True)
class ExampleGroup:
    """A list of example pairs under one heading."""

    title: str
    pairs: pd.DataFrame
    """Rows of ``pair_maxima``."""


def example_groups(
    maxima: pd.DataFrame, n_top: int, n_bins: int = 4, per_bin: int = 3, seed: int = 0
) -> list[ExampleGroup]:
    """The ``n_top`` strongest pairs, then ``per_bin`` pairs drawn (reproducibly,
    from ``seed``) from each of ``n_bins`` equal-count bins of ``key`` over all
    the feature's pairs, strongest bin first. Top pairs are not drawn again;
    empty bins are left out."""
    groups = []
    top = maxima.head(n_top)
    if not top.empty:
        groups.append(ExampleGroup(f"Top {len(top)} of {len(maxima):,} pairs", top))
    rest = maxima.iloc[len(top) :]
    if per_bin <= 0 or n_bins <= 0 or rest.empty:
        return groups
    n = len(maxima)
    # Percentile rank of every pair by key (ties broken by the sorted order):
    # the strongest pair has rank n, the weakest 1.
    position = np.arange(n, 0, -1)
    bins = np.minimum(n_bins - 1, ((position - 1) * n_bins) // n)
    bin_of = pd.Series(bins, index=maxima.index)
    for b in range(n_bins - 1, -1, -1):
        members = rest[bin_of.loc[rest.index] == b]
        if members.empty:
            continue
        chosen = members.sample(n=min(per_bin, len(members)), random_state=seed + b)
        chosen = chosen.sort_values(["key", "pair_id"], ascending=[False, True])
        everyone = maxima[bin_of == b]
        lo, hi = 100 * b // n_bins, 100 * (b + 1) // n_bins
        groups.append(
            ExampleGroup(
                f"Quantile {lo}–{hi} %: activation {everyone['key'].min():.3g}–{everyone['key'].max():.3g} "
                f"· {len(chosen)} of {len(everyone):,} pairs",
                chosen,
            )
        )
    return groups


def neighbour_table(
    cofire: pd.DataFrame, scored: pd.DataFrame, link: dict[int, str]
) -> pd.DataFrame:
    """The co-firing neighbours for display: feature, a link to its page,
    Jaccard, pairs shared and its own firing pairs, and its planted kind when
    the run has one."""
    out = pd.DataFrame(
        {
            "feature": cofire["neighbour"].astype("int64"),
            "open": [link[int(f)] for f in cofire["neighbour"]],
            "jaccard": cofire["jaccard"],
            "shared pairs": cofire["n_both"].round().astype("int64"),
            "its pairs": cofire["n_neighbour"].astype("int64"),
        }
    )
    if "planted" in scored:
        kinds = scored.set_index("feature")["planted"]
        out["planted"] = out["feature"].map(kinds).fillna("")
    return out
