"""The ``/layers`` page: a sweep of three layers (one not rescored), the null band, links,
the cross-layer comparison, a single run and a broken sweep manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_app_support import RESULTS_ENV, open_app

from bilingual_core import SyntheticConfig, score_run, write_synthetic_run
from bilingual_core.evidence import NULL_SCORES
from bilingual_core.sweep import COMPARE_FILE, SWEEPS_DIR, new_sweep, write_sweep
from explorer.layers import Counts, count_flags, layer_row, unmatched

PAGE = "views/layers.py"
LAYERS = (3, 6, 9)


def add_flags(
    run: Path, every: int, shared_every: int, name: str = "features.parquet"
) -> pd.DataFrame:
    """Give a run's features the scorer's ``is_translation`` / ``is_shared_surface`` columns
    (issue 17's contract), as a run scored by the new scorer carries them."""
    feats = pq.read_table(run / "features.parquet").to_pandas()
    feats["is_translation"] = feats["alive"] & (feats["feature"] % every == 0)
    feats["is_shared_surface"] = feats["alive"] & (feats["feature"] % shared_every == 1)
    pq.write_table(pa.Table.from_pandas(feats, preserve_index=False), run / name)
    return feats


def build_sweep_root(root: Path) -> Path:
    for i, layer in enumerate(LAYERS):
        cfg = SyntheticConfig(n_pairs=40, d_sae=64, seed=i, run_id=f"sw-l{layer}")
        write_synthetic_run(root, cfg)
        score_run(root, cfg.run_id)
    add_flags(root / "sw-l3", every=8, shared_every=4)
    add_flags(root / "sw-l6", every=3, shared_every=6)
    add_flags(root / "sw-l6", every=32, shared_every=32, name=NULL_SCORES)  # the null
    # sw-l9 looks scored before peak-token evidence: the page must ask for a rescore
    old = pq.read_table(root / "sw-l9" / "features.parquet").to_pandas()
    old = old.drop(columns=["is_translation", "is_shared_surface"])
    pq.write_table(
        pa.Table.from_pandas(old, preserve_index=False), root / "sw-l9" / "features.parquet"
    )
    layers = [
        {"layer": x, "run_id": f"sw-l{x}", "hook_name": f"blocks.{x}.hook_resid_post"}
        for x in LAYERS
    ]
    write_sweep(
        str(root), new_sweep("sw", layers, model="tiny", languages=["en", "es"], n_pairs=40)
    )
    compare = pd.DataFrame(
        {
            "layer_a": [3, 3, 6],
            "layer_b": [6, 6, 3],
            "feature": [0, 8, 3],
            "best_match": [5, 9, 1],
            "best_cosine": [0.31, 0.92, 0.4],
            "matched": [False, True, False],
        }
    )
    compare.to_parquet(root / SWEEPS_DIR / "sw" / COMPARE_FILE)
    return root


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sweep_root(tmp_path_factory.mktemp("layers") / "results")


@pytest.fixture
def app(sweep_root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(RESULTS_ENV, str(sweep_root))
    return open_app


def frame(at, column: str) -> pd.DataFrame:
    """The page's dataframe that has ``column``."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no dataframe with {column!r}"
    return found[0]


def _texts(at) -> str:
    return "\n".join(
        str(getattr(el, "value", ""))
        for kind in ("title", "markdown", "caption", "info", "warning", "error")
        for el in at.get(kind)
    )


def test_counts_and_fractions_per_layer(sweep_root: Path) -> None:
    feats = pq.read_table(sweep_root / "sw-l3" / "features.parquet").to_pandas()
    counts = count_flags(feats)
    alive = feats["alive"]
    assert counts == Counts(
        int(alive.sum()),
        int((alive & (feats["feature"] % 8 == 0)).sum()),
        int((alive & (feats["feature"] % 4 == 1)).sum()),
    )
    row = layer_row(3, "sw-l3", counts, None)
    assert row["translation_frac"] == pytest.approx(counts.n_translation / counts.n_alive)
    assert row["null_translation_frac"] is None and not row["needs_rescore"]
    old = count_flags(feats.drop(columns=["is_translation", "is_shared_surface"]))
    assert old.n_translation is None and layer_row(9, "x", old, None)["needs_rescore"]


def test_page_shows_each_layer_the_null_and_asks_to_rescore(app, sweep_root: Path) -> None:
    at = app(PAGE)
    table = frame(at, "translation_frac")
    assert list(table["layer"]) == [3, 6, 9]
    assert pd.isna(table.loc[2, "translation"])  # sw-l9 lacks the columns
    l3 = count_flags(pq.read_table(sweep_root / "sw-l3" / "features.parquet").to_pandas())
    assert table.loc[0, "translation"] == l3.n_translation
    assert table.loc[0, "translation_frac"] == pytest.approx(l3.n_translation / l3.n_alive)
    assert pd.isna(table.loc[0, "null_translation_frac"])
    assert table.loc[1, "null_translation_frac"] > 0
    text = _texts(at)
    assert "sw-l9" in text and "python -m precompute score --run" in text
    links = [(p.label, p.proto.page) for p in at.get("page_link")]
    assert any("layer 3" in label for label, _ in links) and any(
        "layer 6" in label for label, _ in links
    )
    chart = at.get("plotly_chart")
    assert chart, "no chart"


def test_layer_links_open_that_layers_feature_table(app) -> None:
    at = app(PAGE)
    link = next(p for p in at.get("page_link") if "layer 6" in p.label)
    assert "run=sw-l6" in link.proto.query_string or "sw-l6" in str(link.proto)


def test_cross_layer_comparison_lists_unmatched_features(app) -> None:
    at = app(PAGE)
    lost = frame(at, "best_cosine")
    assert list(lost["feature"]) == [0]
    compare = pd.DataFrame(
        {
            "layer_a": [1, 1],
            "layer_b": [2, 2],
            "feature": [4, 2],
            "best_match": [0, 0],
            "best_cosine": [0.5, 0.2],
            "matched": [False, False],
        }
    )
    assert list(unmatched(compare, 1, 2)["feature"]) == [2, 4]


def test_a_single_run_is_one_point(app) -> None:
    at = app(PAGE, sweep="(the chosen run only)", run="sw-l3")
    table = frame(at, "translation_frac")
    assert list(table["run"]) == ["sw-l3"] and len(table) == 1
    assert "one point" in _texts(at)


def test_a_broken_sweep_manifest_is_a_message(
    tmp_path: Path, monkeypatch, sweep_root: Path
) -> None:
    root = tmp_path / "results"
    shutil.copytree(sweep_root, root)
    (root / SWEEPS_DIR / "sw" / "sweep.json").write_text('{"sweep_id": "sw", "layers": []}')
    monkeypatch.setenv(RESULTS_ENV, str(root))
    at = open_app(PAGE)
    assert "cannot be read" in _texts(at)
    assert not [d for d in at.dataframe if "translation_frac" in d.value.columns]
