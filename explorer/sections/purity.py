"""Purity: how much of the feature's co-firing is its few commonest token pairs
(``purity.parquet``, written with the null by ``validate --null random``; shown under
the null's title, and left out quietly without the file)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bilingual_core.evidence import NULL_SCORES, PURITY
from explorer import evidence

from .base import FeatureContext, Section


def draw(ctx: FeatureContext) -> None:
    pur = evidence.load(ctx.ref, PURITY)
    null = evidence.load(ctx.ref, NULL_SCORES)
    feature = ctx.feature
    row = pur[pur["feature"] == feature]
    if len(row):
        r = row.iloc[0]
        shown = {
            "purity": r["purity"],
            "co-firing pairs": int(r["n_cofiring"]),
            "commonest token pairs (count)": str(r["top_pairs"]),
        }
        if null is not None and "purity" in null:
            shown["null's median purity"] = null["purity"].median()
        # token text is untrusted: a dataframe shows it as plain text, never as markdown or HTML
        st.dataframe(
            pd.DataFrame([shown]),
            hide_index=True,
            key="feature_ev_purity",
            column_config={
                "purity": st.column_config.NumberColumn(format="%.2f"),
                "null's median purity": st.column_config.NumberColumn(format="%.2f"),
            },
        )
        st.caption(
            "Purity: share of its co-firing pairs whose tokens at each language's maximum are one of "
            "its 3 commonest token pairs (1 with 3 or fewer co-firing pairs)."
        )


SECTION = Section("purity", draw, needs=(PURITY,))
