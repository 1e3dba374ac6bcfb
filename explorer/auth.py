"""Who may start and cancel recompute jobs: maintainers, recognised two ways.

1. **Streamlit's OIDC login** (``st.login``, ``st.user``), when secrets have
   an ``[auth]`` section (an identity provider). A signed-in user is a
   maintainer when their email is in ``[recompute] maintainer_emails``.
2. Otherwise a **maintainer password**, ``[recompute] password``, compared in
   constant time (``hmac.compare_digest``); the session stays unlocked until
   it ends. Wrong guesses are throttled per app process and per client address
   (:class:`Throttle`: exponential back-off, then a lock-out), so opening a new
   browser session does not reset the count; refused attempts are logged on
   the server (the address and the count, never the password).

With neither configured nobody is a maintainer and the page says how to
enable one. Secrets live in ``.streamlit/secrets.toml`` (never committed; see
``.streamlit/secrets.toml.example``) or the hosting platform's secrets box.

The pure functions take the secrets as a mapping, so they are tested without
Streamlit; ``maintainer_ui`` draws the sign-in widgets and returns who the
maintainer is.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

from explorer.safe_text import md

AuthMode = Literal["oidc", "password", "none"]
SECTION = "recompute"
UNLOCKED_KEY = "recompute_unlocked"
MESSAGE_KEY = "recompute_auth_message"
log = logging.getLogger("explorer.auth")
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


def normal_email(email: str) -> str:
    """An address as compared with the allow-list: NFKC-normalised, then case-folded.

    ``str.lower`` alone maps look-alikes onto ASCII (the Kelvin sign "K" lower-cases
    to "k"); after NFKC both sides are in one normal form, and casefold compares
    case the way Unicode defines it, on both sides alike."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


def maintainer_emails(secrets: Mapping[str, Any]) -> frozenset[str]:
    """The allow-list, normalised (``[recompute] maintainer_emails``; a single string is one email)."""
    raw = _section(secrets, SECTION).get("maintainer_emails") or []
    if isinstance(raw, str):
        raw = [raw]
    return frozenset(normal_email(str(e)) for e in raw if str(e).strip())


def is_maintainer_email(email: Any, allowed: frozenset[str]) -> bool:
    """The address is on the allow-list and plain: ASCII, one "@", no spaces or controls.

    An address with any other character never matches, so a look-alike (a
    Kelvin sign, a full-width letter) that normalises onto a listed address is
    refused rather than trusted."""
    if not isinstance(email, str) or not email.isascii():
        return False
    if email.count("@") != 1 or any(ch.isspace() or not ch.isprintable() for ch in email):
        return False
    return normal_email(email) in allowed


def verified_email(user: Mapping[str, Any]) -> str | None:
    """The ``email`` claim of a signed-in user, when the provider vouches for it.

    Providers that send ``email_verified`` (Google, Microsoft Entra ID with the
    ``email`` scope, Auth0, Okta, Keycloak, GitLab) must send it true; an
    ``email`` with ``email_verified`` false or not a boolean is not trusted.
    Without the claim the provider's ``email`` is taken as it is (see
    docs/deploy.md: use a provider that verifies addresses)."""
    email = user.get("email")
    if not isinstance(email, str) or not email.strip():
        return None
    if "email_verified" in user and user.get("email_verified") is not True:
        return None
    return email


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
    email = verified_email(user)
    allowed = maintainer_emails(secrets)
    cols = st.columns([4, 1])
    if cols[1].button("Sign out", key=f"{prefix}_logout", icon=":material/logout:"):
        st.logout()
    if email is None and user.get("email"):
        cols[0].warning(
            f"Signed in as {md(user.get('email'))}, but the identity provider does not say this "
            "address is verified: you can watch the queue but not start or cancel jobs."
        )
        return None
    if is_maintainer_email(email, allowed):
        cols[0].success(f"Signed in as {md(email)}: maintainer.", icon=":material/verified_user:")
        return Maintainer(str(email), "oidc")
    if not allowed:
        cols[0].warning(
            f"Signed in as {md(email)}. No maintainers are listed: add emails to "
            "`[recompute] maintainer_emails` in the app's secrets."
        )
    else:
        cols[0].warning(
            f"Signed in as {md(email or 'an account without an email')}, which is not a "
            "maintainer: you can watch the queue but not start or cancel jobs."
        )
    return None


@dataclass
class _Record:
    failures: int = 0
    next_try: float = 0.0
    """Monotonic time before which this client's attempts are refused unchecked."""
    last: float = 0.0


class Throttle:
    """Wrong maintainer passwords, counted per client address for the whole process.

    After the ``n``-th wrong password in a row a client waits
    ``base_s * 2 ** (n - 1)`` seconds (at most ``max_wait_s``) before its next
    attempt is even checked; from the ``lockout_after``-th on it is locked out
    for ``lockout_s``. A right password clears the client's record; a record
    is forgotten ``lockout_s`` after its last failure. One instance serves every
    browser session of the process (:data:`THROTTLE`).
    """

    def __init__(
        self,
        base_s: float = 1.0,
        max_wait_s: float = 60.0,
        lockout_after: int = 8,
        lockout_s: float = 900.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s, self.max_wait_s = base_s, max_wait_s
        self.lockout_after, self.lockout_s = lockout_after, lockout_s
        self.max_clients, self.clock = max_clients, clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds before ``client`` may try again (0: now)."""
        with self._lock:
            record = self._records.get(client)
            return max(0.0, record.next_try - self.clock()) if record else 0.0

    def failure(self, client: str) -> float:
        """Record a wrong password; the seconds the client must now wait."""
        now = self.clock()
        with self._lock:
            self._forget_old(now)
            record = self._records.setdefault(client, _Record())
            record.failures += 1
            record.last = now
            if record.failures >= self.lockout_after:
                wait = self.lockout_s
            else:
                wait = min(self.base_s * 2 ** (record.failures - 1), self.max_wait_s)
            record.next_try = now + wait
            return wait

    def success(self, client: str) -> None:
        with self._lock:
            self._records.pop(client, None)

    def failures(self, client: str) -> int:
        with self._lock:
            record = self._records.get(client)
            return record.failures if record else 0

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def _forget_old(self, now: float) -> None:
        stale = [c for c, r in self._records.items() if now - r.last > self.lockout_s]
        for client in stale:
            del self._records[client]
        while len(self._records) >= self.max_clients:  # a flood of addresses: drop the oldest
            del self._records[min(self._records, key=lambda c: self._records[c].last)]


THROTTLE = Throttle()
"""Per process: every browser session shares it."""


def client_address(ip_address: str | None, headers: Mapping[str, str] | None) -> str:
    """Who is asking, as well as Streamlit can tell.

    The connection's address (``st.context.ip_address``); when that is a
    loopback address (a reverse proxy on this host), the last entry of
    ``X-Forwarded-For``, which is the one the proxy itself appended (entries to
    its left come from the client and may be forged). ``unknown`` when neither
    is known: such clients share one record."""
    address = ip_address.strip() if isinstance(ip_address, str) else ""
    if address in ("", "127.0.0.1", "::1", "localhost") and isinstance(headers, Mapping):
        forwarded = str(headers.get("X-Forwarded-For") or headers.get("x-forwarded-for") or "")
        last = forwarded.split(",")[-1].strip()
        if last:
            return last[:64]
    return address[:64] or "unknown"


def _client() -> str:
    try:
        return client_address(st.context.ip_address, st.context.headers)
    except Exception:  # no browser session (bare mode)
        return "unknown"


def _wait_text(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{max(seconds, 1):.0f} s"


def _unlock(password_key: str) -> None:
    """Form callback (runs before the page, so an immediate rerun cannot lose the click)."""
    given = str(st.session_state.get(password_key) or "")
    st.session_state[password_key] = ""
    client = _client()
    wait = THROTTLE.retry_after(client)
    if wait > 0:
        log.warning(
            "maintainer password from %s refused unchecked: %d wrong in a row, %.0f s to wait",
            client,
            THROTTLE.failures(client),
            wait,
        )
        st.session_state[MESSAGE_KEY] = (
            "Too many wrong passwords: the password was not checked.",
            f"Try again in {_wait_text(wait)}.",
        )
        return
    if password_matches(given, st.secrets):
        THROTTLE.success(client)
        st.session_state[UNLOCKED_KEY] = True
        st.session_state[MESSAGE_KEY] = None
        return
    wait = THROTTLE.failure(client)
    log.warning(
        "wrong maintainer password from %s (%d in a row; next attempt in %.0f s)",
        client,
        THROTTLE.failures(client),
        wait,
    )
    st.session_state[MESSAGE_KEY] = (
        "Wrong password.",
        f"The next attempt is possible in {_wait_text(wait)}.",
    )


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
        error, note = message
        st.error(error)
        st.caption(note)
    return None
