"""The job queue on a local directory and on an fsspec store (memory://), and the
progress/log reading of the run command's output."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from bilingual_core import list_runs
from jobs.queue import JobQueue, JobStatus
from jobs.request import validate_request
from precompute.progress_log import LogBuffer, parse_progress


class PlainMemory(MemoryFileSystem):
    """An in-memory store without exclusive create (like hf://): claims fall back to
    check-then-write plus a read-back."""

    protocol = "plainmem"


fsspec.register_implementation("plainmem", PlainMemory, clobber=True)


@pytest.fixture(params=["local", "memory", "plainmem"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A results root: a local directory, or a fresh prefix of an in-memory store."""
    if request.param == "local":
        yield str(tmp_path / "results")
        return
    url = f"{request.param}://jobs-{uuid.uuid4().hex[:8]}/results"
    yield url
    fs, bucket = fsspec.filesystem("memory"), url.split("://")[1].split("/")[0]
    if fs.exists(bucket):
        fs.rm(bucket, recursive=True)


def submit(queue: JobQueue, **fields: object):
    return queue.submit(validate_request({"preset": "tiny", **fields}))


def test_submit_list_and_states(root: str):
    queue = JobQueue(root)
    assert queue.jobs() == []
    first = submit(queue, run_id="a")
    second = submit(queue, run_id="b")
    assert [j.request.run_id for j in queue.queued()] == ["a", "b"]  # oldest first
    assert {j.id for j in queue.jobs()} == {first.id, second.id}
    assert all(j.state == "queued" for j in queue.jobs())
    assert list_runs(root) == []  # the queue is never listed as a run


def test_cancel_queued_job_needs_no_worker(root: str):
    queue = JobQueue(root)
    job = submit(queue)
    cancelled = queue.cancel(job.id, "ana@example.org")
    assert cancelled.state == "cancelled"
    assert "ana@example.org" in (cancelled.status.error or "")
    assert queue.queued() == []
    with pytest.raises(ValueError, match="already cancelled"):
        queue.cancel(job.id, "ana@example.org")


def test_claim_is_exclusive(root: str):
    queue = JobQueue(root)
    job = submit(queue)
    assert queue.claim(job.id, "w1", "host")
    assert not queue.claim(job.id, "w2", "host")
    assert queue.get(job.id).state == "running"
    assert queue.queued() == []


def test_racing_claims_have_one_winner(root: str):
    """Eight threads claim the same job at once: exactly one wins."""
    queue = JobQueue(root)
    job = submit(queue)
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def race(name: str) -> None:
        barrier.wait()
        if JobQueue(root).claim(job.id, name, "host", settle_seconds=0.2):
            wins.append(name)

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_status_log_and_worker_heartbeats(root: str):
    queue = JobQueue(root)
    job = submit(queue)
    queue.write_status(job.id, JobStatus("running", worker="w1", progress={"tokens_done": 5}))
    queue.write_log(job.id, "".join(f"line {i}\n" for i in range(100)))
    again = queue.get(job.id)
    assert again.state == "running" and again.status.progress == {"tokens_done": 5}
    assert queue.log_tail(job.id, max_lines=3) == "line 97\nline 98\nline 99"
    assert queue.log_tail(job.id, max_lines=2, max_bytes=10).endswith("line 99")
    queue.worker_heartbeat("w1", {"host": "gpu-1", "gpus": ["H100"]})
    assert [w["worker"] for w in queue.workers()] == ["w1"]


def test_invalid_request_files_are_failed_and_never_queued(root: str):
    queue = JobQueue(root)
    job = submit(queue)
    queue._write_bytes(
        queue.path("20990101-000000-000-abcd", "request.json"), b'{"preset": "evil", "x": 1}'
    )
    bad = queue.get("20990101-000000-000-abcd")
    assert bad.state == "failed" and "request.json is invalid" in bad.status.error
    assert [j.id for j in queue.jobs()] == ["20990101-000000-000-abcd", job.id]
    assert [j.id for j in queue.queued()] == [job.id]


# ----------------------------------------------------------- progress ---

BAR = "extracting t1 (shard 0):  49%|####9     | 3.89k/7.94k [00:03<00:04, 985tok/s]"


def test_parse_tqdm_lines():
    p = parse_progress(BAR)
    assert p is not None
    assert (p["stage"], p["unit"], p["done"], p["total"], p["rate"], p["eta_s"]) == (
        "extracting t1 (shard 0)",
        "tok",
        3890.0,
        7940.0,
        985.0,
        4.0,
    )
    slow = parse_progress("scoring: 12%|#   | 3/25 [00:01<01:09, 2.50s/block]")
    assert slow["rate"] == pytest.approx(0.4) and slow["eta_s"] == 69.0
    start = parse_progress("extracting t1 (shard 0):   0%|   | 0.00/7.94k [00:00<?, ?tok/s]")
    assert start["rate"] is None and start["eta_s"] is None and start["done"] == 0
    open_ended = parse_progress("reading: 1.2Mit [00:02, 512kit/s]")
    assert (
        open_ended["done"] == 1.2e6 and open_ended["total"] is None and open_ended["rate"] == 512e3
    )
    assert parse_progress("error: corpus file not found") is None
    assert parse_progress("wrote run 't1' under /r: 60 pairs") is None


def test_log_buffer_collapses_redrawn_bars_and_tracks_tokens():
    log = LogBuffer(max_lines=3)
    log.feed("loading model\n\rextracting: 10%|#| 1/10 [00:01<00:09, 1.00tok/s]")
    log.feed("\rextracting: 50%|#| 5/10 [00:05<00:0")  # a redraw split across reads
    log.feed("5, 1.00tok/s]")
    progress = log.progress()
    assert (
        progress["tokens_done"] == 5
        and progress["tokens_total"] == 10
        and progress["tokens_eta_s"] == 5
    )
    log.feed(
        "\rextracting: 100%|#| 10/10 [00:10<00:00, 1.00tok/s]\nscoring: 100%|#| 4/4 [00:00<00:00, 9.00row/s]\n"
    )
    log.feed("error: boom\n")
    assert log.text().splitlines() == [
        "[1 earlier lines not kept]",
        "extracting: 100%|#| 10/10 [00:10<00:00, 1.00tok/s]",
        "scoring: 100%|#| 4/4 [00:00<00:00, 9.00row/s]",
        "error: boom",
    ]
    assert log.progress()["tokens_done"] == 10 and log.progress()["stage"] == "scoring"
    assert log.error_summary() == "boom"


def test_error_summary_from_a_traceback():
    log = LogBuffer()
    log.feed(
        'Traceback (most recent call last):\n  File "x.py", line 1\n    boom()\nOSError: [Errno 28] No space left on device\n'
    )
    assert log.error_summary() == "OSError: [Errno 28] No space left on device"
