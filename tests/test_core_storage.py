"""Run directories: atomic writes, reading back, listing, manifests; local and fsspec roots."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from bilingual_core import (
    Manifest,
    Run,
    RunExistsError,
    RunFormatError,
    RunWriter,
    ScoreConfig,
    SyntheticConfig,
    list_runs,
    open_root,
    results_root_from_env,
    score_run,
    write_synthetic_run,
)
from bilingual_core.schema import FEATURES, MANIFEST, PAIRS
from bilingual_core.storage import clean_stale_temporaries


@pytest.fixture(params=["path", "file-url", "memory-url"])
def root(request, tmp_path) -> Iterator[str]:
    """A results root: a plain local path, a file:// URL, or an in-memory fsspec root."""
    if request.param == "path":
        yield str(tmp_path / "results")
    elif request.param == "file-url":
        yield f"file://{tmp_path}/results"
    else:
        url = f"memory://bilingual-tests-{uuid.uuid4().hex}/results"
        yield url
        fs, path = open_root(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def snapshot(root: str) -> dict[str, bytes]:
    """Every file under a root (any filesystem) with its bytes; directories as b''."""
    fs, base = open_root(root)
    out = {}
    if not fs.exists(base):
        return out
    for path, info in fs.find(base, withdirs=True, detail=True).items():
        rel = path.rstrip("/")[len(base.rstrip("/")) :]
        out[rel] = b"" if info["type"] == "directory" else fs.cat_file(path)
    return out


def entries(root: str) -> list[str]:
    fs, base = open_root(root)
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))


def pairs_table(text: str = "hello") -> pa.Table:
    return pa.table(
        {"pair_id": pa.array([0, 0], pa.int32()), "lang": ["en", "es"], "text": [text, text]}
    )


def manifest(run_id: str = "r1", **sections) -> Manifest:
    return Manifest(run_id=run_id, languages=["en", "es"], n_pairs=1, d_sae=8, **sections)


def write_run(root: str, run_id: str = "r1", text: str = "hello", **kwargs) -> Manifest:
    man = manifest(run_id)
    with RunWriter(root, run_id, **kwargs) as w:
        w.write_table(PAIRS, pairs_table(text))
        w.commit(man)
    return man


# --------------------------------------------------------------------------- round trip


def test_round_trip(root):
    man = manifest(
        "r1",
        model={"name": "gemma-2-2b", "path": None},
        sae={"release": "gemma-scope", "id": "layer_20", "hook_name": "blocks.20.hook_resid_post"},
        corpus={
            "source": "opus_books",
            "config": "en-es",
            "split": "train",
            "seed": 42,
            "sample_size": 1,
        },
        extraction={"dtype": "bfloat16", "batch_size": 8, "max_tokens": 64, "device": "cpu"},
        versions={"numpy": "2"},
    )
    with RunWriter(root, "r1") as w:
        w.write_table(PAIRS, pairs_table())
        final = w.commit(man)
    run = Run.open(root, "r1")
    assert run.is_complete and run.manifest.status == "complete"
    assert run.manifest == man
    assert run.read(PAIRS).equals(pairs_table())
    assert final.rstrip("/").endswith("/r1")
    assert Run.open(f"{root}/r1").manifest == man  # the run directory itself
    listing = list_runs(root)
    assert [(r.run_id, r.ok) for r in listing] == [("r1", True)]
    assert listing[0].manifest == man
    assert entries(root) == ["r1"]  # no temporary left behind


def test_refuses_to_overwrite_unless_asked(root):
    write_run(root, text="old")
    before = snapshot(root)
    with pytest.raises(RunExistsError, match="r1"):
        RunWriter(root, "r1")
    with pytest.raises(RunExistsError):
        write_run(root, text="new")
    assert snapshot(root) == before
    write_run(root, text="new", overwrite=True)
    assert Run.open(root, "r1").read(PAIRS).equals(pairs_table("new"))
    assert entries(root) == ["r1"]


def test_overwrite_leaves_no_file_of_the_old_run(root):
    """A replaced run is the new run: a file the new run does not write is gone."""
    man = manifest("r1")
    with RunWriter(root, "r1") as w:
        w.write_table(PAIRS, pairs_table())
        w.write_table("extra.parquet", pairs_table())
        w.commit(man)
    write_run(root, text="new", overwrite=True)
    assert not Run.open(root, "r1").has("extra.parquet")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_writer_keeps_previous_run(root, error):
    write_run(root, text="old")
    before = snapshot(root)
    with pytest.raises(error), RunWriter(root, "r1", overwrite=True) as w:
        w.write_table(PAIRS, pairs_table("new"))
        raise error("killed")
    assert snapshot(root) == before
    assert entries(root) == ["r1"]
    # A new run that fails leaves nothing at all.
    with pytest.raises(error), RunWriter(root, "r2") as w:
        w.write_table(PAIRS, pairs_table())
        raise error("killed")
    assert entries(root) == ["r1"]


def test_commit_rejects_a_manifest_of_another_run(root):
    with pytest.raises(ValueError, match="run_id"), RunWriter(root, "r1") as w:
        w.write_table(PAIRS, pairs_table())
        w.commit(manifest("other"))
    assert snapshot(root) in ({}, {"": b""})


@pytest.mark.parametrize("run_id", ["", ".hidden", "../escape", "a/b", "-x", "x" * 200])
def test_invalid_run_ids(root, run_id):
    with pytest.raises(ValueError):
        RunWriter(root, run_id)


# --------------------------------------------------------------------------- listing


def test_list_runs_reports_incomplete_and_broken_runs(root):
    write_run(root, "done")
    fs, base = open_root(root)
    writing = manifest("writing")  # status stays "writing": never committed
    fs.makedirs(f"{base}/writing", exist_ok=True)
    fs.pipe_file(f"{base}/writing/{MANIFEST}", writing.to_json().encode())
    fs.makedirs(f"{base}/empty", exist_ok=True)
    fs.pipe_file(f"{base}/empty/notes.txt", b"no manifest here")
    fs.makedirs(f"{base}/broken", exist_ok=True)
    fs.pipe_file(f"{base}/broken/{MANIFEST}", b"{not json")
    fs.makedirs(f"{base}/.r1.tmp-123456", exist_ok=True)  # a writer in progress
    fs.pipe_file(f"{base}/.r1.tmp-123456/{MANIFEST}", writing.to_json().encode())
    listing = {r.run_id: r for r in list_runs(root)}
    assert set(listing) == {"done", "writing", "empty", "broken"}
    assert list_runs(root)[0].run_id == "done"  # complete runs first
    assert listing["done"].ok and listing["done"].problem is None
    assert not listing["writing"].ok and "writing" in listing["writing"].problem
    assert listing["writing"].manifest == writing
    assert not listing["empty"].ok and MANIFEST in listing["empty"].problem
    assert not listing["broken"].ok and "JSON" in listing["broken"].problem
    run = Run.open(root, "writing")
    assert not run.is_complete


def test_list_runs_of_a_missing_root(tmp_path):
    assert list_runs(tmp_path / "nothing-here") == []


def test_results_root_from_env(monkeypatch):
    monkeypatch.setenv("BILINGUAL_RESULTS_DIR", "memory://elsewhere")
    assert results_root_from_env() == "memory://elsewhere"
    monkeypatch.delenv("BILINGUAL_RESULTS_DIR")
    assert results_root_from_env() == "results"


def test_clean_stale_temporaries(root):
    write_run(root)
    fs, base = open_root(root)
    fs.makedirs(f"{base}/.r1.tmp-abc", exist_ok=True)
    fs.pipe_file(f"{base}/.r1.tmp-abc/x", b"1")
    fs.makedirs(f"{base}/.r1.old-def", exist_ok=True)
    fs.pipe_file(f"{base}/.r1.old-def/x", b"1")
    assert clean_stale_temporaries(root) == []  # fresh: perhaps a writer at work
    assert sorted(clean_stale_temporaries(root, max_age_s=0)) == [".r1.old-def", ".r1.tmp-abc"]
    assert entries(root) == ["r1"]


# --------------------------------------------------------------------------- manifest


def test_manifest_json_round_trip():
    man = manifest(
        "m",
        model={"name": "tiny", "path": "/models/tiny"},
        sae={"release": "r", "id": "i", "hook_name": "h", "neuronpedia_id": "gemma-2-2b/20-x"},
        corpus={"source": "s", "config": "en-es", "split": "train", "seed": 1, "sample_size": 1},
        extraction={"dtype": "float32", "batch_size": 2, "max_tokens": 16, "device": "cpu"},
        versions={"torch": "2.13.0"},
        scoring={"variant": "blog", "k": 300},
    )
    text = man.to_json()
    raw = json.loads(text)
    for key in ("format_version", "run_id", "status", "created_at", "languages", "n_pairs", "d_sae",
                "model", "sae", "corpus", "extraction", "versions"):  # fmt: skip
        assert key in raw, key
    assert raw["languages"] == ["en", "es"] and raw["status"] == "writing"
    back = Manifest.from_json(text)
    assert back == man
    assert back.neuronpedia_id == "gemma-2-2b/20-x"


CREDENTIAL_KEYS = ["token", "hf_token", "HF_TOKEN", "api_key", "apikey", "password", "secret",
                   "access_token"]  # fmt: skip


def assert_rejected(section: str, key: str) -> None:
    with pytest.raises(ValueError, match="credential"):
        manifest("m", **{section: {key: "hf_abcdefghijklmnopqrstuvwxyz"}})
    with pytest.raises(ValueError, match="credential"):
        manifest("m", **{section: {"storage_options": {key: "x"}}})  # nested
    raw = json.loads(manifest("m").to_json())
    raw[section] = {key: "x"}
    with pytest.raises(RunFormatError) as info:
        Manifest.from_json(json.dumps(raw))
    assert info.value.file == MANIFEST


@pytest.mark.parametrize("section", ["model", "sae", "corpus", "extraction"])
def test_manifest_rejects_credentials(section):
    for key in CREDENTIAL_KEYS:
        assert_rejected(section, key)


@pytest.mark.parametrize("key", ["use_auth_token", "aws_secret_access_key"])
def test_manifest_rejects_hub_and_s3_credential_names(key):
    """``use_auth_token`` is the Hugging Face loaders' token argument, and
    ``aws_secret_access_key`` the S3 secret in boto / fsspec storage options."""
    assert_rejected("extraction", key)


def test_manifest_allows_harmless_keys():
    man = manifest("m", extraction={"max_tokens": 64, "tokenizer": "gemma", "n_tokens": 10})
    assert Manifest.from_json(man.to_json()) == man


# --------------------------------------------------------------------------- scoring through fsspec


def test_score_run_through_any_root(root):
    cfg = SyntheticConfig(n_pairs=30, d_sae=48, mean_tokens=6.0, seed=2)
    write_synthetic_run(root, cfg)
    names = ("pairs.parquet", "tokens.parquet", "activations.parquet")
    inputs = {k: v for k, v in snapshot(root).items() if k.endswith(names)}
    assert len(inputs) == 3
    result = score_run(f"{root}/{cfg.run_id}")
    run = Run.open(root, cfg.run_id)
    assert run.is_complete
    assert run.manifest.scoring["variant"] == "blog"
    assert run.read(FEATURES).num_rows == cfg.d_sae
    assert run.read_pandas(FEATURES).bi_rank.equals(result.features.bi_rank)
    after = snapshot(root)
    assert {k: after[k] for k in inputs} == inputs  # inputs carried over unchanged
    # the same with the root and the run id given separately, and a rescore replaces
    again = score_run(root, cfg.run_id, ScoreConfig(variant="notebook"))
    assert "notebook_rank" in Run.open(root, cfg.run_id).read_pandas(FEATURES)
    assert again.scoring["variant"] == "notebook"
    assert entries(root) == [cfg.run_id]


def test_failed_rescore_keeps_the_scored_run(root, monkeypatch):
    cfg = SyntheticConfig(n_pairs=30, d_sae=48, mean_tokens=6.0, seed=2)
    write_synthetic_run(root, cfg)
    score_run(f"{root}/{cfg.run_id}")
    before = snapshot(root)

    def fail(self, manifest):
        raise OSError("disk full")

    monkeypatch.setattr(RunWriter, "commit", fail)
    with pytest.raises(OSError, match="disk full"):
        score_run(f"{root}/{cfg.run_id}", config=ScoreConfig(variant="notebook"))
    assert snapshot(root) == before
    assert entries(root) == [cfg.run_id]


def test_memory_root_is_not_the_local_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"memory://bilingual-tests-{uuid.uuid4().hex}"
    write_run(url)
    assert list(Path(tmp_path).iterdir()) == []
    assert fsspec.filesystem("memory").exists(url.removeprefix("memory://") + "/r1/" + MANIFEST)
    fsspec.filesystem("memory").rm(url.removeprefix("memory://"), recursive=True)
