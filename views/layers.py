"""``/layers``: at which depth do translation features appear?

Reads a layer sweep (``python -m precompute sweep``): per layer, the share of
alive features that are translation features and shared-surface features,
with the random-dictionary null of ``validate --null random`` as a band, a
link to each layer's feature table, and the cross-layer decoder comparison
when ``python -m precompute sweep-compare`` has written it. Without a sweep,
the chosen run is one point.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from bilingual_core.sweep import SweepFormatError
from explorer import data, layers, nav, ui
from explorer.safe_text import hide_paths, md, plotly_text

ui.require_entry()

SINGLE = "(the chosen run only)"


def sweep_ui(options: list[str]) -> str:
    """The sweep to show (or ``SINGLE``)."""
    choices = [*options, SINGLE]
    ui.url_seed("layers_sweep", "sweep", ui.parse_choice(choices), choices[0])
    chosen = st.selectbox("Sweep", choices, key="layers_sweep")
    ui.url_publish("sweep", chosen, choices[0])
    return chosen


def figure(table: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    x = table["layer"] if table["layer"].notna().all() else table["run"]
    for column, label, colour in (
        ("null_translation_frac", "random dictionary: translation", "rgba(31,119,180,0.15)"),
        ("null_shared_frac", "random dictionary: shared surface", "rgba(255,127,14,0.15)"),
    ):
        if table[column].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=table[column].fillna(0),
                    mode="lines",
                    line={"width": 0},
                    fill="tozeroy",
                    fillcolor=colour,
                    name=label,
                    hovertemplate="%{x}: %{y:.2%}<extra>" + label + "</extra>",
                )
            )
    for column, label, colour in (
        ("translation_frac", "translation features", "#1f77b4"),
        ("shared_frac", "shared-surface features", "#ff7f0e"),
    ):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=table[column],
                mode="lines+markers",
                name=label,
                line={"color": colour},
                customdata=table["run"].map(plotly_text),
                hovertemplate="layer %{x}: %{y:.2%}<br>run %{customdata}<extra>"
                + label
                + "</extra>",
            )
        )
    fig.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
    )
    fig.update_xaxes(title="layer", dtick=1 if table["layer"].notna().all() else None)
    fig.update_yaxes(title="fraction of alive features", tickformat=".1%", rangemode="tozero")
    return fig


ui.url_only("sweep", "a")
root = ui.results_root()
st.title("Layers")
st.caption(
    "Where in the network do translation features live? Per layer of a sweep "
    "(`python -m precompute sweep --layers 3,6,9,12 ...`), the fraction of alive features that "
    "are translation features (co-firing across languages on different tokens) and "
    "shared-surface features (co-firing on the same token); shaded: the same fractions for a "
    "random dictionary of matched firing rates (`python -m precompute validate --null random`)."
)
chosen = sweep_ui(layers.sweeps(root))
listings = {r.run_id: r for r in data.runs(root)}
entries: list[tuple[int | None, str]]
manifest = None
if chosen == SINGLE:
    ref = ui.current_run()
    entries = [(None, ref.run_id)]
    hook = ref.manifest.sae.get("hook_name", "")
    st.info(f"One run, `{md(ref.run_id)}` ({md(hook)}): one point. Run a sweep to compare layers.")
else:
    try:
        manifest = layers.sweep(root, chosen)
    except SweepFormatError as exc:
        st.error(
            f"The sweep manifest of `{md(chosen)}` cannot be read: {md(hide_paths(str(exc)), 400)}"
        )
        st.stop()
    entries = [(e.layer, e.run_id) for e in manifest.layers]
    st.caption(
        f"{manifest.model} · {manifest.n_pairs:,} pairs · {', '.join(manifest.languages)} · "
        f"{len(entries)} layers"
    )

rows, missing, rescore = [], [], []
for layer, run_id in entries:
    listing = listings.get(run_id)
    if listing is None or not listing.ok:
        missing.append(run_id)
        continue
    location = data.run_location(listing, root)
    try:
        counts, null = layers.layer_counts(location, data.run_token(listing.manifest))
    except FileNotFoundError:
        rescore.append(run_id)
        continue
    row = layers.layer_row(layer, run_id, counts, null)
    if row["needs_rescore"]:
        rescore.append(run_id)
    rows.append(row)
if missing:
    st.warning(
        "Missing or unusable runs of this sweep: " + ", ".join(f"`{md(r)}`" for r in missing)
    )
if rescore:
    st.warning(
        "Scored before translation and shared-surface features were counted: "
        + ", ".join(f"`{md(r)}`" for r in rescore)
        + ". Rescore each with `python -m precompute score --run <results root>/<run>`."
    )
table = pd.DataFrame(rows)
if table.empty or table["translation_frac"].isna().all():
    st.info("No layer of this sweep has translation-feature counts yet.")
    st.stop()

st.plotly_chart(figure(table), key="layers_chart")
st.dataframe(
    table.drop(columns=["needs_rescore"]),
    key="layers_table",
    hide_index=True,
    column_config={
        c: st.column_config.NumberColumn(c, format="percent")
        for c in ("translation_frac", "shared_frac", "null_translation_frac", "null_shared_frac")
    }
    | {"run": st.column_config.TextColumn("run")},
)
st.subheader("Feature table of a layer")
with st.container(horizontal=True, gap="small", key="layers_links"):
    for row in rows:
        name = f"layer {row['layer']}" if row["layer"] is not None else row["run"]
        st.page_link(
            nav.FEATURES,
            label=f"{name}: {row['translation'] or 0} translation features",
            icon=":material/table_rows:",
            query_params={"run": row["run"]},
        )

if manifest is not None and len(manifest.layers) > 1:
    st.subheader("Across layers: translation features without a match")
    compare = layers.comparison(root, chosen)
    if compare is None:
        st.info(
            "Compare decoder directions across layers with "
            f"`python -m precompute sweep-compare --out <results root> --sweep {md(chosen)}`."
        )
    else:
        pairs = sorted(set(zip(compare["layer_a"], compare["layer_b"], strict=True)))
        labels = [f"{a} → {b}" for a, b in pairs]
        ui.url_seed("layers_pair", "a", ui.parse_choice(labels), labels[0])
        label = st.selectbox(
            "Translation features of layer a with no close decoder direction at layer b",
            labels,
            key="layers_pair",
        )
        ui.url_publish("a", label, labels[0])
        a, b = pairs[labels.index(label)]
        lost = layers.unmatched(compare, a, b)
        st.caption(
            f"{len(lost)} of {int(((compare['layer_a'] == a) & (compare['layer_b'] == b)).sum())} "
            f"translation features of layer {a} have no feature at layer {b} within the cosine "
            "threshold."
        )
        st.dataframe(lost, key="layers_unmatched", hide_index=True)
