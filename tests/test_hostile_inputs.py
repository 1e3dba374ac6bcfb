"""Hostile inputs, as a table: each case is an input a visitor, a maintainer or a
broken file can produce, and the refusal the code must answer with.

Extend a table with one line per new attack. ``REFUSALS`` holds calls that
must raise; the other tables check what a page or the worker does instead of
raising (a message, a clamped value, a failed job).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import APP, RESULTS_ENV, AppRuns, build_app_runs

from bilingual_core.manifest import Manifest, check_run_id
from contract.config import CorpusSource
from contract.queue import JobQueue, JobStatus
from contract.request import validate_request
from contract.settings import RequestError
from explorer import jobs_view
from precompute.common.corpus import load_corpus
from precompute.common.errors import CorpusError
from precompute.serve.worker import Worker, WorkerConfig


def _corpus(name: str, content: str) -> Callable[[Path], object]:
    """Load a local corpus file holding ``content`` (one column per language)."""

    def attempt(tmp: Path) -> object:
        path = tmp / name
        path.write_text(content, encoding="utf-8")
        return load_corpus(CorpusSource(path=str(path), field=None, sample_size=None))

    return attempt


@dataclass(frozen=True)
class Refusal:
    """``attempt(tmp_path)`` must raise ``error`` with a message matching ``match``."""

    name: str
    attempt: Callable[[Path], object]
    error: type[BaseException]
    match: str = ""


REFUSALS: list[Refusal] = [
    # identifiers match the whole string (a trailing newline is not a run id)
    Refusal(
        "run id with a trailing newline",
        lambda _: check_run_id("demo\n"),
        ValueError,
        "invalid run id",
    ),
    Refusal(
        "job run id with a trailing newline",
        lambda _: validate_request({"preset": "tiny", "run_id": "demo\n"}),
        RequestError,
        "run_id",
    ),
    Refusal(
        "job id with a trailing newline",
        lambda _: validate_request({"preset": "tiny", "id": "20260101-000000-000-abcd\n"}),
        RequestError,
        "id",
    ),
    Refusal(
        "language with a trailing newline",
        lambda _: validate_request({"preset": "tiny", "overrides": {"languages": ["en", "es\n"]}}),
        RequestError,
        "languages",
    ),
    Refusal(
        "manifest language with a trailing newline",
        lambda _: Manifest(run_id="r", languages=["en", "es\n"], n_pairs=1, d_sae=1),
        ValueError,
        "language code",
    ),
    # a corpus row with the wrong number of fields is an error naming its line
    Refusal(
        "TSV row with an extra field",
        _corpus("c.tsv", "en\tes\nhello\thola\tEXTRA\n"),
        CorpusError,
        "line 2 has 3 field",
    ),
    Refusal(
        "CSV row with an extra field",
        _corpus("c.csv", "en,es\nhello,hola,EXTRA\nbye,adios\n"),
        CorpusError,
        "line 2 has 3 field",
    ),
    Refusal(
        "a 10 MB corpus line",
        _corpus("c.tsv", "en\tes\nhello\thola\n" + "a" * 10_000_000 + "\tb\n"),
        CorpusError,
        "line 3 has a field longer than",
    ),
    Refusal(
        "a 10 MB quoted CSV field",
        _corpus("c.csv", 'en,es\n"' + "a" * 10_000_000 + '",b\n'),
        CorpusError,
        "field longer than",
    ),
    Refusal(
        "max_tokens beyond the tiny model's context",
        lambda _: validate_request(
            {"preset": "tiny", "overrides": {"max_tokens": 8192, "batch_tokens": 10**7}}
        ),
        RequestError,
        "context of 2048 tokens",
    ),
    Refusal(
        "TSV row with a missing field",
        _corpus("c.tsv", "en\tes\nhello\thola\nbye\n"),
        CorpusError,
        "line 3 has 1 field",
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.name)
def test_hostile_input_is_refused(case: Refusal, tmp_path: Path) -> None:
    with pytest.raises(case.error, match=case.match):
        case.attempt(tmp_path)


# ------------------------------------------------------- links to the app ---

PHISH = "![w](http://evil.example/x.png)[Sign in again](http://evil.example/phish)"
"""A reflected-Markdown payload: an outside image and a link inside the app's own box."""
MARKUP = ("](http", "<a", "<img", "](//")
"""Fragments that would render as a link, image or HTML if they reached Markdown unescaped."""


@dataclass(frozen=True)
class Link:
    """Opening ``page`` with URL ``params`` must not raise, must show every string
    of ``shows`` (in the rendered Markdown) and no :data:`MARKUP`."""

    name: str
    page: str
    params: dict[str, str]
    shows: tuple[str, ...] = ()
    check: Callable[[AppTest], None] | None = None


def _slider(key: str, value: float) -> Callable[[AppTest], None]:
    def check(at: AppTest) -> None:
        (slider,) = [s for s in at.slider if s.key == key]
        assert slider.value == pytest.approx(value)

    return check


def _number(key: str, value: int) -> Callable[[AppTest], None]:
    def check(at: AppTest) -> None:
        assert at.number_input(key=key).value == value

    return check


LINKS: list[Link] = [
    Link("Markdown in the feature number", "views/feature.py", {"feature": PHISH}, ("not valid",)),
    Link("Markdown in the pair search", "views/pairs.py", {"q": PHISH}),
    Link("Markdown in the run name", "views/overview.py", {"run": PHISH}, ("not valid",)),
    Link(
        "share cut above the slider's maximum",
        "views/features.py",
        {"cut": "5"},
        ("outside",),
        _slider("features_cut", 1.0),
    ),
    Link(
        "share cut below the slider's minimum",
        "views/features.py",
        {"cut": "-3"},
        check=_slider("features_cut", 0.5),
    ),
    Link(
        "pair number past the last pair",
        "views/pairs.py",
        {"pair": "10000000"},
        check=_number("pairs_id", 119),
    ),
    Link("huge integer", "views/features.py", {"minpairs": "9" * 400}, ("not valid",)),
    Link(
        "pair count above the slider's maximum",
        "views/feature.py",
        {"n": "500"},
        check=_slider("feature_n", 50),
    ),
]


@pytest.fixture(scope="module")
def app_runs(tmp_path_factory: pytest.TempPathFactory) -> AppRuns:
    return build_app_runs(tmp_path_factory.mktemp("hostile") / "results")


def _markdown(at: AppTest) -> str:
    parts = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "info",
        "error",
        "warning",
        "success",
        "table",
    ):
        parts += [str(getattr(el, "value", "")) for el in at.get(kind)]
    return "\n".join(parts)


@pytest.mark.parametrize("case", LINKS, ids=lambda c: c.name)
def test_hostile_link_is_shown_as_text(
    case: Link, app_runs: AppRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(app_runs.root))
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.query_params.update(case.params)
    at.run()
    at.switch_page(case.page)
    at.query_params.update(case.params)
    at.run()
    assert not at.exception, at.exception
    shown = _markdown(at)
    for fragment in MARKUP:
        assert fragment not in shown, f"{fragment!r} reached Markdown: {shown}"
    for text in case.shows:
        assert text in shown
    if case.check is not None:
        case.check(at)


# ---------------------------------------------------------- job files ---

GOOD_ID = "20260101-000000-000-aaaa"
LATER_ID = "20260101-000001-000-bbbb"


@dataclass(frozen=True)
class JobFiles:
    """Files planted in the queue folder of job ``GOOD_ID``: the job must come back
    ``failed`` with ``reason`` in its error, and the worker must still run a later job."""

    name: str
    files: dict[str, object]
    reason: str


def _request(**changes: object) -> dict[str, object]:
    return {
        **validate_request({"preset": "tiny", "id": GOOD_ID, "run_id": "planted"}).to_json_dict(),
        **changes,
    }


JOB_FILES: list[JobFiles] = [
    JobFiles(
        "heartbeat is a number",
        {"request.json": _request(), "status.json": {"state": "running", "heartbeat_at": 12345}},
        "heartbeat_at",
    ),
    JobFiles(
        "progress is a string",
        {"request.json": _request(), "status.json": {"state": "running", "progress": "half"}},
        "progress",
    ),
    JobFiles(
        "progress counts are strings",
        {
            "request.json": _request(),
            "status.json": {"state": "running", "progress": {"tokens_done": "many"}},
        },
        "tokens_done",
    ),
    JobFiles(
        "unknown state", {"request.json": _request(), "status.json": {"state": "exploded"}}, "state"
    ),
    JobFiles(
        "claim without a time",
        {"request.json": _request(), "claim.json": {"worker": "w"}},
        "claim.json",
    ),
    JobFiles(
        "request id differs from its folder",
        {"request.json": _request(id="20260101-000000-000-cccc")},
        "another job id",
    ),
    JobFiles("request without an id", {"request.json": {"preset": "tiny"}}, "another job id"),
    JobFiles(
        "request with an unknown field",
        {"request.json": _request(shell="rm -rf /")},
        "unknown field",
    ),
]


@pytest.mark.parametrize("case", JOB_FILES, ids=lambda c: c.name)
def test_malformed_job_fails_and_the_queue_goes_on(
    case: JobFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    folder = root / "_jobs" / GOOD_ID
    folder.mkdir(parents=True)
    for name, content in case.files.items():
        (folder / name).write_text(json.dumps(content))
    queue = JobQueue(str(root))
    queue.submit(validate_request({"preset": "tiny", "id": LATER_ID, "run_id": "later"}))

    (broken, later) = sorted(queue.jobs(), key=lambda j: j.id)
    assert broken.state == "failed" and case.reason in broken.status.error
    assert jobs_view.jobs_frame([broken, later]).shape[0] == 2  # /recompute's tables draw
    assert jobs_view.progress_line(broken.status.progress)

    program = (sys.executable, "-c", "import sys; sys.exit(3)")
    worker = Worker(queue, WorkerConfig(poll_seconds=0.1, heartbeat_seconds=0.1, program=program))
    assert worker.run_once()  # no exception: the later job ran (and failed with exit status 3)
    assert queue.get(LATER_ID).state == "failed" and queue.get(LATER_ID).status.returncode == 3
    recorded = json.loads((folder / "status.json").read_text())
    assert recorded["state"] == "failed" and case.reason in recorded["error"]
    assert f"job {GOOD_ID} failed" in capsys.readouterr().err  # the worker's log says so
    assert not worker.fail_malformed()  # recorded once


SECRET = "HF_TOKEN=hf_planted_secret"
"""What a planted link points at: a file outside the results root the app can read."""


def _plant_request(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "request.json").write_text(json.dumps(_request()))


def _link(name: str, target: str | None = None) -> Callable[[Path, Path], None]:
    """The job folder with a valid request and ``name`` a link to ``target``
    (default: the secret outside the root)."""

    def plant(folder: Path, outside: Path) -> None:
        _plant_request(folder)
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(target or outside / "secrets.toml")

    return plant


def _fifo(name: str) -> Callable[[Path, Path], None]:
    def plant(folder: Path, outside: Path) -> None:
        import os

        _plant_request(folder)
        (folder / name).unlink(missing_ok=True)
        os.mkfifo(folder / name)

    return plant


def _huge(name: str) -> Callable[[Path, Path], None]:
    def plant(folder: Path, outside: Path) -> None:
        from contract.files import MAX_JOB_FILE_BYTES

        _plant_request(folder)
        (folder / name).write_text(
            json.dumps({"state": "running", "pad": "x" * MAX_JOB_FILE_BYTES})
        )

    return plant


def _linked_folder(folder: Path, outside: Path) -> None:
    _plant_request(outside / "job")
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(outside / "job", target_is_directory=True)


@dataclass(frozen=True)
class Planted:
    """Job ``GOOD_ID``'s folder as ``plant(folder, outside)`` leaves it (links, special
    files, huge files): nothing outside the root is shown or written, no read
    hangs or exhausts memory, and the worker still runs a later job. ``reason``:
    the job comes back failed with it; None: the job is not listed at all."""

    name: str
    plant: Callable[[Path, Path], None]
    reason: str | None = None


PLANTED: list[Planted] = [
    Planted("log.txt links to a secret outside the root", _link("log.txt")),
    Planted("log.txt links to /dev/zero", _link("log.txt", "/dev/zero")),
    Planted("log.txt is a FIFO", _fifo("log.txt")),
    Planted("request.json is a FIFO", _fifo("request.json"), "not a regular file"),
    Planted("request.json links outside the root", _link("request.json"), "symbolic link"),
    Planted("status.json links to /dev/zero", _link("status.json", "/dev/zero"), "symbolic link"),
    Planted("status.json is a FIFO", _fifo("status.json"), "not a regular file"),
    Planted("cancel.json is a FIFO", _fifo("cancel.json"), "not a regular file"),
    Planted("status.json over the size cap", _huge("status.json"), "larger than"),
    Planted("the job folder links outside the root", _linked_folder),
]


@pytest.mark.parametrize("case", PLANTED, ids=lambda c: c.name)
def test_planted_job_files_are_never_followed(
    case: Planted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    root, outside = tmp_path / "results", tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secrets.toml").write_text(SECRET)
    case.plant(root / "_jobs" / GOOD_ID, outside)
    before = sorted(p.name for p in outside.rglob("*"))
    queue = JobQueue(str(root))
    queue.submit(validate_request({"preset": "tiny", "id": LATER_ID, "run_id": "later"}))
    signal.alarm(20)  # a read that blocks (a FIFO) fails the test instead of hanging it
    try:
        jobs = {j.id: j for j in queue.jobs()}
        log = queue.log_tail(GOOD_ID)
        shown = jobs_view.jobs_frame(list(jobs.values())).to_csv() + log
        shown += "".join(str(j.status.error) for j in jobs.values())
        assert SECRET not in shown and len(log) < 1000
        if case.reason is None:
            assert GOOD_ID not in jobs or jobs[GOOD_ID].state == "queued"
        else:
            assert jobs[GOOD_ID].state == "failed" and case.reason in jobs[GOOD_ID].status.error
        program = (sys.executable, "-c", "import sys; sys.exit(3)")
        config = WorkerConfig(poll_seconds=0.1, heartbeat_seconds=0.1, program=program)
        worker = Worker(queue, config)
        while worker.run_once():
            pass
    finally:
        signal.alarm(0)
    assert queue.get(LATER_ID).state == "failed" and queue.get(LATER_ID).status.returncode == 3
    assert sorted(p.name for p in outside.rglob("*")) == before  # nothing written outside
    assert (outside / "secrets.toml").read_text() == SECRET


# ------------------------------------------------- what the root reveals ---


def test_glob_characters_in_run_directories_read_one_run(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bilingual_core import list_runs
    from explorer import data

    for folder, n in (("r*", 1), ("rx", 2), ("ry", 3)):
        (tmp_path / folder / "demo").mkdir(parents=True)
        pq.write_table(
            pa.table({"pair_id": list(range(n))}), tmp_path / folder / "demo" / "pairs.parquet"
        )
    (tmp_path / "r*" / "d*").mkdir()
    source = data.parquet_source(str(tmp_path / "r*" / "demo"), "pairs.parquet")
    rows = data.query("SELECT count(*) AS n FROM read_parquet(?)", [source], file="pairs.parquet")
    assert int(rows["n"].iloc[0]) == 1  # not 1 + 2 + 3
    (listing,) = [r for r in list_runs(tmp_path / "r*") if r.run_id == "d*"]
    assert not listing.ok and "not a valid run id" in listing.problem


def _manifest_text(**changes: object) -> Callable[[dict], str]:
    def craft(manifest: dict) -> str:
        return json.dumps({**manifest, **changes})

    return craft


BAD_MANIFESTS: list[tuple[str, Callable[[dict], str]]] = [
    ("model is a string", _manifest_text(model="x")),
    ("sae is null", _manifest_text(sae=None)),
    ("extraction is a list", _manifest_text(extraction=[1, 2])),
    ("n_pairs is a string", _manifest_text(n_pairs="120")),
    ("100,000 nested arrays", lambda m: "[" * 100_000 + "]" * 100_000),
    ("nested arrays inside a section", lambda m: json.dumps(m)[:-1] + ', "x": ' + "[" * 100_000),
    ("a manifest over the size cap", _manifest_text(versions={"pad": "x" * 1_100_000})),
    ("not UTF-8", lambda m: "\udcff"),
]


@pytest.mark.parametrize(("name", "craft"), BAD_MANIFESTS, ids=[n for n, _ in BAD_MANIFESTS])
def test_one_bad_manifest_leaves_the_other_runs_listed(
    name: str, craft: Callable[[dict], str], app_runs: AppRuns, tmp_path: Path
) -> None:
    import shutil

    from bilingual_core import list_runs
    from explorer import data

    root = tmp_path / "results"
    shutil.copytree(app_runs.run, root / app_runs.run.name)
    shutil.copytree(app_runs.run, root / "bad")
    manifest = json.loads((root / "bad" / "manifest.json").read_text())
    (root / "bad" / "manifest.json").write_bytes(
        craft(manifest).encode("utf-8", errors="surrogateescape")
    )
    listings = {r.run_id: r for r in list_runs(root)}
    assert listings[app_runs.run.name].ok
    assert not listings["bad"].ok and "manifest.json" in listings["bad"].problem
    assert len(listings["bad"].problem) < 400
    frame = data.runs_frame(list(listings.values()))
    assert (
        list(frame["status"]) == ["ok", frame["status"].iloc[1]]
        and "problem" in frame["status"].iloc[1]
    )


def _shown(at: AppTest) -> str:
    """Every text an element tree shows, sidebar, code blocks and table cells included."""
    parts = [_markdown(at)]
    parts += [str(c.value) for c in at.get("code")]
    parts += [str(el.help) for el in at.selectbox]
    parts += [d.value.to_csv() for d in at.dataframe]
    return "\n".join(parts)


def test_server_paths_stay_on_the_server(
    app_runs: AppRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    root = tmp_path / "srv" / "secret-place" / "results"
    shutil.copytree(app_runs.run, root / "broken")
    (root / "broken" / "features.parquet").unlink()
    queue = JobQueue(str(root))
    queue.submit(validate_request({"preset": "tiny", "id": GOOD_ID, "run_id": "x"}))
    queue.write_log(
        GOOD_ID, f"$ python -m precompute run --preset=tiny --out={root}\nwrote {root}/x\n"
    )
    queue.write_status(
        GOOD_ID, JobStatus("failed", error=f"could not write {root}/x/pairs.parquet")
    )
    monkeypatch.setenv(RESULTS_ENV, str(root))
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    for page in ("views/overview.py", "views/features.py", "views/recompute.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        shown = _shown(at)
        assert "secret-place" not in shown, f"{page}: {shown}"
    assert "pairs.parquet" in shown and "--out=results" in shown  # the file name stays


def test_the_worker_log_names_no_output_path(tmp_path: Path) -> None:
    queue = JobQueue(str(tmp_path / "results"))
    queue.submit(validate_request({"preset": "tiny", "id": GOOD_ID, "run_id": "x"}))
    program = (sys.executable, "-c", "raise SystemExit(1)")
    Worker(queue, WorkerConfig(program=program, heartbeat_seconds=0.1)).run_once()
    log = queue.log_tail(GOOD_ID)
    assert '"out": "<results root>"' in log and str(tmp_path) not in log


# ------------------------------------------------------------- sign-in ---

ALLOWED = ["kate@example.org", "ana@example.org"]

SIGN_INS: list[tuple[str, dict[str, object]]] = [
    ("Kelvin sign in place of K", {"email": "\u212aate@example.org", "email_verified": True}),
    ("full-width letters", {"email": "ａｎａ@example.org"}),
    (
        "address the provider has not verified",
        {"email": "ana@example.org", "email_verified": False},
    ),
    (
        "verification claim that is not a boolean",
        {"email": "ana@example.org", "email_verified": "true"},
    ),
    ("two at signs", {"email": "ana@example.org@evil.example"}),
    ("trailing newline", {"email": "ana@example.org\n"}),
    ("no email claim", {"name": "Ana"}),
]


@pytest.mark.parametrize(("name", "claims"), SIGN_INS, ids=[n for n, _ in SIGN_INS])
def test_sign_in_is_not_a_maintainer(name: str, claims: dict[str, object]) -> None:
    from explorer import auth

    allowed = auth.maintainer_emails({"recompute": {"maintainer_emails": ALLOWED}})
    assert not auth.is_maintainer_email(auth.verified_email(claims), allowed)


def test_unverified_address_on_the_page_only_watches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "results"))
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "id",
        "client_secret": "s",
        "server_metadata_url": "https://idp.example/.well-known",
    }
    at.secrets["recompute"] = {"maintainer_emails": ALLOWED}
    at.user = {"is_logged_in": True, "email": "ana@example.org", "email_verified": False}
    at.run()
    at.switch_page("views/recompute.py").run()
    assert not at.exception, at.exception
    assert "Queue the job" not in [b.label for b in at.button]
    assert any("not say this address is verified" in w.value for w in at.warning)


# ------------------------------------------------------------ passwords ---


def test_password_throttle_backs_off_then_locks_out_per_client() -> None:
    from explorer.auth import Throttle

    now = [0.0]
    throttle = Throttle(
        base_s=1.0, max_wait_s=60.0, lockout_after=5, lockout_s=900.0, clock=lambda: now[0]
    )
    waits = [throttle.failure("10.0.0.1") for _ in range(5)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 900.0]  # exponential, then the lock-out
    assert throttle.retry_after("10.0.0.1") == 900.0 and throttle.retry_after("10.0.0.2") == 0.0
    now[0] = 901.0
    assert throttle.retry_after("10.0.0.1") == 0.0
    throttle.success("10.0.0.1")
    assert throttle.failures("10.0.0.1") == 0


@pytest.mark.parametrize(
    ("ip", "headers", "client"),
    [
        (
            "203.0.113.5",
            {"X-Forwarded-For": "1.2.3.4"},
            "203.0.113.5",
        ),  # a direct client cannot pick its name
        (
            "127.0.0.1",
            {"X-Forwarded-For": "6.6.6.6, 198.51.100.7"},
            "198.51.100.7",
        ),  # the proxy's own entry
        (None, {}, "unknown"),
    ],
)
def test_client_address(ip: str | None, headers: dict[str, str], client: str) -> None:
    from explorer.auth import client_address

    assert client_address(ip, headers) == client


def test_a_new_browser_session_does_not_reset_wrong_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from explorer import auth

    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setattr(auth, "THROTTLE", auth.Throttle(base_s=600.0))  # outlasts a session's start

    def session_unlocking(password: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=30)
        at.secrets["recompute"] = {"password": "s3cret"}
        at.run()
        at.switch_page("views/recompute.py").run()
        at.text_input(key="recompute_password").input(password)
        (button,) = [b for b in at.button if b.label == "Unlock"]
        button.click()
        at.run()
        assert not at.exception, at.exception
        return at

    with caplog.at_level("WARNING", logger="explorer.auth"):
        session_unlocking("guess")
        at = session_unlocking("s3cret")  # a fresh session, right away, with the right password
    assert "Queue the job" not in [b.label for b in at.button]
    assert any("Too many wrong passwords" in e.value for e in at.error)
    assert "wrong maintainer password from" in caplog.text and "guess" not in caplog.text


# ------------------------------------------------- files on the worker host ---

CREDENTIALS = {"usr": "admin", "pwd": "hunter2"}


@dataclass(frozen=True)
class HostPath:
    """A job override naming a path on the worker host: ``allowed`` says whether the
    worker (with its default allowed directories) may pass it to the run command.
    ``path(root, outside)`` builds the value from the results root and a folder
    outside every allowed directory."""

    name: str
    setting: str
    path: Callable[[Path, Path], str]
    allowed: bool


def _link_in_corpora(root: Path, outside: Path) -> str:
    (root / "_corpora").mkdir(parents=True, exist_ok=True)
    (root / "_corpora" / "innocent.json").symlink_to(outside / "creds.json")
    return str(root / "_corpora" / "innocent.json")


HOST_PATHS: list[HostPath] = [
    HostPath(
        "credentials outside the corpus folders",
        "corpus_file",
        lambda root, outside: str(outside / "creds.json"),
        False,
    ),
    HostPath(
        "a link from the corpus folder to credentials", "corpus_file", _link_in_corpora, False
    ),
    HostPath("home directory file", "corpus_file", lambda root, outside: "~/creds.json", False),
    HostPath(
        "the results root's own corpus folder",
        "corpus_file",
        lambda root, outside: str(root / "_corpora" / "mine.tsv"),
        True,
    ),
    HostPath(
        "the bundled corpus, relative",
        "corpus_file",
        lambda root, outside: "data/parallel_en_es.tsv",
        True,
    ),
    HostPath(
        "a model outside the model folders", "model_path", lambda root, outside: str(outside), False
    ),
    HostPath(
        "an SAE in the results root's model folder",
        "sae_path",
        lambda root, outside: str(root / "_models" / "sae"),
        True,
    ),
]


@pytest.mark.parametrize("case", HOST_PATHS, ids=lambda c: c.name)
def test_jobs_read_only_allowed_directories(case: HostPath, tmp_path: Path) -> None:
    root, outside = tmp_path / "results", tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "creds.json").write_text(json.dumps(CREDENTIALS))
    overrides = {case.setting: case.path(root, outside)}
    if case.setting == "corpus_file":
        overrides["languages"] = "usr,pwd"
    request = validate_request(
        {
            "preset": "tiny" if case.setting == "corpus_file" else "gemma-2-2b",
            "id": GOOD_ID,
            "run_id": "x",
            "overrides": overrides,
        }
    )
    queue = JobQueue(str(root))
    worker = Worker(queue, WorkerConfig(program=(sys.executable, "-c", "raise SystemExit(9)")))
    problem = worker.path_problem(request)
    assert (problem is None) == case.allowed, problem
    if case.allowed:
        return
    queue.submit(request)
    assert worker.run_once()
    job = queue.get(GOOD_ID)
    assert job.state == "failed" and job.status.returncode is None  # the run command never started
    for secret in (*CREDENTIALS, *CREDENTIALS.values(), str(outside)):
        assert secret not in job.status.error


# ---------------------------------------------------------- leftovers ---


def _age(path: Path, hours: float) -> None:
    import os
    import time

    stamp = time.time() - hours * 3600
    for p in [path, *path.rglob("*")]:
        os.utime(p, (stamp, stamp))


def test_stale_temporaries_are_cleaned_when_the_run_starts_and_the_worker_starts(
    tmp_path: Path,
) -> None:
    from bilingual_core import SyntheticConfig, write_synthetic_run
    from bilingual_core.storage import TemporaryLock, open_root

    root = tmp_path / "results"
    killed = root / ".demo.tmp-assemble-0123456789ab"  # a merge killed two hours ago
    (killed / "demo").mkdir(parents=True)
    (killed / "demo" / "activations.parquet").write_bytes(b"x" * 100)
    _age(killed, 2)
    fresh = root / ".demo.tmp-fedcba987654"  # a writer at work right now
    fresh.mkdir()
    busy = root / ".other.tmp-aaaaaaaaaaaa"  # old, but its writer holds the lock
    busy.mkdir()
    lock = TemporaryLock(open_root(root)[0], str(busy))
    _age(busy, 2)
    other = root / ".other.tmp-bbbbbbbbbbbb"  # old, of another run
    other.mkdir()
    _age(other, 2)

    write_synthetic_run(root, SyntheticConfig(n_pairs=20, d_sae=64, mean_tokens=4.0, run_id="demo"))
    assert not killed.exists() and fresh.exists() and other.exists() and busy.exists()
    assert not list(root.glob(".demo*.lock"))  # the writer's own lock went with its commit

    worker = Worker(JobQueue(str(root)), WorkerConfig())
    assert worker.clean_temporaries() == [other.name]
    assert fresh.exists() and busy.exists()
    lock.release()


# ---------------------------------------------------------- run files ---

LINK_MARKUP = "<a href='http://evil.example/phish'>Sign in again</a>"


def test_markup_in_run_files_is_shown_as_text(
    app_runs: AppRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A threshold name (curves legend, a plotly trace name), a manifest field
    (``st.table`` on the overview) and a planted label carrying markup."""
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = tmp_path / "results"
    run = root / "synthetic"
    shutil.copytree(app_runs.run, run)
    for name in ("curves.parquet", "thresholds.parquet"):
        table = pq.read_table(run / name)
        column = pc.cast(table["threshold"], pa.string())
        renamed = pc.if_else(pc.equal(column, "mean"), LINK_MARKUP, column)
        pq.write_table(
            table.set_column(table.schema.get_field_index("threshold"), "threshold", renamed),
            run / name,
        )
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["corpus"]["source"] = PHISH
    (run / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv(RESULTS_ENV, str(root))
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception, at.exception
    tables = "\n".join(t.value.to_csv() for t in at.get("table"))
    assert "Sign in again" in tables and "](http" not in tables
    at.switch_page("views/curves.py").run()
    assert not at.exception, at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = [t.get("name", "") for spec in specs for t in spec["data"]]
    assert any("Sign in again" in n for n in names)
    assert not any("<a" in n for n in names), names


# ---------------------------------------------------------- CSV export ---

FORMULA = '=HYPERLINK("http://evil.example","x")'
CSV_CELLS: list[tuple[str, str]] = [
    ("a formula", FORMULA),
    ("a bare CR before a formula", "ok\r" + FORMULA),
    ("CR LF before a formula", "ok\r\n" + FORMULA),
    ("a leading tab", "\t" + FORMULA),
    ("a leading space", "  " + FORMULA),
    ("a full-width equals sign", "＝1+1"),
    ("a zero-width space first", "\u200b" + FORMULA),
    ("a full-width plus", "＋cmd"),
    ("an at sign", "@SUM(A1)"),
    ("a minus", "-2+3"),
]


@pytest.mark.parametrize(("name", "cell"), CSV_CELLS, ids=[n for n, _ in CSV_CELLS])
def test_csv_export_starts_no_formula_and_no_row(name: str, cell: str) -> None:
    import csv
    import io
    import unicodedata

    import pandas as pd

    from explorer import table

    frame = pd.DataFrame({"label": [cell, "plain"], "score": [0.5, -1.0]})
    text = table.csv_text(frame)
    assert len(text.splitlines()) == 3  # header and two rows, whatever splits lines
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == 3 and rows[2] == ["plain", "-1.0"]
    for value in rows[1][:1]:
        visible = unicodedata.normalize("NFKC", value.lstrip(" \t\u200b"))
        assert visible[:1] not in ("=", "+", "-", "@"), value
    assert all(line.startswith('"') for line in text.splitlines())  # text cells are quoted


# ------------------------------------------------------ display spoofing ---

SPOOF = "invoice\u202eexe.gnp and \u2066hidden\u2069 \u200fmark"


def test_bidi_controls_never_reach_the_page() -> None:
    from explorer import render, safe_text, table

    for shown in (
        safe_text.md(SPOOF),
        safe_text.plotly_text(SPOOF),
        render.esc(SPOOF),
        render.sentence(SPOOF),
        str(table.csv_cell(SPOOF)),
    ):
        assert not safe_text.BIDI_CONTROLS.search(shown), ascii(shown)
        assert "exe.gnp" in shown


def test_bidi_controls_in_corpus_and_manifest_are_removed_on_the_pages(
    app_runs: AppRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from explorer import data

    root = tmp_path / "results"
    run = root / app_runs.run.name
    shutil.copytree(app_runs.run, run)
    pairs = pq.read_table(run / "pairs.parquet")
    text = pc.binary_join_element_wise(pairs["text"], pa.scalar(SPOOF), "")
    pq.write_table(
        pairs.set_column(pairs.schema.get_field_index("text"), "text", text), run / "pairs.parquet"
    )
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["model"]["name"] = SPOOF
    (run / "manifest.json").write_text(json.dumps(manifest))
    location = str(run)
    for frame in (
        data.pair_texts(location, "t", (0, 1)),
        data.search_pairs(location, "t", "exe"),
        data.runs_frame(data.list_runs(str(root))),
    ):
        assert not frame.empty
        assert not frame.astype(str).map(safe_text_bidi).any().any(), frame
    monkeypatch.setenv(RESULTS_ENV, str(root))
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.switch_page("views/pairs.py").run()
    assert not at.exception, at.exception
    shown = _shown(at) + "".join(h.proto.body for h in at.get("html"))
    assert "exe.gnp" in shown and not safe_text_bidi(shown)


def safe_text_bidi(text: str) -> bool:
    from explorer.safe_text import BIDI_CONTROLS

    return BIDI_CONTROLS.search(text) is not None


# ------------------------------------------------------- shared caches ---


def test_a_client_cannot_clear_the_shared_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import streamlit as st
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.runtime.app_session import AppSession

    monkeypatch.setattr(
        AppSession, "_handle_clear_cache_request", AppSession._handle_clear_cache_request
    )  # undone after the test
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "results"))
    AppTest.from_file(str(APP), default_timeout=30).run()  # the app installs its guard
    calls = []

    @st.cache_data
    def cached() -> int:
        calls.append(1)
        return len(calls)

    assert cached() == 1
    assert BackMsg(clear_cache=True).WhichOneof("type") == "clear_cache"
    # What AppSession.handle_backmsg calls for that message from any websocket client:
    AppSession._handle_clear_cache_request(SimpleNamespace(_session_state={}))
    assert cached() == 1  # still cached: the message was ignored


def test_the_duckdb_connection_rebuilds_with_its_filesystems() -> None:
    import io

    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from explorer import data

    buffer = io.BytesIO()
    pq.write_table(pa.table({"pair_id": [0, 1, 2]}), buffer)
    fsspec.filesystem("memory").pipe("/hostile-cache/demo/pairs.parquet", buffer.getvalue())
    sql = "SELECT count(*) AS n FROM read_parquet(?)"
    for _ in range(2):  # before and after the connection is rebuilt
        source = data.parquet_source("memory://hostile-cache/demo", "pairs.parquet")
        assert int(data.query(sql, [source], file="pairs.parquet")["n"].iloc[0]) == 3
        data.duckdb_connection.clear()


# ------------------------------------------------- commits and cancels ---


def test_a_local_commit_killed_between_its_renames_loses_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from bilingual_core import Run, SyntheticConfig, storage, write_synthetic_run

    root = tmp_path / "results"
    config = SyntheticConfig(n_pairs=12, d_sae=64, mean_tokens=3.0, run_id="demo")
    write_synthetic_run(root, config)
    first = Run.open(root / "demo").manifest.created_at
    real_rename, calls = os.rename, []

    def killed_after_first_rename(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) > 1:
            raise SystemExit("killed")  # the process dies: not even the restoring rename runs
        real_rename(src, dst)

    monkeypatch.setattr(storage, "exchange", lambda a, b: False)  # a system without the swap
    monkeypatch.setattr(storage.os, "rename", killed_after_first_rename)
    with pytest.raises(SystemExit):
        write_synthetic_run(root, SyntheticConfig(**{**config.__dict__, "seed": 9}), overwrite=True)
    monkeypatch.setattr(storage.os, "rename", real_rename)
    assert not (root / "demo").exists() and list(root.glob(".demo.old-*"))
    storage.clean_stale_temporaries(root, max_age_s=0.0)  # the cleanup any writer or worker runs
    run = Run.open(root / "demo")
    assert run.is_complete and run.manifest.created_at == first  # the old run, whole
    assert not list(root.glob(".demo.old-*"))


def test_replacing_a_run_leaves_one_complete_run(tmp_path: Path) -> None:
    from bilingual_core import Run, SyntheticConfig, write_synthetic_run

    root = tmp_path / "results"
    config = SyntheticConfig(n_pairs=12, d_sae=64, mean_tokens=3.0, run_id="demo")
    write_synthetic_run(root, config)
    write_synthetic_run(root, SyntheticConfig(**{**config.__dict__, "n_pairs": 14}), overwrite=True)
    assert Run.open(root / "demo").manifest.n_pairs == 14
    assert sorted(p.name for p in root.iterdir()) == ["demo"]


WRITES_THEN_WAITS = (
    "import json, sys, time\n"
    "from bilingual_core import SyntheticConfig, write_synthetic_run\n"
    "out = json.load(open(sys.argv[sys.argv.index('--config') + 1]))['out']\n"
    "write_synthetic_run(out, SyntheticConfig(n_pairs=12, d_sae=64, mean_tokens=3.0,"
    " run_id='x'), overwrite=True)\n"
    "print('committed; now the logits pass', flush=True)\n"
    "{after}\n"
    "time.sleep(30)\n"
)
CANCEL_NOW = f"open(out + '/_jobs/{GOOD_ID}/cancel.json', 'w').write(json.dumps({{'by': 'ana'}}))"


@pytest.mark.parametrize(
    ("name", "after", "state"),
    [
        ("cancel after the commit", CANCEL_NOW, "cancelled"),
        ("crash after the commit", "sys.exit(5)", "failed"),
    ],
    ids=["cancel after the commit", "crash after the commit"],
)
def test_a_job_stopped_after_its_commit_says_the_run_is_published(
    name: str, after: str, state: str, tmp_path: Path
) -> None:
    from bilingual_core import SyntheticConfig, write_synthetic_run

    root = tmp_path / "results"
    write_synthetic_run(root, SyntheticConfig(n_pairs=10, d_sae=64, mean_tokens=3.0, run_id="x"))
    queue = JobQueue(str(root))
    queue.submit(
        validate_request({"preset": "tiny", "id": GOOD_ID, "run_id": "x", "overwrite": True})
    )
    program = (sys.executable, "-c", WRITES_THEN_WAITS.format(after=after))
    config = WorkerConfig(heartbeat_seconds=0.2, stop_grace_seconds=5.0, program=program)
    assert Worker(queue, config).run_once()
    job = queue.get(GOOD_ID)
    assert job.state == state
    assert "not written" not in job.status.error and "already written" in job.status.error
    assert "is published" in job.status.error and job.status.run_location


def test_a_job_cancelled_before_its_commit_says_nothing_was_written(tmp_path: Path) -> None:
    root = tmp_path / "results"
    queue = JobQueue(str(root))
    queue.submit(validate_request({"preset": "tiny", "id": GOOD_ID, "run_id": "x"}))
    program = (
        sys.executable,
        "-c",
        CANCEL_NOW.replace("out + '", f"'{root}") + "\nimport time; time.sleep(30)",
    )
    program = (sys.executable, "-c", "import json\n" + program[2])
    config = WorkerConfig(heartbeat_seconds=0.2, stop_grace_seconds=5.0, program=program)
    assert Worker(queue, config).run_once()
    job = queue.get(GOOD_ID)
    assert job.state == "cancelled" and "the run was not written" in job.status.error


# ------------------------------------------------------------- leaks ---


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://AKIA:hunter2@bucket/results", "s3://***@bucket/results"),
        ("https://user:hunter2@host/x and hf://tok@datasets/x", "https://***@host/x and hf://***@"),
        ("memory://plain/path", "memory://plain/path"),
    ],
)
def test_url_credentials_are_redacted(url: str, shown: str) -> None:
    from bilingual_core.storage import redact_url

    assert redact_url(url).startswith(shown) and "hunter2" not in redact_url(url)


def test_a_push_to_password_is_never_written_to_job_files(tmp_path: Path) -> None:
    root = tmp_path / "results"
    queue = JobQueue(str(root))
    queue.submit(validate_request({"preset": "tiny", "id": GOOD_ID, "run_id": "x"}))
    program = (sys.executable, "-c", WRITES_THEN_WAITS.format(after="sys.exit(0)"))
    push = "memory://admin:hunter2@pushed/results"
    config = WorkerConfig(heartbeat_seconds=0.2, push_to=(push,), program=program)
    assert Worker(queue, config).run_once()
    job = queue.get(GOOD_ID)
    assert job.state == "succeeded", job.status.error
    written = "".join(p.read_text() for p in (root / "_jobs").rglob("*.json"))
    assert "memory://***@pushed/results" in written and "hunter2" not in written


def test_the_page_icon_is_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit

    seen: dict[str, object] = {}
    real = streamlit.set_page_config

    def record(**kwargs: object) -> None:
        seen.update(kwargs)
        real(**kwargs)

    monkeypatch.setattr(streamlit, "set_page_config", record)
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "results"))
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception, at.exception
    icon = Path(str(seen["page_icon"]))
    assert icon.is_file() and icon.suffix == ".png"  # served by the app, no font host
    assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_server_paths_in_the_manifest_and_a_missing_run_stay_on_the_server(
    app_runs: AppRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    root = tmp_path / "srv" / "secret-place" / "results"
    run = root / app_runs.run.name
    shutil.copytree(app_runs.run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["model"]["path"] = "/home/operator/.cache/bilingual-sae/gemma3-270m/checkpoint"
    manifest["sae"]["path"] = str(root / "_models" / "sae")
    manifest["corpus"]["source"] = str(root / "_corpora" / "mine.tsv")
    (run / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv(RESULTS_ENV, str(root))
    for params in ({}, {"run": "gone"}):
        at = AppTest.from_file(str(APP), default_timeout=30)
        at.query_params.update(params)
        at.run()
        at.switch_page("views/overview.py")
        at.query_params.update(params)
        at.run()
        assert not at.exception, at.exception
        shown = _shown(at) + "".join(str(j.value) for j in at.get("json"))
        for secret in ("secret-place", "/home/operator", ".cache"):
            assert secret not in shown, (params, secret, shown)


# ------------------------------------------------------ crafted run files ---


def _rewrite(name: str, change: Callable) -> Callable[[Path], dict[str, str]]:
    """Rewrite run file ``name`` with ``change(table) -> table``; the URL params to open."""

    def craft(run: Path) -> dict[str, str]:
        import pyarrow.parquet as pq

        table = pq.read_table(run / name)
        pq.write_table(change(table), run / name)
        return {}

    return craft


def _set(column: str, value: Callable) -> Callable:
    def change(table):
        import pyarrow as pa

        index = table.schema.get_field_index(column)
        return table.set_column(index, column, pa.array(value(table), type=value.type))

    return change


def _constant_features(run: Path) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = pq.read_table(run / "features.parquet").slice(0, 1)
    block = pa.concat_tables([row] * 1000).combine_chunks()
    block = pa.concat_tables([block] * 100).combine_chunks()  # 100,000 equal rows
    with pq.ParquetWriter(run / "features.parquet", block.schema, compression="zstd") as out:
        for _ in range(20):  # one row repeated 2 M times: a file of a few hundred KB
            out.write_table(block)
    return {}


def _nan_feature(run: Path) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(run / "activations.parquet")
    feature = table["feature"][0].as_py()
    mask = pc.equal(table["feature"], feature)
    nan = pc.if_else(mask, pa.scalar(float("nan"), table["activation"].type), table["activation"])
    index = table.schema.get_field_index("activation")
    pq.write_table(table.set_column(index, "activation", nan), run / "activations.parquet")
    return {"feature": str(feature)}


def _ints(value: int, kind: object) -> Callable:
    def make(table):
        return [value] * table.num_rows

    make.type = kind  # type: ignore[attr-defined]
    return make


def _strings(table):
    return [str(v) for v in table["feature"].to_pylist()]


_strings.type = None  # type: ignore[attr-defined]

CRAFTED: list[tuple[str, Callable[[Path], dict[str, str]], str, str]] = [
    (
        "2 M constant rows in features.parquet",
        _constant_features,
        "views/features.py",
        "2,000,000 rows",
    ),
    (
        "feature column of strings",
        _rewrite("features.parquet", _set("feature", _strings)),
        "views/features.py",
        "column 'feature'",
    ),
    (
        "negative pair ids",
        _rewrite("activations.parquet", _set("pair_id", _ints(-5, None))),
        "views/feature.py",
        "ids outside",
    ),
    (
        "infinite activations",
        _rewrite("activations.parquet", _set("activation", _ints(float("inf"), None))),
        "views/feature.py",
        "infinite",
    ),
    ("NaN activations", _nan_feature, "views/feature.py", "NaN"),
]


@pytest.mark.parametrize(("name", "craft", "page", "reason"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_run_files_give_a_clear_error(
    name: str,
    craft: Callable[[Path], dict[str, str]],
    page: str,
    reason: str,
    app_runs: AppRuns,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    root = tmp_path / "results"
    run = root / app_runs.run.name
    shutil.copytree(app_runs.run, run)
    params = craft(run)
    monkeypatch.setenv(RESULTS_ENV, str(root))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page(page)
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    errors = "\n".join(e.value for e in at.error)
    assert reason in errors, errors
