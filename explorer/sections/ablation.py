"""Causal evidence: the loss change per language when the feature is ablated where it
fires, against random features of similar frequency (``ablation.parquet``)."""

from __future__ import annotations

import streamlit as st

from bilingual_core.evidence import ABLATION
from explorer import data, evidence
from explorer.evidence import ablation_figure, baseline_features_table

from .base import FeatureContext, Section


def draw(ctx: FeatureContext) -> None:
    ref, feature = ctx.ref, ctx.feature
    abl = evidence.load(ref, ABLATION)
    rows = abl[abl["feature"] == feature]
    if rows.empty:
        st.caption(
            "This feature was not among the ablated candidates "
            f"({abl['feature'].nunique()} features by `{abl['rank_by'].iloc[0] if len(abl) else '?'}`)."
        )
        return
    st.plotly_chart(ablation_figure(rows), key="feature_ev_ablation")
    parts = [
        f"{r.lang}: {r.n_sentences} sentences, {r.n_tokens} tokens, "
        f"{'hurts' if r.hurts else 'no clear effect'}"
        for r in rows.itertuples()
    ]
    st.caption(" · ".join(parts))
    baseline = baseline_features_table(rows, data.features(ref.location, ref.token))
    if len(baseline):
        # labels are token text (untrusted): a dataframe shows them as plain text
        st.dataframe(
            baseline,
            hide_index=True,
            key="feature_ev_baseline",
            column_config={
                "feature": st.column_config.NumberColumn("random baseline feature", format="%d")
            },
        )
        st.caption(
            "The random baseline: features of similar firing frequency, ablated on the same "
            "sentences; their labels say what they fire on."
        )


SECTION = Section(
    "ablation",
    draw,
    title="Causal: ablating it where it fires",
    needs=(ABLATION,),
    compute="validate --top 20 --run {run}",
)
