"""Steering: does it write its concept in each language? The continuations per language
and strength, the steered text marked, and the concept gain per language against random
features (``steering.parquet``)."""

from __future__ import annotations

import streamlit as st

from bilingual_core.evidence import CANDIDATE, LANG_KEPT_MIN, STEERING, writes_every_language
from explorer import evidence
from explorer.safe_text import md
from explorer.steering import continuations_html, gain_figure, summary_rows, verdict

from .base import FeatureContext, Section


def draw(ctx: FeatureContext) -> None:
    ref, feature = ctx.ref, ctx.feature
    frame = evidence.load(ref, STEERING)
    mine = frame[(frame["candidate"] == feature) & (frame["role"] == CANDIDATE)]
    if mine.empty:
        n = frame["candidate"].nunique()
        st.caption(f"This feature was not among the {n} steered candidates.")
        return
    languages = ref.languages
    rows = verdict(frame[frame["candidate"] == feature])
    every = writes_every_language(rows, languages).iloc[0]
    st.markdown(
        "**Writes its concept in every language**"
        + (f" from α = {every['writes_at']:g}" if every["writes_every_language"] else ": no")
        + (
            f" (in {md(every['writes_in'])} only)"
            if every["writes_in"] and not every["writes_every_language"]
            else ""
        )
    )
    left, right = st.columns([3, 2])
    left.plotly_chart(gain_figure(rows, languages), key="feature_steer_gain")
    right.dataframe(
        summary_rows(rows),
        hide_index=True,
        key="feature_steer_summary",
        column_config={
            c: st.column_config.NumberColumn(format="%.2f")
            for c in (
                "concept gain",
                "random features' gain (mean)",
                "random features' gain (max)",
                "continuations with a peak token",
                "language kept",
                "unknown tokens",
            )
        },
    )
    scale = float(mine["scale"].iloc[0])
    st.caption(
        f"Added at the SAE's hook: α × {scale:.3g} (its typical maximum activation) × its decoder "
        "direction, at the prompt's last token and every generated token; greedy. "
        f"Writes its concept: some continuation holds a peak token, the gain is above every "
        f"random feature's, and at least {LANG_KEPT_MIN:.0%} of the language-tagged tokens are in "
        "the prompt's language."
    )
    tabs = st.tabs([f"{lang} prompts" for lang in languages])
    for tab, lang in zip(tabs, languages, strict=True):
        part = mine[mine["lang"] == lang]
        with tab:
            if part.empty:
                st.caption("No continuations in this language.")
                continue
            st.caption("Peak tokens followed: " + md(str(part["concept_tokens"].iloc[0])))
            st.html(continuations_html(part, lang))
    st.caption(
        "Shaded: the generated (steered) text; **bold underlined**: a peak token; struck through: "
        "a token of another language; dotted: a token never seen in this run (language unknown)."
    )


SECTION = Section(
    "steering",
    draw,
    title="Steering: does it write its concept in each language?",
    needs=(STEERING,),
    compute="steer --run {run} --top 10",
)
