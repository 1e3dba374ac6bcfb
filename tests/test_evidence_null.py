"""The null dictionary (``validate --null random``), purity and null comparisons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bilingual_core import Run, score_run
from bilingual_core.evidence import (
    NULL_SCORES,
    PURITY,
    beats_null,
    null_comparison,
    null_percentile,
    purity_table,
)
from bilingual_core.schema import ACTIVATIONS, FEATURES, TOKENS
from precompute.cli import main
from precompute.common.testing import tiny_config
from precompute.extract.pipeline import run_extraction


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_cache: None) -> None:
    """Every test here builds the tiny model into the session's shared cache."""


def test_null_percentile_and_beating_the_null() -> None:
    null = np.array([0.1, 0.2, 0.3, np.nan])
    higher = null_percentile(np.array([0.05, 0.2, 0.35, np.nan]), null, higher_is_better=True)
    np.testing.assert_allclose(higher[:3], [0, 200 / 3, 100])
    assert np.isnan(higher[3])
    lower = null_percentile(np.array([0.05, 0.2, 0.35]), null, higher_is_better=False)
    np.testing.assert_allclose(lower, [100, 200 / 3, 0])
    assert beats_null(np.array([0.05, 0.35]), null, True).tolist() == [False, True]
    assert beats_null(np.array([0.05, 0.35]), null, False).tolist() == [True, False]


def test_null_comparison_reads_the_direction_off_the_ranking() -> None:
    feats = pd.DataFrame(
        {
            "feature": [0, 1, 2],
            "alive": [True, True, True],
            "jaccard": [0.9, 0.5, 0.1],
            "jaccard_rank": [1, 2, 3],
            "mass_jsd": [0.1, 0.2, 0.5],
            "mass_jsd_rank": [1, 2, 3],
        }
    )
    null = pd.DataFrame(
        {
            "feature": [0, 1],
            "alive": [True, True],
            "jaccard": [0.6, 0.2],
            "jaccard_rank": [1, 2],
            "mass_jsd": [0.15, 0.3],
            "mass_jsd_rank": [1, 2],
        }
    )
    out = null_comparison(feats, null).set_index("score")
    assert out.loc["jaccard", "higher_is_better"] and out.loc["jaccard", "n_beat_null"] == 1
    assert not out.loc["mass_jsd", "higher_is_better"] and out.loc["mass_jsd", "n_beat_null"] == 1
    assert out.loc["jaccard", "null_best"] == 0.6


def _naive_purity(run: Run, feature: int, top: int = 3) -> tuple[int, float]:
    acts = run.read_pandas(ACTIVATIONS)
    acts = acts[acts["feature"] == feature]
    acts["lang"] = acts["lang"].astype(str)
    tokens = run.read_pandas(TOKENS)
    tokens["lang"] = tokens["lang"].astype(str)
    best = acts.sort_values("activation", ascending=False).groupby(["pair_id", "lang"]).head(1)
    best = best.merge(tokens, on=["pair_id", "lang", "position"])
    wide = best.pivot(index="pair_id", columns="lang", values="token_id").dropna()
    counts = wide.groupby(list(wide.columns)).size().sort_values(ascending=False)
    return len(wide), float(counts.head(top).sum() / len(wide))


def test_purity_matches_a_naive_count(make_synthetic_run) -> None:
    synthetic = make_synthetic_run(n_pairs=80, d_sae=64)
    score_run(synthetic.path)
    run = Run.open(synthetic.path)
    table = purity_table(run, block_rows=2000).set_index("feature")
    assert table["purity"].between(0, 1).all()
    feats = run.read_pandas(FEATURES).set_index("feature")
    for f in table.sort_values("n_cofiring").index[[0, len(table) // 2, -1]]:
        n, purity = _naive_purity(run, int(f))
        assert table.loc[f, "n_cofiring"] == n
        assert table.loc[f, "purity"] == pytest.approx(purity)
        assert n <= min(feats.loc[f, "n_fire_en"], feats.loc[f, "n_fire_es"])
    assert isinstance(table["top_pairs"].iloc[0], str)


@pytest.mark.slow
def test_validate_null_adds_the_nulls_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_extraction(tiny_config(sample_size=40), tmp_path, "t40", progress=False)
    path = tmp_path / "t40"
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.name != "manifest.json"}
    assert main(["validate", "--run", str(path), "--null", "random", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "beat the null's best" in out and "ablation" not in out.split("\n")[0]
    run = Run.open(path)
    for name, data in before.items():
        assert (path / name).read_bytes() == data
    null = run.read_pandas(NULL_SCORES)
    feats = run.read_pandas(FEATURES)
    assert len(null) == run.manifest.d_sae
    assert {"jaccard", "jaccard_rank", "alive", "purity", "n_cofiring"} <= set(null.columns)
    rec = run.manifest.evidence["validate"]["null"]
    assert rec["null_mean_l0"] == pytest.approx(rec["real_mean_l0"], rel=0.3)  # the same sparsity
    assert abs(int(null["alive"].sum()) - int(feats["alive"].sum())) < 0.3 * run.manifest.d_sae
    assert set(rec["beat_null"]) >= {"jaccard", "mass_jsd", "bi"}
    assert run.has(PURITY)
    (tmp_path / "null-before").write_bytes((path / NULL_SCORES).read_bytes())
    assert (
        main(
            [
                "validate",
                "--run",
                str(path),
                "--top",
                "1",
                "--max-sentences",
                "2",
                "--baseline",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    evidence = Run.open(path).manifest.evidence["validate"]
    assert {"null", "ablation"} <= set(evidence) and NULL_SCORES in evidence["tables"]
    assert (path / NULL_SCORES).read_bytes() == (tmp_path / "null-before").read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
