"""Shared fixtures: small, seeded runs written under ``tmp_path``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bilingual_core import SyntheticConfig, SyntheticTruth, write_synthetic_run


@dataclass(frozen=True)
class SyntheticRun:
    """A synthetic run on disk and the truth of its planted features."""

    root: Path
    """The results root the run was written under."""
    config: SyntheticConfig
    truth: SyntheticTruth

    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.root / self.config.run_id


def build_synthetic_config(**overrides: object) -> SyntheticConfig:
    """A small synthetic config (40 pairs, 64 features); keywords override any field."""
    fields: dict[str, object] = {"n_pairs": 40, "d_sae": 64, "mean_tokens": 8.0, "seed": 0}
    fields.update(overrides)
    return SyntheticConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def make_synthetic_run(tmp_path: Path) -> Callable[..., SyntheticRun]:
    """Factory: ``make_synthetic_run(**config_overrides)`` writes an unscored run
    under ``tmp_path / "results"`` and returns a :class:`SyntheticRun`."""

    def make(**overrides: object) -> SyntheticRun:
        cfg = build_synthetic_config(**overrides)
        root = tmp_path / "results"
        truth = write_synthetic_run(root, cfg)
        return SyntheticRun(root, cfg, truth)

    return make


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """While a module that asks for it runs, point the model cache (``BILINGUAL_CACHE_DIR``)
    at one temporary folder of the session, so the tiny model is built once for all of
    them (and the real cache, where the Gemma 3 checkpoint lives, is left alone)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BILINGUAL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tiny-cache"))
        yield


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_cache: None) -> Path:
    """A 30-pair tiny-preset run (extracted and scored) for the module: the run directory."""
    from precompute.common.testing import tiny_config
    from precompute.extract.pipeline import run_extraction

    root = tmp_path_factory.mktemp("results")
    run_extraction(tiny_config(sample_size=30), root, "t30", progress=False)
    return root / "t30"


@pytest.fixture(scope="module")
def models(tiny_run: Path):
    """The model, SAE and tokenizer of ``tiny_run``, loaded back from its manifest."""
    from bilingual_core import Run
    from precompute.evidence.loading import load_run_models

    return load_run_models(Run.open(tiny_run), "cpu")


@pytest.fixture(scope="session", autouse=True)
def _release_cached_resources():
    """Drop Streamlit's cached resources (the shared DuckDB connection) before
    the interpreter exits, so DuckDB's bindings do not report leaked objects."""
    yield
    import gc
    import sys

    if "streamlit" in sys.modules:
        import streamlit as st

        st.cache_data.clear()
        st.cache_resource.clear()
    gc.collect()


@pytest.fixture(autouse=True)
def _fresh_password_throttle():
    """Wrong maintainer passwords are counted per process (``explorer.auth.THROTTLE``):
    start every test with a clean count."""
    import sys

    auth = sys.modules.get("explorer.auth")
    if auth is not None:
        auth.THROTTLE.clear()
    yield
