"""The evidence sections of the app, on a synthetic run given hand-made evidence tables (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import APP, RESULTS_ENV, build_app_runs, open_app

from bilingual_core import Run
from bilingual_core.evidence import (
    ABLATION,
    LOGITS,
    NEIGHBOURS,
    NULL_SCORES,
    OUTPUT_LANGUAGES,
    PURITY,
    add_tables,
    logits_schema,
    output_language_shares,
    purity_table,
)
from bilingual_core.schema import FEATURES

TIMEOUT = 30
HOSTILE = "<script>alert(1)</script>"


def _evidence_tables(run: Run) -> tuple[dict[str, pa.Table], list[int]]:
    feats = run.read_pandas(FEATURES)
    langs = run.languages
    alive = feats[feats["alive"]].sort_values("jaccard_rank")["feature"].head(4).tolist()
    rows = []
    for f in feats["feature"]:
        for sign, sgn in (("promoted", 1), ("suppressed", -1)):
            for r in range(1, 4):
                tag = (
                    "es"
                    if (sign == "promoted" and f == alive[0])
                    else ("en" if r == 1 else "unknown")
                )
                rows.append(
                    {
                        "feature": f,
                        "sign": sign,
                        "rank": r,
                        "token_id": r,
                        "token": HOSTILE if r == 2 else f"t{r}",
                        "logit": sgn * (4.0 - r),
                        "lang_tag": tag,
                        "n_occurrences": 2,
                        "share_en": 1.0 if tag == "en" else 0.0,
                        "share_es": 1.0 if tag == "es" else 0.0,
                    }
                )
    logits = pd.DataFrame(rows)
    ablation = []
    for i, f in enumerate(alive[:3]):
        for lang in langs:
            hurt = i == 0
            ablation.append(
                {
                    "feature": f,
                    "lang": lang,
                    "rank_by": "jaccard_rank",
                    "candidate_rank": i + 1,
                    "n_sentences": 5,
                    "n_sentences_firing": 5,
                    "n_tokens": 40,
                    "delta_loss": 0.5 if hurt else 0.0,
                    "ci_low": 0.3 if hurt else -0.1,
                    "ci_high": 0.7 if hurt else 0.1,
                    "clean_loss": 3.0,
                    "baseline_delta_loss": 0.01,
                    "baseline_ci_low": -0.02,
                    "baseline_ci_high": 0.05,
                    "baseline_n_sentences": 10,
                    "baseline_features": "1,2",
                    "hurts": hurt,
                }
            )
    null = feats.copy()
    null["jaccard"] = null["jaccard"] * 0.5
    null = null.merge(purity_table(run), on="feature", how="left")
    neighbours = pd.DataFrame(
        {
            "feature": np.repeat(feats["feature"].to_numpy(np.int32), 2),
            "rank": np.tile(np.array([1, 2], np.int32), len(feats)),
            "neighbour": np.roll(np.repeat(feats["feature"].to_numpy(np.int32), 2), 2),
            "cosine": np.full(2 * len(feats), 0.5, np.float32),
        }
    )
    tables = {
        LOGITS: pa.Table.from_pandas(logits, schema=logits_schema(langs), preserve_index=False),
        OUTPUT_LANGUAGES: pa.Table.from_pandas(
            output_language_shares(logits, langs), preserve_index=False
        ),
        ABLATION: pa.Table.from_pandas(pd.DataFrame(ablation), preserve_index=False),
        NULL_SCORES: pa.Table.from_pandas(null, preserve_index=False),
        PURITY: pa.Table.from_pandas(purity_table(run), preserve_index=False),
        NEIGHBOURS: pa.Table.from_pandas(neighbours, preserve_index=False),
    }
    return tables, alive


@pytest.fixture(scope="module")
def evidence_run(tmp_path_factory: pytest.TempPathFactory):
    runs = build_app_runs(tmp_path_factory.mktemp("app") / "results")
    tables, alive = _evidence_tables(Run.open(runs.run))
    add_tables(runs.run, tables, "test")
    return runs, alive


@pytest.fixture
def app(evidence_run, monkeypatch: pytest.MonkeyPatch):
    runs, _ = evidence_run
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))

    return open_app


def _texts(at: AppTest) -> str:
    return "\n".join(
        str(getattr(el, "value", ""))
        for kind in ("subheader", "markdown", "caption")
        for el in at.get(kind)
    )


def _table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if set(columns) <= set(map(str, d.value.columns)))


@pytest.mark.slow
def test_feature_page_shows_logits_ablation_and_null(app, evidence_run) -> None:
    _, alive = evidence_run
    at = app("views/feature.py", run="synthetic", feature=str(alive[0]))
    shown = _texts(at)
    assert "Output side" in shown and "Causal" in shown and "Against a null" in shown
    assert "Output languages of its top promoted tokens: **es 1.0**" in shown
    promoted = _table_with(at, "token", "language", "logit")  # promoted first, then suppressed
    assert promoted["language"].tolist() == ["es"] * 3 and HOSTILE in promoted["token"].tolist()
    charts = [c for c in at.get("plotly_chart") if "loss change" in c.proto.spec]
    spec = json.loads(charts[0].proto.spec)
    assert [t["name"] for t in spec["data"]] == [
        "ablate this feature",
        "random features, similar frequency",
    ]
    baseline = next(
        d.value for d in at.dataframe if list(map(str, d.value.columns)) == ["feature", "label"]
    )
    feats = Run.open(evidence_run[0].run).read_pandas(FEATURES).set_index("feature")
    assert baseline["feature"].tolist() == [1, 2]
    assert baseline["label"].tolist() == feats.loc[[1, 2], "label"].tolist()
    assert "baseline features 1,2" not in shown
    null = _table_with(at, "percentile vs null")
    assert "jaccard" in set(null["score"]) and null["percentile vs null"].between(0, 100).all()
    assert "Purity" in shown
    purity = _table_with(at, "purity", "commonest token pairs (count)")
    assert purity["co-firing pairs"].iloc[0] >= 1


def test_baseline_features_table_shows_labels_when_the_run_has_them() -> None:
    from explorer.evidence import baseline_features_table

    rows = pd.DataFrame({"baseline_features": ["7, 3", "3,9", None]})
    feats = pd.DataFrame({"feature": [3, 7, 9], "label": ["want/quiero", "? (same token)", None]})
    table = baseline_features_table(rows, feats)
    assert table["feature"].tolist() == [7, 3, 9]
    assert table["label"].tolist() == ["? (same token)", "want/quiero", ""]
    # a run scored before labels: ids only, no label column
    old = baseline_features_table(rows, feats.drop(columns="label"))
    assert list(old.columns) == ["feature"] and old["feature"].tolist() == [7, 3, 9]


@pytest.mark.slow
def test_feature_page_without_ablation_of_this_feature(app, evidence_run) -> None:
    _, alive = evidence_run
    at = app("views/feature.py", run="synthetic", feature=str(alive[3]))
    assert "was not among the ablated candidates" in _texts(at)


@pytest.mark.slow
def test_feature_table_gets_evidence_columns_and_filters(app, evidence_run) -> None:
    _, alive = evidence_run
    at = app("views/features.py", run="synthetic", score="jaccard")
    table = next(d.value for d in at.dataframe if d.key == "features_table")
    assert {"output_languages", "hurts_both", "delta_loss_en", "purity", "null_pct_jaccard"} <= set(
        table.columns
    )
    at = app("views/features.py", run="synthetic", score="jaccard", hurts="1")
    assert next(d.value for d in at.dataframe if d.key == "features_table")["feature"].tolist() == [
        alive[0]
    ]
    at = app("views/features.py", run="synthetic", score="jaccard", outlang="es")
    assert next(d.value for d in at.dataframe if d.key == "features_table")["feature"].tolist() == [
        alive[0]
    ]
    at = app("views/features.py", run="synthetic", score="jaccard", beatnull="jaccard")
    beat = next(d.value for d in at.dataframe if d.key == "features_table")
    assert len(beat) and (beat["null_pct_jaccard"] >= 100).all()


def test_overview_counts_features_beating_the_null(app) -> None:
    at = app("views/overview.py", run="synthetic")
    shown = _texts(at)
    assert "beat the best of a random dictionary" in shown
    assert "**1** of 3 candidates raise the loss" in shown


def test_runs_without_evidence_say_how_to_add_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = build_app_runs(tmp_path / "results")
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("views/feature.py")
    at.run()
    assert not at.exception
    shown = _texts(at)
    assert "python -m precompute logits --run" in shown and "validate --null random" in shown


def test_null_columns_cover_every_stored_ranking_of_the_registry() -> None:
    """The null comparison iterates the score registry: ``notebook_bi`` (rank column
    ``notebook_rank``, not ``notebook_bi_rank``) is compared too, in the registry's
    direction, and the candidate rankings put the post's own last."""
    from bilingual_core.evidence import DEFAULT_RANKINGS
    from explorer import evidence

    feats = pd.DataFrame(
        {
            "feature": [0, 1, 2],
            "alive": [True, True, True],
            "notebook_bi": [0.1, 0.5, 0.9],
            "notebook_rank": [1, 2, 3],
            "jaccard": [0.9, 0.5, 0.1],
            "jaccard_rank": [1, 2, 3],
        }
    )
    null = feats.assign(notebook_bi=[0.3, 0.6, 0.7], jaccard=[0.2, 0.4, 0.6])
    rows = evidence.null_rows(feats, null, 0).set_index("score")
    assert list(rows.index) == ["notebook_bi", "jaccard"]
    assert rows["beats the null's best"].all()  # 0.1 < 0.3 (lower is better), 0.9 > 0.6
    assert DEFAULT_RANKINGS[0] == "translation_rank"
    assert DEFAULT_RANKINGS[-2:] == ("bi_rank", "notebook_rank")
