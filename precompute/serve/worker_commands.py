"""The ``worker`` and ``jobs`` subcommands (neither imports torch).

* ``python -m precompute worker --root ROOT``: serve the recompute queue of a
  results root (see ``precompute.serve.worker``).
* ``python -m precompute jobs list|submit|cancel|log --root ROOT``: the same
  queue from a shell (``submit`` validates exactly like the app's form).

Their settings are ``contract.settings.WorkerSettings`` and ``JobsSettings``;
``precompute.cli`` validates them and calls these handlers.
"""

from __future__ import annotations

import json
import signal
import sys

from contract.settings import JobsSettings, WorkerSettings


def _root(root: str | None) -> str:
    from bilingual_core import results_root_from_env

    return root or results_root_from_env()


def worker_command(settings: WorkerSettings) -> int:
    """``python -m precompute worker``: run queued jobs, one at a time, until interrupted
    (or, with ``--once``, until the queue is empty)."""
    from contract.queue import JobQueue
    from precompute.serve.worker import Worker, WorkerConfig

    root = _root(settings.root)
    config = WorkerConfig(
        poll_seconds=settings.poll_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        stale_after_seconds=settings.stale_after,
        push_to=tuple(settings.push_to),
        work_dir=settings.work_dir,
        corpus_dirs=tuple(settings.corpus_dir) if settings.corpus_dir else None,
        model_dirs=tuple(settings.model_dir) if settings.model_dir else None,
        executor=settings.executor_values(),
    )
    worker = Worker(JobQueue(root), config)
    if root.startswith("hf://") and settings.heartbeat_seconds < 30:
        print(
            "note: on an hf:// root every status update is a commit; consider --heartbeat-seconds 30 "
            "or a local/S3 queue with --push-to hf://...",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, _interrupt)
    worker.clean_temporaries()
    gpus = ", ".join(worker.gpus) or "none detected"
    print(f"worker {worker.worker_id} serving {root} (GPUs: {gpus})", file=sys.stderr)
    if settings.once:
        while worker.run_once():
            pass
    else:
        worker.run_forever()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def jobs_command(settings: JobsSettings) -> int:
    """``python -m precompute jobs list|submit|cancel|log``."""
    from contract.queue import JobQueue
    from contract.request import validate_request

    queue = JobQueue(_root(settings.root))
    if settings.action == "list":
        for job in queue.jobs():
            progress = job.status.progress.get("tokens_done")
            extra = f" {progress:,} tokens" if progress else ""
            print(
                f"{job.id}  {job.state:<9}  {job.request.run_id}  {job.request.describe()}{extra}"
                + (f"  ({job.status.error})" if job.status.error else "")
            )
        return 0
    if settings.action == "submit":
        request = validate_request(
            {
                "preset": settings.preset,
                "run_id": settings.run_id,
                "overrides": settings.override_values(),
                "overwrite": settings.overwrite,
                "publish": not settings.no_publish,
                "requested_by": settings.by,
            }
        )
        queue.submit(request)
        print(json.dumps(request.to_json_dict(), indent=1))
        return 0
    if not settings.job_id:
        raise ValueError(f"jobs {settings.action} needs a job id")
    if settings.action == "cancel":
        job = queue.cancel(settings.job_id, settings.by)
        print(f"{job.id}: {job.state} (cancel requested)")
        return 0
    print(queue.log_tail(settings.job_id, max_lines=200))
    return 0
