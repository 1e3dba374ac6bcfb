"""Untrusted text shown as text: never as Markdown, HTML or a chart's markup.

Much of what the app shows comes from outside the code: URL parameters (any
visitor can craft a link), run files (manifest fields, threshold names, planted
labels), job files (status text, worker heartbeats) and the corpus. Streamlit
renders Markdown in messages, captions, labels and ``st.table`` cells, and
plotly renders a subset of HTML (``<a href>``, ``<b>``…) in trace names and hover
text; so a link such as ``?feature=![x](http://host/x.png)`` would load an
outside image, or draw a clickable "Sign in again" link, inside the app.

Every such string passes through one of these functions before it reaches a
Markdown or plotly context:

* :func:`md` for Markdown: every ASCII punctuation character that can start
  inline markup is backslash-escaped (CommonMark renders an escaped character
  literally, so no link, image, emphasis, HTML tag, entity, autolink, Streamlit
  directive or LaTeX can form), line breaks become spaces (no new block can
  start), and a zero-width space goes into ``://``, ``www.`` and before ``@``:
  Streamlit's Markdown finds bare URLs and emails in the text *after* escapes
  are resolved (GFM autolink literals), so escaping alone leaves them links;
* :func:`plotly_text` for plotly labels: HTML-escaped (plotly shows entities as
  the characters they stand for).

``st.text``, ``st.code``, ``st.dataframe`` cells and widget options already
show text literally and need neither.

Bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and the other embeddings,
overrides, isolates and marks) would reorder what follows them, so that
``exe.gnp`` shows as ``png.exe``: :func:`no_bidi` removes them, and every
function here (and the data loaders' text columns) applies it.

Server paths are not for visitors either: :func:`hide_paths` shortens every
absolute path or URL in a message to its last component (a run id, a file
name), and :func:`public_name` names a results root without its location. The
full text goes to the server's log (:func:`log_and_hide`).
"""

from __future__ import annotations

import html
import logging
import posixpath
import re
import string

_INERT = set("-,;'\"?%/=.")
"""Punctuation with no inline meaning once line breaks are gone (left as is, so text stays
readable); a dot only matters in ``www.`` (an autolink), escaped on its own."""
_WWW = re.compile(r"(www)\.", re.IGNORECASE)
_AUTOLINK = re.compile(r"(\\:)(//)|(www)(\\\.)|(\\@)", re.IGNORECASE)
ZWSP = "\u200b"
_INTRAWORD = re.compile(r"(?<=[A-Za-z0-9])\\_(?=[A-Za-z0-9])")
"""An underscore inside a word (``batch_size``) cannot start emphasis: left unescaped."""
_PUNCTUATION = re.compile(
    "([" + re.escape("".join(c for c in string.punctuation if c not in _INERT)) + "])"
)
_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Characters that change the display order of the text around them."""


def no_bidi(value: object) -> str:
    """``value`` as text without bidirectional controls (shown in the order it is stored)."""
    return BIDI_CONTROLS.sub("", str(value))


def md(value: object, limit: int | None = 200) -> str:
    """``value`` as Markdown that renders exactly as the text (shortened to ``limit`` characters)."""
    text = no_bidi(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _PUNCTUATION.sub(r"\\\1", _BREAKS.sub(" ", text))
    text = _INTRAWORD.sub("_", _WWW.sub(r"\1\\.", text))
    return _AUTOLINK.sub(_break_autolink, text)


def _break_autolink(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1) + ZWSP + match.group(2)
    if match.group(3):
        return match.group(3) + ZWSP + match.group(4)
    return ZWSP + match.group(5)


def plotly_text(value: object, limit: int | None = 120) -> str:
    """``value`` for a plotly trace name, title or hover text: markup shown as text."""
    text = no_bidi(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    # "%" would start a hovertemplate variable ("%{x}") where the label is used in one.
    return html.escape(_BREAKS.sub(" ", text), quote=True).replace("%", "&#37;")


_PATH_LIKE = re.compile(
    r"(?<![\w.~-])(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{},]*|~?/[^\s'\"<>()\[\]{},]+)"
)
_TRAILING = ".:;!?"
log = logging.getLogger("explorer")


def _last_component(match: re.Match[str]) -> str:
    found = match.group(0)
    tail = ""
    while found and found[-1] in _TRAILING:
        found, tail = found[:-1], found[-1] + tail
    name = posixpath.basename(found.rstrip("/"))
    return (name or "…") + tail


def hide_paths(text: object) -> str:
    """``text`` with every absolute path and URL shortened to its last component.

    ``/srv/results/demo/pairs.parquet is missing`` becomes ``pairs.parquet is
    missing``; ``--out=/srv/results`` becomes ``--out=results``. Relative
    fragments (``en/es``, ``1/2``) are left alone.
    """
    return _PATH_LIKE.sub(_last_component, str(text))


def public_name(root: str) -> str:
    """A results root as visitors see it: its last folder name, never where it is."""
    return posixpath.basename(str(root).rstrip("/")) or "results"


def log_and_hide(message: object) -> str:
    """Write ``message`` whole to the server log; return it with paths hidden, for the page."""
    log.warning("%s", message)
    return hide_paths(message)


def md_frame(frame):
    """A DataFrame for ``st.table`` (which renders Markdown in cells): every cell and
    label escaped, server paths in cells shortened (:func:`hide_paths`: a model
    cache under the server's home directory, the results root)."""
    out = frame.map(lambda v: md(hide_paths(v), None))
    out.index = [md(v, None) for v in out.index]
    out.columns = [md(v, None) for v in out.columns]
    return out
