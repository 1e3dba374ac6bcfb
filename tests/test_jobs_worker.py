"""The worker with a stand-in for ``python -m precompute run`` (fast): success,
failure, cancel, a killed run command, stale jobs, two workers, a full disk,
remote results roots and ``--push-to``. ``test_jobs_e2e.py`` runs the real
tiny preset."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pytest

from bilingual_core import Run, SyntheticConfig, list_runs, write_synthetic_run
from contract.queue import Job, JobQueue, JobStatus
from contract.request import validate_request
from precompute.serve.worker import Worker, WorkerConfig

REPO = Path(__file__).resolve().parents[1]

# Stands in for `python -m precompute run --config FILE`: reads the settings file with the
# real models; the run id's prefix picks the behaviour.
FAKE_RUN = textwrap.dedent("""
    import json, os, sys, time
    from contract.settings import RunSettings, SweepSettings
    command, argv = sys.argv[1], sys.argv[2:]
    assert argv[0] == "--config" and len(argv) == 2, argv
    model = SweepSettings if command == "sweep" else RunSettings
    settings = model.model_validate(json.load(open(argv[1])))
    opts = settings.model_dump()
    out = opts["out"]
    run_id = opts["sweep_id"] if command == "sweep" else opts["run_id"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "_calls.txt"), "a") as f:
        f.write(run_id + "\\n")
    mode = run_id.split("-")[0]
    if mode == "fail":
        print("loading corpus", flush=True)
        print("error: corpus file /nope/corpus.tsv does not exist", file=sys.stderr)
        sys.exit(2)
    steps = 600 if mode == "slow" else 4
    from bilingual_core.progress import bar, stream_to
    with stream_to(opts.get("progress_jsonl")):  # the real progress channel, real bars on stderr
        b = bar(100 * steps, f"extracting {run_id} (shard 0)", "tok", show=True)
        for i in range(steps):
            time.sleep(0.05)
            b.update(100)
        b.close()
    from bilingual_core import SyntheticConfig, write_synthetic_run
    run_ids = [run_id]
    if command == "sweep":  # one run per layer and the sweep manifest
        layers = [int(x) for x in opts["layers"].split(",")]
        run_ids = [f"{run_id}-l{layer}" for layer in layers]
    for one in run_ids:
        write_synthetic_run(out, SyntheticConfig(n_pairs=40, d_sae=64, mean_tokens=8.0, run_id=one),
                            overwrite=settings.overwrite)
    if command == "sweep":
        from bilingual_core.sweep import new_sweep, write_sweep
        entries = [{"layer": x, "run_id": r, "hook_name": "h"} for x, r in zip(layers, run_ids)]
        write_sweep(out, new_sweep(run_id, entries))
    print(f"wrote run {run_id!r}")
""")


@pytest.fixture
def fake_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    script = tmp_path / "fake_precompute.py"
    script.write_text(FAKE_RUN)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return (sys.executable, str(script))


@pytest.fixture(params=["local", "memory"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "local":
        yield str(tmp_path / "results")
        return
    bucket = f"worker-{uuid.uuid4().hex[:8]}"
    yield f"memory://{bucket}/results"
    fs = fsspec.filesystem("memory")
    if fs.exists(bucket):
        fs.rm(bucket, recursive=True)


def build_worker(
    root: str, program: tuple[str, ...], tmp_path: Path, **overrides: object
) -> Worker:
    fields: dict = {
        "poll_seconds": 0.05,
        "heartbeat_seconds": 0.1,
        "stale_after_seconds": 30.0,
        "stop_grace_seconds": 5.0,
        "claim_settle_seconds": 0.2,
        "program": program,
        "work_dir": str(tmp_path / "work"),
    }
    fields.update(overrides)
    return Worker(JobQueue(root), WorkerConfig(**fields))  # type: ignore[arg-type]


def submit(root: str, run_id: str, **fields: object) -> Job:
    return JobQueue(root).submit(
        validate_request({"preset": "tiny", "run_id": run_id, "requested_by": "test", **fields})
    )


def calls(directory: Path | str) -> list[str]:
    path = Path(directory) / "_calls.txt"
    return path.read_text().split() if path.exists() else []


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run_once, daemon=True)
    thread.start()
    return thread


def test_job_runs_to_success(root: str, fake_program: tuple[str, ...], tmp_path: Path):
    job = submit(root, "ok-1")
    worker = build_worker(root, fake_program, tmp_path)
    assert worker.run_once()
    done = JobQueue(root).get(job.id)
    assert done.state == "succeeded", done.status.error
    assert done.status.returncode == 0
    assert done.status.progress["tokens_done"] == 400
    assert done.status.progress["tokens_total"] == 400
    assert "wrote run 'ok-1'" in JobQueue(root).log_tail(job.id)
    assert [r.run_id for r in list_runs(root) if r.ok] == ["ok-1"]
    if root.startswith("memory://"):  # computed in the work dir, then published to the root
        assert done.status.published == [root]
        assert calls(tmp_path / "work") == ["ok-1"]
    assert not worker.run_once()  # nothing left


def test_failing_job_reports_the_error(root: str, fake_program: tuple[str, ...], tmp_path: Path):
    job = submit(root, "fail-1")
    build_worker(root, fake_program, tmp_path).run_once()
    failed = JobQueue(root).get(job.id)
    assert failed.state == "failed"
    assert failed.status.error == "corpus file /nope/corpus.tsv does not exist"
    assert failed.status.returncode == 2
    assert list_runs(root) == []


def test_cancel_stops_the_run_and_keeps_the_previous_run(
    root: str, fake_program: tuple[str, ...], tmp_path: Path
):
    write_synthetic_run(
        root, SyntheticConfig(n_pairs=40, d_sae=64, mean_tokens=8.0, run_id="slow-1")
    )
    before = Run.open(root, "slow-1").manifest.created_at
    job = submit(root, "slow-1", overwrite=True)
    queue = JobQueue(root)
    worker = build_worker(root, fake_program, tmp_path)
    thread = in_thread(worker)
    wait_for(lambda: (queue.read_status(job.id) or JobStatus()).progress.get("tokens_done", 0) > 0)
    running = queue.get(job.id)
    assert running.state == "running" and running.status.worker == worker.worker_id
    queue.cancel(job.id, "ana@example.org")
    thread.join(30)
    assert not thread.is_alive()
    cancelled = queue.get(job.id)
    assert cancelled.state == "cancelled"
    assert "ana@example.org" in cancelled.status.error
    kept = Run.open(root, "slow-1")
    assert kept.is_complete and kept.manifest.created_at == before


def test_killed_run_command_fails_the_job(fake_program: tuple[str, ...], tmp_path: Path):
    root = str(tmp_path / "results")
    job = submit(root, "slow-2")
    queue = JobQueue(root)
    worker = build_worker(root, fake_program, tmp_path)
    thread = in_thread(worker)
    wait_for(lambda: (queue.read_status(job.id) or JobStatus()).progress.get("tokens_done", 0) > 0)
    os.kill(worker.process.pid, signal.SIGKILL)
    thread.join(30)
    failed = queue.get(job.id)
    assert failed.state == "failed"
    assert "SIGKILL" in failed.status.error
    assert list_runs(root) == []


@pytest.mark.slow
def test_two_workers_never_run_the_same_job(fake_program: tuple[str, ...], tmp_path: Path):
    root = str(tmp_path / "results")
    ids = [submit(root, f"ok-{i}").id for i in range(6)]
    workers = [build_worker(root, fake_program, tmp_path) for _ in range(2)]

    def drain(worker: Worker) -> None:
        while worker.run_once():
            pass

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ran = calls(root)
    assert sorted(ran) == [f"ok-{i}" for i in range(6)]  # each exactly once
    queue = JobQueue(root)
    assert all(queue.get(i).state == "succeeded" for i in ids)
    assert {queue.get(i).status.worker for i in ids} <= {w.worker_id for w in workers}


def test_stale_running_jobs_are_reported_failed(
    root: str, fake_program: tuple[str, ...], tmp_path: Path
):
    queue = JobQueue(root)
    old = (datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="seconds")
    dead = submit(root, "ok-dead")
    assert queue.claim(dead.id, "ghost", "gpu-0")
    queue.write_status(
        dead.id, JobStatus("running", worker="ghost", host="gpu-0", heartbeat_at=old)
    )
    alive = submit(root, "ok-alive")
    assert queue.claim(alive.id, "other", "gpu-1")
    queue.write_status(
        alive.id,
        JobStatus(
            "running",
            worker="other",
            host="gpu-1",
            heartbeat_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
    )
    worker = build_worker(root, fake_program, tmp_path)
    assert worker.reap_stale() == [dead.id]
    reaped = queue.get(dead.id)
    assert reaped.state == "failed"
    assert "ghost" in reaped.status.error and "stopped sending heartbeats" in reaped.status.error
    assert queue.get(alive.id).state == "running"


def test_full_disk_while_running_fails_the_job(
    fake_program: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = str(tmp_path / "results")
    job = submit(root, "slow-3")
    worker = build_worker(root, fake_program, tmp_path)

    def full(job_id: str, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(worker.queue, "write_log", full)
    worker.run_once()
    failed = JobQueue(root).get(job.id)
    assert failed.state == "failed"
    assert "No space left on device" in failed.status.error
    assert list_runs(root) == []


def test_existing_run_is_refused_before_running(fake_program: tuple[str, ...], tmp_path: Path):
    root = str(tmp_path / "results")
    write_synthetic_run(root, SyntheticConfig(n_pairs=40, d_sae=64, mean_tokens=8.0, run_id="ok-x"))
    job = submit(root, "ok-x")
    build_worker(root, fake_program, tmp_path).run_once()
    failed = JobQueue(root).get(job.id)
    assert failed.state == "failed" and "already exists" in failed.status.error
    assert calls(root) == []


def test_cancelled_before_start_never_runs(fake_program: tuple[str, ...], tmp_path: Path):
    root = str(tmp_path / "results")
    job = submit(root, "ok-c")
    JobQueue(root).cancel(job.id, "ana")
    assert not build_worker(root, fake_program, tmp_path).run_once()
    assert calls(root) == []


@pytest.mark.slow
def test_push_to_publishes_every_finished_run(fake_program: tuple[str, ...], tmp_path: Path):
    root = str(tmp_path / "results")
    shared = f"memory://push-{uuid.uuid4().hex[:8]}/runs"
    job = submit(root, "ok-p")
    private = submit(root, "ok-private", publish=False)
    worker = build_worker(root, fake_program, tmp_path, push_to=(shared,))
    while worker.run_once():
        pass
    queue = JobQueue(root)
    assert queue.get(job.id).status.published == [shared]
    assert queue.get(private.id).status.published == []
    assert [r.run_id for r in list_runs(shared) if r.ok] == ["ok-p"]


@pytest.mark.slow
def test_a_killed_worker_takes_its_run_command_along(tmp_path: Path):
    """The run command gets SIGTERM when the worker dies (no orphan keeps writing)."""
    code = textwrap.dedent("""
        import sys, time
        from precompute.serve.worker import _Subprocess
        child = _Subprocess([sys.executable, "-c", "import time; time.sleep(60)"], {}, 10)
        print(child.proc.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    wait_for(lambda: not _alive(child_pid), timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (already exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_worker_and_jobs_cli(tmp_path: Path):
    root = str(tmp_path / "results")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "precompute", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    submitted = cli(
        "jobs",
        "submit",
        "--root",
        root,
        "--preset",
        "tiny",
        "--set",
        "sample_size=5",
        "--by",
        "cli",
    )
    assert submitted.returncode == 0, submitted.stderr
    bad = cli("jobs", "submit", "--root", root, "--preset", "tiny", "--set", "batch_size=-1")
    assert bad.returncode == 2 and "batch_size" in bad.stderr
    listed = cli("jobs", "list", "--root", root)
    assert "queued" in listed.stdout and "sample_size=5" in listed.stdout
    job_id = listed.stdout.split()[0]
    assert cli("jobs", "cancel", job_id, "--root", root).returncode == 0
    idle = cli("worker", "--root", root, "--once")
    assert idle.returncode == 0, idle.stderr
    assert JobQueue(root).get(job_id).state == "cancelled"
    assert [w["host"] for w in JobQueue(root).workers()]


# ---------------------------------------------------------------- sweeps ---


def test_sweep_job_runs_the_sweep_command_and_publishes_every_layer(
    root: str, fake_program: tuple[str, ...], tmp_path: Path
):
    job = submit(root, "ok-sw", kind="sweep", layers=[2, 0])
    worker = build_worker(root, fake_program, tmp_path, executor={"executor": "ray"})
    assert worker.run_once()
    done = JobQueue(root).get(job.id)
    assert done.state == "succeeded", done.status.error
    log = JobQueue(root).log_tail(job.id)
    assert "precompute.py sweep --config request.json" in log
    assert '"sweep_id": "ok-sw"' in log and '"layers": "0,2"' in log
    assert "executor" not in log  # the worker's executor settings are for run jobs
    assert [r.run_id for r in list_runs(root) if r.ok] == ["ok-sw-l0", "ok-sw-l2"]
    from bilingual_core.sweep import read_sweep

    assert read_sweep(root, "ok-sw").run_ids == ["ok-sw-l0", "ok-sw-l2"]  # published too
    if root.startswith("memory://"):
        assert done.status.published == [root]


def test_sweep_job_with_an_existing_layer_run_is_refused_before_running(
    fake_program: tuple[str, ...], tmp_path: Path
):
    root = str(tmp_path / "results")
    write_synthetic_run(root, SyntheticConfig(n_pairs=40, d_sae=64, run_id="ok-sx-l2"))
    job = submit(root, "ok-sx", kind="sweep", layers="0,2")
    build_worker(root, fake_program, tmp_path).run_once()
    failed = JobQueue(root).get(job.id)
    assert failed.state == "failed" and "'ok-sx-l2' already exists" in failed.status.error
    assert calls(root) == []


def test_sweep_sae_pattern_outside_the_model_dirs_is_refused(
    fake_program: tuple[str, ...], tmp_path: Path
):
    root = str(tmp_path / "results")
    allowed = tmp_path / "models"
    (allowed / "sae-l0").mkdir(parents=True)
    worker = build_worker(root, fake_program, tmp_path, model_dirs=(str(allowed),))
    inside = validate_request(
        {
            "preset": "tiny",
            "run_id": "s",
            "kind": "sweep",
            "layers": [0, 1],
            "sae_pattern": f"{allowed}/sae-l{{layer}}",
        }
    )
    assert worker.path_problem(inside) is None
    outside = validate_request(
        {
            "preset": "tiny",
            "run_id": "s",
            "kind": "sweep",
            "layers": [0, 1],
            "sae_pattern": f"{tmp_path}/elsewhere/sae-l{{layer}}",
        }
    )
    assert "sae_path: this worker reads model files only" in worker.path_problem(outside)
