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

* :func:`md` for Markdown: every ASCII punctuation character is
  backslash-escaped (CommonMark renders an escaped character literally, so no
  link, image, emphasis, HTML tag, entity, autolink, Streamlit directive or
  LaTeX can form) and line breaks become spaces (no new block can start);
* :func:`plotly_text` for plotly labels: HTML-escaped (plotly shows entities as
  the characters they stand for).

``st.text``, ``st.code``, ``st.dataframe`` cells and widget options already
show text literally and need neither.
"""

from __future__ import annotations

import html
import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def md(value: object, limit: int | None = 200) -> str:
    """``value`` as Markdown that renders exactly as the text (shortened to ``limit`` characters)."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _BREAKS.sub(" ", text)
    return _PUNCTUATION.sub(r"\\\1", text)


def plotly_text(value: object, limit: int | None = 120) -> str:
    """``value`` for a plotly trace name, title or hover text: markup shown as text."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    # "%" would start a hovertemplate variable ("%{x}") where the label is used in one.
    return html.escape(_BREAKS.sub(" ", text), quote=True).replace("%", "&#37;")
