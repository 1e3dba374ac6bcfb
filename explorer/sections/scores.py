"""Every score of the feature and its rank under each; its statistics per language."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer import table, ui
from explorer.table import Score

from .base import FeatureContext, Section


def score_rows(scored: pd.DataFrame, scores: list[Score], feature: int) -> pd.DataFrame:
    """Every score of the feature and its rank under each."""
    row = scored.index[scored["feature"] == feature][0]
    n_ranked = int(scored["alive"].sum())
    rows = []
    for s in scores:
        r = table.ranks(scored, s)[row]
        rows.append(
            {
                "score": s.key,
                "value": scored.at[row, s.column],
                "rank": None if pd.isna(r) else int(r),
                "of": n_ranked,
                "better": "lower" if s.ascending else "higher",
            }
        )
    return pd.DataFrame(rows)


def language_rows(scored: pd.DataFrame, languages: list[str], feature: int) -> pd.DataFrame:
    row = scored.loc[scored["feature"] == feature].iloc[0]
    stats = {
        "n_fire": "sentences it fires on",
        "n_tokens": "tokens it fires on",
        "max_act": "max activation",
        "mean_act": "mean activation (all tokens)",
        "mono": "monolinguality",
        "cond": "co-activation rate (fires in the others too)",
        "share": "share of its firing sentences",
    }
    out = {}
    for key, label in stats.items():
        values = {lang: row.get(f"{key}_{lang}") for lang in languages}
        if all(v is None for v in values.values()):
            continue
        out[label] = values
    return pd.DataFrame(out).T


def draw(ctx: FeatureContext) -> None:
    ref, scored, scores, feature, row = ctx.ref, ctx.scored, ctx.scores, ctx.feature, ctx.row
    st.dataframe(
        score_rows(scored, scores, feature),
        hide_index=True,
        key="feature_scores",
        width="content",
        column_config={
            "value": st.column_config.NumberColumn(format="%.5g"),
            "rank": st.column_config.NumberColumn(format="%d"),
        },
    )
    st.dataframe(
        language_rows(scored, ref.languages, feature),
        key="feature_languages",
        width="content",
        column_config={
            lang: st.column_config.NumberColumn(format="%.5g") for lang in ref.languages
        },
    )
    extra = {  # the blog score's terms (bi = jsd + beta x idaf) and the p-value
        "jsd": row.get("jsd"),
        "idaf": row.get("idaf"),
        "bi": row.get("bi"),
        "co-activation log10 p": row.get("coact_log10p"),
    }
    st.caption(" · ".join(f"{k} = {ui.fmt(v)}" for k, v in extra.items() if v is not None))


SECTION = Section("scores", draw, title="Scores and ranks")
