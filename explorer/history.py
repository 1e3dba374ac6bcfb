"""One browser-history entry per thing the reader does.

Streamlit's frontend adds a history entry (``history.pushState``) whenever the
query string a script writes differs from the address bar, and when a page
link changes the page. One click therefore often made two entries: a link to
another page pushes its address, then the page writes its canonical
parameters (``run=...``, defaults removed) and that pushes again; on a
previous / next link the query string is sent back (see
``ui._url_arrived``) and then tidied. The browser's Back then needed two
presses, the first landing on a near-copy of the same view.

``install()`` (``app.py`` calls it each run, before the page draws) puts a
small script into the page: a ``pushState`` made without a click or key
press since the last one becomes a ``replaceState``. So a click or key press
adds at most one entry, and writes the app makes by itself (on load, while a
page tidies its link) replace the current entry. The browser's Back and
Forward already replace (Streamlit does that during history navigation).

On a fresh load the page may draw before that script is in place, so the
first run of a browser session does not write the URL itself:
``replace_url`` has the page replace its address and tell Streamlit (a
``popstate``, which reruns the page as a history navigation).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import streamlit as st

SCRIPT = """<script>
(() => {
  if (window.__bilingualHistory) return;
  window.__bilingualHistory = true;
  let armed = false;
  const arm = (e) => { if (e.isTrusted) armed = true; };
  window.addEventListener("pointerdown", arm, true);
  window.addEventListener("keydown", arm, true);
  window.addEventListener("popstate", () => { armed = false; }, true);
  const push = history.pushState.bind(history);
  const replace = history.replaceState.bind(history);
  history.pushState = (state, title, url) => {
    if (armed) {
      armed = false;
      return push(state, title, url);
    }
    return replace(state, title, url);
  };
})();
</script>"""
"""Runs once per document (the flag); later runs find it installed."""


def install() -> None:
    """Draw the history script (a zero-height element in the sidebar)."""
    st.sidebar.html(SCRIPT, unsafe_allow_javascript=True)


def replace_url(params: dict[str, str]) -> None:
    """Make ``params`` the address's query string without a history entry;
    Streamlit reruns the page with it."""
    query = json.dumps(urlencode(params)).replace("<", "\\u003c")
    st.sidebar.html(
        f"""<script>
(() => {{
  const url = new URL(location.href);
  url.search = {query};
  if (url.href === location.href) return;
  history.replaceState(history.state, "", url.href);
  window.dispatchEvent(new PopStateEvent("popstate", {{ state: history.state }}));
}})();
</script>""",
        unsafe_allow_javascript=True,
    )
