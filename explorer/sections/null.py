"""Against a null: the feature's scores against a random dictionary of the same shape and
sparsity (``null_scores.parquet``)."""

from __future__ import annotations

import streamlit as st

from bilingual_core.evidence import NULL_SCORES
from explorer import data, evidence
from explorer.evidence import null_rows

from .base import FeatureContext, Section


def draw(ctx: FeatureContext) -> None:
    ref, feature = ctx.ref, ctx.feature
    null = evidence.load(ref, NULL_SCORES)
    feats = data.features(ref.location, ref.token)
    st.dataframe(
        null_rows(feats, null, feature),
        hide_index=True,
        key="feature_ev_null",
        column_config={
            "value": st.column_config.NumberColumn(format="%.5g"),
            "percentile vs null": st.column_config.NumberColumn(format="%.1f"),
        },
    )


SECTION = Section(
    "null",
    draw,
    title="Against a null: a random dictionary of the same shape and sparsity",
    needs=(NULL_SCORES,),
    compute="validate --null random --run {run}",
)
