"""The job queue on a local directory and on an fsspec store (memory://), and the
progress/log reading of the run command's output."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from bilingual_core import list_runs
from bilingual_core.progress import bar, stream_to
from contract.queue import JobQueue, JobStatus
from contract.request import validate_request
from precompute.common.progress_log import LogBuffer, ProgressFile, is_bar_line


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


def test_progress_stream_records_each_bar(tmp_path: Path):
    """Bars report to the active JSON-lines stream (throttled, the last state always)."""
    path = tmp_path / "progress.jsonl"
    with stream_to(path):
        extract = bar(1000, "extracting t1 (shard 0)", "tok", show=False)
        for _ in range(10):
            extract.update(100)
        extract.close()
        score = bar(4, "scoring", "row", show=False)
        score.update(4)
        score.close()
    assert bar(10, "after", "row", show=False) is None  # no stream, nothing drawn
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["done"] == 0 and records[0]["total"] == 1000
    last_tokens = [r for r in records if r["unit"] == "tok"][-1]
    assert (
        last_tokens["done"] == 1000 and last_tokens["fraction"] == 1.0 and last_tokens["eta_s"] == 0
    )
    assert records[-1]["stage"] == "scoring" and records[-1]["done"] == 4


def test_progress_file_follows_a_growing_file(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    follow = ProgressFile(path)
    assert follow.read() == {}  # not there yet
    record = {
        "stage": "extracting",
        "unit": "tok",
        "done": 50,
        "total": 100,
        "rate": 10.0,
        "eta_s": 5.0,
    }
    path.write_text(json.dumps(record) + "\n" + '{"stage": "scor')  # a torn last line waits
    snap = follow.read()
    assert (
        snap["tokens_done"],
        snap["tokens_total"],
        snap["tokens_per_s"],
        snap["tokens_eta_s"],
    ) == (50, 100, 10.0, 5.0)
    with path.open("a") as handle:
        handle.write('ing", "unit": "row", "done": 1, "total": 4}\nnot json\n')
    snap = follow.read()
    assert snap["stage"] == "scoring" and snap["tokens_done"] == 50  # tokens stay known


def test_log_buffer_collapses_redrawn_bars():
    log = LogBuffer(max_lines=3)
    log.feed("loading model\n\rextracting: 10%|#| 1/10 [00:01<00:09, 1.00tok/s]")
    log.feed("\rextracting: 50%|#| 5/10 [00:05<00:0")  # a redraw split across reads
    log.feed("5, 1.00tok/s]")
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
    assert log.error_summary() == "boom"
    assert is_bar_line("scoring: 12%|#   | 3/25 [00:01<01:09, 2.50s/block]")
    assert not is_bar_line("wrote run 't1' under /r: 60 pairs")


def test_error_summary_from_a_traceback():
    log = LogBuffer()
    log.feed(
        'Traceback (most recent call last):\n  File "x.py", line 1\n    boom()\nOSError: [Errno 28] No space left on device\n'
    )
    assert log.error_summary() == "OSError: [Errno 28] No space left on device"


def test_one_status_model_is_written_read_and_checked() -> None:
    """status.json has one model: what the worker writes is what the queue parses."""
    import contract.files as files
    from contract.files import JobFileError

    assert files.JobStatus is JobStatus and not hasattr(files, "StatusFile")
    status = JobStatus("running", worker="w1", progress={"tokens_done": 5, "stage": "extract"})
    status.state = "succeeded"  # the worker updates it in place
    again = JobStatus.from_dict(json.loads(json.dumps(status.to_dict())))
    assert again == status and again.progress == {"tokens_done": 5, "stage": "extract"}
    with pytest.raises(JobFileError, match="tokens_done"):
        JobStatus.from_dict({"state": "running", "progress": {"tokens_done": "many"}})
    with pytest.raises(JobFileError, match="heartbeat_at"):
        JobStatus.from_dict({"state": "running", "heartbeat_at": 12345})
