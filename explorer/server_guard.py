"""Server-side guards for what a browser may ask of the Streamlit server.

Streamlit's server clears every shared cache (``st.cache_data`` and
``st.cache_resource``, for all visitors at once) when any websocket client
sends a ``clear_cache`` message; hiding the menu entry (``toolbarMode =
"viewer"``) does not stop a crafted client, and Streamlit has no option to
refuse it. :func:`refuse_client_cache_clear` makes the server ignore that
message (and log it). The caches still expire by themselves (``ttl``,
``max_entries``), and a restart clears them.
"""

from __future__ import annotations

import logging

log = logging.getLogger("explorer")
_MARK = "_bilingual_refused"


def _refused(self: object) -> None:
    del self
    log.warning("ignored a clear_cache request from a browser session")


setattr(_refused, _MARK, True)


def refuse_client_cache_clear() -> bool:
    """Make this server process ignore ``clear_cache`` from clients; True when the
    guard is in place (False when this Streamlit version has no such handler)."""
    try:
        from streamlit.runtime.app_session import AppSession
    except ImportError:  # pragma: no cover - a Streamlit without the runtime module
        return False
    handler = getattr(AppSession, "_handle_clear_cache_request", None)
    if handler is None:  # pragma: no cover - renamed in a later Streamlit
        log.warning("cannot guard clear_cache: Streamlit has no handler to replace")
        return False
    if not getattr(handler, _MARK, False):
        AppSession._handle_clear_cache_request = _refused  # type: ignore[method-assign]
    return True
