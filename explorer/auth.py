"""Who may start and cancel recompute jobs: maintainers, recognised two ways.

1. **Streamlit's OIDC login** (``st.login``, ``st.user``), when secrets have
   an ``[auth]`` section (an identity provider). A signed-in user is a
   maintainer when their email is in ``[recompute] maintainer_emails``.
2. Otherwise a **maintainer password**, ``[recompute] password``, compared in
   constant time (``hmac.compare_digest``); the session stays unlocked until
   it ends.

With neither configured nobody is a maintainer and the page says how to
enable one. Secrets live in ``.streamlit/secrets.toml`` (never committed; see
``.streamlit/secrets.toml.example``) or the hosting platform's secrets box.

The pure functions take the secrets as a mapping, so they are tested without
Streamlit; ``maintainer_ui`` draws the sign-in widgets and returns who the
maintainer is.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

AuthMode = Literal["oidc", "password", "none"]
SECTION = "recompute"
UNLOCKED_KEY = "recompute_unlocked"
FAILURES_KEY = "recompute_password_failures"
MESSAGE_KEY = "recompute_auth_message"
FAILURE_DELAY_S = 1.0
"""Pause after a wrong password (slows guessing from one session)."""
ENABLE_HELP = """\
Starting and cancelling recomputes is for maintainers, and no way to recognise
one is configured. Add either to the app's secrets (`.streamlit/secrets.toml`,
or the secrets box of Streamlit Community Cloud; see
`.streamlit/secrets.toml.example`):

* an identity provider (an `[auth]` section: `redirect_uri`, `cookie_secret`,
  `client_id`, `client_secret`, `server_metadata_url`) and the maintainers'
  emails in `[recompute] maintainer_emails = ["you@example.org"]`; or
* a shared maintainer password: `[recompute] password = "..."`.
"""


@dataclass(frozen=True)
class Maintainer:
    """A person allowed to submit and cancel jobs."""

    name: str
    """Recorded in the jobs they submit or cancel (an email, or 'maintainer (password)')."""
    via: Literal["oidc", "password"]


def _section(secrets: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    try:
        value = secrets.get(name)
    except Exception:  # st.secrets without a secrets file raises on access
        return {}
    return value if isinstance(value, Mapping) else {}


def auth_mode(secrets: Mapping[str, Any]) -> AuthMode:
    """``oidc`` when an ``[auth]`` section exists, else ``password`` when one is set, else ``none``."""
    if _section(secrets, "auth"):
        return "oidc"
    if str(_section(secrets, SECTION).get("password") or ""):
        return "password"
    return "none"


def maintainer_emails(secrets: Mapping[str, Any]) -> frozenset[str]:
    """The allow-list, lower-cased (``[recompute] maintainer_emails``; a single string is one email)."""
    raw = _section(secrets, SECTION).get("maintainer_emails") or []
    if isinstance(raw, str):
        raw = [raw]
    return frozenset(str(e).strip().lower() for e in raw if str(e).strip())


def is_maintainer_email(email: Any, allowed: frozenset[str]) -> bool:
    return isinstance(email, str) and email.strip().lower() in allowed


def password_matches(given: str, secrets: Mapping[str, Any]) -> bool:
    """Constant-time comparison with ``[recompute] password`` (False when none is set)."""
    expected = str(_section(secrets, SECTION).get("password") or "")
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def provider_name(secrets: Mapping[str, Any]) -> str | None:
    """``[recompute] provider``: which of several ``[auth.<name>]`` providers ``st.login`` uses."""
    name = _section(secrets, SECTION).get("provider")
    return str(name) if name else None


def _user() -> Mapping[str, Any]:
    try:
        return st.user.to_dict()
    except Exception:
        return {}


def maintainer_ui(prefix: str = "recompute") -> Maintainer | None:
    """Draw the sign-in controls the configuration calls for; the maintainer, or None."""
    secrets = st.secrets
    mode = auth_mode(secrets)
    if mode == "none":
        st.info(ENABLE_HELP, icon=":material/lock:")
        return None
    if mode == "oidc":
        return _oidc_ui(secrets, prefix)
    return _password_ui(secrets, prefix)


def _oidc_ui(secrets: Mapping[str, Any], prefix: str) -> Maintainer | None:
    user = _user()
    if not user.get("is_logged_in"):
        st.caption("Maintainers sign in to start or cancel recomputes.")
        if st.button("Sign in", key=f"{prefix}_login", icon=":material/login:"):
            try:
                provider = provider_name(secrets)
                st.login(provider) if provider else st.login()
            except Exception as exc:  # Authlib missing, provider misconfigured
                st.error(f"Sign-in is configured but failed to start: {exc}")
        return None
    email = user.get("email")
    allowed = maintainer_emails(secrets)
    cols = st.columns([4, 1])
    if cols[1].button("Sign out", key=f"{prefix}_logout", icon=":material/logout:"):
        st.logout()
    if is_maintainer_email(email, allowed):
        cols[0].success(f"Signed in as {email}: maintainer.", icon=":material/verified_user:")
        return Maintainer(str(email), "oidc")
    if not allowed:
        cols[0].warning(
            f"Signed in as {email}. No maintainers are listed: add emails to "
            "`[recompute] maintainer_emails` in the app's secrets."
        )
    else:
        cols[0].warning(
            f"Signed in as {email or 'an account without an email'}, which is not a "
            "maintainer: you can watch the queue but not start or cancel jobs."
        )
    return None


def _unlock(password_key: str) -> None:
    """Form callback (runs before the page, so an immediate rerun cannot lose the click)."""
    given = str(st.session_state.get(password_key) or "")
    st.session_state[password_key] = ""
    if password_matches(given, st.secrets):
        st.session_state[UNLOCKED_KEY] = True
        st.session_state[FAILURES_KEY] = 0
        st.session_state[MESSAGE_KEY] = None
        return
    failures = int(st.session_state.get(FAILURES_KEY, 0)) + 1
    st.session_state[FAILURES_KEY] = failures
    st.session_state[MESSAGE_KEY] = "Wrong password."
    time.sleep(min(FAILURE_DELAY_S * failures, 10.0))


def _lock() -> None:
    st.session_state[UNLOCKED_KEY] = False


def _password_ui(secrets: Mapping[str, Any], prefix: str) -> Maintainer | None:
    if st.session_state.get(UNLOCKED_KEY):
        cols = st.columns([4, 1])
        cols[0].success(
            "Unlocked with the maintainer password for this session.", icon=":material/lock_open:"
        )
        cols[1].button("Lock", key=f"{prefix}_lock", icon=":material/lock:", on_click=_lock)
        return Maintainer("maintainer (password)", "password")
    password_key = f"{prefix}_password"
    with st.form(f"{prefix}_password_form"):
        st.text_input("Maintainer password", type="password", key=password_key)
        st.form_submit_button(
            "Unlock", icon=":material/lock_open:", on_click=_unlock, args=(password_key,)
        )
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message:
        st.error(message)
    return None
