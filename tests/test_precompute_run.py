"""End to end with the offline tiny preset: run, resume, shards + merge, CLI.

The tiny model, tokenizer and SAE are built once per session into a
temporary cache. Comparisons that mix batch shapes or padding sides run in
float64, where the rows of two extractions must be identical: in float32 a
pre-activation within rounding noise (~1e-6) of its JumpReLU threshold may
fire in one batch shape and not in another, which is not a bug.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bilingual_core import Run, RunExistsError, list_runs
from bilingual_core.schema import ACTIVATIONS, FEATURES, PAIRS, TOKENS
from precompute.cli import main
from precompute.common.errors import StagingError
from precompute.common.testing import tiny_config
from precompute.extract.merge import finalize
from precompute.extract.pipeline import run_extraction
from precompute.extract.staging import shard_dir_name, staging_root

KEYS = ["pair_id", "lang", "position", "feature"]


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_cache: None) -> None:
    """Every test here builds the tiny model into the session's shared cache."""


def _tables(root: Path, run_id: str) -> dict[str, pd.DataFrame]:
    run = Run.open(root, run_id)
    out = {}
    for name in (PAIRS, TOKENS, ACTIVATIONS):
        frame = run.read_pandas(name)
        frame["lang"] = frame["lang"].astype(str)
        out[name] = frame
    return out


def _assert_same_run(a: Path, a_id: str, b: Path, b_id: str) -> None:
    ta, tb = _tables(a, a_id), _tables(b, b_id)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("results")
    run_extraction(tiny_config(sample_size=40), root, "tiny40", progress=False)
    return root, "tiny40"


def test_tiny_run_is_a_complete_scored_run(tiny_run: tuple[Path, str]) -> None:
    root, run_id = tiny_run
    [listing] = list_runs(root)
    assert listing.ok and listing.run_id == run_id
    run = Run.open(root, run_id)
    man = run.manifest
    assert man.n_pairs == 40 and man.languages == ["en", "es"] and man.d_sae == 512
    features = run.read_pandas(FEATURES)
    assert len(features) == 512 and features["alive"].sum() > 20 and man.scoring["n_alive"] > 20
    assert man.sae["hook_name"] == "blocks.1.hook_resid_post" and man.model["name"] == "tiny"
    assert man.extraction["stop_at_layer"] == 2 and man.versions["torch"]
    assert 4 < man.extraction["mean_l0"] < 16
    assert not staging_root(root, run_id).exists()
    assert "token" not in json.dumps(man.sae) + json.dumps(man.corpus)


def test_bos_and_padding_are_never_stored_or_counted(tiny_run: tuple[Path, str]) -> None:
    root, run_id = tiny_run
    t = _tables(root, run_id)
    tokens, acts = t[TOKENS], t[ACTIVATIONS]
    bos = tokens[tokens.position == 0]
    assert len(bos) == 40 * 2 and (bos.token == "<bos>").all()
    assert "<pad>" not in set(tokens.token)
    real = tokens[tokens.position > 0]
    assert not real.token.isin(["<bos>", "<pad>"]).any()
    assert acts.position.min() >= 1
    joined = acts.merge(real, on=["pair_id", "lang", "position"], how="left", indicator=True)
    assert (joined["_merge"] == "both").all()
    counts = Run.open(root, run_id).manifest.extraction["n_tokens"]
    assert counts == real.groupby("lang").size().to_dict()
    # Positions within a sentence are 0..L with no gap.
    sizes = tokens.groupby(["pair_id", "lang"]).position.agg(["max", "size"])
    assert (sizes["max"] + 1 == sizes["size"]).all()


def test_activations_are_in_contract_order(tiny_run: tuple[Path, str]) -> None:
    acts = _tables(*tiny_run)[ACTIVATIONS]
    acts["li"] = acts.lang.map({"en": 0, "es": 1})
    key = acts[["feature", "pair_id", "li", "position"]].to_numpy()
    order = np.lexsort(key.T[::-1])
    assert (order == np.arange(len(order))).all()
    assert not acts.duplicated(KEYS).any() and (acts.activation > 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("variant", [{"batch_size": 1}, {"padding_side": "left"}])
def test_batched_equals_one_at_a_time_and_left_padding(
    tmp_path: Path, variant: dict[str, object]
) -> None:
    run_extraction(
        tiny_config(sample_size=16, batch_size=8, dtype="float64"), tmp_path, "ref", progress=False
    )
    run_extraction(
        tiny_config(sample_size=16, dtype="float64", **{"batch_size": 8, **variant}),
        tmp_path,
        "other",
        progress=False,
    )
    _assert_same_run(tmp_path, "ref", tmp_path, "other")


@pytest.mark.slow
def test_long_sentences_are_truncated_and_counted(tmp_path: Path) -> None:
    run_extraction(tiny_config(sample_size=20, max_tokens=6), tmp_path, "short", progress=False)
    run = Run.open(tmp_path, "short")
    ex = run.manifest.extraction
    tokens = run.read_pandas(TOKENS)
    assert tokens.position.max() == 6
    run_extraction(tiny_config(sample_size=20, max_tokens=500), tmp_path, "long", progress=False)
    long_tokens = Run.open(tmp_path, "long").read_pandas(TOKENS)
    lengths = (
        long_tokens[long_tokens.position > 0].groupby(["lang", "pair_id"], observed=True).size()
    )
    expect_truncated = (lengths > 6).groupby(level="lang", observed=True).sum().to_dict()
    expect_dropped = (
        (lengths - 6).clip(lower=0).groupby(level="lang", observed=True).sum().to_dict()
    )
    assert ex["n_truncated"] == {k: int(v) for k, v in expect_truncated.items()}
    assert ex["n_tokens_dropped"] == {k: int(v) for k, v in expect_dropped.items()}
    assert sum(ex["n_truncated"].values()) > 0


class _Kill(KeyboardInterrupt):
    pass


@pytest.mark.slow
def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = tiny_config(sample_size=40, chunk_pairs=8)
    run_extraction(cfg, tmp_path / "a", "r", progress=False)

    def kill_after_two(index: int, stats: dict) -> None:
        if index == 1:
            raise _Kill

    with pytest.raises(_Kill):
        run_extraction(cfg, tmp_path / "b", "r", progress=False, on_chunk=kill_after_two)
    assert list_runs(tmp_path / "b") == []  # nothing that looks like a run
    shard = staging_root(tmp_path / "b", "r") / shard_dir_name(0, 1)
    state = json.loads((shard / "shard.json").read_text())
    assert sorted(state["chunks"]) == ["0", "1"] and not state["complete"]
    with pytest.raises(StagingError, match="--resume"):
        run_extraction(cfg, tmp_path / "b", "r", progress=False)
    seen: list[int] = []
    run_extraction(
        cfg, tmp_path / "b", "r", progress=False, resume=True, on_chunk=lambda i, s: seen.append(i)
    )
    assert seen == [2, 3, 4]
    assert Run.open(tmp_path / "b", "r").manifest.extraction["resumed"] is True
    _assert_same_run(tmp_path / "a", "r", tmp_path / "b", "r")


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    def kill(index: int, stats: dict) -> None:
        raise _Kill

    with pytest.raises(_Kill):
        run_extraction(
            tiny_config(sample_size=20, chunk_pairs=8), tmp_path, "r", progress=False, on_chunk=kill
        )
    with pytest.raises(StagingError, match="run_fingerprint"):
        run_extraction(
            tiny_config(sample_size=20, chunk_pairs=8, max_tokens=9),
            tmp_path,
            "r",
            progress=False,
            resume=True,
        )


@pytest.mark.slow
def test_shards_and_merge_equal_an_unsharded_run(tmp_path: Path) -> None:
    cfg = tiny_config(sample_size=30, chunk_pairs=4, dtype="float64")  # shards batch differently
    run_extraction(cfg, tmp_path / "one", "r", progress=False)
    dirs = [
        run_extraction(cfg, tmp_path / "many", "r", shard=i, num_shards=3, progress=False).directory
        for i in (2, 0, 1)
    ]
    assert list_runs(tmp_path / "many") == []
    with pytest.raises(StagingError, match="missing \\[1\\]"):
        finalize(dirs[:2], tmp_path / "many", "r")
    assert (
        main(
            [
                "merge",
                "--shards",
                *map(str, dirs),
                "--out",
                str(tmp_path / "many"),
                "--run-id",
                "r",
                "--quiet",
            ]
        )
        == 0
    )
    _assert_same_run(tmp_path / "one", "r", tmp_path / "many", "r")
    merged = Run.open(tmp_path / "many", "r").manifest
    assert merged.extraction["num_shards"] == 3 and merged.n_pairs == 30


@pytest.mark.slow
def test_existing_runs_are_kept_unless_overwrite(tmp_path: Path) -> None:
    cfg = tiny_config(sample_size=12)
    run_extraction(cfg, tmp_path, "r", progress=False)
    before = (tmp_path / "r" / "manifest.json").read_text()
    with pytest.raises(RunExistsError):
        run_extraction(cfg, tmp_path, "r", progress=False)

    def kill(index: int, stats: dict) -> None:
        raise _Kill

    with pytest.raises(_Kill):  # an interrupted overwrite leaves the old run intact
        run_extraction(cfg, tmp_path, "r", progress=False, overwrite=True, on_chunk=kill)
    assert (tmp_path / "r" / "manifest.json").read_text() == before
    run_extraction(cfg, tmp_path, "r", progress=False, overwrite=True)
    assert Run.open(tmp_path, "r").is_complete


def test_cli_run_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "run",
        "--preset",
        "tiny",
        "--out",
        str(tmp_path),
        "--run-id",
        "cli",
        "--sample-size",
        "10",
        "--chunk-pairs",
        "4",
        "--quiet",
    ]
    assert main(args) == 0
    assert "wrote run 'cli'" in capsys.readouterr().out
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert Run.open(tmp_path, "cli").manifest.corpus["sample_size"] == 10


def test_resume_after_a_failed_merge_only_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import precompute.extract.merge
    import precompute.models.loading

    cfg = tiny_config(sample_size=10)
    real_finalize = precompute.extract.merge.finalize

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(precompute.extract.merge, "finalize", broken)
    with pytest.raises(OSError, match="disk full"):
        run_extraction(cfg, tmp_path, "r", progress=False)
    assert list_runs(tmp_path) == []
    monkeypatch.setattr(precompute.extract.merge, "finalize", real_finalize)
    monkeypatch.setattr(
        precompute.models.loading, "load_models", lambda *a, **k: pytest.fail("reloaded the model")
    )
    manifest = run_extraction(cfg, tmp_path, "r", progress=False, resume=True)
    assert manifest.n_pairs == 10 and Run.open(tmp_path, "r").is_complete


def test_three_languages(tmp_path: Path) -> None:
    from dataclasses import replace

    from contract.config import BUNDLED_CORPUS
    from precompute.common.corpus import read_local_table

    frame = read_local_table(BUNDLED_CORPUS).head(12)
    frame["pt"] = frame["es"].str.replace("ción", "ção")
    path = tmp_path / "three.csv"
    frame[["en", "es", "pt"]].to_csv(path, index=False)
    cfg = tiny_config(sample_size=None, corpus_file=path)
    cfg = replace(cfg, corpus=replace(cfg.corpus, languages=("en", "es", "pt")))
    manifest = run_extraction(cfg, tmp_path / "out", "tri", progress=False)
    assert manifest.languages == ["en", "es", "pt"] and manifest.n_pairs == 12
    tokens = _tables(tmp_path / "out", "tri")[TOKENS]
    assert set(tokens.lang) == {"en", "es", "pt"} and (tokens.position == 0).sum() == 36
    assert set(manifest.extraction["n_tokens"]) == {"en", "es", "pt"}
