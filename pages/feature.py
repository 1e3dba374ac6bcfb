"""``/feature?run=R&feature=F``: one feature's scores and ranks, activation
histograms, and the pairs where it fires most as side-by-side token heatmaps."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from bilingual_core.schema import ACTIVATIONS, FEATURES, TOKENS
from explorer import data, evidence, nav, render, table, ui
from explorer.data import RunRef
from explorer.safe_text import md, plotly_text
from explorer.table import ANY, BY_BOTH, Score

ui.require_entry()


def feature_ui(d_sae: int, default: int) -> int:
    ui.url_seed("feature_id", "feature", ui.parse_int(0, d_sae - 1), default)
    feature = st.number_input(f"Feature (0 – {d_sae - 1})", min_value=0, max_value=d_sae - 1, step=1,
                              key="feature_id")
    ui.url_publish("feature", int(feature))
    return int(feature)


def ranking_ui(scores: list[Score], thresholds: list[str]) -> tuple[Score, str]:
    keys = [s.key for s in scores]
    ui.url_seed("feature_score", "score", ui.parse_choice(keys), keys[0])
    key = st.selectbox("Ranking (previous / next)", keys, key="feature_score",
                       format_func={s.key: s.label for s in scores}.get)
    ui.url_publish("score", key, keys[0])
    ui.url_seed("feature_threshold", "t", ui.parse_choice(thresholds), thresholds[0])
    threshold = st.selectbox("Co-activation threshold", thresholds, key="feature_threshold")
    ui.url_publish("t", threshold, thresholds[0])
    return table.score_by_key(scores, key), threshold


def pairs_ui(languages: list[str]) -> tuple[str, int]:
    options = [BY_BOTH, *languages]
    c1, c2 = st.columns([2, 1])
    ui.url_seed("feature_by", "by", ui.parse_choice(options), BY_BOTH)
    by = c1.radio("Top pairs by", options, key="feature_by", horizontal=True,
                  format_func=lambda o: "both languages (weaker side)" if o == BY_BOTH else f"{o} only",
                  help="both: pairs ranked by the smaller of the per-language maxima")
    ui.url_publish("by", by, BY_BOTH)
    ui.url_seed("feature_n", "n", ui.parse_int(1, 50), 8)
    n = c2.slider("Pairs", 1, 50, key="feature_n")
    ui.url_publish("n", n, 8)
    return by, int(n)


def nav_params(ref: RunRef, feature: int, score: Score, threshold: str) -> dict[str, str]:
    params = {"run": ref.run_id, "feature": str(feature), "score": score.key}
    if threshold != ANY:
        params["t"] = threshold
    return params


def score_rows(scored: pd.DataFrame, scores: list[Score], feature: int) -> pd.DataFrame:
    """Every score of the feature and its rank under each."""
    row = scored.index[scored["feature"] == feature][0]
    n_ranked = int(scored["alive"].sum())
    rows = []
    for s in scores:
        r = table.ranks(scored, s)[row]
        rows.append({"score": s.key, "value": scored.at[row, s.column],
                     "rank": None if pd.isna(r) else int(r), "of": n_ranked,
                     "better": "lower" if s.ascending else "higher"})
    return pd.DataFrame(rows)


def language_rows(scored: pd.DataFrame, languages: list[str], feature: int) -> pd.DataFrame:
    row = scored.loc[scored["feature"] == feature].iloc[0]
    stats = {"n_fire": "sentences it fires on", "n_tokens": "tokens it fires on",
             "max_act": "max activation", "mean_act": "mean activation (all tokens)",
             "mono": "monolinguality", "cond": "co-activation rate (fires in the others too)",
             "share": "share of its firing sentences"}
    out = {}
    for key, label in stats.items():
        values = {lang: row.get(f"{key}_{lang}") for lang in languages}
        if all(v is None for v in values.values()):
            continue
        out[label] = values
    return pd.DataFrame(out).T


def histogram_figure(hist: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for lang, part in hist.groupby("lang", sort=False):
        fig.add_trace(go.Bar(
            x=(part["left"] + part["right"]) / 2, y=part["count"], width=part["right"] - part["left"],
            name=plotly_text(lang), opacity=0.6,
            hovertemplate="activation %{x:.3g}<br>%{y} tokens<extra>" + plotly_text(lang) + "</extra>",
        ))
    fig.update_layout(barmode="overlay", height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title="Token activations (where it fires)", legend={"title": "language"})
    fig.update_xaxes(title="activation")
    fig.update_yaxes(title="tokens")
    return fig


def pair_heatmaps_html(ref: RunRef, feature: int, pairs: pd.DataFrame, vmax: float) -> list[tuple[int, str]]:
    """(pair id, HTML) per pair: every language's tokens shaded by the feature."""
    ids = tuple(int(p) for p in pairs["pair_id"])
    tokens = data.pair_tokens(ref.location, ref.token, ids)
    acts = data.token_activations(ref.location, ref.token, (feature,), ids)
    lookup = {(r.pair_id, r.lang, r.position): r.activation for r in acts.itertuples()}
    out = []
    for pair in pairs.itertuples():
        sides = []
        for lang in ref.languages:
            toks = tokens[(tokens["pair_id"] == pair.pair_id) & (tokens["lang"] == lang)
                          & (tokens["position"] > 0)]
            values = [float(lookup.get((pair.pair_id, lang, p), 0.0)) for p in toks["position"]]
            sides.append((lang, toks["token"].astype(str).tolist(), values))
        maxima = " · ".join(f"max {lang} {getattr(pair, f'max_{lang}'):.3g}" for lang in ref.languages)
        out.append((int(pair.pair_id), render.pair_heatmaps(sides, vmax, caption=f"pair {pair.pair_id} · {maxima}")))
    return out


ui.url_only("feature", "score", "t", "by", "n")
ref = ui.current_run(files=(FEATURES, ACTIVATIONS, TOKENS))
man = ref.manifest
thresholds = ui.coactivation_thresholds(ref)
feats = data.features(ref.location, ref.token)
scores = table.available_scores(list(feats.columns), ref.languages)
ranked = feats.dropna(subset=["bi_rank"]).sort_values("bi_rank")
default_feature = int(ranked["feature"].iloc[0]) if not ranked.empty else 0

with st.sidebar:
    st.subheader("Feature")
    feature = feature_ui(man.d_sae, default_feature)
    score, threshold = ranking_ui(scores, thresholds)

scored = ui.scored_features(ref, threshold)
rank, prev_f, next_f = table.neighbours(scored, score, feature)
row = scored.loc[scored["feature"] == feature].iloc[0]

kind = str(row.get("planted") or "")
st.title(f"Feature {feature}")
badges = ["alive" if row["alive"] else "dead (never fires in some language)"]
if rank is not None:
    badges.append(f"rank {rank:,} by `{score.key}`")
if kind:
    badges.append(f"planted: {md(kind)}")
st.markdown(" · ".join(badges))

c_prev, c_np, c_next, c_back = st.columns(4)
if prev_f is not None:
    c_prev.page_link(nav.FEATURE, label=f"Previous: feature {prev_f}", icon=":material/arrow_back:",
                     query_params=nav_params(ref, prev_f, score, threshold))
if next_f is not None:
    c_next.page_link(nav.FEATURE, label=f"Next: feature {next_f}", icon=":material/arrow_forward:",
                     query_params=nav_params(ref, next_f, score, threshold))
np_url = ui.neuronpedia_url(man.neuronpedia_id, feature)
if np_url:
    c_np.link_button("Neuronpedia", np_url, icon=":material/open_in_new:")
back = {"run": ref.run_id, "score": score.key}
if threshold != ANY:
    back["t"] = threshold
c_back.page_link(nav.FEATURES, label="Feature table", icon=":material/table_rows:", query_params=back)

left, right = st.columns([1, 1])
with left:
    st.subheader("Scores and ranks")
    st.dataframe(score_rows(scored, scores, feature), hide_index=True, key="feature_scores",
                 column_config={"value": st.column_config.NumberColumn(format="%.5g"),
                                "rank": st.column_config.NumberColumn(format="%d")})
    st.dataframe(language_rows(scored, ref.languages, feature), key="feature_languages",
                 column_config={lang: st.column_config.NumberColumn(format="%.5g") for lang in ref.languages})
    extra = {"jsd": row.get("jsd"), "idaf": row.get("idaf"), "bi": row.get("bi"),
             "co-activation log10 p": row.get("coact_log10p")}
    st.caption(" · ".join(f"{k} = {ui.fmt(v)}" for k, v in extra.items() if v is not None))

profile = data.feature_profile(ref.location, ref.token, feature)
with right:
    if profile.n_activations:
        st.plotly_chart(histogram_figure(profile.histogram), key="feature_histogram")
        per_lang = profile.sentence_max.groupby("lang").size().reindex(ref.languages).fillna(0).astype(int)
        st.caption(f"{profile.n_activations:,} non-zero token activations; firing sentences: "
                   + ", ".join(f"{lang} {n:,}" for lang, n in per_lang.items()))
    else:
        st.info(f"Feature {feature} never fires in this run (no rows in activations.parquet).")

if profile.n_activations:
    st.subheader("Where it fires most")
    by, n = pairs_ui(ref.languages)
    top = table.top_pairs(profile.sentence_max, ref.languages, by, n)
    vmax = float(profile.histogram["right"].max())
    st.html(render.legend(vmax))
    for pair_id, html_text in pair_heatmaps_html(ref, feature, top, vmax):
        st.html(html_text)
        st.page_link(nav.PAIRS, label=f"Open pair {pair_id}", icon=":material/translate:",
                     query_params={"run": ref.run_id, "pair": str(pair_id), "feats": str(feature)})

evidence.feature_sections(ref, feature)  # output side, ablation, null (explorer/evidence.py)
