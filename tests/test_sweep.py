"""The layer sweep: one forward pass per batch with every SAE hooked equals separate runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from bilingual_core import Run
from bilingual_core.sweep import (
    SweepFormatError,
    list_sweeps,
    new_sweep,
    parse_sweep,
    read_sweep,
    write_sweep,
)
from contract.overrides import parse_layers, sweep_configs, with_overrides
from contract.presets import preset
from precompute.cli import main
from precompute.common.testing import tiny_config

LAYERS = [0, 2]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, tiny_cache: None) -> tuple[Path, Path]:
    """A two-hook sweep of the tiny preset, and the two separate runs it must equal."""
    from precompute.extract.pipeline import run_extraction
    from precompute.sweep.layers import run_sweep

    config = tiny_config(sample_size=20, chunk_pairs=8)
    sweep_root = tmp_path_factory.mktemp("sweep")
    run_sweep(sweep_configs(config, LAYERS), sweep_root, "tw", progress=False)
    single_root = tmp_path_factory.mktemp("single")
    for layer in LAYERS:
        cfg = replace(config, tiny=replace(config.tiny, hook_layer=layer))
        run_extraction(cfg, single_root, f"tw-l{layer}", progress=False)
    return sweep_root, single_root


@pytest.mark.slow
@pytest.mark.parametrize(
    "table", ["activations.parquet", "tokens.parquet", "pairs.parquet", "features.parquet"]
)
def test_two_hooks_equal_two_separate_runs_cell_for_cell(swept, table: str) -> None:
    sweep_root, single_root = swept
    for layer in LAYERS:
        shared = Run.open(sweep_root / f"tw-l{layer}").read_pandas(table)
        alone = Run.open(single_root / f"tw-l{layer}").read_pandas(table)
        assert len(alone) > 0
        pd.testing.assert_frame_equal(shared, alone)


@pytest.mark.slow
def test_the_layers_differ_and_the_pass_stops_after_the_deepest(swept) -> None:
    sweep_root, _ = swept
    runs = [Run.open(sweep_root / f"tw-l{layer}") for layer in LAYERS]
    a, b = (r.read_pandas("activations.parquet") for r in runs)
    assert not a.equals(b)
    for run, layer in zip(runs, LAYERS, strict=True):
        assert run.manifest.sae["hook_name"] == f"blocks.{layer}.hook_resid_post"
        assert run.manifest.extraction["stop_at_layer"] == max(LAYERS) + 1
        assert run.manifest.extraction["shared_pass_hooks"] == [
            f"blocks.{x}.hook_resid_post" for x in LAYERS
        ]


@pytest.mark.slow
def test_sweep_manifest_names_runs_and_layers(swept) -> None:
    sweep_root, _ = swept
    assert list_sweeps(str(sweep_root)) == ["tw"]
    sweep = read_sweep(str(sweep_root), "tw")
    assert [(e.layer, e.run_id) for e in sweep.layers] == [(0, "tw-l0"), (2, "tw-l2")]
    assert sweep.n_pairs == 20 and sweep.languages == ["en", "es"]
    assert sweep.run_for(2) == "tw-l2"


def _layers(*pairs: tuple[int, str]) -> list[dict]:
    return [{"layer": x, "run_id": r, "hook_name": f"blocks.{x}.hook_resid_post"} for x, r in pairs]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"layers": []}, "layers"),
        ({"layers": _layers((3, "a"), (3, "b"))}, "distinct"),
        ({"layers": _layers((6, "a"), (3, "b"))}, "increasing"),
        ({"layers": _layers((3, "a"), (6, "a"))}, "own run id"),
        ({"layers": _layers((3, "../etc"))}, "layers.0.run_id"),
        ({"n_pairs": "12"}, "n_pairs"),
        ({"format_version": 99}, "format_version"),
    ],
)
def test_a_bad_sweep_manifest_names_the_field(change: dict, needle: str) -> None:
    good = new_sweep("s", _layers((3, "s-l3"), (6, "s-l6"))).model_dump()
    with pytest.raises(SweepFormatError, match=needle):
        parse_sweep({**good, **change})


def test_a_malformed_file_is_a_clear_error(tmp_path: Path) -> None:
    path = write_sweep(str(tmp_path), new_sweep("s", _layers((1, "s-l1"))))
    Path(path).write_text("{not json")
    with pytest.raises(SweepFormatError, match="not JSON"):
        read_sweep(str(tmp_path), "s")
    Path(path).write_text(json.dumps({"sweep_id": "s"}))
    with pytest.raises(SweepFormatError, match="layers"):
        read_sweep(str(tmp_path), "s")


def test_layer_lists_and_per_layer_saes() -> None:
    assert parse_layers("12, 3,6") == [3, 6, 12]
    for bad in ("3,3", "a,b", ""):
        with pytest.raises(ValueError, match="--layers"):
            parse_layers(bad)
    gs2 = with_overrides(preset("gemma-scope-2-270m"), l0="small")
    ids = [c.sae.sae_id for _, c in sweep_configs(gs2, [3, 6, 9, 12])]
    assert ids == [f"layer_{x}_width_16k_l0_small" for x in (3, 6, 9, 12)]
    with pytest.raises(ValueError, match="layer 3, width 16k, L0 medium"):
        sweep_configs(preset("gemma-scope-2-270m"), [3, 12])
    paths = [
        c.sae.path
        for _, c in sweep_configs(preset("gemma-3-270m"), [3, 6], sae_pattern="s/l{layer}")
    ]
    assert paths == ["s/l3", "s/l6"]
    with pytest.raises(ValueError, match="one per layer"):
        sweep_configs(preset("gemma-3-270m"), [3, 6], sae_paths=["a"])
    with pytest.raises(ValueError, match="one SAE per layer"):
        sweep_configs(preset("gemma-2-2b"), [3, 6])


def test_sweep_command_refuses_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    rc = main(["sweep", "--preset=gemma-2-2b", "--layers=3,6", f"--out={tmp_path}", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "one SAE per layer" in err
    rc = main(["sweep", "--preset=tiny", "--layers=0,7", f"--out={tmp_path}", "--quiet"])
    assert rc == 2 and "layers 0..2" in capsys.readouterr().err
