"""The recompute queue for the ``/recompute`` page: cached reads, tables, the job form.

Reads go through ``contract.queue.JobQueue`` (torch-free) and are cached
for a couple of seconds, shared by every browser session watching the page,
so many viewers cost one read of the queue per refresh. The job form returns
plain values; ``contract.request.validate_request`` (the same function
the worker uses) decides what is accepted. The form's fields are the
job-settable preset overrides that ``contract.settings`` gives a form place
(``form="main"``: the grid, ``"more"``: the "More options" expander).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import streamlit as st

from contract.fields import OptionMeta, options
from contract.overrides import preset_values
from contract.presets import preset as preset_config
from contract.queue import Job, JobQueue, age_seconds
from contract.request import JOB_KINDS
from contract.settings import PresetOverrides, RunSettings, choices
from explorer.safe_text import hide_paths, md

REFRESH_S = 3
"""Seconds between refreshes of the queue, the progress and the log."""
WORKERS_REFRESH_S = 10
"""Seconds between refreshes of the workers' status."""
JOBS_TTL_S = 2
WORKER_ONLINE_S = 60
"""A worker seen this recently counts as online."""
SHOWN_JOBS = 100
PRESET_DEFAULT = "(preset's)"
"""The choice that keeps the preset's value (shown with the value: ``float32 (preset's)``)."""
DEFAULT_PRESET = "gemma-3-270m"
"""The form's starting preset: the model and SAE of the shipped runs, runnable without a GPU."""
KIND_LABELS = {
    "run": "one run",
    "sweep": "a layer sweep (one run per layer, one forward pass per batch)",
}


# ------------------------------------------------------------ reads ---


def queue_for(root: str) -> JobQueue:
    return JobQueue(root)


@st.cache_data(ttl=JOBS_TTL_S, show_spinner=False)
def load_jobs(root: str, limit: int = SHOWN_JOBS) -> list[Job]:
    """The newest ``limit`` jobs of ``root``'s queue (re-read every couple of seconds)."""
    return queue_for(root).jobs(limit=limit)


@st.cache_data(ttl=JOBS_TTL_S, show_spinner=False)
def load_log_tail(root: str, job_id: str, lines: int = 30) -> str:
    """The last lines of a job's log, server paths shortened (the log is public)."""
    return hide_paths(queue_for(root).log_tail(job_id, max_lines=lines))


@st.cache_data(ttl=JOBS_TTL_S, show_spinner=False)
def load_workers(root: str) -> list[dict[str, Any]]:
    return queue_for(root).workers()


def clear_caches() -> None:
    """After a submit or cancel: show the change at once."""
    load_jobs.clear()
    load_log_tail.clear()


# ----------------------------------------------------------- formatting ---


def duration(seconds: float | None) -> str:
    """``'1 h 02 min'``, ``'3 min 04 s'``, ``'12 s'``; en dash when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def progress_line(progress: dict[str, Any]) -> str:
    """One line: tokens done of total, tokens/s, ETA, and the current stage."""
    if not progress:
        return "starting (loading the model and the corpus)…"
    parts = []
    if progress.get("tokens_done") is not None:
        total = progress.get("tokens_total")
        parts.append(
            f"{progress['tokens_done']:,}" + (f" / {total:,}" if total else "") + " tokens"
        )
        if progress.get("tokens_per_s"):
            parts.append(f"{progress['tokens_per_s']:,.0f} tokens/s")
        if progress.get("tokens_eta_s") is not None and progress.get("tokens_done") != total:
            parts.append(f"ETA {duration(progress['tokens_eta_s'])}")
    stage = progress.get("stage")
    if stage:
        parts.append(f"stage: {stage}")
    return " · ".join(parts) or "running"


def progress_fraction(progress: dict[str, Any]) -> float:
    """Extraction progress in 0..1 (the stage's own fraction before tokens are known)."""
    done, total = progress.get("tokens_done"), progress.get("tokens_total")
    if done is not None and total:
        return max(0.0, min(done / total, 1.0))
    return float(progress.get("fraction") or 0.0)


def jobs_frame(jobs: list[Job]) -> pd.DataFrame:
    """One row per job, newest first, for the queue tables."""
    rows = []
    for job in jobs:
        s = job.status
        rows.append(
            {
                "job": job.id,
                "state": job.state
                + (" (cancel requested)" if job.cancel and not job.finished else ""),
                "run": job.request.run_id,
                "request": job.request.describe(),
                "requested by": job.request.requested_by,
                "created": job.request.created_at,
                "started": s.started_at,
                "finished": s.finished_at,
                "error": hide_paths(s.error) if s.error else s.error,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "job",
            "state",
            "run",
            "request",
            "requested by",
            "created",
            "started",
            "finished",
            "error",
        ],
    )


def worker_lines(workers: list[dict[str, Any]], now: float | None = None) -> list[str]:
    """A sentence per worker seen recently: host, GPUs, what it is doing."""
    lines = []
    for w in workers:
        age = age_seconds(w.get("seen_at"), now)
        if age is None or age > WORKER_ONLINE_S:
            continue
        gpus = ", ".join(map(str, w.get("gpus") or [])) or "no GPU detected (CPU only)"
        doing = f"running job {w['job']}" if w.get("job") else "idle"
        lines.append(
            md(  # heartbeat files are plain text, shown as text
                f"{w.get('worker')} on {w.get('host')}: {gpus}; {doing} (seen {duration(age)} ago)",
                None,
            )
        )
    return lines


def heartbeat_note(job: Job, now: float | None = None) -> str | None:
    """A warning when a running job's worker has been silent for a while."""
    age = age_seconds(job.status.heartbeat_at or job.status.claimed_at, now)
    every = job.status.heartbeat_seconds or 2.0
    if age is not None and age > 3 * max(every, REFRESH_S) + 10:
        return (
            f"No heartbeat from worker {job.status.worker} for {duration(age)}; a restarted worker "
            "will mark the job failed if it stays silent."
        )
    return None


# ----------------------------------------------------------------- form ---


FormField = tuple[str, Any, OptionMeta]
"""``(name, pydantic field, option metadata)`` of one form field."""


def form_fields(place: str) -> list[FormField]:
    """The job overrides the form shows at ``place`` (``main`` or ``more``), in declaration
    order."""
    return [o for o in options(PresetOverrides) if o[2].job and o[2].form == place]


def _help(field: FormField) -> str:
    _, info, meta = field
    text = info.description or ""
    return f"{text} ({meta.example})" if meta.example else text


def _keep(value: str) -> str:
    """How a field says it keeps the preset's value (paths shortened: the form is public)."""
    return f"{hide_paths(value)} (preset's)" if value else "(preset's: none)"


def _field_ui(container, field: FormField, prefix: str, values: Mapping[str, str]) -> None:
    """One override's widget: a selectbox for a choice, else a text input (validation
    decides). Left empty, it keeps the preset's value, which it shows."""
    name, info, meta = field
    keep = _keep(values.get(name, ""))
    found = choices(info.annotation)
    if found is not None:
        container.selectbox(
            meta.label,
            [PRESET_DEFAULT, *found],
            key=f"{prefix}_{name}",
            help=info.description,
            format_func=lambda v: keep if v == PRESET_DEFAULT else v,
        )
    else:
        container.text_input(
            meta.label, key=f"{prefix}_{name}", placeholder=keep, help=_help(field)
        )


def _run_field(name: str) -> tuple[Any, OptionMeta]:
    found = {n: (info, meta) for n, info, meta in options(RunSettings)}
    return found[name]


def preset_ui(prefix: str = "recompute_form") -> str:
    """The preset picker, outside the form so that the fields show the chosen preset's values."""
    info, meta = _run_field("preset")
    names = list(choices(info.annotation) or ())
    key = f"{prefix}_preset"
    if st.session_state.get(key) not in names:
        st.session_state[key] = DEFAULT_PRESET if DEFAULT_PRESET in names else names[0]
    return str(st.selectbox(meta.label, names, key=key, help=info.description))


def job_form_ui(
    on_submit: Callable[[dict[str, Any]], None], prefix: str = "recompute_form"
) -> None:
    """The new-job form. On submit, ``on_submit(raw request)`` runs as the button's
    callback (before the page reruns, so no rerun can lose the click).

    Empty fields keep the preset's value (shown in each field); ``validate_request``
    judges the rest.
    """
    values = preset_values(preset_config(preset_ui(prefix)))
    with st.form(prefix):
        info, meta = _run_field("run_id")
        st.text_input(
            meta.label,
            key=f"{prefix}_run_id",
            placeholder=meta.example,
            help=f"{info.description}; a sweep's id (its runs are <id>-l<layer>)",
        )
        c1, c2, c3 = st.columns(3)
        c1.selectbox(
            "Job",
            JOB_KINDS,
            key=f"{prefix}_kind",
            format_func=KIND_LABELS.get,
            help="a sweep extracts one run per layer from shared forward passes (docs/sweep.md)",
        )
        c2.text_input(
            "Layers (sweep)",
            key=f"{prefix}_layers",
            placeholder="3,6,9,12",
            help="a sweep's layers, comma-separated; its SAEs: the preset's (gemma-scope-2-270m, "
            "tiny) or the SAE pattern",
        )
        c3.text_input(
            "SAE pattern (sweep)",
            key=f"{prefix}_sae_pattern",
            placeholder="(preset's)",
            help="a local SAE directory per layer on the worker host, with {layer} in it, e.g. "
            "_models/gemma3-270m-l{layer}-topk48-4096",
        )
        cols = st.columns(3)
        for i, field in enumerate(form_fields("main")):
            _field_ui(cols[i % 3], field, prefix, values)
        with st.expander("More options"):
            cols = st.columns(3)
            for i, field in enumerate(form_fields("more")):
                _field_ui(cols[i % 3], field, prefix, values)
        c1, c2, c3 = st.columns(3)
        c1.checkbox(_run_field("overwrite")[1].label, key=f"{prefix}_overwrite")
        c2.checkbox(_run_field("resume")[1].label, value=True, key=f"{prefix}_resume")
        c3.checkbox("Publish to the worker's --push-to roots", value=True, key=f"{prefix}_publish")
        st.form_submit_button(
            "Queue the job",
            type="primary",
            icon=":material/play_arrow:",
            on_click=lambda: on_submit(form_request(st.session_state, prefix)),
        )


def form_request(state: Mapping[str, Any], prefix: str = "recompute_form") -> dict[str, Any]:
    """The raw request the form's widgets (in ``state``) describe."""
    overrides = {}
    for name, _, _ in [*form_fields("main"), *form_fields("more")]:
        value = state.get(f"{prefix}_{name}")
        if value in (None, "", PRESET_DEFAULT):
            continue
        overrides[name] = value.strip() if isinstance(value, str) else value
    run_id = str(state.get(f"{prefix}_run_id") or "").strip()
    kind = state.get(f"{prefix}_kind") or "run"
    sweep = {}
    if kind == "sweep":
        sweep = {
            "layers": str(state.get(f"{prefix}_layers") or "").strip(),
            "sae_pattern": str(state.get(f"{prefix}_sae_pattern") or "").strip() or None,
        }
    return {
        "kind": kind,
        **sweep,
        "preset": state.get(f"{prefix}_preset"),
        "run_id": run_id or None,
        "overrides": overrides,
        "overwrite": bool(state.get(f"{prefix}_overwrite", False)),
        "resume": bool(state.get(f"{prefix}_resume", True)),
        "publish": bool(state.get(f"{prefix}_publish", True)),
    }
