"""The explorer's modules without a script run: rendering, table rules, loaders."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_app_support import IMG_TOKEN, RUN_ID, SCRIPT_TOKEN, AppRuns, build_app_runs

from explorer import data, render, table, ui

HOSTILE = [SCRIPT_TOKEN, IMG_TOKEN, '" onmouseover="alert(1)', "a & b", "<b>bold</b>"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> AppRuns:
    return build_app_runs(tmp_path_factory.mktemp("units") / "results")


# --------------------------------------------------------------- render ---


@pytest.mark.parametrize("token", HOSTILE)
def test_heatmap_escapes_tokens_in_text_and_title(token: str) -> None:
    out = render.token_heatmap([token, "ok"], [2.0, 0.0], 4.0, label="<en>")
    assert token not in out
    assert html.escape(token, quote=True) in out
    assert "<en>" not in out and "&lt;en&gt;" in out
    # Every attribute value stays inside its quotes: no raw quote from the token.
    assert out.count('title="') == 2
    assert "onmouseover=" not in out.replace("onmouseover=&quot;", "")


def test_pair_heatmaps_escape_caption_and_share_one_scale() -> None:
    out = render.pair_heatmaps(
        [("en", [SCRIPT_TOKEN], [5.0]), ("es", ["casa"], [10.0])], 10.0, caption=IMG_TOKEN
    )
    assert SCRIPT_TOKEN not in out and IMG_TOKEN not in out
    assert "rgba(230,85,13,0.500)" in out and "rgba(230,85,13,1.000)" in out


def test_heat_style_and_visible_whitespace() -> None:
    assert render.heat_style(0.0, 5.0) == "background-color:transparent"
    assert render.heat_style(float("nan"), 5.0) == "background-color:transparent"
    assert "0.200" in render.heat_style(1.0, 5.0)
    assert render.heat_style(3.0, 0.0) == "background-color:transparent"
    assert render.visible_token("▁casa\n") == " casa↵"
    assert "activation 0.123" in render.token_heatmap(["x"], [0.1234], 1.0)


def test_sentence_is_escaped() -> None:
    assert (
        render.sentence(f"Hola {IMG_TOKEN}")
        == f'<span class="sentence">Hola {html.escape(IMG_TOKEN)}</span>'
    )


# ---------------------------------------------------------------- table ---


def _features(**columns: list) -> pd.DataFrame:
    base = {
        "feature": [0, 1, 2, 3],
        "alive": [True, True, True, False],
        "bi": [0.3, 0.1, 0.2, np.nan],
        "jsd": [0.3, 0.1, 0.2, np.nan],
        "idaf": [1.0, 2.0, 3.0, np.inf],
        "mass_jsd": [0.5, 0.4, 0.6, np.nan],
        "n_fire_en": [10, 9, 0, 0],
        "n_fire_es": [10, 1, 8, 0],
        "mono_en": [0.0, 0.5, -0.5, 0.0],
        "mono_es": [0.0, -0.5, 0.5, 0.0],
    }
    base.update(columns)
    return pd.DataFrame(base)


def test_available_scores_follow_the_columns() -> None:
    keys = [s.key for s in table.available_scores(_features().columns, ["en", "es"])]
    assert keys == ["bi", "jaccard", "mass_jsd", "jsd", "mono_en", "mono_es"]
    with_nb = _features(notebook_bi=[1.0, 2.0, 3.0, 4.0]).columns
    assert "notebook" in [s.key for s in table.available_scores(with_nb, ["en", "es"])]
    assert table.score_by_key(table.available_scores(with_nb, ["en", "es"]), "nope").key == "bi"


def test_ranks_skip_dead_and_respect_direction() -> None:
    scored = table.score_table(_features(), None, ["en", "es"])
    scores = table.available_scores(scored.columns, ["en", "es"])
    bi = table.ranks(scored, table.score_by_key(scores, "bi"))
    assert bi.tolist()[:3] == [3, 1, 2] and pd.isna(bi.iloc[3])
    mono = table.ranks(scored, table.score_by_key(scores, "mono_en"))
    assert mono.tolist()[:3] == [2, 1, 3]


def test_filters_language_specificity_and_counts() -> None:
    scored = table.score_table(_features(), None, ["en", "es"])
    bi = table.score_by_key(table.available_scores(scored.columns, ["en", "es"]), "bi")
    langs = ["en", "es"]

    def kept(**kw) -> list[int]:
        return table.apply_filters(scored, bi, table.Filters(**kw), langs)["feature"].tolist()

    assert kept() == [0, 1, 2]
    assert kept(alive_only=False) == [0, 1, 2, 3]
    assert kept(specificity="bilingual") == [0]
    assert kept(specificity="only:en", share_cutoff=0.8) == [1]
    assert kept(specificity="only:es", share_cutoff=0.8) == [2]
    assert kept(min_pairs=5) == [0]
    assert kept(score_min=0.15, score_max=0.25) == [2]
    assert kept(features=frozenset({1, 3})) == [1]
    assert "alive only" in table.describe_filters(table.Filters(min_pairs=2))


def test_neighbours_along_a_ranking() -> None:
    scored = table.score_table(_features(), None, ["en", "es"])
    bi = table.score_by_key(table.available_scores(scored.columns, ["en", "es"]), "bi")
    assert table.neighbours(scored, bi, 2) == (2, 1, 0)
    assert table.neighbours(scored, bi, 1) == (1, None, 2)
    assert table.neighbours(scored, bi, 3) == (None, None, None)  # dead: unranked


def test_top_pairs_by_language_and_both() -> None:
    sm = pd.DataFrame(
        {
            "pair_id": [0, 0, 1, 2, 2],
            "lang": ["en", "es", "en", "en", "es"],
            "max_activation": [5.0, 1.0, 9.0, 3.0, 3.0],
            "n_tokens": [1] * 5,
        }
    )
    assert table.top_pairs(sm, ["en", "es"], "en", 2)["pair_id"].tolist() == [1, 0]
    assert table.top_pairs(sm, ["en", "es"], "es", 1)["pair_id"].tolist() == [2]
    both = table.top_pairs(sm, ["en", "es"], table.BY_BOTH, 3)
    assert both["pair_id"].tolist() == [2, 0, 1]
    assert both.loc[both["pair_id"] == 1, "max_es"].item() == 0.0


def test_pair_feature_table_keeps_features_firing_everywhere() -> None:
    pf = pd.DataFrame(
        {
            "feature": [7, 7, 8, 9, 9],
            "lang": ["en", "es", "en", "en", "es"],
            "max_activation": [1.0, 4.0, 9.0, 3.0, 2.0],
            "n_tokens": [1] * 5,
        }
    )
    both = table.pair_feature_table(pf, ["en", "es"])
    assert both["feature"].tolist() == [9, 7] and both["min_max"].tolist() == [2.0, 1.0]
    assert table.pair_feature_table(pf, ["en", "es"], both_only=False)["feature"].tolist() == [
        9,
        7,
        8,
    ]


def test_token_search_and_csv_safety() -> None:
    index = pd.DataFrame(
        {
            "feature": [1, 1, 2],
            "token": ["Casa", "gato", "house"],
            "n": [3, 1, 2],
            "max_activation": [1.0, 1.0, 1.0],
        }
    )
    assert table.match_tokens(index, "cas") == frozenset({1})
    assert table.match_tokens(index, "  ") == frozenset({1, 2})
    assert table.token_summary(index).to_dict() == {1: "Casa · gato", 2: "house"}
    safe = table.csv_safe(pd.DataFrame({"t": ["=cmd()", "ok", "-x"], "v": [-1.0, 2.0, 3.0]}))
    assert safe["t"].tolist() == ["'=cmd()", "ok", "'-x"] and safe["v"].tolist() == [-1.0, 2.0, 3.0]


# ------------------------------------------------------------------- ui ---


def test_url_parsers_reject_bad_values() -> None:
    assert ui.parse_int(0, 9)("3") == 3
    for bad in ("10", "-1", "x"):
        with pytest.raises(ValueError):
            ui.parse_int(0, 9)(bad)
    with pytest.raises(ValueError):
        ui.parse_float("nan")
    assert ui.parse_int_list(0, 5)("1,2,,3") == [1, 2, 3]
    assert ui.parse_bool("1") is True and ui.parse_bool("false") is False
    with pytest.raises(ValueError):
        ui.parse_choice(["a"])("b")


def test_formatting_and_neuronpedia_links() -> None:
    assert ui.fmt(1234567) == "1,234,567"
    assert ui.fmt(0.000123456) == "0.0001235"
    assert ui.fmt(None) == ui.fmt(float("nan")) == ui.fmt(pd.NA) == "–"
    assert ui.neuronpedia_url(None, 5) is None
    assert ui.neuronpedia_url("gemma-2-2b/20-gemmascope-res-16k/", 6530) == (
        "https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/6530"
    )


# ----------------------------------------------------------------- data ---


def test_loaders_read_only_what_they_name(runs: AppRuns) -> None:
    loc, tok = str(runs.run), "units"
    feature = runs.truth.features_of("bilingual")[0]
    profile = data.feature_profile(loc, tok, feature)
    acts = pd.read_parquet(runs.run / "activations.parquet", filters=[("feature", "==", feature)])
    assert profile.n_activations == len(acts)
    assert int(profile.histogram["count"].sum()) == len(acts)
    assert profile.sentence_max["max_activation"].max() == pytest.approx(acts["activation"].max())
    tokens = data.pair_tokens(loc, tok, (0, 1))
    assert tokens.iloc[1]["token"] == SCRIPT_TOKEN and set(tokens["pair_id"]) == {0, 1}
    texts = data.pair_texts(loc, tok, (0,))
    assert texts["lang"].tolist() == ["en", "es"] and IMG_TOKEN in texts["text"].iloc[1]
    pf = data.pair_features(loc, tok, 0)
    sm = pd.read_parquet(runs.run / "sentence_max.parquet", filters=[("pair_id", "==", 0)])
    assert len(pf) == len(sm)
    pairs = tuple(int(p) for p in profile.sentence_max["pair_id"].unique()[:3])
    ta = data.token_activations(loc, tok, (feature,), pairs)
    assert set(ta["feature"]) == {feature} and set(ta["pair_id"]) == set(pairs)
    assert len(ta) == int(acts["pair_id"].isin(pairs).sum())
    assert data.search_pairs(loc, tok, "hola")["pair_id"].unique().tolist() == [0]
    assert data.coactivation_thresholds(loc, tok)[:2] == ["any", "mean"]
    assert len(data.coactivation(loc, tok, "mean")) == runs.config.d_sae


def test_top_tokens_index_finds_a_planted_concept(runs: AppRuns) -> None:
    index = data.top_tokens(str(runs.run), "units")
    feature = runs.truth.features_of("bilingual")[0]
    rows = index[index["feature"] == feature]
    assert len(rows) >= 2 and rows["n"].sum() <= data.TOP_TOKENS_PER_FEATURE
    # A bilingual feature's top tokens are one concept in both languages.
    assert rows["n"].iloc[0] >= 2


def test_file_problems_name_the_file(runs: AppRuns, tmp_path: Path) -> None:
    loc = str(runs.run)
    assert data.file_problems(loc, "x", ("features.parquet", "tokens.parquet")) == {}
    assert "missing" in data.file_problems(loc, "x", ("nope.parquet",))["nope.parquet"]
    bad = tmp_path / RUN_ID
    bad.mkdir()
    (bad / "features.parquet").write_text("not parquet")
    pd.DataFrame({"feature": [1]}).to_parquet(bad / "tokens.parquet")
    problems = data.file_problems(str(bad), "x", ("features.parquet", "tokens.parquet"))
    assert "not a readable Parquet file" in problems["features.parquet"]
    assert "lacks required column(s): pair_id" in problems["tokens.parquet"]


def test_run_token_changes_when_a_run_is_rescored(runs: AppRuns) -> None:
    listing = next(r for r in data.list_runs(str(runs.root)) if r.run_id == RUN_ID)
    token = data.run_token(listing.manifest)
    assert listing.manifest.scoring["scored_at"] in token
    listing.manifest.scoring["scored_at"] = "later"
    assert data.run_token(listing.manifest) != token
