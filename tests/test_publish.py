"""Publishing a finished run to another results root: a second local directory,
an in-memory fsspec store, and the single-commit path for Hugging Face repos."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pytest

from bilingual_core import Run, RunExistsError, SyntheticConfig, list_runs, write_synthetic_run
from bilingual_core.schema import MANIFEST
from bilingual_core.storage import open_root
from precompute.publishing import publish
from precompute.publishing.publish import hf_operations, publish_run, run_files

REPO = Path(__file__).resolve().parents[1]


def make_run(root: Path, run_id: str = "r1", seed: int = 0) -> Path:
    write_synthetic_run(
        root, SyntheticConfig(n_pairs=30, d_sae=64, mean_tokens=6.0, run_id=run_id, seed=seed)
    )
    return root / run_id


def file_bytes(location: str) -> dict[str, bytes]:
    fs, path = open_root(location)
    return {name: fs.cat_file(f"{path}/{name}") for name in run_files(fs, path)}


@pytest.fixture
def memory_root() -> str:
    bucket = f"pub-{uuid.uuid4().hex[:8]}"
    yield f"memory://{bucket}/results"
    fs = fsspec.filesystem("memory")
    if fs.exists(bucket):
        fs.rm(bucket, recursive=True)


def test_publish_to_a_second_local_directory(tmp_path: Path):
    src = make_run(tmp_path / "gpu")
    location = publish_run(src, tmp_path / "shared")
    assert location == str(tmp_path / "shared" / "r1")
    assert file_bytes(location) == file_bytes(str(src))
    assert [r.run_id for r in list_runs(tmp_path / "shared") if r.ok] == ["r1"]
    assert not [
        p for p in os.listdir(tmp_path / "shared") if p.startswith(".")
    ]  # no temporaries left


def test_publish_to_an_fsspec_store(tmp_path: Path, memory_root: str):
    src = make_run(tmp_path / "gpu")
    location = publish_run(src, memory_root)
    assert open_root(location)[1] == open_root(f"{memory_root}/r1")[1]
    assert Run.open(memory_root, "r1").is_complete
    assert file_bytes(location) == file_bytes(str(src))
    fs, path = open_root(memory_root)
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)] == ["r1"]


def test_manifest_is_written_last(
    tmp_path: Path, memory_root: str, monkeypatch: pytest.MonkeyPatch
):
    """Readers never see a manifest before every other file is in place."""
    fs, base = open_root(memory_root)
    final = f"{base}/r1/"
    order: list[str] = []
    real_copy = type(fs).copy

    def spy(self, path1, path2, *args, **kwargs):
        if str(path2).startswith(final) or str(path2).startswith("/" + final):
            order.append(str(path2).rsplit("/", 1)[-1])
        return real_copy(self, path1, path2, *args, **kwargs)

    monkeypatch.setattr(type(fs), "copy", spy)
    src = make_run(tmp_path / "gpu")
    publish_run(src, memory_root)
    assert order[-1] == MANIFEST and len(order) == len(run_files(*open_root(str(src))))


def test_existing_run_needs_overwrite_and_is_replaced_whole(tmp_path: Path, memory_root: str):
    publish_run(make_run(tmp_path / "gpu"), memory_root)
    newer = make_run(tmp_path / "gpu2", seed=1)
    with pytest.raises(RunExistsError):
        publish_run(newer, memory_root)
    publish_run(newer, memory_root, overwrite=True)
    assert file_bytes(f"{memory_root}/r1") == file_bytes(str(newer))


def test_incomplete_run_is_not_published(tmp_path: Path, memory_root: str):
    src = make_run(tmp_path / "gpu")
    manifest = src / MANIFEST
    manifest.write_text(manifest.read_text().replace('"complete"', '"writing"'))
    with pytest.raises(ValueError, match="not a complete run"):
        publish_run(src, memory_root)
    assert list_runs(memory_root) == []


def test_hf_operations_add_everything_and_delete_leftovers(tmp_path: Path):
    (tmp_path / "a.parquet").write_bytes(b"PAR1")
    ops = hf_operations(
        ["a.parquet", MANIFEST],
        {"a.parquet": str(tmp_path / "a.parquet"), MANIFEST: b"{}"},
        existing=["a.parquet", "old.parquet", MANIFEST],
        prefix="results",
        run_id="r1",
    )
    kinds = [(type(op).__name__, op.path_in_repo) for op in ops]
    assert kinds == [
        ("CommitOperationAdd", "results/r1/a.parquet"),
        ("CommitOperationAdd", "results/r1/manifest.json"),
        ("CommitOperationDelete", "results/r1/old.parquet"),
    ]


def test_hf_root_is_published_in_one_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An hf:// root: one create_commit with every file (atomic for readers); no network."""
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(token=False)
    monkeypatch.setattr(
        publish,
        "open_root",
        lambda url: (fs, "datasets/team/acts") if str(url).startswith("hf://") else open_root(url),
    )
    monkeypatch.setattr(
        publish, "hf_target", lambda fs, path: publish.HfTarget("team/acts", "dataset", None, "")
    )
    monkeypatch.setattr(type(fs), "exists", lambda self, path, **kw: False)
    monkeypatch.setattr(type(fs), "invalidate_cache", lambda self, path=None: None)

    class FakeApi:
        def __init__(self) -> None:
            self.commits: list[dict] = []

        def create_commit(self, **kwargs):
            self.commits.append(kwargs)

    api = FakeApi()
    src = make_run(tmp_path / "gpu")
    location = publish_run(src, "hf://datasets/team/acts", api=api)
    assert location == "hf://datasets/team/acts/r1"
    (commit,) = api.commits
    assert commit["repo_id"] == "team/acts" and commit["repo_type"] == "dataset"
    assert sorted(op.path_in_repo for op in commit["operations"]) == sorted(
        f"r1/{name}" for name in run_files(*open_root(str(src)))
    )


def _publish_cli(src: Path, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "precompute", "publish", "--run", str(src), "--to", str(dest)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_publish_cli(tmp_path: Path):
    src = make_run(tmp_path / "gpu")
    out = _publish_cli(src, tmp_path / "shared")
    assert out.returncode == 0, out.stderr
    assert Run.open(tmp_path / "shared", "r1").is_complete
    again = _publish_cli(src, tmp_path / "shared")
    assert again.returncode == 2 and "already exists" in again.stderr
