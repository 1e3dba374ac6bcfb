"""The evidence tables in the app: cached loaders, feature-page sections, table columns.

A run may carry ``logits``, ``output_languages``, ``neighbours``, ``ablation``,
``null_scores`` and ``purity`` tables (``bilingual_core.evidence``); every
function here works on runs without them (a caption says how to add them).
Loaders are keyed by the run's location, its token and the manifest's evidence
stamp, so adding a table to a run refreshes them.

Pages call:

* ``token_list``, ``ablation_figure``, ``baseline_features_table``, ``null_rows``
  in the feature page's evidence sections (``explorer/sections/``);
* ``add_table_columns``, ``table_filters_ui``, ``filter_table`` and
  ``display_columns`` on the feature table (``URL_PARAMS`` are its URL keys);
* ``overview_section(ref)`` on the overview.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from bilingual_core import Run
from bilingual_core.evidence import (
    ABLATION,
    EVIDENCE_FILES,
    NULL_SCORES,
    OUTPUT_LANGUAGES,
    PURITY,
    evidence_stamp,
    null_comparison,
    null_percentile,
)
from bilingual_core.score_registry import stored_rankings
from explorer import render, ui
from explorer.data import RunRef

URL_PARAMS = ("outlang", "hurts", "beatnull")
ANY, BOTH = "any", "both"


# ------------------------------------------------------------ loading ---


def stamp(ref: RunRef) -> str:
    return evidence_stamp(ref.manifest.evidence)


@st.cache_data(show_spinner=False, max_entries=64)
def present(location: str, token: str, evidence: str) -> frozenset[str]:
    """Which evidence tables the run has."""
    del token, evidence
    run = Run.open(location)
    return frozenset(name for name in EVIDENCE_FILES if run.has(name))


@st.cache_data(show_spinner=False, max_entries=32)
def table(location: str, token: str, evidence: str, name: str) -> pd.DataFrame:
    """One evidence table, whole (each holds at most a few rows per feature)."""
    del token, evidence
    frame = Run.open(location).read_pandas(name)
    if "lang" in frame:
        frame["lang"] = frame["lang"].astype(str)
    return frame


def load(ref: RunRef, name: str) -> pd.DataFrame | None:
    """The run's ``name`` table, or None when the run does not carry it."""
    key = (ref.location, ref.token, stamp(ref))
    if name not in present(*key):
        return None
    return table(*key, name)


# ----------------------------------------------------- pure functions ---


def token_list(logits: pd.DataFrame, feature: int, sign: str) -> pd.DataFrame:
    """One feature's promoted or suppressed tokens, for display (whitespace made
    visible): token, language, logit and where the token occurs (``in corpus``:
    its share per language, ``–`` when it never occurs). No cell is left empty."""
    part = logits[(logits["feature"] == feature) & (logits["sign"] == sign)].sort_values("rank")
    shares = [c for c in part.columns if c.startswith("share_")]

    def where(row) -> str:
        parts = [
            f"{c.removeprefix('share_')} {row[c]:.0%}"
            for c in shares
            if pd.notna(row[c]) and row[c] > 0
        ]
        return " · ".join(parts) or "–"

    return pd.DataFrame(
        {
            "token": [render.visible_token(str(t)) for t in part["token"]],
            "language": [str(t) if pd.notna(t) and t else "unknown" for t in part["lang_tag"]],
            "logit": part["logit"].to_numpy(),
            "in corpus": [where(r) for _, r in part.iterrows()],
        }
    )


def null_rows(feats: pd.DataFrame, null: pd.DataFrame, feature: int) -> pd.DataFrame:
    """Per score in both tables: the feature's value, its percentile against the null's
    alive features, the null's best values, and whether it beats the null's best."""
    row = feats.loc[feats["feature"] == feature].iloc[0]
    null_alive = null[null["alive"]]
    rows = []
    for spec in stored_rankings(feats.columns, null.columns):
        score, higher = spec.column, spec.higher_is_better
        values = null_alive[score].dropna().to_numpy(np.float64)
        best = np.sort(values)[::-1][:3] if higher else np.sort(values)[:3]
        value = float(row[score]) if pd.notna(row[score]) else np.nan
        pct = null_percentile(np.array([value]), values, higher)[0]
        beats = bool(len(best)) and (value > best[0] if higher else value < best[0])
        rows.append(
            {
                "score": score,
                "value": value,
                "percentile vs null": pct,
                "null's best": ", ".join(f"{v:.4g}" for v in best),
                "beats the null's best": beats,
            }
        )
    return pd.DataFrame(rows)


def ablation_figure(rows: pd.DataFrame) -> go.Figure:
    """Per language: the loss change when the feature is ablated, and the random baseline, with CIs."""
    fig = go.Figure()
    for name, col, low, high in (
        ("ablate this feature", "delta_loss", "ci_low", "ci_high"),
        (
            "random features, similar frequency",
            "baseline_delta_loss",
            "baseline_ci_low",
            "baseline_ci_high",
        ),
    ):
        fig.add_trace(
            go.Bar(
                x=rows["lang"],
                y=rows[col],
                name=name,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (rows[high] - rows[col]).to_numpy(),
                    "arrayminus": (rows[col] - rows[low]).to_numpy(),
                },
                hovertemplate="%{x}: %{y:.4g} nats/token<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        barmode="group",
        height=280,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title="Next-token loss change when ablated (95% CI)",
        legend={"orientation": "h"},
    )
    fig.update_yaxes(title="Δ loss (nats/token)")
    return fig


def baseline_features_table(rows: pd.DataFrame, feats: pd.DataFrame | None) -> pd.DataFrame:
    """The random baseline features of one feature's ablation rows (``baseline_features``,
    comma-separated ids), with each one's ``label`` when the run has labels."""
    ids: list[int] = []
    for text in rows["baseline_features"].dropna().astype(str):
        for part in text.split(","):
            part = part.strip()
            if part.lstrip("-").isdigit() and int(part) not in ids:
                ids.append(int(part))
    out = pd.DataFrame({"feature": pd.Series(ids, dtype="int64")})
    if feats is not None and "label" in feats.columns:
        labels = feats.drop_duplicates("feature").set_index("feature")["label"]
        out["label"] = out["feature"].map(labels).fillna("").astype(str)
    return out


def add_table_columns(ref: RunRef, scored: pd.DataFrame) -> pd.DataFrame:
    """``scored`` with the evidence columns the run supports: ``output_languages``
    (and ``out_<l>``), ``hurts_both`` and ``delta_loss_<l>`` (ablated features only),
    ``purity``/``n_cofiring``, and ``null_pct_<score column>`` per stored ranking of the
    score registry that the null table also has."""
    out = scored
    langs = ref.languages
    outl = load(ref, OUTPUT_LANGUAGES)
    if outl is not None:
        out = out.merge(
            outl[["feature", "output_languages", *[f"out_{lang}" for lang in langs]]],
            on="feature",
            how="left",
        )
    abl = load(ref, ABLATION)
    if abl is not None and len(abl):
        wide = abl.pivot_table(
            index="feature", columns="lang", values="delta_loss", aggfunc="first"
        )
        wide.columns = [f"delta_loss_{c}" for c in wide.columns]
        hurt = abl.groupby("feature")["hurts"].all().rename("hurts_both")
        out = out.merge(wide.join(hurt).reset_index(), on="feature", how="left")
    pur = load(ref, PURITY)
    if pur is not None:
        out = out.merge(pur[["feature", "purity", "n_cofiring"]], on="feature", how="left")
    null = load(ref, NULL_SCORES)
    if null is not None:
        null_alive = null[null["alive"]]
        for spec in stored_rankings(scored.columns, null.columns):
            score = spec.column
            pct = null_percentile(
                out[score].to_numpy(np.float64),
                null_alive[score].to_numpy(np.float64),
                spec.higher_is_better,
            )
            out[f"null_pct_{score}"] = np.where(out["alive"].astype(bool), pct, np.nan)
    return out


def display_columns(frame: pd.DataFrame, languages: list[str]) -> list[str]:
    """The evidence columns ``add_table_columns`` added, in display order."""
    cols = [
        "output_languages",
        "hurts_both",
        *[f"delta_loss_{lang}" for lang in languages],
        "purity",
        "n_cofiring",
    ]
    cols += [c for c in frame.columns if c.startswith("null_pct_")]
    return [c for c in cols if c in frame.columns]


@dataclass(frozen=True)
class EvidenceFilters:
    output_language: str = ANY
    """``any``; a language (at least half its top promoted tokens are in it); ``both`` (each language has some)."""
    hurts_both: bool = False
    """Only features whose ablation raises the loss in every language beyond the baseline."""
    beats_null: str | None = None
    """Only features whose ``null_pct_<this score>`` is 100 (at least as good as the null's best)."""


def filter_table(
    frame: pd.DataFrame, filters: EvidenceFilters, languages: list[str]
) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    if filters.output_language == BOTH and all(f"out_{lang}" in frame for lang in languages):
        keep &= pd.concat([frame[f"out_{lang}"] > 0 for lang in languages], axis=1).all(axis=1)
    elif filters.output_language in languages and f"out_{filters.output_language}" in frame:
        keep &= frame[f"out_{filters.output_language}"] >= 0.5
    if filters.hurts_both and "hurts_both" in frame:
        keep &= frame["hurts_both"].fillna(False).astype(bool)
    if filters.beats_null and f"null_pct_{filters.beats_null}" in frame:
        keep &= frame[f"null_pct_{filters.beats_null}"] >= 100
    return frame[keep]


# ------------------------------------------------------------ widgets ---


def table_filters_ui(ref: RunRef, frame: pd.DataFrame) -> EvidenceFilters:
    """Filters on the evidence columns present in ``frame`` (from ``add_table_columns``)."""
    langs = ref.languages
    has_out, has_abl = "output_languages" in frame, "hurts_both" in frame
    null_scores = [c.removeprefix("null_pct_") for c in frame.columns if c.startswith("null_pct_")]
    if not (has_out or has_abl or null_scores):
        return EvidenceFilters()
    with st.expander("Evidence filters (output languages, ablation, null)", expanded=False):
        c1, c2, c3 = st.columns(3)
        outlang = ANY
        if has_out:
            options = [ANY, BOTH, *langs]
            names = {
                ANY: "any",
                BOTH: "promotes tokens of every language",
                **{lang: f"promotes mostly {lang} tokens" for lang in langs},
            }
            ui.url_seed("features_ev_outlang", "outlang", ui.parse_choice(options), ANY)
            outlang = c1.selectbox(
                "Output languages",
                options,
                key="features_ev_outlang",
                format_func=names.get,
                help="Languages of the tokens its decoder direction promotes most",
            )
            ui.url_publish("outlang", outlang, ANY)
        hurts = False
        if has_abl:
            hurts = ui.url_toggle(
                "Hurts both languages",
                "features_ev_hurts",
                "hurts",
                False,
                where=c2,
                help="Ablating it raises the next-token loss in every language, "
                "CI above 0 and above the random baseline's CI (ablated candidates only)",
            )
        beat = None
        if null_scores:
            options = ["", *null_scores]
            ui.url_seed("features_ev_beatnull", "beatnull", ui.parse_choice(options), "")
            beat = c3.selectbox(
                "Beats the null's best under",
                options,
                key="features_ev_beatnull",
                format_func=lambda s: s or "(no filter)",
                help="As good as or better than every feature of a random dictionary",
            )
            ui.url_publish("beatnull", beat, "")
    return EvidenceFilters(outlang, hurts, beat or None)


def overview_lines(ref: RunRef, feats: pd.DataFrame) -> list[str]:
    """Headline sentences on the evidence of a run (empty when it has none)."""
    lines = []
    null = load(ref, NULL_SCORES)
    if null is not None:
        for r in null_comparison(feats, null).itertuples():
            lines.append(
                f"`{r.score}`: **{r.n_beat_null:,}** of {r.n_alive:,} alive features beat the best of "
                f"a random dictionary ({r.null_best:.4g})"
            )
    abl = load(ref, ABLATION)
    if abl is not None and len(abl):
        hurt = abl.groupby("feature")["hurts"].all()
        lines.append(
            f"ablation: **{int(hurt.sum())}** of {len(hurt)} candidates raise the loss in every language "
            "beyond a random baseline"
        )
    return lines


def overview_section(ref: RunRef, feats: pd.DataFrame) -> None:
    lines = overview_lines(ref, feats)
    if lines:
        st.subheader("Evidence")
        st.markdown("\n".join(f"* {line}" for line in lines))
