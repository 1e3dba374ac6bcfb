"""The app's pages: file, title, URL path. ``app.py`` builds ``st.navigation``
from ``PAGES``; pages link to each other through these constants.

Adding a page is one line in ``PAGES`` (and its file under ``views/``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    path: str
    """Script path relative to app.py (what st.page_link and st.switch_page take)."""
    title: str
    url_path: str
    """Stable URL path ('' = the default page at '/')."""
    icon: str


OVERVIEW = "views/overview.py"
CURVES = "views/curves.py"
FEATURES = "views/features.py"
FEATURE = "views/feature.py"
PAIRS = "views/pairs.py"
RECOMPUTE = "views/recompute.py"
LAYERS = "views/layers.py"

TABLE_PARAMS = (
    "tok",
    "alive",
    "smin",
    "smax",
    "minpairs",
    "minboth",
    "spec",
    "cut",
    "sort",
    "desc",
)
"""The feature table's URL parameters besides ``score`` and ``t``: its search,
filters and sort. Feature pages opened from the table carry them in their own
URL (and along previous / next), so the browser's Back and the "Feature
table" link bring the table back as it was."""


def carried(params: dict[str, str]) -> dict[str, str]:
    """The feature-table parameters among ``params`` (a page's query parameters)."""
    return {k: params[k] for k in TABLE_PARAMS if k in params}


PAGES: list[PageSpec] = [
    PageSpec(OVERVIEW, "Overview", "", ":material/home:"),
    PageSpec(CURVES, "Frequency curves", "curves", ":material/show_chart:"),
    PageSpec(FEATURES, "Feature table", "features", ":material/table_rows:"),
    PageSpec(FEATURE, "Feature", "feature", ":material/neurology:"),
    PageSpec(PAIRS, "Sentence pairs", "pairs", ":material/translate:"),
    PageSpec(LAYERS, "Layers", "layers", ":material/stacked_bar_chart:"),
    PageSpec(RECOMPUTE, "Recompute", "recompute", ":material/memory:"),
]
