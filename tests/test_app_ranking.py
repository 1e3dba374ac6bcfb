"""The app leads with the evidence score: /features ranks by it first, marks
features with little support, and keeps the blog score one click away with a
note; the overview lists the top features under it.

One scored synthetic run planting every kind of feature (single-pair and
two-pair features included) serves these tests.
"""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import RESULTS_ENV, AppRuns, build_app_runs, open_app

from bilingual_core import PlantedCounts
from explorer import table

TIMEOUT = 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> AppRuns:
    return build_app_runs(
        tmp_path_factory.mktemp("ranking") / "results",
        n_pairs=300,
        planted=PlantedCounts.every_kind(),
    )


def _page(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch, page: str | None, **params: str
) -> AppTest:
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))
    return open_app(page, **params)


def _frame(at: AppTest, key: str) -> pd.DataFrame:
    found = [d for d in at.dataframe if d.key == key]
    assert found, [d.key for d in at.dataframe]
    return found[0].value


def _captions(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.caption)


def test_features_page_ranks_by_evidence_first(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(runs, monkeypatch, "pages/features.py")
    menu = at.selectbox(key="features_score")
    assert menu.options[0].startswith("evidence") and menu.value == "evidence"
    shown = _frame(at, "features_table")
    assert shown["rank"].head(10).tolist() == list(range(1, 11))
    assert shown["evidence"].head(10).is_monotonic_decreasing
    # Support is shown, and the planted bilingual features lead (no single- or two-pair one).
    assert {"support", "low_support"} <= set(shown.columns)
    kinds = shown["planted"].head(10)
    assert kinds.isin(["bilingual", "bilingual_weak"]).sum() >= 9, shown.head(10)
    # Every single-pair feature is marked low support, and every low-support feature is
    # one with fewer than LOW_SUPPORT_PAIRS pairs firing in both languages.
    single = shown[shown["planted"] == "single_pair"]
    assert len(single) > 0 and single["low_support"].all()
    assert (shown["low_support"] == (shown["support"] < table.LOW_SUPPORT_PAIRS)).all()
    assert "Needs many pairs firing in every language" in _captions(at)


def test_blog_score_is_one_click_away_with_its_note(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(runs, monkeypatch, "pages/features.py")
    at.selectbox(key="features_score").set_value("bi").run()
    assert at.query_params["score"] == "bi"
    assert "favours rare features" in _captions(at)
    top = _frame(at, "features_table").head(10)
    # Its top is the low-support features the default keeps out of the lead.
    assert top["low_support"].sum() >= 5, top


def test_overview_lists_the_top_features_by_evidence(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(runs, monkeypatch, None)
    top = next(
        d.value for d in at.dataframe if {"open", "evidence"} <= set(map(str, d.value.columns))
    )
    assert top.columns[:4].tolist() == ["feature", "open", "rank", "evidence"]
    assert top["rank"].tolist() == list(range(1, len(top) + 1)) and len(top) == 10
    feats = pd.read_parquet(runs.run / "features.parquet")
    best = feats.sort_values("evidence_rank")["feature"].head(10).tolist()
    assert top["feature"].tolist() == best
    assert any(link.label.startswith("Top feature by evidence") for link in at.get("page_link"))
