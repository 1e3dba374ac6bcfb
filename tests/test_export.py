"""Per-feature JSON export (page button and ``precompute export-feature``) and the
feature table's Neuronpedia list."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest
from test_app_support import NEURONPEDIA_ID, RESULTS_ENV, AppRuns, build_app_runs, open_app

from bilingual_core import Run
from bilingual_core.export import (
    feature_export,
    neuronpedia_features,
    neuronpedia_quick_list_url,
)
from explorer import render
from precompute.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> AppRuns:
    return build_app_runs(tmp_path_factory.mktemp("export") / "results")


def _busy_feature(run: Run) -> int:
    feats = run.read_pandas("features.parquet")
    return int(feats.sort_values("n_both", ascending=False)["feature"].iloc[0])


def test_feature_export_holds_scores_and_top_pairs_with_tokens(runs: AppRuns) -> None:
    run = Run.open(runs.run)
    feature = _busy_feature(run)
    doc = feature_export(run, feature, n_pairs=3)
    json.dumps(doc, allow_nan=False)  # plain JSON: no NaN, no numpy types
    assert doc["feature"] == feature and doc["run_id"] == run.run_id
    assert doc["scores"]["feature"] == feature and "evidence" in doc["scores"]
    assert doc["sae"]["neuronpedia_id"] == NEURONPEDIA_ID
    assert len(doc["top_pairs"]) == 3
    for pair in doc["top_pairs"]:
        for lang in run.languages:
            side = pair[lang]
            assert len(side["tokens"]) == len(side["activations"]) > 0
            assert max(side["activations"]) == pytest.approx(side["max_activation"])
    weaker = [min(p[lang]["max_activation"] for lang in run.languages) for p in doc["top_pairs"]]
    assert weaker == sorted(weaker, reverse=True)
    with pytest.raises(ValueError, match="outside"):
        feature_export(run, run.manifest.d_sae, 1)


def test_export_feature_command(runs: AppRuns, tmp_path, capsys) -> None:
    run = Run.open(runs.run)
    feature = _busy_feature(run)
    out = tmp_path / "f.json"
    args = ["export-feature", "--run", str(runs.run), "--feature", str(feature)]
    assert main([*args, "--pairs", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["top_pairs"][1]["pair_id"] >= 0
    assert main(["export-feature", "--run", str(runs.run), "--feature", "-1"]) == 2
    assert "outside" in capsys.readouterr().err


def test_neuronpedia_list_format() -> None:
    listed = neuronpedia_features("gemma-2-2b/20-gemmascope-res-16k", [3, 12])
    assert listed == [
        {"modelId": "gemma-2-2b", "layer": "20-gemmascope-res-16k", "index": "3"},
        {"modelId": "gemma-2-2b", "layer": "20-gemmascope-res-16k", "index": "12"},
    ]
    url = neuronpedia_quick_list_url("gemma-2-2b/20-gemmascope-res-16k", [3, 12], "my list")
    query = parse_qs(urlparse(url).query)
    assert query["name"] == ["my list"] and json.loads(query["features"][0]) == listed
    with pytest.raises(ValueError, match="model"):
        neuronpedia_features("no-source", [1])


def test_export_buttons_on_the_pages(runs: AppRuns, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))
    at = open_app("views/feature.py", feature=str(_busy_feature(Run.open(runs.run))))
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Export JSON" in labels
    at = open_app("views/features.py")
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Neuronpedia list (JSON)" in labels and any("CSV" in label for label in labels)


def test_one_colour_per_language() -> None:
    langs = ["en", "fr", "de"]
    colours = [render.language_colour(langs, lang) for lang in langs]
    assert len(set(colours)) == 3 and render.language_colour(langs, "fr") == colours[1]
    assert all(c.lower() != "#e6550d" for c in colours)  # never the heatmaps' orange
