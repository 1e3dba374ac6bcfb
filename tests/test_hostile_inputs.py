"""Hostile inputs, as a table: each case is an input a visitor, a maintainer or a
broken file can produce, and the refusal the code must answer with.

Extend a table with one line per new attack. ``REFUSALS`` holds calls that
must raise; the other tables check what a page or the worker does instead of
raising (a message, a clamped value, a failed job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import APP, RESULTS_ENV, AppRuns, build_app_runs

from bilingual_core.manifest import Manifest, check_run_id
from jobs.config import CorpusSource
from jobs.request import validate_request
from jobs.settings import RequestError
from precompute.corpus import load_corpus
from precompute.errors import CorpusError


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
    Refusal("run id with a trailing newline", lambda _: check_run_id("demo\n"), ValueError, "invalid run id"),
    Refusal("job run id with a trailing newline",
            lambda _: validate_request({"preset": "tiny", "run_id": "demo\n"}), RequestError, "run_id"),
    Refusal("job id with a trailing newline",
            lambda _: validate_request({"preset": "tiny", "id": "20260101-000000-000-abcd\n"}),
            RequestError, "id"),
    Refusal("language with a trailing newline",
            lambda _: validate_request({"preset": "tiny", "overrides": {"languages": ["en", "es\n"]}}),
            RequestError, "languages"),
    Refusal("manifest language with a trailing newline",
            lambda _: Manifest(run_id="r", languages=["en", "es\n"], n_pairs=1, d_sae=1), ValueError,
            "language code"),
    # a corpus row with the wrong number of fields is an error naming its line
    Refusal("TSV row with an extra field", _corpus("c.tsv", "en\tes\nhello\thola\tEXTRA\n"),
            CorpusError, "line 2 has 3 field"),
    Refusal("CSV row with an extra field", _corpus("c.csv", "en,es\nhello,hola,EXTRA\nbye,adios\n"),
            CorpusError, "line 2 has 3 field"),
    Refusal("TSV row with a missing field", _corpus("c.tsv", "en\tes\nhello\thola\nbye\n"),
            CorpusError, "line 3 has 1 field"),
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
    Link("Markdown in the feature number", "pages/feature.py", {"feature": PHISH}, ("Ignored",)),
    Link("Markdown in the pair search", "pages/pairs.py", {"q": PHISH}),
    Link("Markdown in the run name", "pages/overview.py", {"run": PHISH}, ("Ignored",)),
    Link("share cut above the slider's maximum", "pages/features.py", {"cut": "5"},
         ("outside",), _slider("features_cut", 1.0)),
    Link("share cut below the slider's minimum", "pages/features.py", {"cut": "-3"},
         check=_slider("features_cut", 0.5)),
    Link("pair number past the last pair", "pages/pairs.py", {"pair": "10000000"},
         check=_number("pairs_id", 119)),
    Link("huge integer", "pages/features.py", {"minpairs": "9" * 400}, ("Ignored",)),
    Link("pair count above the slider's maximum", "pages/feature.py", {"n": "500"},
         check=_slider("feature_n", 50)),
]


@pytest.fixture(scope="module")
def app_runs(tmp_path_factory: pytest.TempPathFactory) -> AppRuns:
    return build_app_runs(tmp_path_factory.mktemp("hostile") / "results")


def _markdown(at: AppTest) -> str:
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "error", "warning",
                 "success", "table"):
        parts += [str(getattr(el, "value", "")) for el in at.get(kind)]
    return "\n".join(parts)


@pytest.mark.parametrize("case", LINKS, ids=lambda c: c.name)
def test_hostile_link_is_shown_as_text(case: Link, app_runs: AppRuns,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
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
