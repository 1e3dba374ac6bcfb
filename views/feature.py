"""``/feature?run=R&feature=F``: one feature. Its scores and ranks, where it
fires (activation density per language, its place on the firing-rate curve),
example pairs across the activation range as side-by-side token heatmaps, and
its neighbours (features that fire on the same pairs; nearest decoder
directions when the run stores them).

The page is a sequence of section functions; further sections (evidence
from other modules) go in the marked place at the bottom.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from bilingual_core.schema import ACTIVATIONS, FEATURES, SENTENCE_MAX, TOKENS
from explorer import data, evidence, feature_parts, nav, render, steering, table, ui
from explorer.data import RunRef
from explorer.feature_parts import BY_BOTH
from explorer.safe_text import md, plotly_text
from explorer.table import ANY, Score

ui.require_entry()

N_BINS = 4
"""Quantile bins the example pairs below the top ones are drawn from."""


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


def examples_ui(languages: list[str]) -> tuple[str, int, int, bool]:
    """(rank pairs by, top pairs, pairs per quantile bin, include pairs where some language is silent)."""
    options = [BY_BOTH, *languages]
    c1, c2, c3 = st.columns([2, 1, 1])
    ui.url_seed("feature_by", "by", ui.parse_choice(options), BY_BOTH)
    by = c1.radio(
        "Pairs by",
        options,
        key="feature_by",
        horizontal=True,
        format_func=lambda o: "both languages (weaker side)" if o == BY_BOTH else f"{o} only",
        help="both: pairs ranked by the smaller of the per-language maxima",
    )
    ui.url_publish("by", by, BY_BOTH)
    ui.url_seed("feature_n", "n", ui.parse_int(1, 50), 8)
    n = c2.slider("Top pairs", 1, 50, key="feature_n")
    ui.url_publish("n", n, 8)
    ui.url_seed("feature_per_bin", "nq", ui.parse_int(0, 10), 2)
    per_bin = c3.slider(
        "Pairs per quantile bin",
        0,
        10,
        key="feature_per_bin",
        help=f"Pairs drawn at random from each of {N_BINS} equal-count bins of the activation",
    )
    ui.url_publish("nq", per_bin, 2)
    some = False
    if by == BY_BOTH:
        ui.url_seed("feature_some", "some", ui.parse_bool, False)
        some = st.toggle(
            "Include pairs where only some languages fire",
            key="feature_some",
            help="Off: the list holds only pairs where every language fires",
        )
        ui.url_publish("some", some, False, ui.encode_bool)
    return by, int(n), int(per_bin), bool(some)


# ----------------------------------------------------------- pure parts ---


def nav_params(ref: RunRef, feature: int, score: Score, threshold: str) -> dict[str, str]:
    """URL parameters of another feature page: the ranking, and the feature
    table's parameters this page carries (``nav.TABLE_PARAMS``)."""
    params = {"run": ref.run_id, "feature": str(feature), "score": score.key}
    if threshold != ANY:
        params["t"] = threshold
    return {**params, **nav.carried(st.query_params.to_dict())}


def table_params(ref: RunRef, score: Score, threshold: str) -> dict[str, str]:
    """The "Feature table" link: the table as it was when this page was opened from it."""
    params = {"run": ref.run_id, "score": score.key}
    if threshold != ANY:
        params["t"] = threshold
    return {**params, **nav.carried(st.query_params.to_dict())}


def feature_link(ref: RunRef, feature: int, score: Score, threshold: str) -> str:
    """Relative URL of a feature page (for link columns)."""
    return "feature?" + urlencode(nav_params(ref, feature, score, threshold))


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


def density_figure(hist: pd.DataFrame, languages: list[str]) -> go.Figure:
    """Non-zero token activations per language, bars side by side, log counts."""
    fig = go.Figure()
    for lang, part in hist.groupby("lang", sort=False):
        counts = part["count"].where(part["count"] > 0)  # log axis: empty bins drawn as gaps
        fig.add_trace(
            go.Bar(
                x=(part["left"] + part["right"]) / 2,
                y=counts,
                name=plotly_text(lang),
                marker={"color": render.language_colour(languages, str(lang))},
                customdata=part[["left", "right"]].to_numpy(),
                hovertemplate="activation %{customdata[0]:.3g} – %{customdata[1]:.3g}<br>%{y:,} tokens"
                "<extra>" + plotly_text(lang) + "</extra>",
            )
        )
    fig.update_layout(
        barmode="group",
        bargap=0.1,
        bargroupgap=0.0,
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title="Activation density",
        legend={"title": "language"},
    )
    fig.update_xaxes(title="activation (non-zero tokens)")
    fig.update_yaxes(title="tokens (log)", type="log")
    return fig


def firing_figure(
    curve: data.FiringCurve, feature: int, d_sae: int, languages: list[str]
) -> go.Figure:
    """Every feature's firing rate, ordered (one line per language), with this feature marked."""
    fig = go.Figure()
    mine = curve.ranks[curve.ranks["feature"] == feature]
    for lang, part in curve.curve.groupby("lang", sort=False):
        colour = render.language_colour(languages, str(lang))
        fig.add_trace(
            go.Scatter(
                x=part["rank"],
                y=part["rate"].where(part["rate"] > 0),
                mode="lines",
                name=plotly_text(lang),
                line={"color": colour},
                hovertemplate="rank %{x:,}<br>fires on %{y:.3%} of sentences<extra>"
                + plotly_text(lang)
                + "</extra>",
            )
        )
        here = mine[mine["lang"] == lang]
        if not here.empty and float(here["rate"].iloc[0]) > 0:
            fig.add_trace(
                go.Scatter(
                    x=[int(here["rank"].iloc[0])],
                    y=[float(here["rate"].iloc[0])],
                    mode="markers",
                    name=plotly_text(f"feature {feature} ({lang})"),
                    marker={
                        "color": colour,
                        "size": 11,
                        "symbol": "diamond",
                        "line": {"width": 1, "color": "#000"},
                    },
                    hovertemplate=f"feature {feature}<br>rank %{{x:,}} of {d_sae:,}<br>fires on %{{y:.3%}}"
                    f"<extra>{lang}</extra>",
                )
            )
    fig.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title="Firing rate, all features",
        legend={"title": ""},
    )
    fig.update_xaxes(title="feature rank (by firing rate)", type="log")
    fig.update_yaxes(title="share of sentences", type="log")
    return fig


def example_rows(
    ref: RunRef, feature: int, pairs: pd.DataFrame, vmax: float
) -> list[tuple[int, str]]:
    """(pair id, HTML) per pair: every language's tokens shaded by the feature,
    the activation written on each side's strongest token, and the caption
    naming that token per language."""
    ids = tuple(int(p) for p in pairs["pair_id"])
    tokens = data.pair_tokens(ref.location, ref.token, ids)
    acts = data.token_activations(ref.location, ref.token, (feature,), ids)
    lookup = {(r.pair_id, r.lang, r.position): r.activation for r in acts.itertuples()}
    out = []
    for pair in pairs.itertuples():
        sides, parts = [], []
        for lang in ref.languages:
            toks = tokens[
                (tokens["pair_id"] == pair.pair_id)
                & (tokens["lang"] == lang)
                & (tokens["position"] > 0)
            ]
            strings = toks["token"].astype(str).tolist()
            values = [float(lookup.get((pair.pair_id, lang, p), 0.0)) for p in toks["position"]]
            sides.append((lang, strings, values))
            top = render.peak_index(values)
            parts.append(
                f"{lang} {values[top]:.3g} on “{render.visible_token(strings[top])}”"
                if top is not None
                else f"{lang} silent"
            )
        caption = f"pair {pair.pair_id} · " + " · ".join(parts)
        out.append(
            (int(pair.pair_id), render.pair_heatmaps(sides, vmax, caption=caption, peak=True))
        )
    return out


# -------------------------------------------------------------- sections ---


def header_section(
    ref: RunRef, scored: pd.DataFrame, feature: int, score: Score, threshold: str
) -> None:
    """Title, badges, and the row of links: previous / next, Neuronpedia, the feature table."""
    rank, prev_f, next_f = table.neighbours(scored, score, feature)
    row = scored.loc[scored["feature"] == feature].iloc[0]
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
    family_section(ref, scored, feature, score, threshold)
    with st.container(horizontal=True, gap="small", key="feature_nav"):
        if prev_f is not None:
            st.page_link(
                nav.FEATURE,
                label=f"Previous: {md(table.with_label(prev_f, labels))}",
                icon=":material/arrow_back:",
                query_params=nav_params(ref, prev_f, score, threshold),
            )
        if next_f is not None:
            st.page_link(
                nav.FEATURE,
                label=f"Next: {md(table.with_label(next_f, labels))}",
                icon=":material/arrow_forward:",
                query_params=nav_params(ref, next_f, score, threshold),
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
            query_params=table_params(ref, score, threshold),
        )


def family_section(
    ref: RunRef, scored: pd.DataFrame, feature: int, score: Score, threshold: str
) -> None:
    """The feature's family of near-duplicate latents (docs/scores.md), when it has one."""
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
                query_params=nav_params(ref, f, score, threshold),
            )


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


def scores_section(ref: RunRef, scored: pd.DataFrame, scores: list[Score], feature: int) -> None:
    row = scored.loc[scored["feature"] == feature].iloc[0]
    st.subheader("Scores and ranks")
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
    extra = {
        "jsd": row.get("jsd"),
        "idaf": row.get("idaf"),
        "bi": row.get("bi"),
        "co-activation log10 p": row.get("coact_log10p"),
    }
    st.caption(" · ".join(f"{k} = {ui.fmt(v)}" for k, v in extra.items() if v is not None))


def activity_section(ref: RunRef, profile: data.FeatureProfile, feature: int) -> None:
    """Activation density per language and the feature's place on the firing-rate curve."""
    st.subheader("Where it fires")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(density_figure(profile.histogram, ref.languages), key="feature_histogram")
        per_lang = (
            profile.sentence_max.groupby("lang").size().reindex(ref.languages).fillna(0).astype(int)
        )
        st.caption(
            f"{profile.n_activations:,} non-zero token activations; firing sentences: "
            + ", ".join(f"{lang} {n:,}" for lang, n in per_lang.items())
        )
    with right:
        curve = data.firing_curve(ref.location, ref.token, ref.manifest.n_pairs)
        st.plotly_chart(
            firing_figure(curve, feature, ref.manifest.d_sae, ref.languages),
            key="feature_firing",
        )
        mine = curve.ranks[curve.ranks["feature"] == feature]
        st.caption(
            "Rank by share of sentences fired on, of all "
            f"{ref.manifest.d_sae:,} features: "
            + ", ".join(f"{r.lang} {r.rank:,} ({r.rate:.3%})" for r in mine.itertuples())
        )


def examples_section(ref: RunRef, profile: data.FeatureProfile, feature: int) -> None:
    """The strongest pairs, then pairs drawn from activation quantile bins."""
    st.subheader("Examples across the activation range")
    by, n, per_bin, some = examples_ui(ref.languages)
    maxima = feature_parts.pair_maxima(
        profile.sentence_max, ref.languages, by, every_language=by == BY_BOTH and not some
    )
    if maxima.empty:
        st.info(
            "No pair where every language fires. Switch on "
            '"Include pairs where only some languages fire", or rank by one language.'
        )
        return
    groups = feature_parts.example_groups(maxima, n, N_BINS, per_bin, seed=feature)
    vmax = float(profile.histogram["right"].max())
    st.html(render.legend(vmax))
    shown = pd.concat([g.pairs for g in groups], ignore_index=True)
    rows = dict(example_rows(ref, feature, shown, vmax))
    for g_index, group in enumerate(groups):
        st.markdown(f"**{group.title}**")
        ids = [int(p) for p in group.pairs["pair_id"]]
        st.html("".join(rows[p] for p in ids))  # one element per group keeps the page light
        with st.container(horizontal=True, gap="small", key=f"feature_open_{g_index}"):
            for pair_id in ids:
                st.page_link(
                    nav.PAIRS,
                    label=f"pair {pair_id}",
                    icon=":material/translate:",
                    help=f"Open pair {pair_id} with this feature's heatmap",
                    query_params={"run": ref.run_id, "pair": str(pair_id), "feats": str(feature)},
                )
        if g_index == 0 and len(groups) > 1:
            st.divider()


def neighbours_section(
    ref: RunRef, scored: pd.DataFrame, feature: int, score: Score, threshold: str
) -> None:
    """Features co-firing on the same pairs (Jaccard), and nearest decoder directions when stored."""
    st.subheader("Neighbours")
    cofire = data.cofiring(ref.location, ref.token, feature)
    decoder = data.decoder_neighbours(ref.location, ref.token, feature)
    cols = st.columns(2) if decoder is not None else [st.container()]
    with cols[0]:
        st.markdown("**Fire on the same pairs** (Jaccard over firing pairs, any language)")
        if cofire.neighbours.empty:
            st.caption("No other feature fires on its pairs.")
        else:
            links = {
                int(f): feature_link(ref, int(f), score, threshold)
                for f in cofire.neighbours["neighbour"]
            }
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
                        query_params=nav_params(ref, int(f), score, threshold),
                    )
    if decoder is not None:
        with cols[1]:
            st.markdown("**Nearest decoder directions** (cosine similarity of decoder rows)")
            if decoder.empty:
                st.caption(f"No decoder neighbours were stored for feature {feature}.")
            else:
                decoder = decoder.assign(
                    open=[feature_link(ref, int(f), score, threshold) for f in decoder["neighbour"]]
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
                            query_params=nav_params(ref, int(f), score, threshold),
                        )


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

scored = ui.scored_features(ref, threshold)
header_section(ref, scored, feature, score, threshold)
scores_section(ref, scored, scores, feature)

profile = data.feature_profile(ref.location, ref.token, feature)
if not profile.n_activations:
    st.info(f"Feature {feature} never fires in this run: it has no stored activation.")
else:
    activity_section(ref, profile, feature)
    examples_section(ref, profile, feature)
    if not data.file_problems(ref.location, ref.token, (SENTENCE_MAX,)):
        neighbours_section(ref, scored, feature, score, threshold)

# ---- further sections ----------------------------------------------------
# Sections from other modules (output-side evidence, ablations) go here, each
# a function taking (ref, scored, feature) and drawing under its own subheader.
evidence.feature_sections(ref, feature)  # output side, ablation, null (explorer/evidence.py)
steering.section(ref, feature)  # steered continuations per language (explorer/steering.py)
