"""The feature page's pure parts (explorer.feature_parts) and the co-firing
loader's pair sampling, on tiny frames built here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explorer import data, feature_parts
from explorer.feature_parts import BY_BOTH


def build_sentence_max(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    """(pair_id, lang, max_activation) rows as a feature profile's sentence_max."""
    frame = pd.DataFrame(rows, columns=["pair_id", "lang", "max_activation"])
    frame["n_tokens"] = 1
    return frame


@pytest.fixture
def sentence_max() -> pd.DataFrame:
    # Pairs 0-9 fire in both languages (en = pair + 1, es = pair + 0.5); 10 and 11 in English only.
    rows = [(p, "en", p + 1.0) for p in range(10)] + [(p, "es", p + 0.5) for p in range(10)]
    rows += [(10, "en", 50.0), (11, "en", 0.1)]
    return build_sentence_max(rows)


def test_pair_maxima_both_ranks_by_the_weaker_side_and_drops_one_sided_pairs(sentence_max) -> None:
    maxima = feature_parts.pair_maxima(sentence_max, ["en", "es"], BY_BOTH, every_language=True)
    assert maxima["pair_id"].tolist() == list(range(9, -1, -1))
    assert maxima["key"].tolist() == [p + 0.5 for p in range(9, -1, -1)]
    some = feature_parts.pair_maxima(sentence_max, ["en", "es"], BY_BOTH, every_language=False)
    assert set(some["pair_id"]) == set(range(12))
    assert some.loc[some["pair_id"] == 10, ["max_es", "key"]].to_numpy().tolist() == [[0.0, 0.0]]


def test_pair_maxima_by_one_language(sentence_max) -> None:
    maxima = feature_parts.pair_maxima(sentence_max, ["en", "es"], "en", every_language=False)
    assert maxima["pair_id"].iloc[0] == 10 and maxima["key"].iloc[0] == 50.0
    assert maxima["pair_id"].iloc[-1] == 11


def test_example_groups_top_then_quantile_bins() -> None:
    rows = [(p, lang, float(p)) for p in range(1, 101) for lang in ("en", "es")]
    maxima = feature_parts.pair_maxima(
        build_sentence_max(rows), ["en", "es"], BY_BOTH, every_language=True
    )
    groups = feature_parts.example_groups(maxima, n_top=5, n_bins=4, per_bin=3, seed=7)
    assert groups[0].title == "Top 5 of 100 pairs"
    assert groups[0].pairs["pair_id"].tolist() == [100, 99, 98, 97, 96]
    assert [g.title.split(":")[0] for g in groups[1:]] == [
        "Quantile 75–100 %",
        "Quantile 50–75 %",
        "Quantile 25–50 %",
        "Quantile 0–25 %",
    ]
    bounds = [(76, 100), (51, 75), (26, 50), (1, 25)]
    for group, (lo, hi) in zip(groups[1:], bounds, strict=True):
        ids = group.pairs["pair_id"].tolist()
        assert len(ids) == 3 and all(lo <= p <= hi for p in ids), (group.title, ids)
        assert ids == sorted(ids, reverse=True)
        assert f"activation {lo:.3g}–{hi:.3g}" in group.title
    assert not set(groups[1].pairs["pair_id"]) & set(groups[0].pairs["pair_id"])
    again = feature_parts.example_groups(maxima, n_top=5, n_bins=4, per_bin=3, seed=7)
    assert [g.pairs["pair_id"].tolist() for g in again] == [
        g.pairs["pair_id"].tolist() for g in groups
    ]


def test_example_groups_small_or_empty() -> None:
    empty = feature_parts.pair_maxima(
        build_sentence_max([]), ["en", "es"], BY_BOTH, every_language=True
    )
    assert empty.empty and feature_parts.example_groups(empty, 8) == []
    rows = [(p, lang, float(p)) for p in range(3) for lang in ("en", "es")]
    maxima = feature_parts.pair_maxima(
        build_sentence_max(rows), ["en", "es"], BY_BOTH, every_language=True
    )
    groups = feature_parts.example_groups(maxima, n_top=8, per_bin=2)
    assert len(groups) == 1 and len(groups[0].pairs) == 3  # nothing left for the bins


def test_low_support_names_the_thin_languages() -> None:
    row = pd.Series({"n_fire_en": 10, "n_fire_es": 2})
    assert feature_parts.low_support(row, ["en", "es"]) == ["es"]
    assert feature_parts.low_support(row, ["en", "es"], min_pairs=2) == []
    assert feature_parts.LOW_SUPPORT_PAIRS == 3


def test_sample_pairs_keeps_the_fullest_buckets() -> None:
    ids = np.array([5, 6, 1030, 1031, 1032, 5000, 9000, 9001, 9002, 9003])
    assert data.sample_pairs(ids, max_buckets=5).tolist() == sorted(ids.tolist())
    assert data.sample_pairs(ids, max_buckets=2).tolist() == [
        1030,
        1031,
        1032,
        9000,
        9001,
        9002,
        9003,
    ]
    assert data.sample_pairs(np.array([7, 7, 3]), max_buckets=1).tolist() == [3, 7]
    assert data.sample_pairs(np.arange(100), max_buckets=1, max_pairs=5).tolist() == [
        0,
        25,
        50,
        74,
        99,
    ]


def test_neighbour_table_links_and_rounds() -> None:
    cofire = pd.DataFrame(
        {"neighbour": [4, 2], "n_both": [3.4, 1.0], "n_neighbour": [5, 9], "jaccard": [0.5, 0.1]}
    )
    scored = pd.DataFrame({"feature": [2, 4], "planted": ["", "bilingual"]})
    out = feature_parts.neighbour_table(
        cofire, scored, {4: "feature?feature=4", 2: "feature?feature=2"}
    )
    assert out["feature"].tolist() == [4, 2] and out["open"].tolist() == [
        "feature?feature=4",
        "feature?feature=2",
    ]
    assert out["shared pairs"].tolist() == [3, 1] and out["planted"].tolist() == ["bilingual", ""]
