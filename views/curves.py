"""``/curves``: ordered activation-frequency curves, the post's figures.

For a threshold t and a scope (a language, or all pooled), each feature's
fraction of the scope's sentences whose maximum activation exceeds t, sorted
descending and plotted against feature rank on a log x axis.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from bilingual_core.schema import CURVES, FEATURES, GLOBAL_SCOPE, THRESHOLD_NAMES, THRESHOLDS
from explorer import data, nav, ui
from explorer import table as explorer_table
from explorer.safe_text import plotly_text

ui.require_entry()


def curves_ui(thresholds: list[str]) -> tuple[list[str], bool, bool]:
    """Which thresholds to draw, log y, and whether to skip never-firing tails."""
    ui.url_seed(
        "curves_thresholds",
        "thr",
        lambda raw: [t for t in raw.split(",") if t in thresholds] or thresholds,
        thresholds,
    )
    # The thresholds take the whole width (every chip visible at 1024 px), the
    # toggles a row of their own at their labels' width.
    chosen = st.multiselect("Thresholds", thresholds, key="curves_thresholds")
    ui.url_publish("thr", chosen, thresholds, ",".join)
    with st.container(horizontal=True, gap="medium", key="curves_toggles"):
        log_y = ui.url_toggle("Log y axis", "curves_logy", "logy", False, width="content")
        nonzero = ui.url_toggle(
            "Firing features only",
            "curves_nonzero",
            "nz",
            True,
            width="content",
            help="Stop each line where the fraction reaches 0",
        )
    return chosen, log_y, nonzero


def curve_figure(
    curves: pd.DataFrame,
    values: dict[str, float],
    scope: str,
    chosen: list[str],
    log_y: bool,
    nonzero: bool,
    labels: pd.Series | None = None,
) -> go.Figure:
    """One line per chosen threshold; hovering names the feature at that rank and its label."""
    fig = go.Figure()
    for name in chosen:
        line = curves[(curves["scope"] == scope) & (curves["threshold"] == name)].sort_values(
            "rank"
        )
        if nonzero:
            line = line[line["firing"]]
        if line.empty:
            continue
        value = values.get(name)
        label = plotly_text(f"{name} = {value:.3g}" if value is not None else name)
        custom = line.get("feature")
        if custom is not None:
            names = (
                custom.astype(int).map(labels).fillna("").map(plotly_text)
                if labels is not None
                else pd.Series("", index=custom.index)
            )
            custom = list(zip(custom.astype(int).tolist(), names.tolist(), strict=True))
        fig.add_trace(
            go.Scatter(
                x=line["rank"],
                y=line["fraction"],
                # Invisible markers: plotly selects (and Streamlit reports) a
                # clicked point only on a trace with markers, never on a bare line.
                mode="lines+markers",
                marker={"size": 6, "opacity": 0},
                name=label,
                customdata=custom,
                hovertemplate=(
                    "rank %{x}<br>fraction %{y:.4f}"
                    + (
                        "<br>feature %{customdata[0]} %{customdata[1]}"
                        if custom is not None
                        else ""
                    )
                    + f"<extra>{label}</extra>"
                ),
            )
        )
    title = "all languages" if scope == GLOBAL_SCOPE else scope
    fig.update_layout(
        title=f"{title}",
        height=460,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"title": "threshold", "orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
        hovermode="closest",
    )
    fig.update_xaxes(type="log", title="feature rank", dtick=1)
    fig.update_yaxes(
        type="log" if log_y else "linear", title="fraction of sentences above threshold"
    )
    return fig


def clicked_feature(event, d_sae: int) -> int | None:
    """The feature id of the point clicked on a curve (its ``customdata``), if any."""
    points = (getattr(event, "selection", None) or {}).get("points") or []
    for point in points:
        raw = point.get("customdata")
        raw = raw[0] if isinstance(raw, list | tuple) and raw else raw
        try:
            feature = int(raw)
        except (TypeError, ValueError):
            continue
        if 0 <= feature < d_sae:
            return feature
    return None


ui.url_only("thr", "logy", "nz")
ref = ui.current_run(files=(CURVES, THRESHOLDS))
st.title("Activation-frequency curves")
st.caption(
    "For each threshold, every feature's fraction of sentences whose maximum activation exceeds it, "
    "sorted descending (x: feature rank, log scale). Hover a line for the feature at that rank; "
    "click a point to open that feature."
)
curves = data.curves(ref.location, ref.token)
thr = data.thresholds(ref.location, ref.token)
names = [t for t in THRESHOLD_NAMES if t in set(curves["threshold"])]
names += sorted(set(curves["threshold"]) - set(names))
chosen, log_y, nonzero = curves_ui(names)
scopes = [s for s in [*ref.languages, GLOBAL_SCOPE] if s in set(curves["scope"])]
cols = st.columns(min(3, len(scopes)))
feature_labels = (
    explorer_table.feature_labels(data.features(ref.location, ref.token))
    if not data.file_problems(ref.location, ref.token, (FEATURES,))
    else None
)
for i, scope in enumerate(scopes):
    values = thr[thr["scope"] == scope].set_index("threshold")["value"].to_dict()
    event = cols[i % len(cols)].plotly_chart(
        curve_figure(curves, values, scope, chosen, log_y, nonzero, feature_labels),
        key=f"curves_chart_{scope}",
        on_select="rerun",
        selection_mode="points",
    )
    clicked = clicked_feature(event, ref.manifest.d_sae)
    if clicked is not None:
        st.switch_page(nav.FEATURE, query_params={"run": ref.run_id, "feature": str(clicked)})

st.subheader("Threshold values")
table = thr.pivot_table(index="threshold", columns="scope", values="value")
table = table.reindex(index=[t for t in names if t in table.index], columns=scopes)
st.dataframe(
    table,
    key="curves_thresholds_table",
    column_config={s: st.column_config.NumberColumn(s, format="%.4f") for s in scopes},
)
