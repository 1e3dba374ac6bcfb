"""Presets, overrides and the offline checks of the reference Gemma setup.

Nothing here downloads: TransformerLens builds the gemma-2-2b config from
its own tables and SAE-Lens ships its directory of pretrained SAEs.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from contract.config import CorpusSource, ExtractionConfig, RunConfig, SaeSource
from contract.overrides import with_overrides
from contract.presets import GEMMA_NEURONPEDIA, gemma_2_2b, preset, tiny
from precompute.common.activations import stop_layer
from precompute.common.errors import IncompatibleSaeError
from precompute.models.checks import offline_plan, pretrained_sae_metadata


def test_gemma_preset_is_the_posts_setup() -> None:
    cfg = preset("gemma-2-2b")
    assert (
        cfg.model.name == "gemma-2-2b" and cfg.model.dtype == "bfloat16" and cfg.model.path is None
    )
    assert (cfg.sae.release, cfg.sae.sae_id) == (
        "gemma-scope-2b-pt-res-canonical",
        "layer_20/width_16k/canonical",
    )
    assert cfg.sae.hook_name == "blocks.20.hook_resid_post"
    assert cfg.sae.neuronpedia_id == "gemma-2-2b/20-gemmascope-res-16k"
    c = cfg.corpus
    assert (c.dataset, c.config, c.split, c.field) == (
        "Helsinki-NLP/opus_books",
        "en-es",
        "train",
        "translation",
    )
    assert (c.sample_size, c.seed, c.languages) == (500, 42, ("en", "es"))
    assert cfg.extraction.needs_gpu and cfg.extraction.device == "auto"


def test_building_configs_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import torch

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a config touched the network, the disk or the device")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    monkeypatch.setattr(torch.cuda, "is_available", boom)
    cfg = with_overrides(
        gemma_2_2b(), corpus_file="/does/not/exist.tsv", device="cuda", sample_size="all"
    )
    assert cfg.corpus.path == "/does/not/exist.tsv" and cfg.corpus.dataset is None
    assert cfg.corpus.sample_size is None
    cfg.fingerprint()


@pytest.mark.slow
def test_gemma_preset_agrees_with_packaged_metadata() -> None:
    cfg = gemma_2_2b()
    plan = offline_plan(cfg)
    assert plan["model"]["n_layers"] == 26 and plan["model"]["d_model"] == 2304
    sae = plan["sae"]
    assert sae["model"] == "gemma-2-2b"
    assert sae["hook_name"] == cfg.sae.hook_name == plan["hook_name"]
    assert sae["d_in"] == 2304 == plan["model"]["d_model"]
    assert sae["d_sae"] == 16384
    assert sae["neuronpedia_id"] == GEMMA_NEURONPEDIA
    assert sae["expected_l0"] == 71
    assert stop_layer(cfg.sae.hook_name) == 21 <= plan["model"]["n_layers"]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"hook": "blocks.19.hook_resid_post"}, "hook"),
        (
            {"sae_id": "layer_12/width_16k/canonical"},
            None,
        ),  # consistent on its own: hook comes from the SAE
        ({"model": "gemma-2-9b"}, "trained on"),
    ],
)
def test_offline_plan_flags_disagreements(overrides: dict[str, str], problem: str | None) -> None:
    cfg = with_overrides(gemma_2_2b(), **overrides)
    if problem is None:
        assert offline_plan(cfg)["hook_name"] == "blocks.12.hook_resid_post"
        return
    with pytest.raises(IncompatibleSaeError, match=problem):
        offline_plan(cfg)


def test_unknown_pretrained_sae_is_named() -> None:
    with pytest.raises(IncompatibleSaeError, match="did you mean"):
        pretrained_sae_metadata("gemma-scope-2b-pt-res-canonical", "layer_20/width_16k/canonicall")
    with pytest.raises(IncompatibleSaeError, match="unknown SAE-Lens release"):
        pretrained_sae_metadata("no-such-release", "x")


def test_overrides_switch_sources_cleanly() -> None:
    cfg = with_overrides(
        gemma_2_2b(),
        sae_path="/saes/mine",
        corpus_file="pairs.csv",
        languages="en,es,fr",
        sample_size="100",
        seed=7,
        batch_size=16,
        dtype="float32",
    )
    assert cfg.sae.kind == "local" and cfg.sae.release is None and cfg.sae.hook_name is None
    assert cfg.corpus.path == "pairs.csv" and cfg.corpus.field is None and cfg.corpus.config is None
    assert cfg.corpus.languages == ("en", "es", "fr")
    assert (cfg.corpus.sample_size, cfg.corpus.seed) == (100, 7)
    assert cfg.extraction.batch_size == 16 and cfg.model.dtype == "float32"
    # None means "keep the preset's value".
    assert with_overrides(tiny(), batch_size=None) == tiny()
    with pytest.raises(TypeError, match="unknown override"):
        with_overrides(tiny(), batchsize=3)


@pytest.mark.parametrize(
    "build",
    [
        lambda: CorpusSource(dataset="x", languages=("en",)),
        lambda: CorpusSource(dataset="x", languages=("en", "en")),
        lambda: CorpusSource(dataset="x", path="y.tsv"),
        lambda: CorpusSource(dataset="x", sample_size=0),
        lambda: SaeSource(release="gemma-scope-2b-pt-res-canonical"),
        lambda: SaeSource(release="r", sae_id="i", path="p"),
        lambda: ExtractionConfig(max_tokens=0),
        lambda: ExtractionConfig(device="tpu"),
        lambda: replace(
            tiny(), sae=SaeSource(release="gemma-scope-2b-pt-res-canonical", sae_id="x")
        ),
        lambda: replace(gemma_2_2b(), sae=tiny().sae),
    ],
)
def test_invalid_configs_are_rejected(build) -> None:
    with pytest.raises(ValueError):
        build()


def test_fingerprint_ignores_speed_knobs_only() -> None:
    base = tiny()
    assert with_overrides(base, batch_size=3, device="cuda").fingerprint() == base.fingerprint()
    assert with_overrides(base, max_tokens=5).fingerprint() != base.fingerprint()
    assert with_overrides(base, seed=1).fingerprint() != base.fingerprint()
    assert isinstance(base, RunConfig)


def test_cli_help_and_parsing_do_not_import_torch() -> None:
    code = (
        "import sys; from precompute.cli import build_parser; p = build_parser(); "
        "p.parse_args(['run', '--preset', 'tiny', '--dry-run']); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dry_run_prints_the_offline_checks(capsys: pytest.CaptureFixture[str]) -> None:
    from precompute.cli import main

    assert main(["run", "--preset", "gemma-2-2b", "--dry-run", "--out", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert (
        '"offline_checks"' in out
        and '"d_in": 2304' in out
        and "gemma-2-2b/20-gemmascope-res-16k" in out
    )


def test_gemma3_preset_points_at_the_offline_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from contract.presets import GEMMA3_SAE
    from precompute.models.gemma3 import cache_directory

    monkeypatch.setenv("BILINGUAL_CACHE_DIR", str(tmp_path))
    cfg = preset("gemma-3-270m")
    assert cfg.model.name == "google/gemma-3-270m" and cfg.model.dtype == "float32"
    assert cfg.model.path == str(cache_directory() / "checkpoint") and cfg.model.path.startswith(
        str(tmp_path)
    )
    # the SAE this project trained and ships
    assert cfg.sae.path == str(GEMMA3_SAE) and (GEMMA3_SAE / "cfg.json").exists()
    assert cfg.corpus.path.endswith("parallel_en_es.tsv") and cfg.corpus.sample_size is None
    assert cfg.extraction.device == "cpu"
    overridden = with_overrides(cfg, sae_path="/elsewhere", batch_size=8)
    assert overridden.sae.path == "/elsewhere" and overridden.extraction.batch_size == 8


def _value_for(name: str, info, current: object) -> object:
    """A valid value of override ``name`` that differs from ``current`` (from its type)."""
    from contract.settings import choices

    found = choices(info.annotation)
    if found is not None:
        return next(c for c in found if c != current)
    if name == "languages":
        return "fr,de"
    if name == "sample_size":
        return 7
    lows = [getattr(m, "ge", None) for m in info.metadata]
    low = next((x for x in lows if x is not None), None)
    return "x1" if low is None else low + 2


def test_every_override_lands_at_its_target_path() -> None:
    """Each PresetOverrides field with a ``target`` (read from the model) sets that config
    field and no other section's."""
    from contract.fields import options
    from contract.overrides import TARGETS, to_config_value
    from contract.settings import PresetOverrides

    base = gemma_2_2b()
    declared = {name: meta.target for name, _, meta in options(PresetOverrides) if meta.target}
    assert declared == TARGETS and len(declared) >= 20
    companions = {"sae_release": {"sae_id": "x/y"}}  # another release needs its id
    for name, info, meta in options(PresetOverrides):
        if meta.target is None:
            continue
        section, key = meta.target.split(".")
        value = _value_for(name, info, getattr(getattr(base, section), key))
        cfg = with_overrides(base, **{name: value, **companions.get(name, {})})
        typed = getattr(PresetOverrides.model_validate({name: value}), name)
        assert getattr(getattr(cfg, section), key) == to_config_value(name, typed), name
        assert getattr(getattr(cfg, section), key) != getattr(getattr(base, section), key), name
        untouched = {"model", "sae", "corpus", "extraction"} - {section}
        assert all(getattr(cfg, s) == getattr(base, s) for s in untouched), name


def test_overrides_are_validated_by_the_model() -> None:
    from contract.settings import SettingsError

    with pytest.raises(SettingsError, match="batch_size"):
        with_overrides(tiny(), batch_size=0)
    with pytest.raises(SettingsError, match="device"):
        with_overrides(tiny(), device="tpu")


def test_the_docs_option_table_is_the_generated_one() -> None:
    """docs/precompute.md's option table is options_markdown(RunSettings), so it cannot drift."""
    from pathlib import Path

    from contract.settings import RunSettings, options_markdown

    text = (Path(__file__).resolve().parents[1] / "docs" / "precompute.md").read_text()
    start = text.index("\n", text.index("<!-- options:run")) + 1
    table = text[start : text.index("<!-- /options:run -->")]
    assert table == options_markdown(RunSettings)
    assert (
        "| `--batch-size` | integer 1..4096 | preset's | yes | sentences per forward pass |"
        in table
    )
