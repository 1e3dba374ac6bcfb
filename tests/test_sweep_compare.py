"""The cross-layer comparison: each translation feature's best decoder match at another layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bilingual_core import SyntheticConfig, score_run, write_synthetic_run
from bilingual_core.sweep import COMPARE_COLUMNS, COMPARE_FILE, SWEEPS_DIR, new_sweep, write_sweep
from precompute.cli import main
from precompute.sweep.compare import BLOCK, MATCH_COSINE, best_matches, compare_layers

D = 8


def decoders() -> dict[int, np.ndarray]:
    """Layer 3: features 0..3 along e0..e3. Layer 6: feature 2 is e0 turned by ~25 degrees
    towards e5 (cosine 0.9 with layer 3's feature 0), feature 0 is e1 + e6 (cosine 0.71),
    feature 1 is e2 + 1.5 e7 (cosine 0.55), feature 3 is e4."""
    eye = np.eye(D, dtype=np.float32)
    a = eye[:4] * 3.0  # lengths do not matter
    b = np.stack(
        [
            eye[1] + eye[6],
            eye[2] + 1.5 * eye[7],
            0.9 * eye[0] + np.sqrt(1 - 0.81) * eye[5],
            eye[4],
        ]
    )
    return {3: a, 6: b}


def test_best_matches_are_cosines_over_blocks() -> None:
    rng = np.random.default_rng(0)
    queries, decoder = rng.normal(size=(5, D)), rng.normal(size=(BLOCK + 7, D))
    index, cos = best_matches(queries, decoder)
    full = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        decoder / np.linalg.norm(decoder, axis=1, keepdims=True)
    ).T
    assert (index == full.argmax(axis=1)).all()
    assert np.allclose(cos, full.max(axis=1), atol=1e-5)


def test_compare_both_directions_with_the_threshold() -> None:
    table = compare_layers(decoders(), {3: np.array([0, 1, 2, 3]), 6: np.array([2, 3])})
    assert list(table.columns) == list(COMPARE_COLUMNS)
    fwd = table[(table["layer_a"] == 3) & (table["layer_b"] == 6)].set_index("feature")
    assert fwd.loc[0, "best_match"] == 2 and fwd.loc[0, "best_cosine"] == pytest.approx(0.9)
    assert fwd.loc[1, "best_match"] == 0 and fwd.loc[1, "best_cosine"] == pytest.approx(
        1 / np.sqrt(2)
    )
    assert fwd.loc[2, "best_match"] == 1 and fwd.loc[2, "best_cosine"] == pytest.approx(
        1 / np.sqrt(1 + 1.5**2)
    )
    assert fwd["matched"].to_dict() == {0: True, 1: True, 2: False, 3: False}  # 0.7 default
    back = table[(table["layer_a"] == 6) & (table["layer_b"] == 3)].set_index("feature")
    assert back.loc[2, "best_match"] == 0 and bool(back.loc[2, "matched"])
    assert not bool(back.loc[3, "matched"])  # e4 has no counterpart at layer 3
    strict = compare_layers(decoders(), {3: np.array([0, 1])}, threshold=0.8)
    assert strict.set_index("feature")["matched"].to_dict() == {0: True, 1: False}
    assert MATCH_COSINE == 0.7


def test_no_translation_features_is_an_empty_table_and_bad_threshold_an_error() -> None:
    from precompute.common.errors import PrecomputeError

    empty = compare_layers(decoders(), {3: np.array([], dtype=int)})
    assert empty.empty and list(empty.columns) == list(COMPARE_COLUMNS)
    with pytest.raises(PrecomputeError, match="threshold"):
        compare_layers(decoders(), {3: np.array([0])}, threshold=2.0)


def save_sae(directory: Path, decoder: np.ndarray, layer: int, d_sae: int = 64) -> Path:
    """An SAE-Lens directory whose first decoder rows are ``decoder`` (the rest zero)."""
    import torch
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

    full = np.zeros((d_sae, decoder.shape[1]), dtype=np.float32)
    full[: len(decoder)] = decoder
    cfg = JumpReLUSAEConfig(d_in=decoder.shape[1], d_sae=d_sae)
    cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(torch.from_numpy(full))
    sae.save_model(directory)
    return directory


def test_sweep_compare_command_on_tiny_saes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    layers = []
    for layer, dec in decoders().items():
        run_id = f"cmp-l{layer}"
        write_synthetic_run(root, SyntheticConfig(n_pairs=20, d_sae=64, seed=layer, run_id=run_id))
        score_run(root, run_id)
        feats = pq.read_table(root / run_id / "features.parquet").to_pandas()
        feats["alive"] = True
        feats["is_translation"] = feats["feature"].isin([0, 2] if layer == 3 else [3])
        pq.write_table(
            pa.Table.from_pandas(feats, preserve_index=False), root / run_id / "features.parquet"
        )
        sae = save_sae(tmp_path / f"sae-l{layer}", dec, layer)
        layers.append({"layer": layer, "run_id": run_id, "hook_name": "h", "sae": str(sae)})
    write_sweep(str(root), new_sweep("cmp", layers))
    assert main(["sweep-compare", "--sweep", "cmp", "--out", str(root)]) == 0
    table = pd.read_parquet(root / SWEEPS_DIR / "cmp" / COMPARE_FILE)
    got = {(r.layer_a, r.feature): (r.best_match, r.matched) for r in table.itertuples()}
    assert got == {(3, 0): (2, True), (3, 2): (1, False), (6, 3): (0, False)}
    out = capsys.readouterr().out
    assert "layer 3 -> 6: 1 of 2 translation features without a match" in out


def test_sweep_compare_names_runs_that_need_a_rescore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    write_synthetic_run(root, SyntheticConfig(n_pairs=20, d_sae=64, run_id="old-l3"))
    score_run(root, "old-l3")
    features = root / "old-l3" / "features.parquet"  # as scored before peak-token evidence
    pd.read_parquet(features).drop(columns=["is_translation", "is_shared_surface"]).to_parquet(
        features, index=False
    )
    sae = save_sae(tmp_path / "sae", decoders()[3], 3)
    write_sweep(
        str(root),
        new_sweep("old", [{"layer": 3, "run_id": "old-l3", "hook_name": "h", "sae": str(sae)}]),
    )
    assert main(["sweep-compare", "--sweep", "old", "--out", str(root)]) == 0
    assert "layers 3: scored before is_translation existed" in capsys.readouterr().out
    assert main(["sweep-compare", "--sweep", "nope", "--out", str(root)]) == 2
    assert "no such sweep manifest" in capsys.readouterr().err
