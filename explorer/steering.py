"""Steering in the app: the table filter, and the parts the feature-page section
(``explorer/sections/steering.py``) draws with.

``steering.parquet`` (``python -m precompute steer``) holds, per candidate and
its random baseline features, the greedy continuation of neutral prompts in
each language at a few strengths. Here:

* ``continuations_html``, ``gain_figure``, ``summary_rows``: the section's
  continuations per language and strength, the steered text marked (the
  prompt plain, the continuation shaded; the feature's peak tokens bold;
  tokens of another language struck through, unknown ones dotted), and the
  concept gain per language against the random features;
* ``add_table_columns``, ``table_filter_ui`` and ``filter_table`` for the
  feature table's filter "writes its concept in every language".

Works on runs without the table.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from bilingual_core.evidence import (
    MIXED,
    STEERING,
    UNKNOWN,
    steering_verdict,
    writes_every_language,
)
from explorer import evidence, render, ui
from explorer.data import RunRef
from explorer.safe_text import plotly_text

URL_PARAMS = ("writes",)
COLUMNS = ("writes_every_language", "writes_in")
_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
STEERED_BG = "rgba(31,119,180,0.14)"


# ----------------------------------------------------- pure functions ---


def verdict(frame: pd.DataFrame) -> pd.DataFrame:
    """``steering_verdict`` of the whole table (per candidate, language, strength)."""
    return steering_verdict(frame)


def continuation_html(
    prompt: str,
    tokens: list[str],
    token_langs: list[str],
    token_ids: list[int],
    concept_ids: list[int],
    lang: str,
) -> str:
    """The prompt as plain text, then the steered continuation shaded: peak tokens bold,
    tokens tagged with another language struck through, unknown ones dotted."""
    concept = {int(t) for t in concept_ids}
    spans = []
    for text, tag, tid in zip(tokens, token_langs, token_ids, strict=True):
        style = ["white-space:pre"]
        notes = [f"language: {tag}"]
        if int(tid) in concept:
            style.append("font-weight:700;text-decoration:underline")
            notes.append("a peak token of this feature")
        if tag == UNKNOWN:
            style.append("border-bottom:1px dotted")
        elif tag not in (lang, MIXED):
            style.append("text-decoration:line-through")
        title = render._title_safe(" · ".join(notes))
        spans.append(
            f'<span title="{render.esc(title)}" style="{";".join(style)}">'
            f"{render.esc(render.visible_token(str(text)))}</span>"
        )
    return (
        f'<span style="opacity:0.75">{render.esc(prompt)}</span>'
        f'<span class="steered" style="background:{STEERED_BG};border-radius:3px;padding:1px 2px">'
        f"{''.join(spans)}</span>"
    )


def continuations_html(rows: pd.DataFrame, lang: str) -> str:
    """One language's continuations: a line per prompt and strength (strength 0 first)."""
    lines = []
    for row in rows.sort_values(["prompt_index", "strength"]).itertuples():
        label = "unsteered" if row.strength == 0 else f"α = {row.strength:g}"
        body = continuation_html(
            str(row.prompt),
            list(row.tokens),
            list(row.token_langs),
            list(row.token_ids),
            list(row.concept_token_ids),
            lang,
        )
        lines.append(
            '<div style="margin:2px 0;line-height:1.7">'
            f'<span style="display:inline-block;width:6.5em;font-size:0.8em;opacity:0.7">'
            f"{render.esc(label)}</span>{body}</div>"
        )
    return "".join(lines)


def gain_figure(rows: pd.DataFrame, languages: list[str]) -> go.Figure:
    """Concept gain against strength, per language: this feature (solid) and the mean of
    its random baseline features (dashed, each on its own peak tokens)."""
    fig = go.Figure()
    for i, lang in enumerate(languages):
        part = rows[rows["lang"] == lang].sort_values("strength")
        colour = _COLOURS[i % len(_COLOURS)]
        name = plotly_text(lang)
        fig.add_trace(
            go.Scatter(
                x=part["strength"],
                y=part["concept_gain"],
                mode="lines+markers",
                name=f"{name}: this feature",
                line={"color": colour},
                hovertemplate="α %{x:g}: %{y:+.3f} nats<extra>" + name + "</extra>",
            )
        )
        if part["baseline_gain"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=part["strength"],
                    y=part["baseline_gain"],
                    mode="lines+markers",
                    name=f"{name}: random features",
                    line={"color": colour, "dash": "dash"},
                    marker={"symbol": "x"},
                    hovertemplate="α %{x:g}: %{y:+.3f} nats (mean)<extra>" + name + "</extra>",
                )
            )
    fig.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title="Concept gain: rise of log P(a peak token) over the unsteered model",
        legend={"orientation": "h"},
    )
    fig.update_xaxes(title="strength α (× typical max activation)")
    fig.update_yaxes(title="concept gain (nats)")
    return fig


def summary_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The verdict of one feature, for display."""
    out = rows[rows["strength"] > 0].sort_values(["lang", "strength"])
    return pd.DataFrame(
        {
            "language": out["lang"].to_numpy(),
            "α": out["strength"].to_numpy(),
            "concept gain": out["concept_gain"].to_numpy(),
            "random features' gain (mean)": out["baseline_gain"].to_numpy(),
            "random features' gain (max)": out["baseline_gain_max"].to_numpy(),
            "continuations with a peak token": out["concept_rate"].to_numpy(),
            "language kept": out["lang_kept"].to_numpy(),
            "unknown tokens": out["unknown_share"].to_numpy(),
            "writes its concept": out["writes_concept"].to_numpy(),
        }
    )


def table_columns(frame: pd.DataFrame, languages: list[str]) -> pd.DataFrame:
    """Per steered candidate: ``writes_every_language`` and ``writes_in``."""
    return writes_every_language(verdict(frame), languages)[["feature", *COLUMNS]]


def filter_table(frame: pd.DataFrame, only_writers: bool) -> pd.DataFrame:
    """Only the features that write their concept in every language (when asked and known)."""
    if not only_writers or "writes_every_language" not in frame:
        return frame
    return frame[frame["writes_every_language"].astype("boolean").fillna(False).astype(bool)]


# ------------------------------------------------------------- the app ---


def add_table_columns(ref: RunRef, scored: pd.DataFrame) -> pd.DataFrame:
    """``scored`` with ``writes_every_language``/``writes_in`` for steered candidates (NA
    for the rest), when the run has ``steering.parquet``."""
    frame = evidence.load(ref, STEERING)
    if frame is None or frame.empty:
        return scored
    cols = table_columns(frame, ref.languages)
    cols["writes_every_language"] = cols["writes_every_language"].astype("boolean")
    return scored.merge(cols, on="feature", how="left")


def table_filter_ui(frame: pd.DataFrame) -> bool:
    """A toggle "writes its concept in every language" (only for runs with steering)."""
    if "writes_every_language" not in frame:
        return False
    on = ui.url_toggle(
        "Writes its concept in every language",
        "features_writes",
        "writes",
        False,
        help="Steered candidates (precompute steer) whose direction, added to a neutral prompt "
        "in each language, makes the model write one of its own peak tokens for that language, "
        "with a concept gain above its random features' and the prompt's language kept",
    )
    return on


__all__ = [
    "URL_PARAMS",
    "add_table_columns",
    "continuation_html",
    "filter_table",
    "table_filter_ui",
]
