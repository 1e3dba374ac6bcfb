"""``python -m precompute worker``: run queued recompute jobs, one at a time.

The worker runs on the GPU host, next to (or sharing) the results root the
app reads. Each pass it

1. writes its own heartbeat (host, GPUs seen by ``nvidia-smi``, current job);
2. marks jobs whose worker stopped sending heartbeats as failed, saying so
   (their run was never committed: the run command writes atomically);
3. claims the oldest queued job (an exclusive claim file: two workers never
   run the same job) and runs it as a subprocess,
   ``[python, -m, precompute, run, --config, <tmp>/request.json]``, no shell:
   the file is the job's validated settings (``contract.settings.RunSettings``)
   with the fields the worker decides added (``out``, ``progress_jsonl``, the
   worker's executor settings), read back by the same model (``sweep`` instead
   of ``run`` for a job of kind ``sweep``: one run per layer, in this process, so
   the worker's executor settings do not apply to it);
4. while it runs: streams the output to ``log.txt``, follows the command's
   machine-readable progress (``--progress-jsonl``, a temporary file) into
   ``status.json`` (stage, tokens done, tokens/s, ETA) with a heartbeat, and
   stops the subprocess when a cancel is requested (SIGINT first, so the run
   command removes its temporary files; SIGKILL if it does not stop);
5. on success, publishes the run when the results root is not a local
   directory (the run is computed in ``--work-dir`` and copied there) and
   to every ``--push-to`` root.

Whatever goes wrong (a crash of the run command, a full disk, a killed
subprocess) ends as ``failed`` with the reason. The run command only ever
moves a complete run into place, but it commits the run before its later
passes (logits, validation): a job stopped after that commit says the new run
is published (``what_was_written``), one stopped before says the previous run
is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bilingual_core import Run, RunFormatError
from bilingual_core.storage import clean_stale_temporaries, is_local, join, redact_url
from contract.config import BUNDLED_CORPUS, cache_root
from contract.queue import TERMINAL, Job, JobQueue, JobStatus, age_seconds, utc_now
from contract.request import JobRequest
from precompute.common.progress_log import LogBuffer, ProgressFile
from precompute.publishing.publish import publish_run

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROGRAM = (sys.executable, "-m", "precompute")


@dataclass
class WorkerConfig:
    """How a worker polls, reports and runs jobs."""

    poll_seconds: float = 10.0
    """Pause between looks at the queue when it is empty."""
    heartbeat_seconds: float = 2.0
    """How often status.json, log.txt and the cancel check are refreshed while a job runs."""
    stale_after_seconds: float = 120.0
    """A running job whose heartbeat is older than this is declared dead (its worker stopped)."""
    stop_grace_seconds: float = 15.0
    """After SIGINT, wait this long for the run command to exit before killing it."""
    claim_settle_seconds: float | None = None
    """Wait before reading a claim back (None: 0 on a local disk, 2 s on object stores)."""
    push_to: tuple[str, ...] = ()
    """Results roots every finished run (of a job with ``publish``) is copied to."""
    work_dir: str | None = None
    """Local results root the run command writes into when the queue's root is remote."""
    program: tuple[str, ...] = DEFAULT_PROGRAM
    """Command that is ``python -m precompute`` (tests substitute a stand-in)."""
    log_lines: int = 2000
    """Lines of output kept in log.txt (the last ones)."""
    executor: dict[str, Any] = field(default_factory=dict)
    """Executor settings added to every run job's settings (``{"executor": "ray",
    "workers": 4}``; ``contract.settings.ExecutorSettings``)."""
    corpus_dirs: tuple[str, ...] | None = None
    """Directories a job's ``corpus_file`` may be in (None: the results root's ``_corpora``
    folder and the bundled ``data/``)."""
    model_dirs: tuple[str, ...] | None = None
    """Directories a job's ``model_path`` and ``sae_path`` may be in (None: the results
    root's ``_models`` folder and the cache of built local models)."""


NOT_WRITTEN = "the run was not written (the previous run, if any, is unchanged)"
CORPORA_DIR = "_corpora"
MODELS_DIR = "_models"
PATH_SETTINGS = {"corpus_file": "corpus", "model_path": "model", "sae_path": "model"}
"""Job overrides that name a path on this host, and which allowed directories they may use."""


def resolve_job_path(value: str) -> str:
    """A job's path as the run command opens it (relative paths from the repository), symlinks resolved."""
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return os.path.realpath(path)


def inside(path: str, folders: tuple[str, ...]) -> bool:
    """``path`` (resolved) is one of ``folders`` (resolved) or below one."""
    for folder in folders:
        base = os.path.realpath(os.path.expanduser(folder))
        if path == base or path.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


@dataclass
class Worker:
    """One worker process serving the queue of one results root."""

    queue: JobQueue
    config: WorkerConfig = field(default_factory=WorkerConfig)
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )
    host: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        self.current: str | None = None
        self.process: subprocess.Popen | None = None
        """The run command of the current job (None between jobs)."""
        self.gpus = detect_gpus()
        self.stopping = False
        self._before: tuple[int, int, int] | None = None
        """``run_stamp`` of the current job's run before its command started."""

    # ----------------------------------------------------------- loop ---

    def run_forever(self) -> None:
        while not self.stopping:
            if not self.run_once():
                time.sleep(self.config.poll_seconds)

    def run_once(self) -> bool:
        """Reap stale jobs, then run the oldest queued job; False when there was none."""
        self.beat()
        jobs = self._all_jobs()
        self.reap_stale(jobs)
        self.fail_malformed(jobs)
        for job in self.queue.queued():
            settle = self.config.claim_settle_seconds
            if settle is None:
                settle = 0.0 if is_local(self.queue.fs) else 2.0
            if self.queue.claim(job.id, self.worker_id, self.host, settle):
                self.run_job(job)
                return True
        return False

    def beat(self) -> None:
        self.queue.worker_heartbeat(
            self.worker_id,
            {
                "host": self.host,
                "pid": os.getpid(),
                "gpus": self.gpus,
                "job": self.current,
                "push_to": [redact_url(url) for url in self.config.push_to],
                "stale_after_seconds": self.config.stale_after_seconds,
            },
        )

    def _all_jobs(self) -> list[Job]:
        return [job for job in map(self.queue.get, self.queue.job_ids()) if job is not None]

    def reap_stale(self, jobs: list[Job] | None = None) -> list[str]:
        """Mark running jobs without a recent heartbeat as failed; their ids.

        ``jobs``: the queue's jobs as just read (default: read them now)."""
        reaped = []
        for job in self._all_jobs() if jobs is None else jobs:
            job_id = job.id
            if job.state != "running" or job.status.worker == self.worker_id:
                continue
            age = age_seconds(job.status.heartbeat_at or job.status.claimed_at)
            if age is None or age <= self.config.stale_after_seconds:
                continue
            status = job.status
            status.state = "failed"
            status.finished_at = utc_now()
            status.error = (
                f"worker {status.worker} on {status.host} stopped sending heartbeats "
                f"(last {age:.0f} s ago; killed or lost). Its run was not committed and "
                "previous runs are intact; submit the job again to redo it (resume continues "
                "from the last staged chunk)."
            )
            self.queue.write_status(job_id, status)
            reaped.append(job_id)
        return reaped

    def clean_temporaries(self) -> list[str]:
        """Remove temporaries that killed runs left in the local results root (stale and
        unlocked only: see ``clean_stale_temporaries``); their names."""
        try:
            root = self.out_root()
        except ValueError:
            return []
        removed = clean_stale_temporaries(root)
        if removed:
            print(
                f"worker: removed stale temporaries of killed runs: {', '.join(removed)}",
                file=sys.stderr,
            )
        return removed

    def fail_malformed(self, jobs: list[Job] | None = None) -> list[str]:
        """Record jobs whose files are malformed as failed, with the reason; their ids.

        Such a job is never run; saying so in its status.json (and this log)
        once is all, and the queue goes on with the next job."""
        failed = []
        for job in self._all_jobs() if jobs is None else jobs:
            job_id = job.id
            if job.problem is None:
                continue
            try:
                written = self.queue.record_problem(job)
            except Exception as exc:  # an unwritable root: the next pass tries again
                print(f"worker: could not record malformed job {job_id}: {exc}", file=sys.stderr)
                continue
            if written:
                print(f"worker: job {job_id} failed: {job.problem}", file=sys.stderr)
                failed.append(job_id)
        return failed

    # ------------------------------------------------------------ job ---

    def run_job(self, job: Job) -> JobStatus:
        """Run one claimed job to a terminal state (never raises for job failures)."""
        self.current = job.id
        status = JobStatus(
            "running",
            worker=self.worker_id,
            host=self.host,
            claimed_at=utc_now(),
            started_at=utc_now(),
            heartbeat_at=utc_now(),
            heartbeat_seconds=self.config.heartbeat_seconds,
        )
        runner = None
        try:
            self.queue.write_status(job.id, status)
            cancel = self.queue.cancel_requested(job.id)
            if cancel is not None:
                return self._finish(
                    job.id,
                    status,
                    "cancelled",
                    f"cancelled by {cancel.get('by')} before it started",
                )
            problem = self._precheck(job.request)
            if problem:
                return self._finish(job.id, status, "failed", problem)
            self._before = self.run_stamp(job.request.run_id)
            runner = _Subprocess(
                [*self.config.program, job.request.command],
                self.run_settings(job.request),
                self.config.log_lines,
            )
            self.process = runner.proc
            outcome = self._watch(job, status, runner)
            if outcome is not None:
                return outcome
            return self._after_success(job.request, status, runner)
        except (
            Exception
        ) as exc:  # a full disk, an unreachable store, a bug: the job fails, the worker goes on
            if runner is not None:
                runner.stop(self.config.stop_grace_seconds)
            message = f"worker error: {type(exc).__name__}: {exc}"
            try:
                if runner is not None:
                    self.queue.write_log(job.id, runner.log.text() + f"\n{message}\n")
            except Exception:
                pass
            return self._finish(job.id, status, "failed", message)
        except KeyboardInterrupt:  # the worker itself is being stopped (Ctrl-C, SIGTERM)
            if runner is not None:
                runner.stop(self.config.stop_grace_seconds)
            self._finish(
                job.id,
                status,
                "failed",
                f"worker {self.worker_id} was stopped while the job ran; "
                f"{self.what_was_written(job.request, status)}; submit it again to redo it",
            )
            raise
        finally:
            if runner is not None:
                runner.cleanup()
            self.current = None
            self.process = None

    def run_settings(self, request: JobRequest) -> dict[str, Any]:
        """The settings the job's command runs with (its ``--config`` file, less
        ``progress_jsonl`` which the runner adds): the request's, validated, with the
        results root and, for a run, this worker's executor settings."""
        executor = self.config.executor if request.kind == "run" else {}
        return request.settings(out=self.out_root(), **executor)

    def out_root(self) -> str:
        """The local results root the run command writes into."""
        if is_local(self.queue.fs):
            return os.path.abspath(self.queue.root)
        if not self.config.work_dir:
            raise ValueError(
                f"the results root {self.queue.url} is not a local directory: start the worker "
                "with --work-dir DIR (a local directory the runs are computed in, then published)"
            )
        return os.path.abspath(self.config.work_dir)

    def _precheck(self, request: JobRequest) -> str | None:
        """Refuse early what would only fail after the extraction."""
        fs = self.queue.fs
        for run_id in request.run_ids if not request.overwrite else ():
            if fs.exists(join(self.queue.root, run_id)):
                return (
                    f"run {run_id!r} already exists under {self.queue.url}; submit with "
                    "'overwrite' to replace it, or choose another run id"
                )
        self.out_root()
        return self.path_problem(request)

    def allowed_dirs(self, kind: str) -> tuple[str, ...]:
        """The directories jobs may read ``kind`` (``corpus`` or ``model``) files from."""
        if kind == "corpus":
            if self.config.corpus_dirs is not None:
                return self.config.corpus_dirs
            return (os.path.join(self.out_root(), CORPORA_DIR), str(BUNDLED_CORPUS.parent))
        if self.config.model_dirs is not None:
            return self.config.model_dirs
        return (os.path.join(self.out_root(), MODELS_DIR), str(cache_root()))

    def path_problem(self, request: JobRequest) -> str | None:
        """Why a path the job names may not be read here (None: every one is allowed).

        Paths are resolved first (``~``, relative to the repository, symlinks),
        so a link inside an allowed directory to a file elsewhere is refused.
        The message names neither the allowed directories nor anything of the
        file: it is shown to every visitor of ``/recompute``."""
        paths = [(name, request.overrides.get(name)) for name in PATH_SETTINGS]
        if request.sae_pattern:  # a sweep's SAE directories, one per layer
            paths += [
                ("sae_path", request.sae_pattern.replace("{layer}", str(layer)))
                for layer in request.layers
            ]
        for name, value in paths:
            kind = PATH_SETTINGS[name]
            if value is None:
                continue
            if not inside(resolve_job_path(str(value)), self.allowed_dirs(kind)):
                flag = "--corpus-dir" if kind == "corpus" else "--model-dir"
                folder = CORPORA_DIR if kind == "corpus" else MODELS_DIR
                print(
                    f"worker: job {request.id}: {name}={value} resolves to {resolve_job_path(str(value))}, "
                    f"outside {list(self.allowed_dirs(kind))}",
                    file=sys.stderr,
                )
                return (
                    f"{name}: this worker reads {kind} files only from the directories its "
                    f"operator allows (the results root's {folder}/ folder by default; more with "
                    f"the worker's {flag} option); the job was not run"
                )
        return None

    def _watch(self, job: Job, status: JobStatus, runner: _Subprocess) -> JobStatus | None:
        """Heartbeat until the subprocess ends; a terminal status if it did not succeed."""
        cancelled_by: str | None = None
        while True:
            rc = runner.wait(self.config.heartbeat_seconds)
            self._report(job.id, status, runner)
            if rc is not None:
                break
            cancel = self.queue.cancel_requested(job.id)
            if cancel is not None and cancelled_by is None:
                cancelled_by = str(cancel.get("by", "a maintainer"))
                runner.stop(self.config.stop_grace_seconds)
                continue
            current = self.queue.read_status(job.id)
            if current is not None and current.state in TERMINAL:
                # Someone (another worker's reaper) gave up on this job: stop, keep their verdict.
                runner.stop(self.config.stop_grace_seconds)
                return current
        status.returncode = runner.returncode
        if cancelled_by is not None:
            return self._finish(
                job.id,
                status,
                "cancelled",
                f"cancelled by {cancelled_by}; {self.what_was_written(job.request, status)}",
            )
        if runner.returncode != 0:
            error = describe_exit(runner.returncode, runner.log)
            written = self.what_was_written(job.request, status)
            if written != NOT_WRITTEN:  # a failure after the commit: say what is published
                error = f"{error} ({written})"
            return self._finish(job.id, status, "failed", error)
        return None

    def run_stamp(self, run_id: str) -> tuple[int, int, int] | None:
        """Identifies the committed run ``run_id`` in the local results root (its
        manifest's inode, time and size: a commit moves a new directory into
        place); None when there is none."""
        try:
            info = os.stat(os.path.join(self.out_root(), run_id, "manifest.json"))
        except (OSError, ValueError):
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def what_was_written(self, request: JobRequest, status: JobStatus) -> str:
        """What a job that did not finish left published, in words: the run command
        commits the run before its later passes (logits, validation), so a cancel
        or a crash may come after the run was replaced."""
        after = self.run_stamp(request.run_id)
        if after is None or after == self._before:
            return NOT_WRITTEN
        try:
            complete = Run.open(join(self.out_root(), request.run_id)).is_complete
        except (RunFormatError, OSError, ValueError):
            complete = False
        if not complete:
            return "the run directory changed but is not complete"
        if is_local(self.queue.fs):
            status.run_location = join(self.out_root(), request.run_id)
            where = "is published"
        else:
            where = f"is in the worker's work directory, not published to {self.queue.url}"
        return (
            f"the run {request.run_id!r} was already written and {where} (it replaced any "
            "previous run); passes after that commit may be missing from it"
        )

    def _report(self, job_id: str, status: JobStatus, runner: _Subprocess) -> None:
        status.heartbeat_at = utc_now()
        status.progress = {**runner.progress(), "updated_at": status.heartbeat_at}
        self.queue.write_log(job_id, runner.log_text())
        self.queue.write_status(job_id, status)
        if self.config.heartbeat_seconds < self.config.poll_seconds:
            self.beat()

    def _after_success(
        self, request: JobRequest, status: JobStatus, runner: _Subprocess
    ) -> JobStatus:
        locals_ = [join(self.out_root(), run_id) for run_id in request.run_ids]
        for local in locals_:
            if not Run.open(local).is_complete:
                raise RunFormatError(
                    "manifest.json",
                    "status",
                    f"the {request.command} command exited 0 but {local} is not complete",
                )
        if is_local(self.queue.fs):
            status.run_location = locals_[0]
        else:
            status.run_location = self._publish(request, locals_, self.queue.url, request.overwrite)
            status.published.append(redact_url(self.queue.url))
        if request.publish:
            for url in self.config.push_to:
                try:
                    self._publish(request, locals_, url, True)
                except Exception as exc:
                    return self._finish(
                        request.id,
                        status,
                        "failed",
                        f"the run is complete at {status.run_location}, but publishing it to "
                        f"{url} failed: {type(exc).__name__}: {exc}",
                    )
                status.published.append(redact_url(url))
        return self._finish(request.id, status, "succeeded", None)

    def _publish(self, request: JobRequest, locals_: list[str], url: str, overwrite: bool) -> str:
        """Copy the job's runs (and a sweep's manifest folder) to ``url``; the first run's
        location there."""
        where = [publish_run(local, url, overwrite=overwrite) for local in locals_]
        if request.kind == "sweep":
            from precompute.sweep.layers import publish_sweep_files

            publish_sweep_files(self.out_root(), request.run_id, url)
        return where[0]

    def _finish(self, job_id: str, status: JobStatus, state: str, error: str | None) -> JobStatus:
        status.state = state  # type: ignore[assignment]
        status.error = redact_url(error) if error else error
        status.run_location = redact_url(status.run_location) if status.run_location else None
        status.finished_at = status.heartbeat_at = utc_now()
        try:
            self.queue.write_status(job_id, status)
        except Exception as exc:  # nothing more can be written there; say it here
            print(f"worker: could not record job {job_id} as {state}: {exc}", file=sys.stderr)
        print(
            f"worker: job {job_id} {state}" + (f": {status.error}" if error else ""),
            file=sys.stderr,
        )
        return status


def describe_exit(returncode: int | None, log: LogBuffer) -> str:
    """Why a run command failed, from its exit status and its last output."""
    summary = log.error_summary()
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        reason = f"the run command was killed by {name}"
        if name == "SIGKILL":
            reason += " (out of memory, or killed by hand)"
        return reason + (f"; last output: {summary}" if summary else "")
    return summary or f"the run command exited with status {returncode}"


def detect_gpus() -> list[str]:
    """GPU names reported by ``nvidia-smi`` (empty without NVIDIA GPUs); never imports torch."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the worker dies, so a killed worker leaves no orphan run.

    (Linux sends it when the thread that started the child ends; ``run_job``
    waits for the child in that same thread.)"""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


SETTINGS_FILE = "request.json"
"""Name of the settings file the worker hands the command (``--config``)."""


class _Subprocess:
    """The run command, its output collected by a reader thread.

    ``command``: ``[python, -m, precompute, run]`` (or ``sweep``); ``settings``: the
    validated settings, written to a private temporary ``request.json`` that the
    command reads with ``--config`` (with ``progress_jsonl`` added: progress comes
    from the command's JSON lines, not from its rendered bars)."""

    def __init__(self, command: list[str], settings: dict[str, Any], log_lines: int) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "1"}
        self.log = LogBuffer(max_lines=log_lines)
        self.progress_dir = tempfile.mkdtemp(prefix="bilingual-job-progress-")
        self.progress_file = ProgressFile(os.path.join(self.progress_dir, "progress.jsonl"))
        self.settings_path = os.path.join(self.progress_dir, SETTINGS_FILE)
        settings = {**settings, "progress_jsonl": str(self.progress_file.path)}
        with open(self.settings_path, "w", encoding="utf-8") as handle:
            json.dump(settings, handle, indent=1)
        shown = ["python", *command[1:]] if command[0] == sys.executable else command
        # The log is public: name the results root, not where it is on this host.
        public = {
            k: "<results root>" if k == "out" else v
            for k, v in settings.items()
            if k != "progress_jsonl"
        }
        self.log.feed(
            f"$ {' '.join(shown)} --config {SETTINGS_FILE}\n"
            f"{SETTINGS_FILE}: {json.dumps(public, separators=(', ', ': '))}\n"
        )
        argv = [*command, "--config", self.settings_path]
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.reader = threading.Thread(target=self._read, name="run-output", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stream = self.proc.stdout
        assert stream is not None
        while True:
            chunk = stream.read1(65536)
            if not chunk:
                break
            with self.lock:
                self.log.feed(decoder.decode(chunk))
        with self.lock:
            self.log.feed(decoder.decode(b"", final=True))

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def wait(self, seconds: float) -> int | None:
        """Wait up to ``seconds`` for the exit; the return code, or None if still running."""
        try:
            rc = self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
        self.reader.join(timeout=10)
        return rc

    def log_text(self) -> str:
        with self.lock:
            return self.log.text()

    def progress(self) -> dict[str, Any]:
        """The latest progress records: stage, and tokens done / total / per second / ETA."""
        return self.progress_file.read()

    def cleanup(self) -> None:
        shutil.rmtree(self.progress_dir, ignore_errors=True)

    def stop(self, grace: float) -> None:
        """SIGINT to the process group (the run command cleans up), then SIGKILL."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.reader.join(timeout=10)
