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
from explorer import table, ui

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


def test_features_page_ranks_by_translation_first(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(runs, monkeypatch, "views/features.py")
    menu = at.selectbox(key="features_score")
    assert menu.options[0].startswith("translation") and menu.value == "translation"
    shown = _frame(at, "features_table")
    assert shown["rank"].head(10).tolist() == list(range(1, 11))
    assert shown["planted"].head(10).isin(["bilingual", "bilingual_weak"]).sum() >= 9
    assert "label" in shown.columns and shown["label"].head(10).str.contains("/").all()
    # Shared-token features are hidden by default, one click shows them, tagged.
    assert not (shown["planted"] == "shared_surface").any()
    at.toggle(key="features_hide_shared").set_value(False).run()
    shown = _frame(at, "features_table")
    shared = shown[shown["planted"] == "shared_surface"]
    assert len(shared) > 0 and (shared["tag"] == table.SHARED_TAG).all()
    assert shared["rank"].min() > shown.loc[shown["tag"] == table.TRANSLATION_TAG, "rank"].max()


def test_search_matches_labels(runs: AppRuns, monkeypatch: pytest.MonkeyPatch) -> None:
    feats = pd.read_parquet(runs.run / "features.parquet")
    best = feats.sort_values("translation_rank").iloc[0]
    word = best["label"].split(" · ")[0].split("/")[1]  # the Spanish side of its top pair
    at = _page(runs, monkeypatch, "views/features.py", tok=word)
    shown = _frame(at, "features_table")
    assert int(best["feature"]) in shown["feature"].tolist()


def test_features_page_evidence_is_one_click_away(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(runs, monkeypatch, "views/features.py", score="evidence", hideshared="0", group="0")
    shown = _frame(at, "features_table")
    assert shown["rank"].head(10).tolist() == list(range(1, 11))
    assert shown["evidence"].head(10).is_monotonic_decreasing
    # Support is shown, and the planted bilingual features lead (no single- or two-pair one).
    assert {"support", "low_support"} <= set(shown.columns)
    kinds = shown["planted"].head(10)
    assert kinds.isin(["bilingual", "bilingual_weak", "shared_surface"]).sum() >= 9, shown.head(10)
    # Every single-pair feature is marked low support, and every low-support feature is
    # one with fewer than LOW_SUPPORT_PAIRS pairs firing in both languages.
    single = shown[shown["planted"] == "single_pair"]
    assert len(single) > 0 and single["low_support"].all()
    assert (shown["low_support"] == (shown["support"] < table.LOW_SUPPORT_PAIRS)).all()
    assert "Needs many pairs firing in every language" in _captions(at)


def test_blog_score_is_one_click_away_with_its_note(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(runs, monkeypatch, "views/features.py")
    at.selectbox(key="features_score").set_value("bi").run()
    assert at.query_params["score"] == "bi"
    assert "favours rare features" in _captions(at)
    top = _frame(at, "features_table").head(10)
    # Its top is the low-support features the default keeps out of the lead.
    assert top["low_support"].sum() >= 5, top


def test_overview_lists_the_top_features_by_translation(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(runs, monkeypatch, None)
    top = next(
        d.value for d in at.dataframe if {"open", "translation"} <= set(map(str, d.value.columns))
    )
    assert top.columns[:5].tolist() == ["feature", "open", "rank", "translation", "label"]
    assert top["rank"].tolist() == list(range(1, len(top) + 1)) and len(top) == 10
    feats = pd.read_parquet(runs.run / "features.parquet")
    best = feats.sort_values("translation_rank")["feature"].head(10).tolist()
    assert top["feature"].tolist() == best
    label = feats.set_index("feature").loc[best[0], "label"]
    assert any(
        link.label.startswith(f"Feature {best[0]} ")
        and link.label.endswith("(top by translation)")
        and label in link.label
        for link in at.get("page_link")
    )


def test_an_old_run_says_what_it_lacks(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A run scored before peak-token evidence opens on every page with a note, no traceback."""
    import shutil

    root = tmp_path / "results"
    shutil.copytree(runs.run, root / runs.run.name)
    path = root / runs.run.name / "features.parquet"
    old = pd.read_parquet(path)
    drop = [
        "translation", "translation_rank", "n_cross", "n_shared", "cross_share",
        "cross_log10p", "cross_repeated", "is_translation", "is_shared_surface",
        "label", "token_pairs", "family", "family_size",
    ]  # fmt: skip
    old.drop(columns=drop).to_parquet(path)
    monkeypatch.setenv(RESULTS_ENV, str(root))
    for page in (None, "views/features.py", "views/feature.py", "views/pairs.py"):
        at = open_app(page)
        assert not at.exception
        if page in (None, "views/features.py"):
            notes = "\n".join(str(i.value) for i in at.info)
            assert "python -m precompute score --run" in notes, notes
    at = open_app("views/features.py")
    assert at.selectbox(key="features_score").value == "evidence"


def test_feature_page_shows_label_family_and_labelled_neighbours(monkeypatch) -> None:
    """On the shipped default run (decoder neighbours stored): the title
    carries the label, the family is listed, both neighbour lists have labels."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "results"
    feats = pd.read_parquet(root / ui.DEFAULT_RUN / "features.parquet")
    fam = feats[feats["family_size"] > 1].sort_values("translation_rank").iloc[0]
    monkeypatch.setenv(RESULTS_ENV, str(root))
    at = open_app("views/feature.py", run=ui.DEFAULT_RUN, feature=str(int(fam["feature"])))
    assert fam["label"] in at.title[0].value
    assert any("Family of" in str(m.value) for m in at.markdown)
    links = [link.label for link in at.get("page_link")]
    assert sum(" · " in label for label in links) >= int(fam["family_size"])
    frames = [d.value for d in at.dataframe]
    for marker in ("jaccard", "cosine"):  # co-firing, decoder neighbours
        frame = next(f for f in frames if marker in f.columns)
        assert {"label", "its translation", "its rank"} <= set(frame.columns), frame.columns
        assert frame["label"].str.len().gt(0).any()


FAKE_LABEL = "fake: a score declared by this test (higher = better)"


@pytest.fixture
def fake_score(runs: AppRuns, monkeypatch: pytest.MonkeyPatch, tmp_path) -> pd.DataFrame:
    """One score added to the registry, nothing else changed, and a copy of the
    run whose features.parquet has its columns (value = feature id / 1000)."""
    import shutil

    from bilingual_core import score_registry
    from bilingual_core.score_registry import ScoreSpec

    fake = ScoreSpec(
        "fake", FAKE_LABEL, "fake_score", "higher", "the feature id, scaled",
        run=lambda q: None, rank_column="fake_rank",
    )  # fmt: skip
    monkeypatch.setattr(score_registry, "SCORES", (*score_registry.SCORES, fake))
    root = tmp_path / "results"
    shutil.copytree(runs.run, root / runs.run.name)
    path = root / runs.run.name / "features.parquet"
    feats = pd.read_parquet(path)
    feats["fake_score"] = feats["feature"] / 1000.0
    feats["fake_rank"] = feats["fake_score"].rank(ascending=False, method="first").astype("int32")
    feats.to_parquet(path)
    monkeypatch.setenv(RESULTS_ENV, str(root))
    return feats


def test_a_score_added_to_the_registry_reaches_the_feature_table(
    fake_score: pd.DataFrame,
) -> None:
    """The new score is in the ranking menu, the table's columns, the sort menu,
    and the score filter narrows the table on it."""
    at = open_app("views/features.py", score="fake", smin="0.1")
    menu = at.selectbox(key="features_score")
    assert menu.value == "fake" and FAKE_LABEL in menu.options
    shown = _frame(at, "features_table")
    assert "fake_score" in shown.columns and len(shown)
    assert shown["fake_score"].ge(0.1).all()
    assert len(shown) < int(fake_score["alive"].sum())  # the filter narrowed the table
    assert "fake_score" in at.selectbox(key="features_sort").options


def test_a_score_added_to_the_registry_reaches_the_feature_and_pair_pages(
    fake_score: pd.DataFrame,
) -> None:
    """The feature page's ranking menu and score list, the pair table, and the
    commands' candidate rankings take the new score too."""
    from bilingual_core.evidence import ranking_column

    assert ranking_column(fake_score.columns, "fake") == "fake_rank"
    feature = int(fake_score.loc[fake_score["alive"], "feature"].max())
    at = open_app("views/feature.py", feature=str(feature), score="fake")
    assert at.selectbox(key="feature_score").value == "fake"
    scores = next(d.value for d in at.dataframe if {"score", "value", "rank"} <= set(d.value))
    row = scores.set_index("score").loc["fake"]
    assert row["value"] == pytest.approx(feature / 1000.0) and row["rank"] == 1
    firing = table.pair_feature_table(
        pd.DataFrame({"pair_id": [0, 0], "lang": ["en", "es"], "feature": [feature] * 2,
                      "max_activation": [1.0, 1.0]}),
        ["en", "es"],
        fake_score,
    )  # fmt: skip
    assert {"fake_score", "fake_rank"} <= set(firing.columns)
