"""``/recompute``: the job queue of the GPU worker, its progress and logs; maintainers
submit and cancel jobs.

Everyone may watch the queue (it holds no secrets: presets, overrides, who
asked, logs of the run command). Starting and cancelling need a maintainer
(``explorer.auth``). The worker is ``python -m precompute worker`` on the GPU
host, sharing this app's results root.
"""

from __future__ import annotations

import streamlit as st

from bilingual_core.storage import open_root
from contract.queue import Job
from contract.request import RequestError, validate_request
from explorer import auth, data, jobs_view, nav, ui
from explorer.auth import Maintainer
from explorer.safe_text import hide_paths, log_and_hide, md

ui.require_entry()
ui.url_only()

SEEN_KEY = "recompute_seen_succeeded"

st.title("Recompute")
root = ui.results_root()
st.caption(
    "Jobs queued here are run one at a time by `python -m precompute worker --root <results root>` on "
    "the GPU host; a finished job's run appears in the run picker."
)


@st.fragment(run_every=jobs_view.WORKERS_REFRESH_S)
def workers_panel() -> None:
    """Which workers are alive, on which GPUs (refreshes by itself)."""
    try:
        workers = jobs_view.worker_lines(jobs_view.load_workers(root))
    except Exception as exc:  # an unreachable results root: say so, never a traceback
        st.error(f"The job queue could not be read: {md(log_and_hide(exc))}")
        return
    if workers:
        st.markdown("**Workers online**\n\n" + "\n".join(f"- {line}" for line in workers))
    else:
        st.warning(
            "No worker has been seen in the last minute: queued jobs wait until one starts. "
            "On the GPU host: `python -m precompute worker --root <results root>`.",
            icon=":material/cloud_off:",
        )


workers_panel()
maintainer = auth.maintainer_ui()
MESSAGE_KEY = "recompute_message"


def _submit(raw: dict, who: Maintainer) -> None:
    """Form callback: validate with the worker's own rules, then queue."""
    try:
        request = validate_request({**raw, "requested_by": who.name})
        jobs_view.queue_for(root).submit(request)
    except RequestError as exc:
        st.session_state[MESSAGE_KEY] = ("error", f"Not queued: {md(hide_paths(exc), 600)}")
    except Exception as exc:
        st.session_state[MESSAGE_KEY] = (
            "error",
            f"Could not write the job: {md(log_and_hide(exc))}",
        )
    else:
        jobs_view.clear_caches()
        st.session_state[MESSAGE_KEY] = (
            "success",
            f"Queued job `{request.id}`: run `{request.run_id}` ({md(request.describe())}).",
        )


def _cancel(job_id: str, who: Maintainer) -> None:
    try:
        jobs_view.queue_for(root).cancel(job_id, who.name)
    except ValueError as exc:
        st.session_state[MESSAGE_KEY] = ("warning", md(exc))
    else:
        st.session_state[MESSAGE_KEY] = ("success", f"Cancel requested for job `{job_id}`.")
    jobs_view.clear_caches()


if maintainer is not None:
    with st.expander("New job", expanded=True, icon=":material/add_task:"):
        jobs_view.job_form_ui(lambda raw: _submit(raw, maintainer))

message = st.session_state.pop(MESSAGE_KEY, None)
if message:
    kind, text = message
    {"error": st.error, "warning": st.warning}.get(kind, st.success)(text)


def _notice_new_runs(jobs: list[Job]) -> None:
    """When a job succeeds while this page is open, refresh the run picker."""
    done = {j.id for j in jobs if j.state == "succeeded"}
    seen = st.session_state.get(SEEN_KEY)
    st.session_state[SEEN_KEY] = done
    if seen is not None and done - seen:
        open_root(root)[0].invalidate_cache()  # hf:// and object stores cache listings
        data.runs.clear()
        st.toast(
            "A recompute finished: its run is now in the run picker.", icon=":material/task_alt:"
        )
        st.rerun(scope="app")


def _cancel_button(job: Job, who: Maintainer | None) -> None:
    if who is None or job.cancel is not None:
        return
    st.button(
        "Cancel",
        key=f"recompute_cancel_{job.id}",
        icon=":material/cancel:",
        on_click=_cancel,
        args=(job.id, who),
    )


def _running(job: Job, who: Maintainer | None) -> None:
    progress = job.status.progress
    with st.container(border=True):
        st.markdown(
            f"**{job.request.run_id}** · job `{job.id}` · {md(job.request.describe())} · "
            f"worker {md(job.status.worker)}"
        )
        st.progress(
            jobs_view.progress_fraction(progress), text=md(jobs_view.progress_line(progress), None)
        )
        if job.cancel is not None:
            st.caption(f"Cancel requested by {md(job.cancel.get('by'))}; stopping…")
        note = jobs_view.heartbeat_note(job)
        if note:
            st.warning(md(note, None))
        _cancel_button(job, who)
        st.code(
            jobs_view.load_log_tail(root, job.id) or "(no output yet)",
            language=None,
            wrap_lines=True,
        )


@st.fragment(run_every=jobs_view.REFRESH_S)
def queue_panel(who: Maintainer | None) -> None:
    try:
        jobs = jobs_view.load_jobs(root)
    except Exception as exc:
        st.error(f"The job queue could not be read: {md(log_and_hide(exc))}")
        return
    _notice_new_runs(jobs)
    running = [j for j in jobs if j.state == "running"]
    queued = [j for j in jobs if j.state == "queued"][::-1]
    finished = [j for j in jobs if j.finished]

    st.subheader("Running")
    if not running:
        st.caption("Nothing is running.")
    for job in running:
        _running(job, who)

    st.subheader(f"Queued ({len(queued)})")
    if queued:
        st.dataframe(
            jobs_view.jobs_frame(queued).drop(columns=["started", "finished", "error"]),
            hide_index=True,
            key="recompute_queued",
        )
        if who is not None:
            for job in queued:
                cols = st.columns([4, 1])
                cols[0].caption(f"`{job.id}` · {job.request.run_id}")
                with cols[1]:
                    _cancel_button(job, who)
    else:
        st.caption("No job is waiting.")

    st.subheader("Finished")
    if not finished:
        st.caption("No job has finished yet.")
        return
    frame = jobs_view.jobs_frame(finished)
    st.dataframe(
        frame,
        hide_index=True,
        key="recompute_finished",
        column_config={"error": st.column_config.TextColumn("error", width="large")},
    )
    latest = next((j for j in finished if j.state == "succeeded"), None)
    if latest is not None:
        st.page_link(
            nav.OVERVIEW,
            label=f"Open the newest recomputed run, `{latest.request.run_ids[0]}`",
            icon=":material/open_in_new:",
            query_params={"run": latest.request.run_ids[0]},
        )
    for job in [j for j in finished if j.state == "failed"][:3]:
        st.error(f"Job `{job.id}` (run `{job.request.run_id}`) failed:", icon=":material/error:")
        st.code(
            hide_paths(job.status.error or "(no reason recorded)"), language=None, wrap_lines=True
        )
    ids = [j.id for j in finished]
    chosen = st.selectbox(
        "Log of",
        ids,
        key="recompute_log_job",
        format_func=lambda i: next(
            f"{i} · {j.state} · {j.request.run_id}" for j in finished if j.id == i
        ),
    )
    if chosen:
        st.code(
            jobs_view.load_log_tail(root, chosen, 60) or "(no output)",
            language=None,
            wrap_lines=True,
        )


queue_panel(maintainer)
