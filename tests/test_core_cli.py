"""``python -m precompute score``: a real subprocess, its output, and no torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bilingual_core.schema import ACTIVATIONS, FEATURES

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformer_lens", "sae_lens", "streamlit")


def python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("BILINGUAL_RESULTS_DIR", None)
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def run_dir(make_synthetic_run) -> Path:
    return make_synthetic_run(n_pairs=30, d_sae=48, mean_tokens=6.0, seed=6).path


def test_score_command(run_dir):
    done = python("-m", "precompute", "score", "--run", str(run_dir), "--quiet")
    assert done.returncode == 0, done.stderr
    features = pd.read_parquet(run_dir / FEATURES)
    top = features.dropna(subset=["bi_rank"]).sort_values("bi_rank").feature.head(10).tolist()
    assert len(top) == 10
    lines = [line for line in done.stdout.splitlines() if line.startswith("top features by bi:")]
    assert len(lines) == 1, done.stdout
    printed = [int(x) for x in lines[0].split(":", 1)[1].split(",")]
    assert printed == top
    assert "alive features" in done.stdout


def test_score_command_does_not_import_torch(run_dir):
    script = textwrap.dedent(
        f"""
        import sys
        import bilingual_core
        from precompute.cli import main
        rc = main(["score", "--run", {str(run_dir)!r}, "--variant", "notebook"])
        assert rc == 0, rc
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        print("HEAVY:" + ",".join(heavy))
        """
    )
    done = python("-c", script)
    assert done.returncode == 0, done.stderr
    assert "HEAVY:\n" in done.stdout or done.stdout.rstrip().endswith("HEAVY:"), done.stdout
    assert "notebook_rank" in pd.read_parquet(run_dir / FEATURES)


def test_score_command_on_a_bad_run(run_dir):
    table = pq.read_table(run_dir / ACTIVATIONS)
    values = table["activation"].to_pylist()
    values[3] = -2.0
    index = table.schema.get_field_index("activation")
    table = table.set_column(index, "activation", pa.array(values, pa.float32()))
    pq.write_table(table, run_dir / ACTIVATIONS)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    done = python("-m", "precompute", "score", "--run", str(run_dir), "--quiet")
    assert done.returncode == 2
    assert done.stderr.startswith("error:"), done.stderr
    assert ACTIVATIONS in done.stderr and "activation" in done.stderr
    assert "Traceback" not in done.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    missing = python("-m", "precompute", "score", "--run", str(run_dir.parent / "nope"), "--quiet")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
