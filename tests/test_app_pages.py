"""Every page of the app through ``streamlit.testing.v1.AppTest``, from app.py.

One scored synthetic run (120 pairs, 256 features, planted features of known
kind, hostile HTML in pair 0) serves every test; broken runs and an empty
root sit in roots of their own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import (
    APP,
    IMG_TOKEN,
    NEURONPEDIA_ID,
    RESULTS_ENV,
    RUN_ID,
    SCRIPT_TOKEN,
    AppRuns,
    build_app_runs,
    open_app,
)

from explorer import history

TIMEOUT = 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> AppRuns:
    return build_app_runs(tmp_path_factory.mktemp("app") / "results")


@pytest.fixture
def app(runs: AppRuns, monkeypatch: pytest.MonkeyPatch):
    """Factory: an AppTest of app.py on ``page`` with ``params`` in the URL, run once."""
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))

    return open_app


def texts(at: AppTest) -> str:
    """Everything an element tree shows as text (markdown, captions, titles, html, links)."""
    parts = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "text",
        "info",
        "error",
        "warning",
        "html",
        "page_link",
        "metric",
    ):
        for el in at.get(kind):
            parts.append(str(getattr(el, "value", "")))
            if kind == "metric":
                parts.append(str(el.label))
    return "\n".join(parts)


def frames(at: AppTest, key: str):
    """The dataframe with widget key ``key`` (selectable tables)."""
    found = [d for d in at.dataframe if d.key == key]
    assert found, f"no dataframe {key!r}; have {[d.key for d in at.dataframe]}"
    return found[0].value


def table_with(at: AppTest, *columns: str):
    """The first (read-only) dataframe that has all of ``columns``."""
    for d in at.dataframe:
        if set(columns) <= set(map(str, d.value.columns)):
            return d.value
    raise AssertionError(f"no dataframe with columns {columns}")


# ------------------------------------------------------------- overview ---


def test_overview_shows_manifest_counts_and_thresholds(app, runs: AppRuns) -> None:
    at = app()
    shown = texts(at)
    assert f"Run `{RUN_ID}`" in shown
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sentence pairs"] == "120"
    assert metrics["SAE features"] == "256"
    n_dead = int(metrics["Dead"])
    assert n_dead >= len(runs.truth.features_of("dead"))
    assert int(metrics["Alive"]) + n_dead == 256
    thresholds = table_with(at, "en", "es", "global")
    assert list(thresholds.columns) == ["en", "es", "global"]
    assert "q0.95" in thresholds.index
    assert at.query_params["run"] == RUN_ID


def test_unknown_run_in_link_warns_and_falls_back(app) -> None:
    at = app(run="no-such-run")
    assert any("run 'no-such-run' does not exist" in w for w in _main_warnings(at)), _main_warnings(
        at
    )
    assert at.query_params["run"] == RUN_ID


# --------------------------------------------------------------- curves ---


def test_curves_draw_one_line_per_threshold_with_values(app, runs: AppRuns) -> None:
    at = app("views/curves.py")
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # en, es, global
    spec = json.loads(charts[0].proto.spec)
    names = [trace["name"] for trace in spec["data"]]
    assert len(names) == 6 and names[0].startswith("mean = ")
    assert spec["layout"]["xaxis"]["type"] == "log"
    assert "feature %{customdata[0]} %{customdata[1]}" in spec["data"][0]["hovertemplate"]
    at.multiselect(key="curves_thresholds").set_value(["q0.5"]).run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"].split(" =")[0] for t in spec["data"]] == ["q0.5"]
    assert at.query_params["thr"] == "q0.5"


# ------------------------------------------------------------- features ---


def test_feature_table_ranks_planted_bilingual_first_by_jaccard(app, runs: AppRuns) -> None:
    at = app("views/features.py", score="jaccard", minpairs="3", spec="bilingual")
    table = frames(at, "features_table")
    bilingual = set(runs.truth.features_of("bilingual"))
    top = table["feature"].head(3).tolist()
    assert set(top) <= bilingual, table.head(5)
    assert (table["planted"].head(3) == "bilingual").all()
    assert table["n_fire_en"].min() >= 3 and table["n_fire_es"].min() >= 3
    assert "open" in table.columns and table["open"].iloc[0].startswith(
        f"feature?run={RUN_ID}&feature="
    )


def test_feature_table_widgets_drive_filters_and_url(app, runs: AppRuns) -> None:
    at = app("views/features.py")
    n_all = len(frames(at, "features_table"))
    at.selectbox(key="features_score").set_value("mono_en").run()
    at.number_input(key="features_minpairs").set_value(5).run()
    at.selectbox(key="features_spec").set_value("only:en").run()
    assert not at.exception
    table = frames(at, "features_table")
    assert len(table) < n_all
    assert (table["share_en"] >= 0.8).all() and (table["n_fire_en"] >= 5).all()
    assert at.query_params["score"] == "mono_en"
    assert at.query_params["minpairs"] == "5"
    assert at.query_params["spec"] == "only:en"
    # Sorting by the score column, descending, puts the most English-specific first.
    at.selectbox(key="features_sort").set_value("mono_en").run()
    at.toggle(key="features_desc").set_value(True).run()
    table = frames(at, "features_table")
    assert table["mono_en"].is_monotonic_decreasing


def test_feature_table_token_search(app, runs: AppRuns) -> None:
    from explorer import data

    feature = runs.truth.features_of("bilingual")[2]
    index = data.top_tokens(str(runs.run), "test")
    word = index[index["feature"] == feature]["token"].iloc[0]
    at = app("views/features.py")
    at.text_input(key="features_tokens").input(word).run()
    table = frames(at, "features_table")
    assert feature in set(table["feature"])
    assert word in table.loc[table["feature"] == feature, "top_tokens"].iloc[0]
    assert len(table) < 200
    assert at.query_params["tok"] == word


def test_feature_table_score_range_and_csv(app) -> None:
    at = app("views/features.py", score="bi", smax="0")
    table = frames(at, "features_table")
    assert (table["bi"] <= 0).all() and len(table) > 0
    assert [b for b in at.get("download_button") if getattr(b, "key", None) == "features_csv"]


def test_selecting_a_row_opens_its_feature_page(app) -> None:
    at = app("views/features.py", score="jaccard")
    table = frames(at, "features_table")
    target = int(table["feature"].iloc[1])
    at.session_state["features_table"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert _title_id(at) == f"Feature {target}"
    assert at.query_params["feature"] == str(target)
    assert at.query_params["score"] == "jaccard"


# -------------------------------------------------------------- feature ---


def test_feature_page_scores_heatmaps_and_links(app, runs: AppRuns) -> None:
    feature = runs.truth.features_of("bilingual")[2]
    at = app("views/feature.py", feature=str(feature))
    assert _title_id(at) == f"Feature {feature}"
    shown = texts(at)
    assert "planted: bilingual" in shown
    scores = table_with(at, "score", "value", "rank")
    assert {"value", "rank"} <= set(scores.columns) and len(scores) >= 5
    assert at.get("plotly_chart"), "no activation histogram"
    heatmaps = [h.value for h in at.get("html") if 'class="pair"' in h.value]
    assert heatmaps[0].count('class="pair"') == 8  # the default 8 top pairs, one element
    assert len(heatmaps) >= 4  # then samples from the quantile bins below the top pairs
    assert "Top 8 of 25 pairs" in shown and "Quantile 0–25 %" in shown
    assert 'title="' in heatmaps[0] and "activation" in heatmaps[0]
    # The strongest token carries its value, and the caption names each side's.
    assert 'class="peak"' in heatmaps[0]
    assert " en " in heatmaps[0] and " es " in heatmaps[0] and " on “" in heatmaps[0]
    buttons = [b for b in at.get("link_button")]
    assert (
        buttons
        and buttons[0].proto.url == f"https://www.neuronpedia.org/{NEURONPEDIA_ID}/{feature}"
    )
    links = _links(at)
    nav = [label for label in links if label.startswith(("Previous", "Next"))]
    assert nav, links
    assert all(f"run={RUN_ID}" in links[label] for label in nav)


def test_feature_page_top_pairs_by_language(app, runs: AppRuns) -> None:
    feature = runs.truth.features_of("leaning")[0]
    at = app("views/feature.py", feature=str(feature))
    at.radio(key="feature_by").set_value("es").run()
    at.slider(key="feature_n").set_value(3).run()
    at.slider(key="feature_per_bin").set_value(0).run()
    assert not at.exception
    heatmaps = [h.value for h in at.get("html") if 'class="pair"' in h.value]
    assert sum(h.count('class="pair"') for h in heatmaps) == 3
    assert (
        at.query_params["by"] == "es"
        and at.query_params["n"] == "3"
        and at.query_params["nq"] == "0"
    )


def test_feature_page_previous_next_follow_ranking(app, runs: AppRuns) -> None:
    import pandas as pd

    feats = pd.read_parquet(runs.run / "features.parquet")
    order = feats[feats["alive"]].sort_values(["mass_jsd", "feature"])["feature"].tolist()
    first, second, third = order[:3]
    at = app("views/feature.py", feature=str(second), score="mass_jsd")
    assert "rank 2 by `mass_jsd`" in texts(at)
    links = _links(at)
    assert f"feature={first}" in links[f"Previous: feature {first}"]
    assert f"feature={third}" in links[f"Next: feature {third}"]
    assert "score=mass_jsd" in links[f"Next: feature {third}"]


def test_feature_page_density_and_firing_rate(app, runs: AppRuns) -> None:
    import pandas as pd

    feature = runs.truth.features_of("bilingual")[2]
    at = app("views/feature.py", feature=str(feature))
    charts = {
        c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart") if getattr(c, "key", None)
    }
    density = charts["feature_histogram"]
    assert density["layout"]["yaxis"]["type"] == "log" and density["layout"]["barmode"] == "group"
    assert [t["name"] for t in density["data"]] == ["en", "es"]
    firing = charts["feature_firing"]
    markers = [t for t in firing["data"] if t.get("mode") == "markers"]
    assert [t["name"] for t in markers] == [f"feature {feature} (en)", f"feature {feature} (es)"]
    feats = pd.read_parquet(runs.run / "features.parquet")
    rate = feats.set_index("feature").at[feature, "n_fire_en"] / 120
    assert markers[0]["y"][0] == pytest.approx(rate)
    expected_rank = (
        int((feats["n_fire_en"] > feats.set_index("feature").at[feature, "n_fire_en"]).sum()) + 1
    )
    assert markers[0]["x"][0] >= expected_rank  # ties are ordered by feature id after it


def test_feature_page_examples_hold_pairs_where_every_language_fires(app, runs: AppRuns) -> None:
    feature = runs.truth.features_of("independent")[0]
    at = app("views/feature.py", feature=str(feature), n="50", nq="0")
    heatmaps = "".join(h.value for h in at.get("html") if 'class="pair"' in h.value)
    assert heatmaps and "silent" not in heatmaps
    n_both = heatmaps.count('class="pair"')
    at.toggle(key="feature_some").set_value(True).run()
    heatmaps = "".join(h.value for h in at.get("html") if 'class="pair"' in h.value)
    assert heatmaps.count('class="pair"') > n_both and (
        "es silent" in heatmaps or "en silent" in heatmaps
    )
    assert at.query_params["some"] == "1"


def test_feature_page_cofiring_neighbours_are_jaccard_over_pairs(app, runs: AppRuns) -> None:
    import pandas as pd

    feature = runs.truth.features_of("bilingual")[2]
    at = app("views/feature.py", feature=str(feature))
    shown = table_with(at, "feature", "jaccard", "shared pairs")
    sm = pd.read_parquet(runs.run / "sentence_max.parquet")
    pairs = sm.groupby("feature")["pair_id"].agg(lambda p: set(p.tolist()))
    mine = pairs[feature]
    expected = sorted(
        (
            (len(mine & other) / len(mine | other), -f)
            for f, other in pairs.items()
            if f != feature and mine & other
        ),
        reverse=True,
    )
    top = -expected[0][1]
    assert int(shown["feature"].iloc[0]) == top
    assert shown["jaccard"].iloc[0] == pytest.approx(expected[0][0])
    assert shown["open"].iloc[0].startswith(f"feature?run={RUN_ID}&feature={top}")
    links = _links(at)
    assert f"feature={top}" in links[f"feature {top}"]
    assert "Nearest decoder directions" not in texts(at)  # the run has no neighbours.parquet


def test_feature_page_low_support_badge(app, runs: AppRuns) -> None:
    import pandas as pd

    feats = pd.read_parquet(runs.run / "features.parquet")
    thin = feats[feats["alive"] & ((feats["n_fire_en"] < 3) | (feats["n_fire_es"] < 3))][
        "feature"
    ].iloc[0]
    at = app("views/feature.py", feature=str(thin))
    assert "low support" in texts(at)
    busy = runs.truth.features_of("ubiquitous")[0]
    assert "low support" not in texts(app("views/feature.py", feature=str(busy)))


def test_feature_page_decoder_neighbours_when_stored(
    runs: AppRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    root = tmp_path / "results"
    shutil.copytree(runs.root, root)
    pd.DataFrame(
        {
            "feature": [44, 44, 9],
            "rank": [1, 2, 1],
            "neighbour": [9, 14, 44],
            "cosine": [0.91, 0.5, 0.91],
        }
    ).to_parquet(root / RUN_ID / "neighbours.parquet")
    monkeypatch.setenv(RESULTS_ENV, str(root))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"run": RUN_ID, "feature": "44"})
    at.run()
    at.switch_page("views/feature.py")
    at.query_params.update({"run": RUN_ID, "feature": "44"})
    at.run()
    assert not at.exception, at.exception
    decoder = table_with(at, "rank", "neighbour", "cosine")
    assert decoder["neighbour"].tolist() == [9, 14] and decoder["cosine"].iloc[0] == pytest.approx(
        0.91
    )
    assert decoder["open"].iloc[1].startswith(f"feature?run={RUN_ID}&feature=14")


def test_previous_next_moves_the_url(app, runs: AppRuns) -> None:
    """A same-page link: the frontend reruns with the link's query string; the
    page must follow it (the browser test checks the address bar and history)."""
    import pandas as pd

    feats = pd.read_parquet(runs.run / "features.parquet")
    order = feats[feats["alive"]].sort_values(["mass_jsd", "feature"])["feature"].tolist()
    at = app("views/feature.py", feature=str(order[1]), score="mass_jsd")
    links = _links(at)
    query = dict(part.split("=") for part in links[f"Next: feature {order[2]}"].split("&"))
    at.query_params.clear()
    at.query_params.update(query)
    at.run()
    assert not at.exception
    assert _title_id(at) == f"Feature {order[2]}"
    assert at.query_params["feature"] == str(order[2]) and at.query_params["score"] == "mass_jsd"
    assert at.number_input(key="feature_id").value == order[2]


def test_feature_table_link_restores_the_table(app) -> None:
    at = app("views/features.py", score="jaccard", minpairs="3", spec="bilingual", desc="1")
    n_filtered = len(frames(at, "features_table"))
    at.session_state["features_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert at.title[0].value.startswith("Feature ")
    # The feature page carries the table's parameters, and its links keep them.
    assert at.query_params["minpairs"] == "3" and at.query_params["spec"] == "bilingual"
    links = _links(at)
    assert all(
        "minpairs=3" in q for label, q in links.items() if label.startswith(("Previous", "Next"))
    )
    query = dict(part.split("=") for part in links["Feature table"].split("&"))
    assert query == {
        "run": RUN_ID,
        "score": "jaccard",
        "minpairs": "3",
        "spec": "bilingual",
        "desc": "1",
    }
    at.switch_page("views/features.py")
    at.query_params.clear()
    at.query_params.update(query)
    at.run()
    assert not at.exception
    assert len(frames(at, "features_table")) == n_filtered
    assert at.selectbox(key="features_spec").value == "bilingual"
    assert at.toggle(key="features_desc").value is True


def _main_warnings(at) -> list[str]:
    """The main area's warnings as plain text (link values in them are Markdown-escaped)."""
    return [w.value.replace("\\", "").replace("\u200b", "") for w in at.main.warning]


def test_invalid_link_values_are_named_in_the_main_area(app) -> None:
    at = app("views/feature.py", feature="abc")
    main = _main_warnings(at)
    assert any("`feature` value abc is not valid" in w and "showing feature" in w for w in main), (
        main
    )
    assert not at.sidebar.warning
    at = app("views/feature.py", feature="99999")  # a number out of range is clamped, and said so
    assert any(
        "`feature` value 99999 is outside 0..255; showing 255" in w for w in _main_warnings(at)
    )


def test_link_to_a_missing_run_says_it_does_not_exist(app) -> None:
    at = app("views/feature.py", run="no-such-run", feature="3")
    main = _main_warnings(at)
    assert any(
        "run 'no-such-run' does not exist" in w and f"showing run `{RUN_ID}` instead" in w
        for w in main
    ), main


def test_feature_page_for_a_dead_feature(app, runs: AppRuns) -> None:
    dead = runs.truth.features_of("dead")[0]
    at = app("views/feature.py", feature=str(dead))
    assert "never fires" in texts(at)


def test_feature_page_rejects_out_of_range_feature(app) -> None:
    at = app("views/feature.py", feature="99999")
    assert any("feature" in w.value for w in at.warning)


# ---------------------------------------------------------------- pairs ---


def test_pairs_page_escapes_hostile_tokens_and_text(app) -> None:
    at = app("views/pairs.py", pair="0")
    # every HTML element but the app's own history script (explorer/history.py)
    html = "\n".join(h.value for h in at.get("html") if h.value != history.SCRIPT)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert SCRIPT_TOKEN not in html and IMG_TOKEN not in html
    assert "<img" not in html and "<script" not in html
    tokens = table_with(at, "position", "token_id", "token")
    assert tokens["token"].iloc[1] == SCRIPT_TOKEN  # shown as data, not markup


def test_pairs_page_features_heatmaps_and_search(app, runs: AppRuns) -> None:
    at = app("views/pairs.py", pair="5")
    assert at.header[0].value == "Pair 5"
    firing = table_with(at, "feature", "min_max")
    assert len(firing) > 0 and (firing[["max_en", "max_es"]] > 0).all().all()
    chosen = at.multiselect(key="pairs_features").value
    assert 1 <= len(chosen) <= 3 and set(chosen) <= set(firing["feature"])  # test_app_newcomer
    heatmaps = [h.value for h in at.get("html") if 'class="pair"' in h.value]
    assert len(heatmaps) == len(chosen) and f"feature {chosen[0]}" in heatmaps[0]
    at.toggle(key="pairs_all").set_value(True).run()
    assert len(table_with(at, "feature", "min_max")) >= len(firing)
    at.text_input(key="pairs_search").input("Hola").run()
    results = frames(at, "pairs_results")
    assert results["pair_id"].tolist() == [0]
    assert at.query_params["q"] == "Hola"


def test_pairs_page_follows_the_url(app) -> None:
    at = app("views/pairs.py", pair="7", feats="1,2")
    assert at.header[0].value == "Pair 7"
    assert at.multiselect(key="pairs_features").value == [1, 2]


# ----------------------------------------------------- broken and empty ---


@pytest.fixture(scope="module")
def broken_root(runs: AppRuns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("broken") / "results"
    shutil.copytree(runs.root, root)
    bad = root / "bad-manifest"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    shutil.copytree(root / RUN_ID, root / "no-features")
    (root / "no-features" / "features.parquet").unlink()
    return root


def test_invalid_manifest_names_the_file(
    broken_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(broken_root))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["run"] = "bad-manifest"
    at.run()
    assert not at.exception
    assert at.error and "manifest.json" in at.error[0].value and "bad-manifest" in at.error[0].value


def test_missing_table_names_the_file_on_every_page(
    broken_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(broken_root))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["run"] = "no-features"
    at.run()
    for page in ("views/overview.py", "views/features.py", "views/feature.py", "views/pairs.py"):
        at.switch_page(page).run()
        assert not at.exception, page
        assert at.error and "features.parquet" in at.error[0].value, page
    at.switch_page("views/curves.py").run()  # needs curves and thresholds only
    assert not at.exception and not at.error


def test_empty_results_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "nothing-here"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.info and "No runs under the results root" in at.info[0].value
    at.switch_page("views/features.py").run()
    assert not at.exception and at.info


def test_runs_under_an_fsspec_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A results root given as a URL (memory:// stands in for hf:// or s3://)."""
    import fsspec

    build_app_runs(tmp_path / "local")
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path / "local" / RUN_ID), f"/apptest/results/{RUN_ID}", recursive=True)
    monkeypatch.setenv(RESULTS_ENV, "memory://apptest/results")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception and {m.label: m.value for m in at.metric}["Sentence pairs"] == "120"
    at.switch_page("views/feature.py").run()
    assert not at.exception and at.title[0].value.startswith("Feature ")
    at.radio(key="feature_by").set_value("en").run()  # the default feature may never fire in both
    assert [h for h in at.get("html") if 'class="pair"' in h.value]
    assert (
        table_with(at, "feature", "jaccard", "shared pairs") is not None
    )  # sentence_max over fsspec
    at.switch_page("views/pairs.py").run()
    assert not at.exception and len(table_with(at, "feature", "min_max")) > 0
    fs.rm("/apptest", recursive=True)


def test_default_root_is_results_next_to_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no configuration, ``results/`` beside app.py, whatever the working directory."""
    from explorer import ui

    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert ui.results_root() == str(APP.parent / "results")
    if not (APP.parent / "results" / ui.DEFAULT_RUN / "manifest.json").exists():
        pytest.skip("the bundled default run is not in this checkout")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception and at.query_params["run"] == ui.DEFAULT_RUN == "gemma3-en-es-l9"


def _links(at) -> dict[str, str]:
    """Page links by label, also under the label without its feature label
    (``feature 12 · want/quiero`` is found as ``feature 12``)."""
    out = {}
    for link in at.get("page_link"):
        out[link.value] = link.proto.query_string
        out.setdefault(link.value.split(" · ")[0], link.proto.query_string)
    return out


def _title_id(at) -> str:
    """The feature page title without the feature's label."""
    return at.title[0].value.split(" · ")[0]


def test_pages_folder_is_not_streamlits_legacy_directory(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages live in ``views/``: Streamlit's legacy ``pages/`` mode never
    starts, so no private flag is patched; a page file run alone says how to
    open the app instead of drawing half a page."""
    from streamlit.runtime.pages_manager import PagesManager

    assert not (APP.parent / "pages").exists()
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))
    at = AppTest.from_file(str(APP.parent / "views" / "feature.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.info and "streamlit run app.py" in at.info[0].value
    assert not at.title  # nothing of the page was drawn
    assert PagesManager.uses_pages_directory is not True


def test_every_section_module_is_listed_once() -> None:
    """Each module of explorer/sections/ declares one SECTION and the page list holds it."""
    import importlib
    import pkgutil

    from explorer import sections

    listed = [s.name for s in sections.FEATURE_SECTIONS]
    assert len(listed) == len(set(listed))
    modules = [m.name for m in pkgutil.iter_modules(sections.__path__) if m.name != "base"]
    for name in modules:
        section = importlib.import_module(f"explorer.sections.{name}").SECTION
        assert section.name == name and section in sections.FEATURE_SECTIONS, name
    assert sorted(modules) == sorted(listed)


def test_a_new_section_is_one_declaration(
    app, runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A section added to the list is drawn with its title when the run has its data;
    one whose file the run lacks says so in one line naming the command; one that
    needs activations is left out for a feature that never fires."""
    import streamlit as st

    from explorer import sections
    from explorer.sections.base import Section

    def draw(ctx) -> None:
        st.markdown(f"probe drew feature {ctx.feature} of {len(ctx.scored)}")

    added = [
        Section("probe", draw, title="Probe section", needs=("pairs.parquet",)),
        Section("absent", draw, title="Absent section", needs=("nope.parquet",),
                compute="nope --run {run}"),
        Section("quiet", draw, title="Quiet section", needs=("nope.parquet",)),
        Section("firing", draw, title="Firing section", fires=True),
    ]  # fmt: skip
    monkeypatch.setattr(sections, "FEATURE_SECTIONS", [*sections.FEATURE_SECTIONS, *added])
    alive = int(runs.truth.features_of("bilingual")[0])
    shown = texts(app("views/feature.py", feature=str(alive)))
    assert (
        "Probe section" in shown and f"probe drew feature {alive} of {runs.config.d_sae}" in shown
    )
    assert "Absent section" in shown
    assert "Not computed for this run: `python -m precompute nope --run <results>/" in shown
    assert "Quiet section" not in shown
    assert "Firing section" in shown
    dead = int(runs.truth.features_of("dead")[0])
    shown = texts(app("views/feature.py", feature=str(dead)))
    assert "Firing section" not in shown and "never fires" in shown
