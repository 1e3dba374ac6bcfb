"""The framing headers docs/deploy.md tells the proxy to add, checked in a real
headless Chromium: a page of another origin cannot frame a page served with them.

Two ``http.server`` instances on 127.0.0.1 (two ports: two origins) stand for the
proxied app and a foreign site; only loopback traffic.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")
DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"
MARKER = "the-app-itself-drew-this"


def documented_headers() -> dict[str, str]:
    """The ``add_header`` lines of the nginx example in docs/deploy.md."""
    found = re.findall(r'add_header\s+(\S+)\s+("[^"]*"|\S+)\s+always;', DEPLOY.read_text())
    return {name: value.strip('"') for name, value in found}


@contextmanager
def serve(body: str, headers: dict[str, str]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def framed_text(app_headers: dict[str, str]) -> str:
    """What a foreign page's iframe of the app shows in Chromium."""
    from playwright.sync_api import sync_playwright

    app_page = f"<html><body><p>{MARKER}</p></body></html>"
    with serve(app_page, app_headers) as app_url:
        foreign = f'<html><body><iframe id="f" src="{app_url}"></iframe></body></html>'
        with serve(foreign, {}) as foreign_url, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            try:
                page = browser.new_page()
                page.goto(foreign_url, wait_until="load", timeout=60_000)
                page.wait_for_timeout(500)
                texts = []
                for frame in page.frames[1:]:
                    try:
                        texts.append(frame.evaluate("document.body ? document.body.innerText : ''"))
                    except (
                        Exception
                    ):  # a blocked frame may refuse scripts: it shows nothing of ours
                        texts.append("")
                return "\n".join(texts)
            finally:
                browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_the_documented_headers_stop_framing() -> None:
    headers = documented_headers()
    assert headers.get("X-Frame-Options") == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in headers.get("Content-Security-Policy", "")
    assert MARKER in framed_text({})  # without them, any site frames the app
    assert MARKER not in framed_text(headers)
    for name in headers:  # each header alone is enough for Chromium
        assert MARKER not in framed_text({name: headers[name]}), name
