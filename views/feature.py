"""``/feature?run=R&feature=F``: one feature. Its scores and ranks, where it
fires (activation density per language, its place on the firing-rate curve),
example pairs across the activation range as side-by-side token heatmaps, its
neighbours, and the evidence the run carries (output side, ablation, null,
steering).

The page draws the sidebar's widgets, then each section of
``explorer.sections.FEATURE_SECTIONS`` in order (one module per section).
"""

from __future__ import annotations

import streamlit as st

from bilingual_core.schema import ACTIVATIONS, FEATURES, TOKENS
from explorer import data, nav, sections, table, ui
from explorer.table import Score

ui.require_entry()


# --------------------------------------------------------------- widgets ---


def feature_ui(d_sae: int, default: int) -> int:
    ui.url_seed(
        "feature_id", "feature", ui.parse_int(0, d_sae - 1), default, shown=f"feature {default}"
    )
    feature = st.number_input(
        f"Feature (0 – {d_sae - 1})", min_value=0, max_value=d_sae - 1, step=1, key="feature_id"
    )
    ui.url_publish("feature", int(feature))
    return int(feature)


def ranking_ui(scores: list[Score], thresholds: list[str]) -> tuple[Score, str]:
    keys = [s.key for s in scores]
    ui.url_seed("feature_score", "score", ui.parse_choice(keys), keys[0])
    key = st.selectbox(
        "Ranking (previous / next)",
        keys,
        key="feature_score",
        help="The score whose ranking previous / next follow",
    )
    ui.url_publish("score", key, keys[0])
    st.caption(table.score_by_key(scores, key).label)  # in full: the sidebar is narrow
    ui.url_seed("feature_threshold", "t", ui.parse_choice(thresholds), thresholds[0])
    threshold = st.selectbox("Co-activation threshold", thresholds, key="feature_threshold")
    ui.url_publish("t", threshold, thresholds[0])
    return table.score_by_key(scores, key), threshold


# ------------------------------------------------------------------ page ---

ui.url_only("feature", "score", "t", "by", "n", "nq", "some", *nav.TABLE_PARAMS)
ref = ui.current_run(files=(FEATURES, ACTIVATIONS, TOKENS))
thresholds = ui.coactivation_thresholds(ref)
feats = data.features(ref.location, ref.token)
scores = table.available_scores(list(feats.columns), ref.languages)
default_scored = ui.scored_features(ref, thresholds[0])
ranked = default_scored.assign(rank=table.ranks(default_scored, scores[0])).dropna(subset=["rank"])
default_feature = int(ranked.sort_values("rank")["feature"].iloc[0]) if not ranked.empty else 0

with st.sidebar:
    st.subheader("Feature")
    feature = feature_ui(ref.manifest.d_sae, default_feature)
    score, threshold = ranking_ui(scores, thresholds)

context = sections.FeatureContext(
    ref, ui.scored_features(ref, threshold), scores, feature, score, threshold
)
sections.draw_all(sections.FEATURE_SECTIONS, context)
