"""The import-linter contracts of pyproject.toml hold, and fail when a layer is broken."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bilingual_core", "contract", "precompute", "explorer", "views")
LINT = shutil.which("lint-imports")
pytestmark = pytest.mark.skipif(
    LINT is None, reason="import-linter is not installed (requirements-dev.txt)"
)


def lint(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    args = [a for c in contracts for a in ("--contract", c)]
    return subprocess.run(
        [LINT, "--no-cache", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and the contracts, to break on purpose."""
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_repository_keeps_its_contracts():
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contracts['contracts'])} kept, 0 broken" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "line", "contract", "named"),
    [
        ("explorer/_probe.py", "import precompute.extract.pipeline\n", "layers", "_probe"),
        ("bilingual_core/_probe.py", "import contract.settings\n", "layers", "_probe"),
        ("contract/_probe.py", "def f():\n    import torch\n", "app-torch-free", "_probe"),
        ("views/_probe.py", "from sae_lens import SAE\n", "app-torch-free", "_probe"),
        ("bilingual_core/_probe.py", "import streamlit\n", "core-headless", "_probe"),
        (
            "precompute/common/_probe.py",
            "import precompute.models.loading\n",
            "precompute-layers",
            "_probe",
        ),
        (  # a cycle is reported between folders: the report names the folders
            "precompute/models/_probe.py",
            "def f():\n    import precompute.extract.pipeline\n",
            "precompute-acyclic",
            ".models -> .extract",
        ),
        (
            "precompute/evidence/_probe.py",
            "def f():\n    import precompute.cli\n",
            "cli-on-top",
            "_probe",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tree: Path, module: str, line: str, contract: str, named: str
):
    assert lint(tree, contract).returncode == 0  # the copy is clean
    (tree / module).write_text(line)
    result = lint(tree, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert named in result.stdout  # the report names the offending module (or folders)


def test_app_py_imports_only_the_app_layers():
    """app.py is a script, not a package, so the contracts cannot see it: check its imports here."""
    import ast

    tree = ast.parse((REPO / "app.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert "explorer" in roots  # the walk found the imports
    assert not roots & {
        "precompute",
        "torch",
        "transformer_lens",
        "sae_lens",
        "transformers",
        "ray",
    }, roots
