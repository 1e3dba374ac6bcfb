"""Where it fires: activation density per language, and its place on the firing-rate curve."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import data, render
from explorer.safe_text import plotly_text

from .base import FeatureContext, Section


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


def draw(ctx: FeatureContext) -> None:
    """Activation density per language and the feature's place on the firing-rate curve."""
    ref, profile, feature = ctx.ref, ctx.profile, ctx.feature
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


SECTION = Section("activity", draw, title="Where it fires", fires=True)
