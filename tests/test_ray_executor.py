"""``--executor ray`` with the offline tiny preset on a local two-CPU Ray cluster.

One Ray cluster (no dashboard) serves every test of the module; each run's
actors import torch and build the tiny model, which dominates the time (5-20 s
per actor on the shared two-core machine). Shards are cut at chunk boundaries,
so every batch is the one a single-process run computes and the merged tables
must be *identical* to the single-process run's (float32, no tolerance).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from bilingual_core import Run, SyntheticConfig, list_runs, write_synthetic_run  # noqa: E402
from bilingual_core.progress import stream_to  # noqa: E402
from contract.presets import preset  # noqa: E402
from contract.queue import JobQueue  # noqa: E402
from contract.request import validate_request  # noqa: E402
from precompute import cli  # noqa: E402
from precompute.cluster.ray_executor import (  # noqa: E402
    ACTOR_PREFIX,
    FAULT_ENV,
    RayOptions,
    ShardFailedError,
    ShardSpec,
    _Report,
    parse_faults,
    plan_shards,
    run_with_ray,
    stop_warm_workers,
)
from precompute.common.errors import PrecomputeError, StagingError  # noqa: E402
from precompute.common.progress_log import LogBuffer, ProgressFile  # noqa: E402
from precompute.extract.pipeline import run_extraction  # noqa: E402
from precompute.serve.worker import Worker, WorkerConfig  # noqa: E402

CHUNK_PAIRS = 32  # 421 bundled pairs -> 14 chunks, so shards hold several chunks
TABLES = (
    "activations",
    "pairs",
    "tokens",
    "features",
    "sentence_max",
    "thresholds",
    "coactivation",
    "curves",
)


def warm(**options: object) -> RayOptions:
    """Workers stay up between the tests' runs (each start imports torch: 5-20 s)."""
    return RayOptions(keep_workers=True, **options)  # type: ignore[arg-type]


def tiny_config():
    config = preset("tiny")
    return replace(config, extraction=replace(config.extraction, chunk_pairs=CHUNK_PAIRS))


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_cache: None) -> None:
    """Every test here builds the tiny model into the session's shared cache."""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """One local Ray for the module (its processes inherit the tiny-model cache above)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="bilingual-test")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        stop_warm_workers()
        ray.shutdown()


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process run of the whole bundled corpus."""
    import torch

    root, threads = tmp_path_factory.mktemp("single"), torch.get_num_threads()
    torch.set_num_threads(1)  # as in the actors; much faster on a loaded machine, same numbers
    try:
        run_extraction(tiny_config(), root, "tiny", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "tiny"


def assert_same_run(a: Path, b: Path) -> None:
    for name in TABLES:
        ta, tb = pq.read_table(a / f"{name}.parquet"), pq.read_table(b / f"{name}.parquet")
        assert ta.num_rows > 0 and ta.equals(tb), name
    sa, sb = Run.open(a).manifest.scoring, Run.open(b).manifest.scoring

    def scores(scoring: dict) -> dict:
        return {
            k: v for k, v in scoring.items() if not k.startswith("seconds") and k != "scored_at"
        }

    assert scores(sa) == scores(sb)


def file_bytes(run: Path) -> dict[str, bytes]:
    return {p.name: hashlib.sha256(p.read_bytes()).digest() for p in sorted(run.iterdir())}


def named_actors(run_id: str) -> list[str]:
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"{ACTOR_PREFIX}{run_id}:")
    ]


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


# ------------------------------------------------------------ fast units ---


def test_shards_are_whole_chunks_covering_every_pair_once() -> None:
    for n_pairs, chunk, num in [(421, 32, 4), (421, 32, 14), (100, 7, 3), (5, 10, 1)]:
        shards = plan_shards(n_pairs, chunk, num)
        assert (
            [s.index for s in shards] == list(range(num))
            and shards[0].lo == 0
            and shards[-1].hi == n_pairs
        )
        assert all(a.hi == b.lo for a, b in itertools.pairwise(shards))
        assert all(s.lo % chunk == 0 and s.hi > s.lo for s in shards)
    with pytest.raises(PrecomputeError, match="into 15 shards"):
        plan_shards(421, 32, 15)
    assert parse_faults("exit:1, fail:3,exit:2:4") == {
        1: ("exit", 1),
        3: ("fail", 1),
        2: ("exit", 4),
    }
    with pytest.raises(ValueError, match=FAULT_ENV):
        parse_faults("explode:1")


def test_executor_flags_pass_through_to_the_run_command() -> None:
    (command,) = [c for c in cli.COMMANDS if c.name == "worker"]

    def executor_values(*argv: str) -> dict[str, object]:
        args = cli.build_parser().parse_args(["worker", *argv])
        return cli.settings_from(command, args).executor_values()  # type: ignore[attr-defined]

    assert executor_values(
        "--executor", "ray", "--ray-address", "auto", "--workers", "4", "--gpus-per-worker", "1"
    ) == {
        "executor": "ray",
        "ray_address": "auto",
        "workers": 4,
        "gpus_per_worker": 1.0,
    }
    assert executor_values() == {}
    with pytest.raises(cli.CommandError, match="only apply with --executor ray"):
        executor_values("--workers", "2")
    worker = Worker(
        JobQueue("memory://ray-flags"),
        WorkerConfig(executor={"executor": "ray", "workers": 2}, work_dir="/tmp/unused"),
    )
    request = validate_request({"preset": "tiny", "run_id": "r", "requested_by": "test"})
    settings = worker.run_settings(request)
    assert (settings["executor"], settings["workers"], settings["run_id"]) == ("ray", 2, "r")


def test_the_one_bar_reaches_the_job_workers_progress_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Ray bar reports through the same progress records as a local run's (tokens, tokens/s, ETA),
    and its per-worker lines go to the human log."""
    path = tmp_path / "progress.jsonl"
    with stream_to(path):
        report = _Report("r", 2, True, n_pairs=100, token="t")
        a, b = ShardSpec(0, 2, 0, 50), ShardSpec(1, 2, 50, 100)
        report.update(a, {"token": "t", "shard": 0, "tokens_total": 1000, "tokens_staged": 0})
        report.line(
            "ray worker 0 staged chunk 1 of 2 of shard 0: 500 tokens in 0.50 s, 1,000 tokens/s"
        )
        report.update(a, {"token": "t", "shard": 0, "tokens_total": 1000, "tokens_staged": 500})
        report.update(
            b, {"token": "old", "shard": 1, "tokens_total": 1200, "tokens_staged": 1200}
        )  # a warm worker's last run
        report.update(b, {"token": "t", "shard": 1, "tokens_total": 1200, "tokens_staged": 600})
        report.close()
    progress = ProgressFile(path).read()
    assert progress["stage"] == "extracting r (ray, 2 workers)"
    assert progress["tokens_done"] == 1100 and progress["tokens_total"] == 2200
    log = LogBuffer()
    log.feed(capsys.readouterr().err)
    assert "ray worker 0 staged chunk 1 of 2 of shard 0" in log.text()


def test_only_the_ray_executor_imports_ray() -> None:
    """Ray is optional: the app, the core library and the rest of the precompute never import it."""
    repo = Path(__file__).resolve().parents[1]
    files = [
        repo / "app.py",
        *(repo / "views").rglob("*.py"),
        *(repo / "explorer").rglob("*.py"),
        *(repo / "bilingual_core").rglob("*.py"),
        *(repo / "precompute").rglob("*.py"),
    ]
    importing = [
        str(f.relative_to(repo))
        for f in files
        if re.search(r"^\s*(import ray\b|from ray\b)", f.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert importing == ["precompute/cluster/ray_executor.py"]


# ------------------------------------------------------------ end to end ---


@pytest.mark.slow
def test_three_workers_equal_the_single_process_run(
    ray_cluster: str, single: Path, tmp_path: Path, capfd
) -> None:
    manifest = run_with_ray(tiny_config(), tmp_path, "tiny", warm(workers=3), progress=False)
    assert_same_run(single, tmp_path / "tiny")
    assert manifest.extraction["num_shards"] == 6 and manifest.extraction["executor"] == "ray"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # staging removed
    err = capfd.readouterr().err
    assert "6 shards of 421 pairs on 3 worker(s)" in err and "ray worker 2 ready" in err
    assert err.count("staged chunk") == 14


@pytest.mark.slow
def test_two_workers_equal_the_single_process_run(
    ray_cluster: str, single: Path, tmp_path: Path
) -> None:
    manifest = run_with_ray(tiny_config(), tmp_path, "tiny", warm(workers=2), progress=False)
    assert_same_run(single, tmp_path / "tiny")
    assert manifest.extraction["num_shards"] == 4 and not manifest.extraction["resumed"]


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_and_its_shard_resumes(
    ray_cluster: str, single: Path, tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers; the one on shard 1 exits after staging its first chunk."""
    monkeypatch.setenv(FAULT_ENV, "exit:1")
    manifest = run_with_ray(tiny_config(), tmp_path, "tiny", warm(workers=2), progress=False)
    assert_same_run(single, tmp_path / "tiny")
    assert manifest.extraction["resumed"] and manifest.extraction["num_shards"] == 4
    err = capfd.readouterr().err
    assert "died during shard 1 of 4" in err and "resuming after 1 staged chunk(s)" in err


@pytest.mark.slow
def test_a_shard_that_always_fails_fails_the_run_and_keeps_the_old_one(
    ray_cluster: str, single: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, before = single.parent, file_bytes(single)
    monkeypatch.setenv(FAULT_ENV, "fail:1")
    with pytest.raises(
        ShardFailedError,
        match=r"shard 1 of 2 \(pairs 224-420\) failed 3 time\(s\).*injected failure",
    ):
        run_with_ray(
            tiny_config(),
            root,
            "tiny",
            warm(workers=1, num_shards=2),
            overwrite=True,
            progress=False,
        )
    assert file_bytes(single) == before
    assert [r.run_id for r in list_runs(root)] == ["tiny"]
    # Shard 0 finished before shard 1 failed: kept for --resume, refused without it.
    staged = root / ".tiny.staging"
    assert [p.name for p in staged.iterdir()] == ["shard-000-of-002"]
    with pytest.raises(StagingError, match="--resume"):
        run_with_ray(
            tiny_config(), root, "tiny-other", warm(workers=1), progress=False, staging=staged
        )
    shutil.rmtree(staged)


@pytest.mark.slow
def test_fsspec_staging_resumes_a_failed_run(
    ray_cluster: str, single: Path, tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging at a URL: the first run stops when shard 1 keeps failing; the resumed run only does shard 1."""
    staging = f"file://{tmp_path / 'bucket'}/staging"
    monkeypatch.setenv(FAULT_ENV, "fail:1")
    with pytest.raises(ShardFailedError):
        run_with_ray(
            tiny_config(),
            tmp_path / "out",
            "tiny",
            warm(workers=1, num_shards=2, max_attempts=1),
            staging=staging,
            progress=False,
        )
    assert sorted(p.name for p in (tmp_path / "bucket" / "staging").iterdir()) == [
        "shard-000-of-002"
    ]
    monkeypatch.delenv(FAULT_ENV)
    capfd.readouterr()
    manifest = run_with_ray(
        tiny_config(),
        tmp_path / "out",
        "tiny",
        warm(workers=1),
        staging=staging,
        resume=True,
        progress=False,
    )
    assert manifest.extraction["num_shards"] == 2
    err = capfd.readouterr().err
    assert (
        len(re.findall(r"staged chunk \d+ of", err)) == 7
        and "resuming after 7 staged chunk(s)" in err
    )
    assert_same_run(single, tmp_path / "out" / "tiny")
    assert not (tmp_path / "bucket" / "staging").exists()


@pytest.mark.slow
def test_cancel_from_the_queue_stops_the_ray_workers(ray_cluster: str, tmp_path: Path) -> None:
    stop_warm_workers()  # their CPUs are the new run's
    root = tmp_path / "results"
    write_synthetic_run(root, SyntheticConfig(n_pairs=30, d_sae=64, mean_tokens=6.0, run_id="keep"))
    before = file_bytes(root / "keep")
    queue = JobQueue(str(root))
    # One sentence per forward pass: far longer than the test waits.
    job = queue.submit(
        validate_request(
            {
                "preset": "tiny",
                "run_id": "keep",
                "overwrite": True,
                "overrides": {"batch_size": 1},
                "requested_by": "test",
            }
        )
    )
    worker = Worker(
        queue,
        WorkerConfig(
            poll_seconds=0.2,
            heartbeat_seconds=0.3,
            stop_grace_seconds=30,
            executor={"executor": "ray", "ray_address": ray_cluster, "workers": 1},
        ),
    )
    thread = threading.Thread(target=worker.run_once, daemon=True)
    thread.start()
    wait_for(lambda: bool(named_actors("keep")), timeout=120)
    queue.cancel(job.id, "test")
    thread.join(120)
    assert not thread.is_alive()
    ended = queue.get(job.id)
    assert ended.state == "cancelled", ended.status.error
    wait_for(lambda: not named_actors("keep"), timeout=30)
    assert file_bytes(root / "keep") == before
    assert [r.run_id for r in list_runs(root)] == ["keep"]
    assert not [p.name for p in root.iterdir() if ".tmp-" in p.name]
    assert "ray: 2 shards" in queue.log_tail(job.id, max_lines=50)
