"""The extraction benchmark runs and prints its comparison table (tiny sizes, CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_extraction.py"


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_cache: None) -> None:
    """Every test here builds the tiny model into the session's shared cache."""


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_extraction", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(out: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith(("| pipeline", "| ---"))
    ]


@pytest.mark.slow
def test_tiny_comparison_table(bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--pairs", "6", "--repeats", "1", "--device", "cpu"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r[0].split(":")[0] for r in rows] == ["post's way", "ours", "ours"]
    assert rows[0][1] == rows[1][1] == rows[2][1]  # the same tokens
    assert rows[0][4] == "1.0x" and rows[1][4].endswith("x")


@pytest.mark.slow
def test_gemma_shape_runs_reduced_on_cpu(bench, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--gemma-shape",
        "--layers",
        "1",
        "--vocab",
        "6000",
        "--d-sae",
        "1024",
        "--l0",
        "20",
        "--pairs",
        "4",
        "--repeats",
        "1",
        "--device",
        "cpu",
        "--skip-post",
    ]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "Gemma 2 2B shape" in out
    l0 = float(_rows(out)[0][5])
    assert 5 < l0 < 40
