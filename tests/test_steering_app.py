"""The steering section and table filter of the app, on a synthetic run given a hand-made
``steering.parquet`` (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from test_app_support import RESULTS_ENV, build_app_runs, open_app

from bilingual_core import Run
from bilingual_core.evidence import (
    BASELINE,
    CANDIDATE,
    STEERING,
    STEERING_SCHEMA,
    add_tables,
)
from bilingual_core.schema import FEATURES
from explorer.steering import continuation_html, filter_table, table_columns

HOSTILE = "<img src=x onerror=alert(1)>"


def _row(candidate, feature, role, lang, strength, logprob, tokens, tags, concept_hit):
    ids = list(range(10, 10 + len(tokens)))
    return {
        "candidate": candidate,
        "feature": feature,
        "role": role,
        "rank_by": "jaccard_rank",
        "candidate_rank": 1,
        "lang": lang,
        "prompt_index": 0,
        "prompt": "I think that" if lang == "en" else "Creo que",
        "strength": strength,
        "scale": 2.0,
        "continuation": "".join(tokens),
        "tokens": tokens,
        "token_ids": ids,
        "token_langs": tags,
        "n_tokens": len(tokens),
        "stopped": False,
        "peak_source": "activations.parquet+tokens.parquet",
        "concept_tokens": " night",
        "concept_token_ids": [ids[0]] if concept_hit else [99],
        "concept_logprob": logprob,
        "concept_logprob_first": logprob,
        "n_concept": int(concept_hit),
        "n_lang": sum(t == lang for t in tags),
        "n_tagged": sum(t in ("en", "es") for t in tags),
        "n_mixed": sum(t == "mixed" for t in tags),
        "n_unknown": sum(t == "unknown" for t in tags),
    }


def steering_frame(writer: int, other: int, baseline: int) -> pd.DataFrame:
    rows = []
    for lang in ("en", "es"):
        same = [lang, lang]
        for cand in (writer, other):
            rows.append(_row(cand, cand, CANDIDATE, lang, 0.0, -6.0, [" a", " b"], same, False))
            rows.append(_row(cand, baseline, BASELINE, lang, 0.0, -6.0, [" a", " b"], same, False))
            rows.append(_row(cand, baseline, BASELINE, lang, 2.0, -5.5, [" c", " d"], same, False))
        rows.append(_row(writer, writer, CANDIDATE, lang, 2.0, -2.0, [HOSTILE, " x"], same, True))
        # the other candidate writes its concept only into the Spanish prompt; in English it
        # switches to Spanish
        tags = ["es", "es"]
        rows.append(_row(other, other, CANDIDATE, lang, 2.0, -2.0, [" n", " o"], tags, True))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def steering_run(tmp_path_factory: pytest.TempPathFactory):
    runs = build_app_runs(tmp_path_factory.mktemp("app") / "results")
    run = Run.open(runs.run)
    feats = run.read_pandas(FEATURES)
    alive = feats[feats["alive"]].sort_values("jaccard_rank")["feature"].head(4).tolist()
    frame = steering_frame(alive[0], alive[1], alive[3])
    add_tables(
        runs.run,
        {STEERING: pa.Table.from_pandas(frame, schema=STEERING_SCHEMA, preserve_index=False)},
        "steer",
    )
    return runs, alive


@pytest.fixture
def app(steering_run, monkeypatch: pytest.MonkeyPatch):
    runs, _ = steering_run
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))
    return open_app


def test_table_columns_and_filter() -> None:
    frame = steering_frame(1, 2, 3)
    cols = table_columns(frame, ["en", "es"]).set_index("feature")
    assert cols.loc[1, "writes_every_language"] and not cols.loc[2, "writes_every_language"]
    assert cols.loc[2, "writes_in"] == "es"
    table = pd.DataFrame({"feature": [1, 2, 5]}).merge(cols.reset_index(), on="feature", how="left")
    table["writes_every_language"] = table["writes_every_language"].astype("boolean")
    assert filter_table(table, True)["feature"].tolist() == [1]
    assert filter_table(table, False)["feature"].tolist() == [1, 2, 5]


def test_continuations_are_escaped_and_marked() -> None:
    html = continuation_html(
        "<b>prompt</b>", [HOSTILE, " casa", " ?"], ["unknown", "es", "en"], [1, 2, 3], [2], "en"
    )
    assert "<img" not in html and "<b>" not in html and "&lt;img" in html
    assert 'class="steered"' in html and html.index("prompt") < html.index('class="steered"')
    assert "font-weight:700" in html.split(" casa")[0].rsplit("<span", 1)[1]  # a peak token
    assert "line-through" in html.split(" casa")[0].rsplit("<span", 1)[1]  # Spanish in an en prompt
    assert "dotted" in html.split("&lt;img")[0].rsplit("<span", 1)[1]  # unknown language


@pytest.mark.slow
def test_feature_page_shows_the_steering_section(app, steering_run) -> None:
    _, alive = steering_run
    at = app("views/feature.py", run="synthetic", feature=str(alive[0]))
    shown = "\n".join(str(el.value) for kind in ("subheader", "markdown") for el in at.get(kind))
    assert "Steering: does it write its concept" in shown
    assert "**Writes its concept in every language** from α = 2" in shown
    chart = next(c for c in at.get("plotly_chart") if "Concept gain" in c.proto.spec)
    names = [t["name"] for t in json.loads(chart.proto.spec)["data"]]
    assert names == [
        "en: this feature",
        "en: random features",
        "es: this feature",
        "es: random features",
    ]
    html = "".join(str(h.proto.body) for h in at.get("html"))
    assert 'class="steered"' in html and "<img src=x" not in html
    at = app("views/feature.py", run="synthetic", feature=str(alive[2]))
    assert any("not among the 2 steered candidates" in str(c.value) for c in at.caption)


@pytest.mark.slow
def test_feature_table_filters_features_that_write_in_every_language(app, steering_run) -> None:
    _, alive = steering_run
    at = app("views/features.py", run="synthetic", score="jaccard")
    table = next(d.value for d in at.dataframe if d.key == "features_table")
    assert {"writes_every_language", "writes_in"} <= set(table.columns)
    at = app("views/features.py", run="synthetic", score="jaccard", writes="1")
    table = next(d.value for d in at.dataframe if d.key == "features_table")
    assert table["feature"].tolist() == [alive[0]]


@pytest.mark.slow
def test_a_run_without_steering_says_how_to_add_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = build_app_runs(tmp_path / "results")
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))
    at = open_app("views/feature.py", run="synthetic")
    assert any("python -m precompute steer --run" in str(c.value) for c in at.caption)
    at = open_app("views/features.py", run="synthetic")
    assert not [t for t in at.toggle if t.key == "features_writes"]
