"""The ``worker`` and ``jobs`` subcommands (neither imports torch).

* ``python -m precompute worker --root ROOT``: serve the recompute queue of a
  results root (see ``precompute.serve.worker``).
* ``python -m precompute jobs list|submit|cancel|log --root ROOT``: the same
  queue from a shell (``submit`` validates exactly like the app's form).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable

from contract.settings import JOB_OVERRIDES, ExecutorSettings, RunSettings, choices
from precompute.cluster.executor_args import executor_values
from precompute.commands import add_settings

PRESET = RunSettings.model_fields["preset"]
Handler = Callable[[argparse.Namespace], int]  # TODO(18a): the legacy builders' handlers

_ROOT_HELP = "results root holding the _jobs queue (path or fsspec URL; default $BILINGUAL_RESULTS_DIR or results/)"


def _root(args: argparse.Namespace) -> str:
    from bilingual_core import results_root_from_env

    return args.root or results_root_from_env()


def _worker_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--root", help=_ROOT_HELP)
    p.add_argument("--once", action="store_true", help="run the jobs queued now, then exit")
    p.add_argument(
        "--poll-seconds", type=float, default=10.0, help="pause between looks at an empty queue"
    )
    p.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=2.0,
        help="how often progress, log and cancel requests are synced while a job runs",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=120.0,
        help="seconds without a heartbeat after which another worker's running job is marked failed",
    )
    p.add_argument(
        "--push-to",
        action="append",
        default=[],
        metavar="URL",
        help="also publish every finished run here (repeatable; e.g. hf://datasets/<user>/<repo>)",
    )
    p.add_argument(
        "--work-dir", help="local directory runs are computed in when --root is not local"
    )
    p.add_argument(
        "--corpus-dir",
        action="append",
        metavar="DIR",
        help="a directory jobs may read corpus_file from (repeatable; default: the results "
        "root's _corpora/ folder and the bundled data/)",
    )
    p.add_argument(
        "--model-dir",
        action="append",
        metavar="DIR",
        help="a directory jobs may read model_path and sae_path from (repeatable; default: "
        "the results root's _models/ folder and the cache of built local models)",
    )

    add_settings(p, ExecutorSettings)  # passed on to every run command

    def run(args: argparse.Namespace) -> int:
        from contract.queue import JobQueue
        from precompute.serve.worker import Worker, WorkerConfig

        config = WorkerConfig(
            poll_seconds=args.poll_seconds,
            heartbeat_seconds=args.heartbeat_seconds,
            stale_after_seconds=args.stale_after,
            push_to=tuple(args.push_to),
            work_dir=args.work_dir,
            corpus_dirs=tuple(args.corpus_dir) if args.corpus_dir else None,
            model_dirs=tuple(args.model_dir) if args.model_dir else None,
            executor=executor_values(args),
        )
        worker = Worker(JobQueue(_root(args)), config)
        if _root(args).startswith("hf://") and args.heartbeat_seconds < 30:
            print(
                "note: on an hf:// root every status update is a commit; consider --heartbeat-seconds 30 "
                "or a local/S3 queue with --push-to hf://...",
                file=sys.stderr,
            )
        signal.signal(signal.SIGTERM, _interrupt)
        worker.clean_temporaries()
        gpus = ", ".join(worker.gpus) or "none detected"
        print(f"worker {worker.worker_id} serving {_root(args)} (GPUs: {gpus})", file=sys.stderr)
        if args.once:
            while worker.run_once():
                pass
        else:
            worker.run_forever()
        return 0

    return run


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _jobs_args(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("action", choices=["list", "submit", "cancel", "log"])
    p.add_argument("job_id", nargs="?", help="job id (cancel, log)")
    p.add_argument("--root", help=_ROOT_HELP)
    p.add_argument(
        "--preset", choices=choices(PRESET.annotation), help=f"submit: {PRESET.description}"
    )
    p.add_argument("--run-id", help="submit: run directory name (default <preset>-<job id>)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="submit: an override, e.g. sample_size=200 or languages=en,es (repeatable; "
        f"one of: {', '.join(JOB_OVERRIDES)})",
    )
    p.add_argument("--overwrite", action="store_true", help="submit: replace an existing run")
    p.add_argument(
        "--no-publish",
        action="store_true",
        help="submit: do not push to the worker's --push-to roots",
    )
    p.add_argument("--by", default="command line", help="who is asking (recorded in the job)")

    def run(args: argparse.Namespace) -> int:
        from contract.queue import JobQueue
        from contract.request import validate_request

        queue = JobQueue(_root(args))
        if args.action == "list":
            for job in queue.jobs():
                progress = job.status.progress.get("tokens_done")
                extra = f" {progress:,} tokens" if progress else ""
                print(
                    f"{job.id}  {job.state:<9}  {job.request.run_id}  {job.request.describe()}{extra}"
                    + (f"  ({job.status.error})" if job.status.error else "")
                )
            return 0
        if args.action == "submit":
            overrides = {}
            for item in args.set:
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
                overrides[key.strip()] = value
            request = validate_request(
                {
                    "preset": args.preset,
                    "run_id": args.run_id,
                    "overrides": overrides,
                    "overwrite": args.overwrite,
                    "publish": not args.no_publish,
                    "requested_by": args.by,
                }
            )
            queue.submit(request)
            print(json.dumps(request.to_json_dict(), indent=1))
            return 0
        if not args.job_id:
            raise ValueError(f"jobs {args.action} needs a job id")
        if args.action == "cancel":
            job = queue.cancel(args.job_id, args.by)
            print(f"{job.id}: {job.state} (cancel requested)")
            return 0
        print(queue.log_tail(args.job_id, max_lines=200))
        return 0

    return run
