"""What a newcomer meets first: defaults that show something, links that read whole.

AppTest on the shared synthetic run (``test_app_support``): the pair browser's
default heatmaps, the overview's link to the top feature, the recompute form's
preset and values, and the manifest's record of the preset actually used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_app_support import RESULTS_ENV, AppRuns, build_app_runs, open_app

from contract.overrides import changed_from_preset, preset_values, with_overrides
from contract.presets import preset
from explorer import jobs_view, table


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> AppRuns:
    return build_app_runs(tmp_path_factory.mktemp("newcomer") / "results")


@pytest.fixture
def app(runs: AppRuns, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))
    return open_app


def _features(n: int, rank: list[float], n_both: list[int]) -> pd.DataFrame:
    """A features table whose default score (evidence) orders features as ``rank`` says."""
    evidence = [np.nan if np.isnan(r) else 100.0 - r for r in rank]
    return pd.DataFrame(
        {
            "feature": np.arange(n),
            "alive": [not np.isnan(r) for r in rank],
            "evidence": evidence,
            "n_both": n_both,
            "n_fire_en": [max(b, 1) for b in n_both],
            "n_fire_es": [max(b, 1) for b in n_both],
        }
    )


def test_pair_defaults_are_the_best_ranked_specific_features_firing_in_both() -> None:
    # Feature 0 ranks first but fires on every pair; 3 ranks second but fires in English only here.
    feats = _features(6, [1, 4, 5, 2, 3, np.nan], [100, 10, 9, 8, 7, 0])
    firing = pd.DataFrame(
        {
            "feature": [0, 1, 2, 3, 4, 5],
            "max_en": [9.0, 1.0, 2.0, 3.0, 1.0, 5.0],
            "max_es": [9.0, 1.0, 2.0, 0.0, 1.0, 5.0],
        }
    )
    firing["min_max"] = firing[["max_en", "max_es"]].min(axis=1)
    assert table.pair_default_features(firing, feats, ["en", "es"], n_pairs=100) == [4, 1, 2]
    # When only everywhere-firing features fire, they are still shown.
    assert table.pair_default_features(firing.head(1), feats, ["en", "es"], n_pairs=100) == [0]
    assert table.pair_default_features(firing.head(0), feats, ["en", "es"], n_pairs=100) == []


def test_pair_page_opens_on_the_pairs_most_specific_features(app, runs: AppRuns) -> None:
    at = app("views/pairs.py", pair="5")
    chosen = at.multiselect(key="pairs_features").value
    firing = next(d.value for d in at.dataframe if {"feature", "min_max"} <= set(d.value.columns))
    assert 0 < len(chosen) <= 3
    here = firing.set_index("feature").loc[chosen]
    assert (here[["max_en", "max_es"]] > 0).all().all()  # fires here in both languages
    assert (here["n_both"] <= runs.config.n_pairs / 2).all()
    # The best ranked come first: their default-score ranks ascend.
    ranks = here["evidence_rank"].tolist()
    assert ranks == sorted(ranks)
    assert any("most specific" in c.value for c in at.caption)


def test_overview_link_names_the_whole_feature_id(app) -> None:
    at = app()
    top = next(d.value for d in at.dataframe if {"feature", "open", "rank"} <= set(d.value.columns))
    best = int(top["feature"].iloc[0])
    labels = [link.label for link in at.get("page_link")]
    assert any(label.startswith(f"Feature {best} ") for label in labels), labels


def test_recompute_form_starts_on_a_runnable_preset_and_shows_its_values(
    runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(runs.root))
    from streamlit.testing.v1 import AppTest
    from test_app_support import APP

    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets["recompute"] = {"password": "pw"}
    at.run()
    at.switch_page("views/recompute.py").run()
    at.text_input(key="recompute_password").input("pw")
    next(b for b in at.button if b.label == "Unlock").click().run()
    assert not at.exception
    assert at.selectbox(key="recompute_form_preset").value == jobs_view.DEFAULT_PRESET
    values = preset_values(preset(jobs_view.DEFAULT_PRESET))
    batch = at.text_input(key="recompute_form_batch_size")
    assert batch.placeholder == f"{values['batch_size']} (preset's)"
    dtype = at.selectbox(key="recompute_form_dtype")
    assert dtype.value == jobs_view.PRESET_DEFAULT  # empty keeps the preset's value ...
    assert dtype.format_func(dtype.value) == f"{values['dtype']} (preset's)"  # ... and says which
    placeholders = " ".join(t.placeholder or "" for t in at.text_input)
    assert "(preset's)" in placeholders and "/root/" not in placeholders  # no server paths
    # Switching the preset shows that preset's values.
    at.selectbox(key="recompute_form_preset").set_value("tiny").run()
    tiny = preset_values(preset("tiny"))
    assert (
        at.text_input(key="recompute_form_batch_size").placeholder
        == f"{tiny['batch_size']} (preset's)"
    )


def test_manifest_records_what_changed_from_the_preset() -> None:
    assert changed_from_preset(preset("gemma-3-270m")) == {}
    mixed = with_overrides(
        preset("gemma-2-2b"), model="google/gemma-3-270m", sae_path="saes/x", batch_size=8
    )
    changed = changed_from_preset(mixed)
    assert changed["model"] == "google/gemma-3-270m" and changed["sae_path"] == "saes/x"
    assert changed["batch_size"] == "8" and "seed" not in changed
