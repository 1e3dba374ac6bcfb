"""A shared link opened as the very first visit after the server starts goes
through app.py: the pages live in ``views/``, so Streamlit never enters its
legacy ``pages/`` mode (which ran a page file alone until ``st.navigation`` was
first called, and which the app used to switch off through a private flag).

A server of its own (started for this test, so no session has called
``st.navigation`` yet) and headless Chromium; only loopback traffic.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_app_support import build_app_runs
from test_browser import _heading, _need_browser, browser, open_fresh, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["browser"]  # the shared Chromium fixture


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need_browser()
    runs = build_app_runs(tmp_path_factory.mktemp("deeplink") / "results")
    with serve(runs.root, tmp_path_factory.getbasetemp() / "streamlit-deeplink.log") as url:
        yield url


def test_a_feature_link_as_the_first_visit_runs_the_whole_app(fresh_server, browser) -> None:
    page = open_fresh(browser, f"{fresh_server}/feature?run=synthetic&feature=3")
    assert _heading(page).startswith("Feature 3")
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text("Results root", exact=False).count()  # app.py's sidebar ran
    assert sidebar.locator('[data-testid="stSidebarNavLink"]').count() == 7  # app.py's pages
    assert "/feature?" in page.url
    page.close()
