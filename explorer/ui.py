"""Widget helpers shared by the pages: URL state, the run picker, messages.

State that matters lives in the URL (``st.query_params``) so a link
reproduces a view. Each widget has a page-prefixed session-state key and a
short URL parameter; ``url_seed`` (before drawing the widget) makes the widget
follow the URL when the URL changed from outside (a shared link, a page link
with parameters), and ``url_publish`` (after) writes the widget's value back.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from bilingual_core.schema import COACTIVATION
from bilingual_core.storage import DEFAULT_RESULTS, results_root_from_env

from . import data, history, table
from .data import RunRef
from .safe_text import hide_paths, log_and_hide, md, public_name

T = TypeVar("T")

APP_DIR = Path(__file__).resolve().parent.parent

_LAST = "app_url_last"
"""Session key: the value this session last wrote for each URL parameter."""
RUN_KEY = "app_run"
RUN_CONTEXT_KEY = "app_run_ref"
RUN_PROBLEM_KEY = "app_run_problem"
_RUN_TO_PUBLISH = "app_run_to_publish"
_URL_NAMED_RUN = "app_url_named_run"
"""Session key: the address has named the run once (the history script is in place)."""
DEFAULT_RUN = "gemma3-en-es-l9"
"""The run a fresh visitor sees: Gemma 3 270M with the SAE this project trained (README)."""


# ------------------------------------------------------------ entry ---

_entry = threading.local()


PAGE_ICON = Path(__file__).resolve().parent / "static" / "icon.png"
"""The browser tab's icon, served by the app itself (no outside font host)."""

PAGE_CSS = """<style>
/* Less empty space above and around each page's title (Streamlit leaves 6rem
   above the page and 1.25rem above its title); the title stays below the
   3.75rem header. */
[data-testid="stMainBlockContainer"] { padding-top: 3.75rem; }
[data-testid="stMainBlockContainer"] h1 { padding-top: 0; padding-bottom: 0.5rem; }
/* On a narrow window (a 1024 px laptop, the sidebar open) the side margins
   give their room to the content. */
@media (max-width: 1200px) {
  [data-testid="stMainBlockContainer"] { padding-left: 1.5rem; padding-right: 1.5rem; }
}
</style>"""
"""The app's few layout rules (only ``<style>``: ``st.html`` draws it in no space)."""


def page_style() -> None:
    """``app.py`` calls this once per run: ``PAGE_CSS``."""
    st.html(PAGE_CSS)


@contextmanager
def app_entry() -> Iterator[None]:
    """``app.py`` runs the selected page inside this block."""
    _entry.active = True
    try:
        yield
    finally:
        _entry.active = False


def require_entry() -> None:
    """Every page calls this first: make sure ``app.py`` (sidebar, run picker,
    ``st.navigation``) is running it.

    Every page URL goes through ``app.py`` (the pages live in ``views/``, a
    folder Streamlit gives no meaning, so it never runs a page file alone);
    a page started directly (``streamlit run views/feature.py``) says how to
    open the app instead of drawing half a page.
    """
    if getattr(_entry, "active", False):
        return
    st.info("This is one page of the explorer: start the app with `streamlit run app.py`.")
    st.stop()


# ------------------------------------------------------------ URL state ---


def url_seed(
    key: str, param: str, parse: Callable[[str], T], default: T, shown: str | None = None
) -> None:
    """Set ``st.session_state[key]`` from the URL parameter ``param`` when the
    widget has no state yet, or when the URL now says something this session
    did not write (a page link, the browser's Back). An invalid value falls
    back to ``default``, and the main area says so and what it shows instead
    (``shown``, else the default)."""
    raw = st.query_params.get(param)
    last = st.session_state.setdefault(_LAST, {})
    if key in st.session_state and (raw is None or raw == last.get(param)):
        return
    if key in st.session_state:
        _url_arrived()
    value = default
    if raw is not None:
        try:
            value = parse(raw)
        except OutOfRange as exc:
            notice(
                f"The link's `{param}` value {md(raw, 80)} is outside {md(exc.bounds)}; "
                f"showing {md(exc.value)} instead."
            )
            value = exc.value
        except (ValueError, TypeError, OverflowError) as exc:
            instead = (
                shown if shown is not None else md(default)
            )  # ``shown`` is the app's own Markdown
            notice(
                f"The link's `{param}` value {md(raw, 80)} is not valid ({md(exc, 160)}); "
                f"showing {instead} instead."
            )
            value = default
    st.session_state[key] = value


def _url_arrived() -> None:
    """The URL changed under a page that was already drawn: a page link to the
    same page (previous / next) or the browser's Back. Streamlit's frontend
    updates the address bar and adds a history entry only when the script
    changes ``st.query_params``, and a same-page link alone does not, so send
    the query string back once; a Back is answered with a replace, no entry."""
    st.query_params.from_dict(st.query_params.to_dict())


def url_publish(
    param: str, value: Any, default: Any = None, encode: Callable[[Any], str] = str
) -> None:
    """Write ``value`` to the URL parameter ``param`` (removed when it equals ``default``)."""
    last = st.session_state.setdefault(_LAST, {})
    if value is None or value == default:
        if param in st.query_params:
            del st.query_params[param]
        last[param] = None
        return
    text = encode(value)
    if st.query_params.get(param) != text:
        st.query_params[param] = text
    last[param] = text


def url_only(*params: str) -> None:
    """Drop URL parameters of other pages (``run`` is always kept), so a copied
    link names only what this page shows."""
    keep = {"run", *params}
    for name in [k for k in st.query_params if k not in keep]:
        del st.query_params[name]


class OutOfRange(ValueError):
    """A URL number outside its widget's range; ``value`` is the nearest one inside.

    ``url_seed`` uses ``value`` (the widget would raise on the number itself)."""

    def __init__(self, value: Any, lo: Any, hi: Any) -> None:
        self.value = value
        self.bounds = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
        super().__init__(f"outside {self.bounds}")


JS_SAFE_INT = 2**53 - 1
"""Largest integer a number widget takes (the browser's number type)."""


def _clamp(value: T, lo: Any, hi: Any) -> T:
    clamped = value
    if lo is not None and clamped < lo:
        clamped = lo
    if hi is not None and clamped > hi:
        clamped = hi
    if clamped != value:
        raise OutOfRange(clamped, lo, hi)
    return value


def parse_int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """A URL integer for a widget ranging ``lo..hi`` (OutOfRange carries the clamped value)."""
    lo = -JS_SAFE_INT if lo is None else lo
    hi = JS_SAFE_INT if hi is None else hi

    def parse(raw: str) -> int:
        if len(raw) > 20:
            raise ValueError("too long for a number")
        return _clamp(int(raw), lo, hi)

    return parse


def parse_float(raw: str) -> float:
    if len(raw) > 40:
        raise ValueError("too long for a number")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def parse_float_range(lo: float, hi: float) -> Callable[[str], float]:
    """A URL float for a slider ranging ``lo..hi`` (OutOfRange carries the clamped value)."""

    def parse(raw: str) -> float:
        return _clamp(parse_float(raw), lo, hi)

    return parse


def parse_choice(options: list[str]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"{raw!r} is not one of {options}")
        return raw

    return parse


def url_toggle(
    label: str, key: str, param: str, default: bool, *, where: Any = None, **kwargs: Any
) -> bool:
    """A toggle kept in the URL parameter ``param`` (absent when it is ``default``):
    seeded from the URL, drawn in ``where`` (a column or container; the main
    area by default) with ``kwargs`` (``help``, ``width`` ...), then published."""
    url_seed(key, param, parse_bool, default)
    value = bool((where or st).toggle(label, key=key, **kwargs))
    url_publish(param, value, default, encode_bool)
    return value


def parse_bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def encode_bool(value: bool) -> str:
    return "1" if value else "0"


def parse_int_list(lo: int, hi: int) -> Callable[[str], list[int]]:
    """Comma-separated integers; those outside ``lo..hi`` are dropped."""
    one = parse_int(lo, hi)

    def parse(raw: str) -> list[int]:
        values = []
        for item in raw.split(",")[:1000]:
            if not item.strip():
                continue
            try:
                values.append(one(item))
            except OutOfRange:
                continue
        return values

    return parse


def encode_int_list(values: list[int]) -> str:
    return ",".join(str(int(v)) for v in values)


# ------------------------------------------------------------ notices ---


_NOTICES_SAID = "_ui_notices_said"
_NOTICES_CARRIED = "_ui_notices_carried"


def notices_here() -> None:
    """``app.py`` calls this at the top of the main area, before the sidebar:
    what ``notice`` says during this run (an invalid link value found by a
    sidebar widget included) appears there, above the page, and so do the
    notices of a run that ended by replacing the address (``publish_run``)."""
    _entry.notices = st.container()
    st.session_state[_NOTICES_SAID] = []
    for text in st.session_state.pop(_NOTICES_CARRIED, []):
        notice(text)


def notice(text: str) -> None:
    """A warning in the main area's notice slot (where the page is, when none)."""
    target = getattr(_entry, "notices", None)
    (target if target is not None else st).warning(text)
    st.session_state.setdefault(_NOTICES_SAID, []).append(text)


# ------------------------------------------------------------- the run ---


def run_picker_ui(root: str) -> RunRef | None:
    """The sidebar's run picker. Stores the chosen run (or its problem) for the
    pages and returns it; None when there is nothing usable to choose."""
    st.session_state[RUN_CONTEXT_KEY] = None
    st.session_state[RUN_PROBLEM_KEY] = None
    try:
        listings = data.runs(root)
    except Exception as exc:  # an unreachable fsspec root: say so, never a traceback
        shown = log_and_hide(
            f"The results root {root} could not be listed: {type(exc).__name__}: {exc}"
        )
        st.session_state[RUN_PROBLEM_KEY] = md(shown, 400)
        return None
    if not listings:
        st.session_state[RUN_PROBLEM_KEY] = (
            f"No runs under the results root `{md(public_name(root))}`. Make one with "
            "`python -m precompute synthetic --out <results root>`, or point the app at other results "
            "with the environment variable `BILINGUAL_RESULTS_DIR` (a path or an fsspec URL)."
        )
        return None
    by_id = {r.run_id: r for r in listings}
    ids = list(by_id)
    ok = [r.run_id for r in listings if r.ok]
    default = DEFAULT_RUN if DEFAULT_RUN in ok else (ok[0] if ok else ids[0])

    def parse_run(raw: str) -> str:
        if raw not in by_id:
            raise ValueError(
                f"run {raw[:80]!r} does not exist under the results root {public_name(root)!r}"
            )
        return raw

    url_seed(RUN_KEY, "run", parse_run, default, shown=f"run `{default}`")
    if st.session_state.get(RUN_KEY) not in by_id:
        st.session_state[RUN_KEY] = default
    run_id = st.sidebar.selectbox(
        "Run",
        ids,
        key=RUN_KEY,
        format_func=lambda r: r if by_id[r].ok else f"{r} (unusable)",
        help=f"Runs under the results root {public_name(root)!r}",
    )
    st.session_state[_RUN_TO_PUBLISH] = run_id
    listing = by_id[run_id]
    if not listing.ok:
        problem = md(hide_paths(listing.problem), 400)
        st.session_state[RUN_PROBLEM_KEY] = f"Run “{md(run_id)}” cannot be shown: {problem}"
        return None
    manifest = listing.manifest
    ref = RunRef(root, run_id, data.run_location(listing, root), data.run_token(manifest), manifest)
    st.session_state[RUN_CONTEXT_KEY] = ref
    st.sidebar.caption(
        f"{manifest.n_pairs:,} pairs · {manifest.d_sae:,} features · {', '.join(manifest.languages)}"
    )
    return ref


def publish_run() -> None:
    """Write the chosen run to the URL; ``app.py`` calls this after the page
    has drawn. On a browser's fresh load of an address without ``run=``, the
    address is replaced (``history.replace_url``), so loading adds no history
    entry; later changes of run go through ``url_publish``."""
    run_id = st.session_state.pop(_RUN_TO_PUBLISH, None)
    if run_id is None:
        return
    if st.query_params.get("run") == run_id:
        st.session_state[_URL_NAMED_RUN] = True
        st.session_state.setdefault(_LAST, {})["run"] = run_id
        return
    fresh = "run" not in st.query_params and not st.session_state.get(_URL_NAMED_RUN)
    if fresh and st.context.headers:
        # A browser's fresh load of an address without run=: the history
        # script may not be in place yet, so replace the address (this reruns
        # the page). AppTest has no headers and runs no script. A link naming a
        # missing run is rewritten by url_publish, so its notice stays.
        history.replace_url({**st.query_params.to_dict(), "run": run_id})
        st.session_state.setdefault(_LAST, {})["run"] = run_id
        # the rerun that follows must say again what this run said
        st.session_state[_NOTICES_CARRIED] = list(st.session_state.get(_NOTICES_SAID, []))
        return
    url_publish("run", run_id)


def results_root() -> str:
    """``BILINGUAL_RESULTS_DIR``, else the ``results/`` directory next to
    app.py, so the bundled demo opens whatever the working directory."""
    return results_root_from_env(default=str(APP_DIR / DEFAULT_RESULTS))


def current_run(files: tuple[str, ...] = ()) -> RunRef:
    """The run chosen in the sidebar, with ``files`` checked; otherwise a
    message saying what is wrong (which run, which file), then ``st.stop()``."""
    problem = st.session_state.get(RUN_PROBLEM_KEY)
    ref = st.session_state.get(RUN_CONTEXT_KEY)
    if ref is None:
        if problem and problem.startswith("No runs"):
            st.info(problem)
        else:
            st.error(problem or "No run selected.")
        st.stop()
    problems = data.file_problems(ref.location, ref.token, tuple(files))
    if problems:
        lines = "\n".join(f"- {md(hide_paths(p), 400)}" for p in problems.values())
        st.error(
            f"Run `{ref.run_id}` is incomplete or damaged:\n{lines}\n\n"
            "Rescore it with `python -m precompute score --run <dir>`, or choose another run."
        )
        st.stop()
    return ref


def show_error(exc: Exception) -> None:
    """A read failure shown as a message (which file, what), never a traceback."""
    st.error(f"Could not read the run: {md(log_and_hide(exc), 400)}")


# ------------------------------------------------------------ formatting ---


def fmt(value: Any, digits: int = 4) -> str:
    """A number for display: integers with separators, floats to ``digits``
    significant digits, missing values as an en dash."""
    if value is None or value is pd.NA:
        return "–"
    try:
        if isinstance(value, bool):
            return "yes" if value else "no"
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return "–"
    if f == int(f) and abs(f) < 1e15 and not isinstance(value, float):
        return f"{int(f):,}"
    return f"{f:.{digits}g}"


def neuronpedia_url(neuronpedia_id: str | None, feature: int) -> str | None:
    """``https://www.neuronpedia.org/<id>/<feature>`` when the manifest names an id."""
    if not neuronpedia_id:
        return None
    return f"https://www.neuronpedia.org/{neuronpedia_id.strip('/')}/{int(feature)}"


def has_coactivation(ref: RunRef) -> bool:
    return not data.file_problems(ref.location, ref.token, (COACTIVATION,))


def coactivation_thresholds(ref: RunRef) -> list[str]:
    """Thresholds the co-activation scores exist at (just ``any`` without coactivation.parquet)."""
    if not has_coactivation(ref):
        return [table.ANY]
    return data.coactivation_thresholds(ref.location, ref.token)


def scored_features(ref: RunRef, threshold: str = table.ANY) -> pd.DataFrame:
    """The run's features table with the co-activation columns of ``threshold``
    (see ``table.score_table``)."""
    feats = data.features(ref.location, ref.token)
    co = data.coactivation(ref.location, ref.token, threshold) if has_coactivation(ref) else None
    planted = ref.manifest.extraction.get("planted") or None
    return table.score_table(feats, co, ref.languages, planted)
