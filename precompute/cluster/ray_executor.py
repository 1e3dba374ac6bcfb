"""``python -m precompute run --executor ray``: the shards of one run on the actors of a Ray cluster.

The driver (the ``run`` command; it imports neither torch nor a model)

1. refuses early what would fail late (an existing run without
   ``--overwrite``, staged chunks without ``--resume``, a cluster without the
   GPUs asked for), loads the corpus sample and cuts it into shards **at chunk
   boundaries** (``--chunk-pairs``): every chunk, and so every batch, holds the
   same sentences as in a single-process run, so the merged run is the same;
2. starts ``--workers`` actors (``--gpus-per-worker`` GPUs each, or a share of
   the CPUs); each loads the corpus, the model and the SAE once and extracts
   the shards it is handed with the loop ``--shard i --num-shards n`` runs
   (``pipeline.stage_pair_range``), into a staging location every worker
   reaches (``precompute.cluster.staging_location``);
3. hands out the shards, polls the actors for progress (one tqdm bar over all
   of them, one log line per staged chunk) and handles faults: a worker that
   dies is replaced and its shard resumes after the last chunk it staged; a
   shard that raises is retried; after ``max_attempts`` the run fails with
   that shard's error, and a user-fixable error (``PrecomputeError``, e.g. a
   bad corpus) fails it at once. Nothing is merged then, so a previous run
   with the same id is untouched; the finished chunks stay for ``--resume``;
4. merges and scores the shards with ``merge.finalize`` (committed atomically,
   as a local run is) and removes the staging.

Ray is optional (``requirements-cluster.txt``); only this module imports it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bilingual_core import Manifest
from bilingual_core.manifest import check_run_id
from contract.config import RunConfig
from precompute.cluster.staging_location import StagingLocation, is_url
from precompute.common.errors import PrecomputeError, StagingError
from precompute.extract.staging import shard_dir_name

FAULT_ENV = "BILINGUAL_RAY_FAULT"
"""Fault injection for tests: ``exit:S[:K]`` makes the worker process exit during its
first attempt at shard S once K (default 1) chunks are staged; ``fail:S`` makes every
attempt at shard S raise. Several, comma-separated."""
FORWARDED_ENV = ("BILINGUAL_CACHE_DIR", FAULT_ENV)
"""Variables of the driver's environment every worker gets (a remote node's own
environment holds the rest: ``HF_TOKEN``, ``HF_HOME``)."""
ACTOR_PREFIX = "precompute:"
SHARDS_PER_WORKER = 2
POLL_SECONDS = 0.5


class ShardFailedError(PrecomputeError):
    """A shard failed on every attempt (or with an error no retry can fix)."""


@dataclass(frozen=True)
class RayOptions:
    """How the run is spread over the cluster."""

    address: str | None = None
    """Ray cluster address (``auto``, ``ray://host:10001``, ``host:6379``); None starts a local cluster."""
    workers: int = 1
    """Actors extracting at once; each loads the model once."""
    gpus_per_worker: float | None = None
    """GPUs per actor; None: 1 when the cluster has GPUs and the device is not ``cpu``, else 0."""
    cpus_per_worker: float | None = None
    """CPUs per actor; None: 1, or an equal share when the cluster has fewer CPUs than workers."""
    num_shards: int | None = None
    """Shards the corpus is cut into; None: ``SHARDS_PER_WORKER`` per worker, at most one per chunk
    (a resumed run keeps the staged layout)."""
    max_attempts: int = 3
    """Attempts per shard (a dead worker's included) before the run fails."""
    models_factory: Callable[[RunConfig, str], Any] | None = None
    """``(config, device) -> LoadedModels`` run by each worker instead of ``models.load_models``
    (a picklable callable: benchmarks build a random Gemma-shaped model this way)."""
    keep_workers: bool = False
    """Leave the (idle, healthy) workers running after the run, for the next run of this
    process with the same config (tests, benchmarks, notebooks); ``stop_warm_workers()``
    stops them. Needs the cluster to outlive the run (``ray.init`` done by the caller)."""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_attempts < 1:
            raise ValueError("--workers and max_attempts must be >= 1")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ValueError("--gpus-per-worker must be >= 0")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``num_shards``: pairs ``lo..hi-1`` (chunk-aligned)."""

    index: int
    num_shards: int
    lo: int
    hi: int

    @property
    def name(self) -> str:
        return f"shard {self.index} of {self.num_shards} (pairs {self.lo}-{self.hi - 1})"


def plan_shards(n_pairs: int, chunk_pairs: int, num_shards: int) -> list[ShardSpec]:
    """Cut pairs ``0..n_pairs-1`` into ``num_shards`` contiguous shards of whole chunks
    (chunk ``c`` = pairs ``c*chunk_pairs ..``, as in a single-process run)."""
    n_chunks = -(-n_pairs // chunk_pairs)
    if not 1 <= num_shards <= n_chunks:
        raise PrecomputeError(
            f"cannot cut {n_pairs} pairs in chunks of {chunk_pairs} ({n_chunks} chunk(s)) "
            f"into {num_shards} shards; lower --chunk-pairs or use fewer shards"
        )
    bounds = [min(n_chunks * i // num_shards * chunk_pairs, n_pairs) for i in range(num_shards + 1)]
    return [ShardSpec(i, num_shards, bounds[i], bounds[i + 1]) for i in range(num_shards)]


def parse_faults(text: str | None) -> dict[int, tuple[str, int]]:
    """``{shard: (kind, after_chunks)}`` from ``$BILINGUAL_RAY_FAULT``."""
    faults: dict[int, tuple[str, int]] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        kind, _, rest = item.strip().partition(":")
        shard, _, after = rest.partition(":")
        if kind not in ("exit", "fail") or not shard.isdigit():
            raise ValueError(
                f"${FAULT_ENV}: cannot read {item!r} (expected exit:SHARD[:CHUNKS] or fail:SHARD)"
            )
        faults[int(shard)] = (kind, int(after or 1))
    return faults


# ----------------------------------------------------------------- actor ---


@dataclass(frozen=True)
class RunJob:
    """What a worker needs to know about the run a shard belongs to."""

    run_id: str
    staging: str
    workers: int
    faults: str | None = None
    """``$BILINGUAL_RAY_FAULT`` of the driver (tests)."""
    token: str = ""
    """Tells this run's progress from a warm worker's previous run's."""


class ShardWorker:
    """The body of one Ray actor: loads corpus, model and SAE once, then stages shards.

    Threaded (``max_concurrency=2``): ``poll`` answers while ``run_shard`` runs."""

    def __init__(
        self, config: RunConfig, env: dict[str, str], models_factory: Callable | None = None
    ) -> None:
        os.environ.update(env)
        self.config, self.models_factory = config, models_factory
        self.corpus = self.loaded = self.device = None
        self.events: list[dict[str, Any]] = []
        self.progress: dict[str, Any] = {}
        self.info = {"host": socket.gethostname(), "pid": os.getpid()}

    def poll(self, since: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Progress of the current shard and the events after the first ``since``."""
        return dict(self.progress), list(self.events[since:])

    def event_count(self) -> int:
        return len(self.events)

    def _event(self, kind: str, **fields: Any) -> None:
        self.events.append({"kind": kind, "time": time.time(), **fields})

    def _setup(self) -> None:
        if self.loaded is not None:
            return
        from precompute.common.corpus import load_corpus
        from precompute.common.devices import device_description, resolve_device
        from precompute.models.loading import check_access, check_sae_access, load_models

        t0 = time.perf_counter()
        self.device = resolve_device(self.config)
        if self.models_factory is None:
            check_sae_access(self.config.sae)
            check_access(self.config.model)
        self.corpus = load_corpus(self.config.corpus)
        self.loaded = (self.models_factory or load_models)(self.config, self.device)
        self.info["device"] = device_description(self.device)
        self._event("ready", seconds=round(time.perf_counter() - t0, 2), **self.info)

    def run_shard(self, job: RunJob, spec: ShardSpec, attempt: int) -> dict[str, Any]:
        """Stage shard ``spec`` of ``job`` (resuming after its staged chunks); a summary."""
        from precompute.common.tokenization import tokenize_sentences
        from precompute.extract.pipeline import shard_texts, stage_pair_range

        self.progress = {}
        kind, after = parse_faults(job.faults).get(spec.index, (None, 0))
        if kind == "fail":
            raise RuntimeError(f"injected failure of shard {spec.index} (${FAULT_ENV})")
        self._setup()
        assert self.corpus is not None and self.loaded is not None and self.device is not None
        header = {
            "run_id": job.run_id,
            "run_fingerprint": self.config.fingerprint(),
            "shard": spec.index,
            "num_shards": spec.num_shards,
            "pair_start": spec.lo,
            "pair_stop": spec.hi,
        }
        stage, mirror = StagingLocation(job.staging).open_shard(spec.index, spec.num_shards, header)
        try:
            for key, value in (
                ("n_pairs", self.corpus.n_pairs),
                ("languages", list(self.corpus.languages)),
                ("corpus", self.corpus.info),
            ):
                stage.bind(key, value)
            ex, n_langs = self.config.extraction, len(self.corpus.languages)
            lengths = tokenize_sentences(
                self.loaded.tokenizer, shard_texts(self.corpus, spec.lo, spec.hi), ex.max_tokens
            ).lengths
            chunk_tokens = [
                int(
                    lengths[
                        (a - spec.lo) * n_langs : (min(a + ex.chunk_pairs, spec.hi) - spec.lo)
                        * n_langs
                    ].sum()
                )
                for a in range(spec.lo, spec.hi, ex.chunk_pairs)
            ]
            resumed = sorted(stage.chunks_done)
            self.progress = {
                "token": job.token,
                "shard": spec.index,
                "tokens_total": sum(chunk_tokens),
                "tokens_staged": sum(chunk_tokens[i] for i in resumed),
                "n_chunks": len(chunk_tokens),
            }
            self._event(
                "start",
                shard=spec.index,
                name=spec.name,
                attempt=attempt,
                resumed_chunks=len(resumed),
                n_chunks=len(chunk_tokens),
                complete=bool(stage.state.get("complete")),
            )
            new = 0

            def on_chunk(index: int, stats: dict[str, Any]) -> None:
                nonlocal new
                if mirror is not None:
                    mirror.push_chunk(stage, index)
                new += 1
                self.progress["tokens_staged"] += chunk_tokens[index]
                self._event(
                    "chunk",
                    shard=spec.index,
                    chunk=index,
                    n_chunks=len(chunk_tokens),
                    tokens=sum(stats["n_tokens"].values()),
                    seconds=stats["seconds"],
                )
                if kind == "exit" and attempt == 1 and new >= after:
                    os._exit(17)  # the injected crash: no clean-up, like a killed process

            stage_pair_range(
                self.config,
                self.corpus,
                stage,
                self.device,
                spec.lo,
                spec.hi,
                on_chunk=on_chunk,
                models=self.loaded,
            )
            stage.state["extraction"].update(executor="ray", ray_workers=job.workers)
            stage.save()
            if mirror is not None:
                mirror.push_state()
            self._event("done", shard=spec.index, new_chunks=new, resumed_chunks=len(resumed))
            return {
                "shard": spec.index,
                "new_chunks": new,
                "resumed_chunks": len(resumed),
                "tokens": sum(chunk_tokens),
                **self.info,
            }
        finally:
            if mirror is not None:
                mirror.close()


# ---------------------------------------------------------------- driver ---


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise PrecomputeError(
            "--executor ray needs Ray: pip install -r requirements-cluster.txt"
        ) from exc
    return ray


@dataclass
class _Slot:
    """One worker position; its actor is replaced when it dies."""

    index: int
    actor: Any = None
    generation: int = 0
    shard: ShardSpec | None = None
    ref: Any = None
    seen: int = 0
    """Events of this actor already reported."""
    poll_ref: Any = None
    """The poll in flight (one at a time)."""


@dataclass
class _Report:
    """The bar over all workers and the per-worker log lines."""

    run_id: str
    workers: int
    enabled: bool
    n_pairs: int
    token: str = ""
    bar: Any = None
    staged: dict[int, int] = field(default_factory=dict)
    totals: dict[int, tuple[int, int]] = field(default_factory=dict)
    """shard -> (tokens, pairs) once a worker has tokenized it."""

    def open(self) -> None:
        """Start the bar (at the first progress, so model loading does not count against tokens/s)."""
        if self.bar is None:
            from bilingual_core.progress import bar as progress_bar

            desc = (
                f"extracting {self.run_id} (ray, {self.workers} worker{'s' * (self.workers != 1)})"
            )
            self.bar = progress_bar(None, desc, "tok", show=self.enabled, smoothing=0.1)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def update(self, spec: ShardSpec, progress: dict[str, Any]) -> None:
        if progress.get("shard") != spec.index or progress.get("token") != self.token:
            return
        self.totals[spec.index] = (int(progress["tokens_total"]), spec.hi - spec.lo)
        self.staged[spec.index] = max(
            self.staged.get(spec.index, 0), int(progress["tokens_staged"])
        )
        self.open()
        if self.bar is None:
            return
        known_tokens = sum(t for t, _ in self.totals.values())
        known_pairs = sum(p for _, p in self.totals.values())
        estimate = known_tokens + (self.n_pairs - known_pairs) * known_tokens / max(known_pairs, 1)
        self.bar.set_total(round(estimate))
        done = sum(self.staged.values())
        if done > self.bar.done:
            self.bar.update(done - self.bar.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _describe(event: dict[str, Any], slot: _Slot) -> str | None:
    who = f"ray worker {slot.index}" + (f".{slot.generation}" if slot.generation else "")
    kind = event["kind"]
    if kind == "ready":
        return (
            f"{who} ready: pid {event['pid']} on {event['host']}, {event['device']}, "
            f"corpus and model loaded in {event['seconds']:.1f} s"
        )
    if kind == "start":
        resumed = (
            f", resuming after {event['resumed_chunks']} staged chunk(s)"
            if event["resumed_chunks"]
            else ""
        )
        return f"{who} starts {event['name']}, attempt {event['attempt']}{resumed}"
    if kind == "chunk":
        rate = event["tokens"] / event["seconds"] if event["seconds"] else 0.0
        return (
            f"{who} staged chunk {event['chunk'] + 1} of {event['n_chunks']} of shard {event['shard']}: "
            f"{event['tokens']:,} tokens in {event['seconds']:.2f} s, {rate:,.0f} tokens/s"
        )
    if kind == "done":
        return f"{who} finished shard {event['shard']} ({event['new_chunks']} new chunk(s), {event['resumed_chunks']} resumed)"
    return None


class _Scheduler:
    """Hands shards to workers, replaces dead ones, retries, reports."""

    def __init__(
        self,
        ray: Any,
        make_actor: Any,
        job: RunJob,
        shards: list[ShardSpec],
        options: RayOptions,
        report: _Report,
    ) -> None:
        self.ray, self.make_actor, self.job, self.options, self.report = (
            ray,
            make_actor,
            job,
            options,
            report,
        )
        self.queue: deque[ShardSpec] = deque(shards)
        self.attempts: dict[int, int] = {s.index: 0 for s in shards}
        self.slots = [_Slot(i) for i in range(min(options.workers, len(shards)))]
        self.finished: set[int] = set()

    def actors(self, idle: bool | None = None) -> list[Any]:
        """The workers' actors (``idle``: only those with / without a shard in flight)."""
        return [
            slot.actor
            for slot in self.slots
            if slot.actor is not None and (idle is None or idle == (slot.ref is None))
        ]

    def run(self) -> None:
        for slot in self.slots:
            slot.actor = self.make_actor(slot)
        while self.queue or any(slot.ref is not None for slot in self.slots):
            for slot in self.slots:
                if slot.ref is None and self.queue:
                    spec = self.queue.popleft()
                    self.attempts[spec.index] += 1
                    slot.shard, slot.ref = (
                        spec,
                        slot.actor.run_shard.remote(self.job, spec, self.attempts[spec.index]),
                    )
            busy = [slot.ref for slot in self.slots if slot.ref is not None]
            ready, _ = self.ray.wait(busy, num_returns=len(busy), timeout=POLL_SECONDS)
            self._poll()
            for slot in self.slots:
                if slot.ref is not None and slot.ref in ready:
                    self._collect(slot)
        self._poll(wait=30.0)  # the last events (chunks staged since the previous poll)

    def _poll(self, wait: float = 0.05) -> None:
        """Ask every worker for its progress (one poll in flight each) and report what came back."""
        for slot in self.slots:
            if slot.poll_ref is None and slot.actor is not None:
                slot.poll_ref = slot.actor.poll.remote(slot.seen)
        refs = [slot.poll_ref for slot in self.slots if slot.poll_ref is not None]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=wait)
        for slot in self.slots:
            if slot.poll_ref is None or slot.poll_ref not in ready:
                continue
            ref, slot.poll_ref = slot.poll_ref, None
            try:
                progress, events = self.ray.get(ref)
            except self.ray.exceptions.RayActorError:
                continue
            slot.seen += len(events)
            for event in events:
                text = _describe(event, slot)
                if text:
                    self.report.line(text)
            if slot.shard is not None:
                self.report.update(slot.shard, progress)

    def _collect(self, slot: _Slot) -> None:
        exceptions = self.ray.exceptions
        spec, ref = slot.shard, slot.ref
        assert spec is not None
        slot.ref = None
        try:
            result = self.ray.get(ref)
        except exceptions.RayActorError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._retry(spec, f"the worker process died ({first})")
            self.report.line(f"ray worker {slot.index} died during {spec.name}; starting a new one")
            slot.generation += 1
            slot.poll_ref = None
            slot.actor = self.make_actor(slot)
            return
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, PrecomputeError):
                raise ShardFailedError(f"{spec.name} failed: {cause}") from None
            message = (
                f"{type(cause).__name__}: {cause}"
                if cause is not None
                else str(exc).strip().splitlines()[-1]
            )
            self._retry(spec, message)
            return
        self.finished.add(spec.index)
        self.report.update(
            spec,
            {
                "token": self.job.token,
                "shard": spec.index,
                "tokens_total": result["tokens"],
                "tokens_staged": result["tokens"],
            },
        )

    def _retry(self, spec: ShardSpec, error: str) -> None:
        n = self.attempts[spec.index]
        if n >= self.options.max_attempts:
            raise ShardFailedError(
                f"{spec.name} failed {n} time(s), the run is not written; last error: {error}"
            )
        self.report.line(
            f"{spec.name} failed (attempt {n} of {self.options.max_attempts}): {error}; "
            "retrying from its last staged chunk"
        )
        self.queue.appendleft(spec)


def _staging_location(
    out: str | os.PathLike[str], run_id: str, staging: str | os.PathLike[str] | None
) -> StagingLocation:
    from precompute.extract.pipeline import default_staging

    if staging is None:
        return StagingLocation(str(default_staging(out, run_id).resolve()))
    return StagingLocation(str(staging) if is_url(staging) else os.path.abspath(staging))


def _prepare_staging(
    location: StagingLocation, config: RunConfig, run_id: str, *, resume: bool, overwrite: bool
) -> int | None:
    """Deal with shards already staged (``--resume`` / ``--overwrite``); the staged
    layout's shard count when resuming it."""
    existing = location.existing_shards()
    worth = {
        name: state
        for name, state in existing.items()
        if state.get("chunks") or state.get("complete")
    }
    if not resume:
        if worth and not overwrite:
            done = sum(len(s.get("chunks", {})) for s in worth.values())
            raise StagingError(
                f"an unfinished extraction of this run is staged in {location.location} "
                f"({done} chunk(s) done): pass --resume to continue it, or --overwrite to "
                "discard it and start again"
            )
        location.remove_shards(list(existing))
        return None
    location.remove_shards([name for name in existing if name not in worth])
    counts = {state.get("num_shards") for state in worth.values()}
    for name, state in worth.items():
        if state.get("run_id") != run_id or state.get("run_fingerprint") != config.fingerprint():
            raise StagingError(
                f"cannot resume from {location.location}/{name}: it was staged for another "
                "run or config (pass --overwrite to discard it and start again)"
            )
    if len(counts) > 1:
        raise StagingError(
            f"cannot resume: {location.location} holds shards of several layouts "
            f"({sorted(counts)} shards); pass --overwrite to start again"
        )
    return counts.pop() if counts else None


def _connect(ray: Any, options: RayOptions) -> bool:
    """Connect to (or start) the cluster; True when this call started Ray and must shut it down."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"namespace": "bilingual-precompute", "log_to_driver": False}
    if options.address:
        try:
            ray.init(address=options.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise PrecomputeError(
                f"cannot join the Ray cluster at --ray-address {options.address}: {exc} "
                "(start one with 'ray start --head', or drop --ray-address to start a "
                "local one)"
            ) from exc
    else:
        ray.init(include_dashboard=False, **kwargs)
    return True


def _resources(ray: Any, options: RayOptions, config: RunConfig) -> tuple[int, float, float]:
    """``(workers, gpus, cpus)`` per worker, checked against the cluster."""
    have = ray.cluster_resources()
    n_gpus, n_cpus = float(have.get("GPU", 0)), float(have.get("CPU", 0))
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if n_gpus >= 1 and config.extraction.device != "cpu" else 0.0
    workers = options.workers
    if gpus > 0:
        if n_gpus < gpus:
            raise PrecomputeError(
                f"each worker needs {gpus:g} GPU(s) but the Ray cluster has {n_gpus:g}; "
                "pass --gpus-per-worker 0 (CPU) or use a cluster with GPUs"
            )
        fit = int(n_gpus // gpus)
        if fit < workers:
            print(
                f"note: the Ray cluster has {n_gpus:g} GPU(s), enough for {fit} of the {workers} workers "
                f"at {gpus:g} each; using {fit}",
                file=sys.stderr,
            )
            workers = fit
    cpus = options.cpus_per_worker
    if cpus is None:
        cpus = min(1.0, n_cpus / workers) if n_cpus else 0.0
    return workers, gpus, cpus


def run_with_ray(
    config: RunConfig,
    out: str | os.PathLike[str],
    run_id: str,
    options: RayOptions | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    staging: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Manifest:
    """Extract run ``run_id`` on a Ray cluster, then merge, score and commit it under ``out``."""
    from precompute.common.corpus import load_corpus
    from precompute.extract.merge import finalize
    from precompute.extract.pipeline import check_can_write

    options = options or RayOptions()
    check_run_id(run_id)
    check_can_write(out, run_id, overwrite)
    location = _staging_location(out, run_id, staging)
    staged_shards = _prepare_staging(location, config, run_id, resume=resume, overwrite=overwrite)
    corpus = load_corpus(config.corpus)
    ray = _import_ray()
    started = _connect(ray, options)
    scheduler: _Scheduler | None = None
    report: _Report | None = None
    interrupted = False
    try:
        workers, gpus, cpus = _resources(ray, options, config)
        chunk_pairs = config.extraction.chunk_pairs
        n_chunks = -(-corpus.n_pairs // chunk_pairs)
        num_shards = (
            staged_shards or options.num_shards or min(n_chunks, workers * SHARDS_PER_WORKER)
        )
        shards = plan_shards(corpus.n_pairs, chunk_pairs, num_shards)
        workers = min(workers, len(shards))
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        job = RunJob(
            run_id, location.location, workers, os.environ.get(FAULT_ENV), uuid.uuid4().hex
        )
        key = (repr(config), repr(options.models_factory), gpus)
        warm = _take_warm(ray, key) if options.keep_workers else []
        remote = ray.remote(ShardWorker)

        def make_actor(slot: _Slot) -> Any:
            while warm:
                actor = warm.pop(0)
                try:
                    slot.seen = ray.get(actor.event_count.remote(), timeout=60)
                    return actor
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    continue  # died while it waited: start a new one
            slot.seen = 0
            name = f"{ACTOR_PREFIX}{run_id}:{uuid.uuid4().hex[:8]}:worker-{slot.index}.{slot.generation}"
            return remote.options(
                name=name, num_gpus=gpus, num_cpus=cpus, max_concurrency=2, max_restarts=0
            ).remote(config, env, options.models_factory)

        report = _Report(run_id, workers, progress, corpus.n_pairs, job.token)
        report.line(
            f"ray: {len(shards)} shards of {corpus.n_pairs} pairs on {workers} worker(s) "
            f"({gpus:g} GPU, {cpus:g} CPU each{f', {min(len(warm), workers)} warm' if warm else ''}), "
            f"staging in {location.location}"
        )
        scheduler = _Scheduler(
            ray, make_actor, job, shards, replace(options, workers=workers), report
        )
        t0 = time.perf_counter()
        scheduler.run()
        report.close()
        report.line(
            f"ray: all {len(shards)} shards staged in {time.perf_counter() - t0:.1f} s; merging"
        )
    except BaseException as exc:
        interrupted = not isinstance(exc, Exception)  # Ctrl-C, SIGTERM, a cancel: stop everything
        if report is not None:
            report.close()
        location.remove_shards(
            [
                name
                for name, state in location.existing_shards().items()
                if not state.get("chunks") and not state.get("complete")
            ]
        )
        raise
    finally:
        if scheduler is not None:
            # Idle workers may stay warm for the next run of this process; busy ones are stopped.
            keep = (
                scheduler.actors(idle=True) + warm
                if options.keep_workers and not started and not interrupted
                else []
            )
            for actor in scheduler.actors() + warm:
                if not any(actor is k for k in keep):
                    with contextlib.suppress(Exception):  # already dead
                        ray.kill(actor)
            if keep:
                _WARM[key] = keep
        if started:
            ray.shutdown()
    names = [shard_dir_name(s.index, s.num_shards) for s in shards]
    dirs, scratch = location.fetch_shards(names)
    try:
        manifest = finalize(dirs, out, run_id, overwrite=overwrite, progress=progress)
    finally:
        if scratch is not None:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    location.remove_shards(names)
    return manifest


_WARM: dict[tuple[str, str, float], list[Any]] = {}
"""Idle workers kept by ``keep_workers`` runs of this process, by (config, GPUs per worker)."""


def _take_warm(ray: Any, key: tuple[str, str, float]) -> list[Any]:
    """The warm workers for ``key`` (the run takes what it needs, also to replace a dead
    worker, and keeps the rest warm); warm workers of other configs are stopped, since
    they hold cluster resources the new workers may need."""
    warm = _WARM.pop(key, [])
    for actor in (actor for actors in _WARM.values() for actor in actors):
        with contextlib.suppress(Exception):
            ray.kill(actor)
    _WARM.clear()
    return warm


def stop_warm_workers() -> None:
    """Stop the workers ``keep_workers`` runs left warm (a no-op without Ray)."""
    if not _WARM:
        return
    import ray

    for actors in _WARM.values():
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
    _WARM.clear()


def run_from_args(
    config: RunConfig, out: str | os.PathLike[str], run_id: str, args: Any
) -> Manifest:
    """``run --executor ray``: the parsed command line to :func:`run_with_ray`."""
    if args.num_shards != 1 or args.shard != 0:
        raise PrecomputeError(
            "--executor ray cuts the shards itself: drop --shard/--num-shards "
            "(or use them without --executor ray, one command per host)"
        )
    options = RayOptions(
        address=args.ray_address, workers=args.workers or 1, gpus_per_worker=args.gpus_per_worker
    )
    return run_with_ray(
        config,
        out,
        run_id,
        options,
        overwrite=args.overwrite,
        resume=args.resume,
        staging=args.staging,
        progress=not args.quiet,
    )
