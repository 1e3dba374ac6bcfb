"""``/recompute`` through ``streamlit.testing.v1.AppTest`` (from app.py): who may
submit and cancel (nobody configured, password wrong/right, OIDC maintainer and
non-maintainer), the queue, progress, errors, and a finished run reaching the
run picker. The pure parts of ``explorer.auth`` and ``explorer.jobs_view`` are
tested directly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bilingual_core import SyntheticConfig, write_synthetic_run
from bilingual_core.storage import RESULTS_ENV
from contract.queue import JobQueue, JobStatus
from contract.request import validate_request
from explorer import auth, jobs_view

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGE = "views/recompute.py"
TIMEOUT = 30
AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "x" * 32,
    "client_id": "id",
    "client_secret": "secret",
    "server_metadata_url": "https://idp.example/.well-known",
}


def build_run(root: Path, run_id: str) -> None:
    write_synthetic_run(root, SyntheticConfig(n_pairs=30, d_sae=64, mean_tokens=6.0, run_id=run_id))


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    results = tmp_path / "results"
    build_run(results, "base")
    monkeypatch.setenv(RESULTS_ENV, str(results))
    return results


def open_page(secrets: dict | None = None, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for name, section in (secrets or {}).items():
        at.secrets[name] = section
    if user is not None:
        at.user = user
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = []
    for kind in ("title", "markdown", "caption", "info", "error", "warning", "success", "code"):
        parts += [str(el.value) for el in at.get(kind)]
    return "\n".join(parts)


def labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def submit(root: Path, **fields: object):
    return JobQueue(str(root)).submit(
        validate_request({"preset": "tiny", "requested_by": "t", **fields})
    )


def click(at: AppTest, label: str) -> AppTest:
    (button,) = [b for b in at.button if b.label == label]
    button.click()
    at.run()
    assert not at.exception, at.exception
    return at


def unlock(at: AppTest, password: str) -> AppTest:
    at.text_input(key="recompute_password").input(password)
    return click(at, "Unlock")


# --------------------------------------------------------------- access ---


def test_signed_out_with_nothing_configured_explains_and_offers_no_button(root: Path):
    submit(root, run_id="waiting")
    at = open_page()
    assert "Recompute" in [t.value for t in at.title]
    assert "no way to recognise" in texts(at) and "secrets.toml.example" in texts(at)
    assert labels(at) == []  # no sign-in, no form, no cancel
    assert not at.text_input
    assert "waiting" in at.dataframe[0].value["run"].tolist()  # everyone sees the queue


def test_wrong_password_is_refused(root: Path):
    at = unlock(open_page({"recompute": {"password": "s3cret"}}), "guess")
    assert "Wrong password." in [e.value for e in at.error]
    assert "Queue the job" not in labels(at)


def test_right_password_submits_and_cancels(root: Path):
    at = unlock(open_page({"recompute": {"password": "s3cret"}}), "s3cret")
    assert "Queue the job" in labels(at)
    at.selectbox(key="recompute_form_preset").set_value("tiny")
    at.text_input(key="recompute_form_run_id").input("from-page")
    at.text_input(key="recompute_form_sample_size").input("12")
    click(at, "Queue the job")
    (job,) = JobQueue(str(root)).jobs()
    assert (job.request.run_id, job.request.overrides, job.request.requested_by) == (
        "from-page",
        {"sample_size": 12},
        "maintainer (password)",
    )
    assert any("Queued job" in s.value for s in at.success)
    click(at, "Cancel")
    assert JobQueue(str(root)).get(job.id).state == "cancelled"


def test_the_form_queues_a_sweep(root: Path):
    at = unlock(open_page({"recompute": {"password": "s3cret"}}), "s3cret")
    at.selectbox(key="recompute_form_preset").set_value("tiny")
    at.selectbox(key="recompute_form_kind").set_value("sweep")
    at.text_input(key="recompute_form_run_id").input("tw")
    at.text_input(key="recompute_form_layers").input("2,0")
    click(at, "Queue the job")
    (job,) = JobQueue(str(root)).jobs()
    assert (job.request.kind, job.request.layers, job.request.run_ids) == (
        "sweep",
        [0, 2],
        ["tw-l0", "tw-l2"],
    )
    assert "tiny sweep layers=0,2" in at.dataframe[0].value["request"].tolist()
    at.text_input(key="recompute_form_run_id").input("tw2")
    at.text_input(key="recompute_form_layers").input("0,7")
    click(at, "Queue the job")
    assert any("Not queued" in e.value and "not 7" in e.value for e in at.error)
    assert len(JobQueue(str(root)).jobs()) == 1


def test_invalid_form_values_are_explained_not_queued(root: Path):
    at = unlock(open_page({"recompute": {"password": "s3cret"}}), "s3cret")
    at.text_input(key="recompute_form_batch_size").input("lots")
    click(at, "Queue the job")
    assert any("Not queued" in e.value and "batch_size" in e.value for e in at.error)
    assert JobQueue(str(root)).jobs() == []


def test_identity_provider_signed_out_offers_sign_in_only(root: Path):
    submit(root, run_id="waiting")
    at = open_page(
        {
            "auth": AUTH,
            "recompute": {"maintainer_emails": ["ana@example.org"], "password": "unused"},
        },
        user={"is_logged_in": False},
    )
    assert "Sign in" in labels(at)
    assert "Queue the job" not in labels(at) and "Cancel" not in labels(at)
    assert not at.text_input  # the password is not offered when an identity provider is configured


def test_identity_provider_maintainer_may_submit(root: Path):
    at = open_page(
        {"auth": AUTH, "recompute": {"maintainer_emails": ["Ana@Example.org"]}},
        user={"is_logged_in": True, "email": "ana@example.org", "name": "Ana"},
    )
    assert "maintainer" in texts(at)
    at.selectbox(key="recompute_form_preset").set_value("tiny")
    click(at, "Queue the job")
    (job,) = JobQueue(str(root)).jobs()
    assert job.request.requested_by == "ana@example.org"


def test_identity_provider_non_maintainer_only_watches(root: Path):
    submit(root, run_id="waiting")
    at = open_page(
        {"auth": AUTH, "recompute": {"maintainer_emails": ["ana@example.org"]}},
        user={"is_logged_in": True, "email": "eve@example.org"},
    )
    assert "not a maintainer" in texts(at)
    assert "Queue the job" not in labels(at) and "Cancel" not in labels(at)
    assert "Sign out" in labels(at)


# ---------------------------------------------------------------- queue ---


def test_running_job_shows_progress_and_log(root: Path):
    job = submit(root, run_id="busy")
    queue = JobQueue(str(root))
    assert queue.claim(job.id, "w1", "gpu-host")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    queue.write_status(
        job.id,
        JobStatus(
            "running",
            worker="w1",
            host="gpu-host",
            heartbeat_at=now,
            progress={
                "stage": "extracting busy (shard 0)",
                "tokens_done": 1500,
                "tokens_total": 6000,
                "tokens_per_s": 750.0,
                "tokens_eta_s": 6.0,
            },
        ),
    )
    queue.write_log(job.id, "$ python -m precompute run --preset=tiny\nloading the tiny model\n")
    queue.worker_heartbeat(
        "w1", {"host": "gpu-host", "gpus": ["NVIDIA H100, 81559 MiB"], "job": job.id}
    )
    at = open_page({"recompute": {"password": "s3cret"}})
    (bar,) = at.get("progress")
    assert bar.value == 25
    assert "1,500 / 6,000 tokens · 750 tokens/s · ETA 6 s" in bar.proto.text
    assert "loading the tiny model" in texts(at)
    assert "NVIDIA H100" in texts(at)


def test_failed_job_shows_its_error(root: Path):
    job = submit(root, run_id="broken")
    queue = JobQueue(str(root))
    queue.claim(job.id, "w1", "h")
    queue.write_status(
        job.id, JobStatus("failed", worker="w1", error="corpus file /nope.tsv does not exist")
    )
    at = open_page()
    assert "corpus file nope.tsv does not exist" in texts(at)  # server paths stay on the server
    assert "/nope.tsv" not in texts(at)
    assert "failed" in at.dataframe[0].value["state"].tolist()


def test_finished_job_run_reaches_the_run_picker_without_restart(root: Path):
    at = open_page()
    assert "new-run" not in at.selectbox(key="app_run").options
    job = submit(root, run_id="new-run")
    queue = JobQueue(str(root))
    queue.claim(job.id, "w1", "h")
    build_run(root, "new-run")
    queue.write_status(
        job.id, JobStatus("succeeded", worker="w1", run_location=str(root / "new-run"))
    )
    jobs_view.clear_caches()
    at.run()
    assert not at.exception, at.exception
    assert "new-run" in at.selectbox(key="app_run").options
    assert any("new-run" in link.label for link in at.get("page_link"))


# ------------------------------------------------------------ pure parts ---


def test_auth_mode_and_allow_list():
    assert auth.auth_mode({}) == "none"
    assert auth.auth_mode({"recompute": {"password": ""}}) == "none"
    assert auth.auth_mode({"recompute": {"password": "p"}}) == "password"
    assert auth.auth_mode({"auth": AUTH, "recompute": {"password": "p"}}) == "oidc"
    allowed = auth.maintainer_emails(
        {"recompute": {"maintainer_emails": [" Ana@Example.org ", ""]}}
    )
    assert allowed == {"ana@example.org"}
    assert auth.is_maintainer_email("ANA@example.org", allowed)
    assert not auth.is_maintainer_email(None, allowed)
    assert auth.maintainer_emails({"recompute": {"maintainer_emails": "bo@x.org"}}) == {"bo@x.org"}
    assert auth.password_matches("p", {"recompute": {"password": "p"}})
    assert not auth.password_matches("", {"recompute": {}})


def test_form_request_carries_a_sweep_only_when_asked():
    state = {"f_preset": "tiny", "f_kind": "run", "f_layers": "0,1"}
    assert "layers" not in jobs_view.form_request(state, "f")
    state["f_kind"] = "sweep"
    raw = jobs_view.form_request({**state, "f_sae_pattern": " "}, "f")
    assert (raw["kind"], raw["layers"], raw["sae_pattern"]) == ("sweep", "0,1", None)


def test_progress_formatting():
    assert jobs_view.duration(3725) == "1 h 02 min" and jobs_view.duration(None) == "–"
    assert jobs_view.progress_line({}).startswith("starting")
    assert jobs_view.progress_fraction({"fraction": 0.5}) == 0.5
    assert jobs_view.progress_fraction({"tokens_done": 3, "tokens_total": 4}) == 0.75
    form = jobs_view.form_request(
        {"f_preset": "tiny", "f_seed": " 3 ", "f_dtype": jobs_view.PRESET_DEFAULT, "f_run_id": ""},
        "f",
    )
    assert form == {
        "kind": "run",
        "preset": "tiny",
        "run_id": None,
        "overrides": {"seed": "3"},
        "overwrite": False,
        "resume": True,
        "publish": True,
    }
