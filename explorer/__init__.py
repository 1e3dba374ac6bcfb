"""The Streamlit explorer's own modules (the pages under ``pages/`` present).

* ``data``: the one module that loads: cached functions over ``bilingual_core``
  and DuckDB queries straight on a run's Parquet files.
* ``table``: pure pandas: the score catalogue, filters and rankings of the
  feature table, top pairs of a feature.
* ``render``: HTML token heatmaps; every token and sentence is escaped.
* ``ui``: widget helpers (``*_ui`` functions), URL state, messages.
* ``nav``: the page registry used by ``app.py`` and by links between pages.

None of them imports torch.
"""
