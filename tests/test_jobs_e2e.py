"""The worker end to end with the real run command and the ``tiny`` preset
(offline, CPU): request -> claim -> progress -> completed run visible to the
app; two worker processes; a bad corpus path; cancel and kill mid-extraction
leave the previous run intact. Each job starts a Python that imports torch, so
these take 15-30 s each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bilingual_core import Run, SyntheticConfig, list_runs, write_synthetic_run
from contract.queue import JobQueue, JobStatus
from contract.request import validate_request
from precompute.serve.worker import Worker, WorkerConfig

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def submit(root: Path, **fields: object):
    return JobQueue(str(root)).submit(
        validate_request({"preset": "tiny", "requested_by": "e2e", **fields})
    )


def build_worker(root: Path) -> Worker:
    return Worker(
        JobQueue(str(root)),
        WorkerConfig(poll_seconds=0.2, heartbeat_seconds=0.3, stop_grace_seconds=20),
    )


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def tokens_done(queue: JobQueue, job_id: str) -> int:
    return int((queue.read_status(job_id) or JobStatus()).progress.get("tokens_done") or 0)


def test_tiny_job_with_two_worker_processes(tmp_path: Path):
    root = tmp_path / "results"
    job = submit(root, run_id="tiny-e2e", overrides={"sample_size": 40})
    cmd = [
        sys.executable,
        "-m",
        "precompute",
        "worker",
        "--root",
        str(root),
        "--once",
        "--heartbeat-seconds",
        "0.5",
    ]
    workers = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert sum(f"job {job.id} succeeded" in out for out in outputs) == 1, (
        outputs
    )  # one ran it, one did not
    done = JobQueue(str(root)).get(job.id)
    assert done.state == "succeeded", done.status.error
    assert done.status.progress["tokens_done"] > 0
    assert done.status.progress["tokens_done"] == done.status.progress["tokens_total"]
    assert done.status.progress["tokens_per_s"] > 0
    log = JobQueue(str(root)).log_tail(job.id, max_lines=200)
    assert log.count("$ python -m precompute run") == 1 and "wrote run 'tiny-e2e'" in log
    (listing,) = list_runs(root)
    assert listing.ok and listing.run_id == "tiny-e2e" and listing.manifest.n_pairs == 40


def test_bad_corpus_path_fails_with_the_reason(tmp_path: Path):
    root = tmp_path / "results"
    missing = root / "_corpora" / "nonexistent.tsv"  # an allowed directory (the default)
    job = submit(root, run_id="tiny-bad", overrides={"corpus_file": str(missing)})
    build_worker(root).run_once()
    failed = JobQueue(str(root)).get(job.id)
    assert failed.state == "failed"
    assert "nonexistent.tsv does not exist" in failed.status.error
    assert failed.status.returncode == 2
    assert list_runs(root) == []


@pytest.mark.parametrize("how", ["cancel", "kill"])
def test_stopped_mid_extraction_leaves_previous_run_intact(tmp_path: Path, how: str):
    root = tmp_path / "results"
    write_synthetic_run(
        root, SyntheticConfig(n_pairs=30, d_sae=64, mean_tokens=6.0, run_id="tiny-keep")
    )
    before = {p.name: p.read_bytes() for p in (root / "tiny-keep").iterdir()}
    # The whole bundled corpus, one sentence per forward pass (tens of seconds): stopped early.
    job = submit(root, run_id="tiny-keep", overwrite=True, overrides={"batch_size": 1})
    queue = JobQueue(str(root))
    worker = build_worker(root)
    thread = threading.Thread(target=worker.run_once, daemon=True)
    thread.start()
    wait_for(lambda: tokens_done(queue, job.id) > 0, timeout=120)
    if how == "cancel":
        queue.cancel(job.id, "e2e")
    else:
        os.kill(worker.process.pid, signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()
    ended = queue.get(job.id)
    assert ended.state == ("cancelled" if how == "cancel" else "failed")
    if how == "kill":
        assert "SIGKILL" in ended.status.error
    assert {p.name: p.read_bytes() for p in (root / "tiny-keep").iterdir()} == before
    assert Run.open(root, "tiny-keep").is_complete
    assert [r.run_id for r in list_runs(root)] == ["tiny-keep"]
    assert not [
        p.name for p in root.iterdir() if ".tmp-" in p.name
    ]  # no half-written run directory


def test_run_command_pushes_the_finished_run(tmp_path: Path):
    shared = tmp_path / "shared"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "precompute",
            "run",
            "--preset",
            "tiny",
            "--sample-size",
            "8",
            "--quiet",
            "--out",
            str(tmp_path / "gpu"),
            "--run-id",
            "pushed",
            "--push-to",
            str(shared),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert f"published to {shared / 'pushed'}" in out.stdout
    assert [r.run_id for r in list_runs(shared) if r.ok] == ["pushed"]
