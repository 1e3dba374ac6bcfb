"""The title, badges, family and links (previous / next, export, Neuronpedia, the table)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer import data, feature_parts, nav, table, ui
from explorer.safe_text import md

from .base import FeatureContext, Section, nav_params, table_params


def draw(ctx: FeatureContext) -> None:
    """Title, badges, and the row of links: previous / next, Neuronpedia, the feature table."""
    ref, scored, feature, score = ctx.ref, ctx.scored, ctx.feature, ctx.score
    rank, prev_f, next_f = table.neighbours(scored, score, feature)
    row = ctx.row
    labels = table.feature_labels(scored)
    label = str(row.get("label") or "")
    st.title(f"Feature {feature}" + (f" · {md(label)}" if label else ""))
    old_run = table.missing_peak_evidence(scored.columns, ref.location)
    if old_run:
        st.info(old_run)
    badges = ["alive" if row["alive"] else "dead (never fires in some language)"]
    tag = str(row.get("tag") or "")
    if tag:
        badges.append(f"**{tag}**")
    if "n_cross" in row and pd.notna(row.get("cross_share")):
        badges.append(
            f"{int(row['n_cross'])} cross-token / {int(row['n_shared'])} same-token co-firing pairs"
        )
    if rank is not None:
        badges.append(f"rank {rank:,} by `{score.key}`")
    thin = feature_parts.low_support(row, ref.languages)
    if thin and row["alive"]:
        badges.append(
            f"**low support**: fires on fewer than {feature_parts.LOW_SUPPORT_PAIRS} pairs in "
            + ", ".join(thin)
        )
    kind = str(row.get("planted") or "")
    if kind:
        badges.append(f"planted: {md(kind)}")
    st.markdown(" · ".join(badges))
    if "token_pairs" in row and str(row.get("token_pairs") or ""):
        st.caption("Commonest peak-token pairs: " + md(str(row["token_pairs"])))
    family(ctx)
    with st.container(horizontal=True, gap="small", key="feature_nav"):
        for word, other, icon in (
            ("Previous", prev_f, "arrow_back"),
            ("Next", next_f, "arrow_forward"),
        ):
            if other is not None:
                st.page_link(
                    nav.FEATURE,
                    label=f"{word}: {md(table.with_label(other, labels))}",
                    icon=f":material/{icon}:",
                    query_params=nav_params(ctx, other),
                )
        st.download_button(
            "Export JSON",
            key="feature_export",
            data=lambda: data.feature_export(ref.location, ref.token, feature),
            file_name=f"{ref.run_id}-feature-{feature}.json",
            mime="application/json",
            icon=":material/download:",
            on_click="ignore",
            help="Its scores, label, top pairs with tokens, logit effects and evidence "
            "(the same as python -m precompute export-feature)",
        )
        np_url = ui.neuronpedia_url(ref.manifest.neuronpedia_id, feature)
        if np_url:
            st.link_button("Neuronpedia", np_url, icon=":material/open_in_new:")
        st.page_link(
            nav.FEATURES,
            label="Feature table",
            icon=":material/table_rows:",
            query_params=table_params(ctx),
        )


def family(ctx: FeatureContext) -> None:
    """The feature's family of near-duplicate latents (docs/scores.md), when it has one."""
    scored, feature, score = ctx.scored, ctx.feature, ctx.score
    if "family" not in scored:
        return
    fam = scored.loc[scored["feature"] == feature, "family"].iloc[0]
    ranked = scored.assign(rank=table.ranks(scored, score))
    members = ranked[ranked["family"] == fam].sort_values("rank", na_position="last")
    if len(members) < 2:
        return
    labels = table.feature_labels(scored)
    st.markdown(
        f"**Family of {len(members)} near-duplicate latents** (their peak tokens nearly "
        "coincide), best-ranked first:"
    )
    with st.container(horizontal=True, gap="small", key="feature_family"):
        for f in members["feature"].astype(int):
            st.page_link(
                nav.FEATURE,
                label=("▶ " if f == feature else "") + md(table.with_label(f, labels)),
                query_params=nav_params(ctx, f),
            )


SECTION = Section("header", draw)
