"""Example pairs across the activation range: the strongest, then pairs drawn from
activation quantile bins, as side-by-side token heatmaps."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer import data, feature_parts, nav, render, ui
from explorer.data import RunRef
from explorer.feature_parts import BY_BOTH

from .base import FeatureContext, Section

N_BINS = 4
"""Quantile bins the example pairs below the top ones are drawn from."""


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
        some = ui.url_toggle(
            "Include pairs where only some languages fire",
            "feature_some",
            "some",
            False,
            help="Off: the list holds only pairs where every language fires",
        )
    return by, int(n), int(per_bin), bool(some)


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


def draw(ctx: FeatureContext) -> None:
    """The strongest pairs, then pairs drawn from activation quantile bins."""
    ref, profile, feature = ctx.ref, ctx.profile, ctx.feature
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


SECTION = Section("examples", draw, title="Examples across the activation range", fires=True)
