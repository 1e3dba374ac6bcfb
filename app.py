"""Bilingual SAE feature explorer: ``streamlit run app.py``.

The entry point draws the shared sidebar (the run picker) and hands over to
the page named by the URL (``explorer.nav.PAGES``). Runs are read from the
results root named by ``BILINGUAL_RESULTS_DIR`` (a path or fsspec URL;
``results/`` by default, where the bundled runs live); the app opens on
``explorer.ui.DEFAULT_RUN`` (``gemma3-en-es-l9``) when the root has it.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import streamlit as st

from bilingual_core import RunFormatError
from explorer import history, nav, ui
from explorer.safe_text import public_name
from explorer.server_guard import refuse_client_cache_clear

refuse_client_cache_clear()  # a browser may not clear the caches every visitor shares

# A bundled icon: a Material or emoji icon would make every visitor's browser
# fetch it from an outside font host (and fail on an offline host).
st.set_page_config(page_title="Bilingual SAE features", page_icon=str(ui.PAGE_ICON), layout="wide")
ui.page_style()

page = st.navigation(
    [
        st.Page(
            p.path, title=p.title, icon=p.icon, url_path=p.url_path or None, default=not p.url_path
        )
        for p in nav.PAGES
    ]
)

root = ui.results_root()
ui.notices_here()
history.install()
with st.sidebar:
    ui.run_picker_ui(root)
    st.caption(f"Results root: `{public_name(root)}`")

try:
    with ui.app_entry():
        page.run()
except (RunFormatError, duckdb.Error, pa.ArrowException, OSError) as exc:
    ui.show_error(exc)
finally:
    ui.publish_run()  # last: the history script is in place before the URL changes
