"""Neighbours: features co-firing on the same pairs (Jaccard), and the nearest decoder
directions when the run stores them (``neighbours.parquet``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bilingual_core.schema import SENTENCE_MAX
from explorer import data, feature_parts, nav, table
from explorer.safe_text import md
from explorer.table import Score

from .base import FeatureContext, Section, feature_link, nav_params


def _with_labels(
    frame: pd.DataFrame, column: str, scored: pd.DataFrame, score: Score
) -> pd.DataFrame:
    """Add each neighbour's label and its value and rank under ``score`` after ``column``."""
    by_id = scored.assign(rank=table.ranks(scored, score)).set_index("feature")
    out = frame.copy()
    at = out.columns.get_loc(column) + 1
    ids = out[column].astype(int)
    if "label" in by_id:
        out.insert(at, "label", ids.map(by_id["label"]).fillna("").to_numpy())
        at += 1
    if score.column in by_id:
        out.insert(at, f"its {score.key}", ids.map(by_id[score.column]).to_numpy())
        out.insert(at + 1, "its rank", ids.map(by_id["rank"]).to_numpy())
    return out


def draw(ctx: FeatureContext) -> None:
    """Features co-firing on the same pairs (Jaccard), and nearest decoder directions when stored."""
    ref, scored, feature, score = ctx.ref, ctx.scored, ctx.feature, ctx.score
    cofire = data.cofiring(ref.location, ref.token, feature)
    decoder = data.decoder_neighbours(ref.location, ref.token, feature)
    cols = st.columns(2) if decoder is not None else [st.container()]
    with cols[0]:
        st.markdown("**Fire on the same pairs** (Jaccard over firing pairs, any language)")
        if cofire.neighbours.empty:
            st.caption("No other feature fires on its pairs.")
        else:
            links = {int(f): feature_link(ctx, int(f)) for f in cofire.neighbours["neighbour"]}
            shown = feature_parts.neighbour_table(cofire.neighbours, scored, links)
            shown = _with_labels(shown, "feature", scored, score)
            st.dataframe(
                shown,
                hide_index=True,
                key="feature_cofire",
                width="content",
                column_config={
                    "feature": st.column_config.NumberColumn(format="%d"),
                    "open": st.column_config.LinkColumn(
                        display_text="open ↗", help="Its feature page (new tab)"
                    ),
                    "jaccard": st.column_config.NumberColumn(format="%.3f"),
                },
            )
            note = (
                f"Over all {cofire.n_pairs:,} pairs it fires on"
                if cofire.n_sampled == cofire.n_pairs
                else f"Estimated from {cofire.n_sampled:,} of its {cofire.n_pairs:,} firing pairs "
                f"(at most {data.COFIRE_MAX_PAIRS}, from the {data.COFIRE_MAX_BUCKETS} blocks of 1024 "
                "pairs holding most of them)"
            )
            if not cofire.exact_union:
                note += (
                    "; a neighbour's own pairs are its largest per-language count (this run "
                    "stores no co-activation table)"
                )
            st.caption(note + ".")
            with st.container(horizontal=True, gap="small", key="feature_cofire_links"):
                for f in shown["feature"].head(5):
                    st.page_link(
                        nav.FEATURE,
                        label=md(table.with_label(f, table.feature_labels(scored))),
                        query_params=nav_params(ctx, int(f)),
                    )
    if decoder is not None:
        with cols[1]:
            st.markdown("**Nearest decoder directions** (cosine similarity of decoder rows)")
            if decoder.empty:
                st.caption(f"No decoder neighbours were stored for feature {feature}.")
            else:
                decoder = decoder.assign(
                    open=[feature_link(ctx, int(f)) for f in decoder["neighbour"]]
                )
                st.dataframe(
                    _with_labels(
                        decoder[["rank", "neighbour", "open", "cosine"]],
                        "neighbour",
                        scored,
                        score,
                    ),
                    hide_index=True,
                    key="feature_decoder",
                    width="content",
                    column_config={
                        "neighbour": st.column_config.NumberColumn(format="%d"),
                        "open": st.column_config.LinkColumn(display_text="open ↗"),
                        "cosine": st.column_config.NumberColumn(format="%.3f"),
                    },
                )
                with st.container(horizontal=True, gap="small", key="feature_decoder_links"):
                    for f in decoder["neighbour"].head(5):
                        st.page_link(
                            nav.FEATURE,
                            label=md(table.with_label(f, table.feature_labels(scored))),
                            query_params=nav_params(ctx, int(f)),
                        )


SECTION = Section("neighbours", draw, title="Neighbours", needs=(SENTENCE_MAX,), fires=True)
