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
"""

from __future__ import annotations

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
