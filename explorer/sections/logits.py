"""Output side: the tokens its decoder direction promotes and suppresses
(``logits.parquet``; ``output_languages.parquet`` when present)."""

from __future__ import annotations

import streamlit as st

from bilingual_core.evidence import LOGITS, OUTPUT_LANGUAGES, PROMOTED, SUPPRESSED
from explorer import evidence
from explorer.evidence import token_list

from .base import FeatureContext, Section


def draw(ctx: FeatureContext) -> None:
    ref, feature = ctx.ref, ctx.feature
    logits = evidence.load(ref, LOGITS)
    outl = evidence.load(ref, OUTPUT_LANGUAGES)
    if outl is not None:
        row = outl[outl["feature"] == feature]
        if len(row):
            st.caption(
                f"Output languages of its top promoted tokens: **{row['output_languages'].iloc[0]}** "
                "(a token's language: where it occurs in this run's corpus; unknown = never occurs)."
            )
    left, right = st.columns(2)
    config = {
        "logit": st.column_config.NumberColumn(format="%.3g", width="small"),
        "language": st.column_config.TextColumn(width="small"),
    }
    left.markdown("**Promoted**")
    left.dataframe(
        token_list(logits, feature, PROMOTED),
        hide_index=True,
        key="feature_ev_promoted",
        column_config=config,
    )
    right.markdown("**Suppressed**")
    right.dataframe(
        token_list(logits, feature, SUPPRESSED),
        hide_index=True,
        key="feature_ev_suppressed",
        column_config=config,
    )
    st.caption(
        "Direct logit effect: the decoder direction through the final norm's weights and the "
        "unembedding; later layers are ignored."
    )


SECTION = Section(
    "logits",
    draw,
    title="Output side: tokens its decoder direction promotes",
    needs=(LOGITS,),
    compute="logits --run {run}",
)
