"""``/``: the runs under the results root, the selected run's manifest, its
headline figures, its top features under the default ranking, and thresholds."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bilingual_core.schema import FEATURES, THRESHOLD_NAMES, THRESHOLDS
from explorer import data, evidence, nav, table, ui
from explorer.safe_text import md, md_frame, public_name

ui.require_entry()

HEADLINE_ROWS = 10

st.title("Bilingual SAE features")
st.caption(
    "Which features of a sparse autoencoder fire on the same content in English and Spanish? "
    "Pick a run in the sidebar, then browse the frequency curves, the ranked feature table, "
    "single features and sentence pairs."
)

root = ui.results_root()
try:
    listings = data.runs(root)
except Exception:  # the run picker already explains an unreachable root
    listings = []
if listings:
    with st.expander(
        f"Runs under `{public_name(root)}` ({len(listings)})", expanded=len(listings) > 1
    ):
        st.dataframe(data.runs_frame(listings), hide_index=True, key="overview_runs")

ui.url_only()
ref = ui.current_run(files=(FEATURES, THRESHOLDS))
man = ref.manifest
feats = data.features(ref.location, ref.token)

st.header(f"Run `{ref.run_id}`")
n_alive = int(feats["alive"].sum())
cols = st.columns(5)
cols[0].metric("Sentence pairs", ui.fmt(man.n_pairs))
cols[1].metric("SAE features", ui.fmt(man.d_sae))
cols[2].metric("Alive", ui.fmt(n_alive), help="Fire in at least one sentence of every language")
cols[3].metric("Dead", ui.fmt(man.d_sae - n_alive))
n_act = man.scoring.get("n_activation_rows") or man.extraction.get("n_activations")
cols[4].metric("Non-zero activations", ui.fmt(n_act))


def headline(
    features: pd.DataFrame, languages: list[str], n: int = HEADLINE_ROWS
) -> tuple[pd.DataFrame, table.Score]:
    """The ``n`` best alive features under the default ranking (the first score the run offers)."""
    scored = table.score_table(features, None, languages)
    default = table.available_scores(scored.columns, languages)[0]
    scored["rank"] = table.ranks(scored, default)
    top = scored.dropna(subset=["rank"]).sort_values("rank").head(n)
    columns = [
        "feature",
        "rank",
        default.column,
        "label",
        "tag",
        "support",
        "low_support",
        *[f"n_fire_{lang}" for lang in languages],
    ]
    return top[[c for c in columns if c in top]].reset_index(drop=True), default


def _describe(section: dict, keys: list[str]) -> list[tuple[str, str]]:
    return [(k, str(section[k])) for k in keys if section.get(k) not in (None, "", {})]


left, right = st.columns(2)
with left:
    st.subheader("Model and SAE")
    rows = _describe(man.model, ["name", "path"])
    rows += [
        (f"SAE {k}", v)
        for k, v in _describe(man.sae, ["release", "id", "path", "hook_name", "neuronpedia_id"])
    ]
    rows += [("languages", ", ".join(man.languages))]
    st.table(md_frame(pd.DataFrame(rows, columns=["", "value"]).set_index("")))
with right:
    st.subheader("Corpus and extraction")
    rows = _describe(man.corpus, ["source", "config", "split", "seed", "sample_size"])
    rows += [
        (f"extraction {k}", v)
        for k, v in _describe(man.extraction, ["dtype", "batch_size", "max_tokens", "device"])
    ]
    tokens = man.scoring.get("n_real_tokens") or {}
    rows += [(f"tokens ({lang})", ui.fmt(n)) for lang, n in tokens.items()]
    rows += [("created", man.created_at), ("scored", str(man.scoring.get("scored_at", "–")))]
    if man.scoring:
        rows += [
            ("score variant", str(man.scoring.get("variant"))),
            ("beta (idaf weight)", ui.fmt(man.scoring.get("beta"))),
            ("K (jsd order statistic)", ui.fmt(man.scoring.get("k_used"))),
        ]
    st.table(md_frame(pd.DataFrame(rows, columns=["", "value"]).set_index("")))

st.subheader("Top features")
top, default = headline(feats, man.languages)
st.caption(
    f"Ranked by {default.label}: {default.help}. Support: pairs where the feature fires in every "
    f"language; fewer than {table.LOW_SUPPORT_PAIRS} is marked low support."
)
old_run = table.missing_peak_evidence(feats.columns, ref.location)
if old_run:
    st.info(old_run)
if top.empty:
    st.info("No feature is alive in this run: none can be ranked.")
else:
    top.insert(1, "open", [f"feature?run={ref.run_id}&feature={int(f)}" for f in top["feature"]])
    st.dataframe(
        top,
        hide_index=True,
        key="overview_top",
        column_config={
            "feature": st.column_config.NumberColumn("feature", format="%d"),
            "open": st.column_config.LinkColumn("open", display_text="open ↗", width="small"),
            "rank": st.column_config.NumberColumn("rank", format="%d"),
            default.column: st.column_config.NumberColumn(default.column, format="%.5g"),
            "support": st.column_config.NumberColumn("support", format="%d"),
            "low_support": st.column_config.CheckboxColumn("low support"),
            "label": st.column_config.TextColumn("label", width="medium"),
        },
    )

evidence.overview_section(ref, feats)  # features beating the null, ablation (explorer/evidence.py)

st.subheader("Activation thresholds")
st.caption(
    "Mean and quantiles of all positive token activations, per language and pooled (`global`)."
)
thr = data.thresholds(ref.location, ref.token)
by_scope = thr.pivot_table(index="threshold", columns="scope", values="value")
order = [t for t in THRESHOLD_NAMES if t in by_scope.index] + [
    t for t in by_scope.index if t not in THRESHOLD_NAMES
]
scopes = [s for s in [*man.languages, "global"] if s in by_scope.columns]
st.dataframe(
    by_scope.reindex(index=order, columns=scopes),
    key="overview_thresholds",
    column_config={s: st.column_config.NumberColumn(s, format="%.4f") for s in scopes},
)

planted = man.extraction.get("planted")
if planted:
    st.caption(
        f"Synthetic run: {len(planted)} features were planted with a known kind "
        "(shown in the feature table's `planted` column)."
    )

st.subheader("Go to")
links = [*st.columns(2), *st.columns(2)]  # two per row: labels are never cut
links[0].page_link(
    nav.CURVES,
    label="Frequency curves",
    icon=":material/show_chart:",
    query_params={"run": ref.run_id},
)
links[1].page_link(
    nav.FEATURES,
    label="Ranked feature table",
    icon=":material/table_rows:",
    query_params={"run": ref.run_id},
)
if not top.empty:
    best = int(top["feature"].iloc[0])
    links[2].page_link(
        nav.FEATURE,
        label=f"F{md(table.with_label(best, table.feature_labels(feats)))[1:]} (top by {default.key})",
        icon=":material/neurology:",
        query_params={"run": ref.run_id, "feature": str(best)},
    )
links[3].page_link(
    nav.PAIRS,
    label="Sentence pairs",
    icon=":material/translate:",
    query_params={"run": ref.run_id, "pair": "0"},
)
