"""Runs for the app's tests: a scored synthetic run with hostile token strings
and a Neuronpedia id, plus broken neighbours. Imported by the ``test_app_*``
and ``test_browser`` modules (this module holds no tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bilingual_core import SyntheticConfig, SyntheticTruth, score_run, write_synthetic_run
from bilingual_core.storage import RESULTS_ENV

RUN_ID = "synthetic"
SCRIPT_TOKEN = "<script>alert(1)</script>"
IMG_TOKEN = "<img src=x onerror=alert(1)>"
NEURONPEDIA_ID = "gemma-2-2b/20-gemmascope-res-16k"
APP = Path(__file__).resolve().parent.parent / "app.py"

__all__ = [
    "APP",
    "IMG_TOKEN",
    "NEURONPEDIA_ID",
    "RESULTS_ENV",
    "RUN_ID",
    "SCRIPT_TOKEN",
    "AppRuns",
    "build_app_runs",
]


@dataclass(frozen=True)
class AppRuns:
    """A results root holding one scored synthetic run."""

    root: Path
    truth: SyntheticTruth
    config: SyntheticConfig

    @property
    def run(self) -> Path:
        return self.root / RUN_ID


def build_app_config(**overrides: object) -> SyntheticConfig:
    """120 pairs, 256 features: every planted kind, small enough for AppTest."""
    fields: dict[str, object] = {
        "n_pairs": 120,
        "d_sae": 256,
        "mean_tokens": 10.0,
        "seed": 3,
        "run_id": RUN_ID,
    }
    fields.update(overrides)
    return SyntheticConfig(**fields)  # type: ignore[arg-type]


def _poison_pair_zero(run: Path) -> None:
    """Make pair 0's first tokens and both sentences hostile HTML."""
    tokens = pq.read_table(run / "tokens.parquet")
    first = pc.and_(pc.equal(tokens["pair_id"], 0), pc.equal(tokens["position"], 1))
    lang = pc.cast(tokens["lang"], pa.string())
    text = pc.if_else(pc.and_(first, pc.equal(lang, "en")), SCRIPT_TOKEN, tokens["token"])
    text = pc.if_else(pc.and_(first, pc.equal(lang, "es")), IMG_TOKEN, text)
    tokens = tokens.set_column(tokens.schema.get_field_index("token"), "token", text)
    pq.write_table(tokens, run / "tokens.parquet")
    pairs = pq.read_table(run / "pairs.parquet")
    zero = pc.equal(pairs["pair_id"], 0)
    lang = pc.cast(pairs["lang"], pa.string())
    new = pc.if_else(
        pc.and_(zero, pc.equal(lang, "en")), f"Hello {SCRIPT_TOKEN} world.", pairs["text"]
    )
    new = pc.if_else(pc.and_(zero, pc.equal(lang, "es")), f"Hola {IMG_TOKEN} mundo.", new)
    pairs = pairs.set_column(pairs.schema.get_field_index("text"), "text", new)
    pq.write_table(pairs, run / "pairs.parquet")


def _edit_manifest(run: Path, **changes: object) -> None:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            manifest.setdefault(key, {}).update(value)
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest, indent=2))


def build_app_runs(root: Path, **overrides: object) -> AppRuns:
    """Write and score the test run under ``root`` (pair 0 made hostile HTML,
    a Neuronpedia id in the manifest)."""
    cfg = build_app_config(**overrides)
    truth = write_synthetic_run(root, cfg)
    run = root / cfg.run_id
    _poison_pair_zero(run)
    score_run(root, cfg.run_id)
    _edit_manifest(run, sae={"neuronpedia_id": NEURONPEDIA_ID})
    return AppRuns(root, truth, cfg)


APPTEST_TIMEOUT = 30


def open_app(page: str | None = None, **params: str):
    """An AppTest of app.py opened on ``page`` with ``params`` in the URL, run once
    (the results root comes from ``BILINGUAL_RESULTS_DIR``, which the caller sets)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=APPTEST_TIMEOUT)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(page)
        at.query_params.update(params)
        at.run()
    assert not at.exception, at.exception
    return at
