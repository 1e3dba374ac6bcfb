"""The README's install lines: the app's list is enough for the app and stays torch-free.

Offline: every third-party module that the app's code imports (``app.py``,
``views/``, ``explorer/``, ``contract/``, ``bilingual_core/``, imports inside
functions included) must come from a distribution named in
``requirements-app.txt``; ``requirements.txt`` stays the complete list; the
README's commands and ``.ci/run`` agree.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_CODE = ["app.py", "views", "explorer", "contract", "bilingual_core"]
OURS = {"views", "explorer", "contract", "bilingual_core", "precompute", "app"}
HEAVY = {"torch", "transformer-lens", "sae-lens", "datasets", "wandb", "ray", "transformers"}
# Accelerators the core uses when installed (requirements.txt, the scoring side)
# and does without otherwise: imported only under ``except ImportError``.
OPTIONAL = {"numba"}


def _name(requirement: str) -> str:
    """Normalised distribution name of one requirement line (PEP 503)."""
    name = re.split(r"[\[<>=!~;@ ]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> set[str]:
    """Distribution names a requirements file installs, following ``-r`` includes."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r"):
            names |= requirements(path.parent / line[2:].strip())
        elif not line.startswith("-"):
            names.add(_name(line))
    return names


def imported_modules(paths: list[str]) -> set[str]:
    """Top-level names of every module imported anywhere in ``paths`` (``.py`` files)."""
    found: set[str] = set()
    files = [
        p
        for entry in paths
        for p in ([ROOT / entry] if entry.endswith(".py") else (ROOT / entry).rglob("*.py"))
    ]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def third_party(modules: set[str]) -> set[str]:
    return {
        m
        for m in modules
        if m not in sys.stdlib_module_names and m not in OURS and m != "__future__"
    }


def test_app_requirements_cover_every_module_the_app_imports() -> None:
    listed = requirements(ROOT / "requirements-app.txt")
    owners = packages_distributions()
    modules = third_party(imported_modules(APP_CODE)) - OPTIONAL
    assert {
        "streamlit",
        "duckdb",
        "pandas",
        "plotly",
        "pyarrow",
    } <= modules  # the walk sees imports
    missing = {
        m: owners.get(m, [m])
        for m in modules
        if not {_name(d) for d in owners.get(m, [m])} & listed
    }
    assert not missing, f"add to requirements-app.txt: {missing}"


def test_optional_accelerators_are_guarded_and_listed_for_scoring() -> None:
    full = requirements(ROOT / "requirements.txt")
    assert full >= OPTIONAL
    assert not OPTIONAL & requirements(ROOT / "requirements-app.txt")
    guarded, anywhere = set(), set()
    for file in [p for entry in APP_CODE for p in (ROOT / entry).rglob("*.py")]:
        tree = ast.parse(file.read_text(), str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                anywhere |= {a.name.split(".")[0] for a in node.names} & OPTIONAL
            if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers
            ):
                for inner in node.body:
                    if isinstance(inner, ast.Import):
                        guarded |= {a.name.split(".")[0] for a in inner.names} & OPTIONAL
    assert anywhere == OPTIONAL, "the walk sees the optional imports"
    assert guarded == anywhere, f"import without an ImportError fallback: {anywhere - guarded}"


def test_app_requirements_leave_out_the_gpu_half() -> None:
    listed = requirements(ROOT / "requirements-app.txt")
    assert not listed & HEAVY, listed & HEAVY


def test_requirements_txt_is_the_complete_list() -> None:
    full = requirements(ROOT / "requirements.txt")
    assert requirements(ROOT / "requirements-app.txt") <= full
    assert {"torch", "transformer-lens", "sae-lens", "datasets"} <= full
    dev = requirements(ROOT / "requirements-dev.txt")
    assert full <= dev  # the test command installs everything


def test_readme_commands_and_ci_agree() -> None:
    readme = (ROOT / "README.md").read_text()
    first_screen = readme[: readme.index("## The run directory")]
    assert "pip install -r requirements-app.txt" in first_screen
    assert "download.pytorch.org/whl/cpu" in first_screen  # the CPU choice said plainly
    test_command = re.search(
        r"python -m pip install -r requirements-dev\.txt && python -m pytest", first_screen
    )
    assert test_command, "the README's test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pip install -q -r requirements-dev.txt" in ci and "python -m pytest" in ci
