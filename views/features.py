"""``/features``: the ranked feature table, with filters, token search, sort,
CSV export, and a click-through to each feature's page."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from bilingual_core.export import neuronpedia_features, neuronpedia_quick_list_url
from bilingual_core.schema import FEATURES
from explorer import data, evidence, nav, steering, table, ui
from explorer.data import RunRef
from explorer.table import ANY, Filters, Score

ui.require_entry()

# Runs with at most this many activations get the top-tokens column at once;
# bigger runs build the token index only when a search asks for it.
EAGER_TOKEN_INDEX_ROWS = 20_000_000
MAX_TABLE_PX = 560
TABLE_ROW_PX = 35
"""Streamlit's default dataframe row height (and header height below)."""
TABLE_HEADER_PX = 38
NEURONPEDIA_LIST_MAX = 100
"""Rows a Neuronpedia list takes (a quick list travels in its URL)."""


def score_ui(scores: list[Score], thresholds: list[str]) -> tuple[Score, str]:
    """The score to rank by and the co-activation threshold."""
    keys = [s.key for s in scores]
    labels = {s.key: s.label for s in scores}
    c1, c2 = st.columns([2, 1])
    ui.url_seed("features_score", "score", ui.parse_choice(keys), keys[0])
    key = c1.selectbox(
        "Rank by",
        keys,
        key="features_score",
        format_func=labels.get,
        help="The scores of the README's 'The scores' section; the first is the default. "
        "Ranks count alive features only; ties go to the feature with more support.",
    )
    ui.url_publish("score", key, keys[0])
    ui.url_seed("features_threshold", "t", ui.parse_choice(thresholds), thresholds[0])
    threshold = c2.selectbox(
        "Co-activation threshold",
        thresholds,
        key="features_threshold",
        help="A pair counts as firing in a language when the feature's maximum there "
        "exceeds this threshold (any = fires at all). Used by the Jaccard score "
        "and the 'fires in both' filter.",
    )
    ui.url_publish("t", threshold, thresholds[0])
    return table.score_by_key(scores, key), threshold


def shared_ui(has_tags: bool) -> bool:
    """The one-click toggle hiding shared-token features (on by default)."""
    if not has_tags:
        return False
    hide = ui.url_toggle(
        "Hide shared-token features",
        "features_hide_shared",
        "hideshared",
        True,
        width="content",
        help="Features that co-fire mostly on the same token in every language (?/?, Tom/Tom): "
        "any model that has seen both scripts does that. Untick to show them, tagged "
        "'shared token'.",
    )
    return hide


def families_ui(has_families: bool) -> bool:
    """One row per family of near-duplicate latents (on by default)."""
    if not has_families:
        return False
    group = ui.url_toggle(
        "One row per family",
        "features_group",
        "group",
        True,
        width="content",
        help="Near-duplicate latents (their peak tokens nearly coincide, docs/scores.md) "
        "are shown as their best-ranked member with '+N similar'; expand a family below.",
    )
    return group


def filters_ui(languages: list[str]) -> Filters:
    """Filter widgets (the caller puts them in its "Filters and sort" expander);
    returns plain values."""
    with st.container():
        c1, c2, c3, c4 = st.columns(4)
        alive = ui.url_toggle(
            "Alive only",
            "features_alive",
            "alive",
            True,
            where=c1,
            help="Alive: fires in at least one sentence of every language",
        )
        ui.url_seed("features_min", "smin", ui.parse_float, None)
        smin = c2.number_input("Score at least", value=None, key="features_min", format="%.6g")
        ui.url_publish("smin", smin, None, lambda v: f"{v:.6g}")
        ui.url_seed("features_max", "smax", ui.parse_float, None)
        smax = c3.number_input("Score at most", value=None, key="features_max", format="%.6g")
        ui.url_publish("smax", smax, None, lambda v: f"{v:.6g}")
        ui.url_seed("features_minpairs", "minpairs", ui.parse_int(0), 0)
        min_pairs = c4.number_input(
            "Min. firing pairs per language", min_value=0, step=1, key="features_minpairs"
        )
        ui.url_publish("minpairs", min_pairs, 0)

        c5, c6, c7 = st.columns([1, 1, 2])
        ui.url_seed("features_minboth", "minboth", ui.parse_int(0), 0)
        min_both = c5.number_input(
            "Min. pairs firing in both (at threshold)", min_value=0, step=1, key="features_minboth"
        )
        ui.url_publish("minboth", min_both, 0)
        options = [ANY, "bilingual", *[f"only:{lang}" for lang in languages]]
        names = {
            ANY: "any",
            "bilingual": "bilingual (no language dominates)",
            **{f"only:{lang}": f"{lang}-specific" for lang in languages},
        }
        ui.url_seed("features_spec", "spec", ui.parse_choice(options), ANY)
        spec = c6.selectbox(
            "Language specificity", options, key="features_spec", format_func=names.get
        )
        ui.url_publish("spec", spec, ANY)
        ui.url_seed("features_cut", "cut", ui.parse_float_range(0.5, 1.0), 0.8)
        cut = c7.slider(
            "Specific when a language holds at least this share of the firing sentences",
            0.5,
            1.0,
            step=0.05,
            key="features_cut",
        )
        ui.url_publish("cut", cut, 0.8, lambda v: f"{v:.2f}")
    return Filters(
        alive_only=alive,
        score_min=smin,
        score_max=smax,
        min_pairs=int(min_pairs),
        min_both=int(min_both),
        specificity=spec,
        share_cutoff=float(cut),
    )


def token_search_ui() -> str:
    ui.url_seed("features_tokens", "tok", str, "")
    text = st.text_input(
        "Search features by label, token pairs or the tokens they fire on most",
        key="features_tokens",
        placeholder="e.g. noche, casa, house",
        help="Matches each feature's label, its commonest peak-token pairs (want/quiero) "
        "and the tokens under its strongest activations",
    )
    ui.url_publish("tok", text.strip(), "")
    return text.strip()


def sort_ui(columns: list[str]) -> tuple[str, bool]:
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    ui.url_seed("features_sort", "sort", ui.parse_choice(columns), "rank")
    column = c1.selectbox("Sort by", columns, key="features_sort")
    ui.url_publish("sort", column, "rank")
    descending = ui.url_toggle("Descending", "features_desc", "desc", False, where=c2)
    return column, descending


def table_height(n_rows: int) -> int:
    """Pixels for the table: its rows when few (no empty box), at most MAX_TABLE_PX."""
    return min(MAX_TABLE_PX, TABLE_HEADER_PX + TABLE_ROW_PX * max(n_rows, 1) + 2)


def feature_params(
    ref: RunRef, feature: int, score: Score, threshold: str, carry: dict[str, str]
) -> dict[str, str]:
    """URL parameters of a feature page opened from the table: the ranking, and
    ``carry``, the table's search, filters and sort (``nav.TABLE_PARAMS``) to
    come back to."""
    params = {"run": ref.run_id, "feature": str(feature), "score": score.key}
    if threshold != ANY:
        params["t"] = threshold
    return {**params, **carry}


def feature_urls(
    ref: RunRef, features: pd.Series, score: Score, threshold: str, carry: dict[str, str]
) -> list[str]:
    """Relative links from /features to each feature's page (see ``feature_params``)."""
    rest = feature_params(ref, 0, score, threshold, carry)
    run = urlencode({"run": rest.pop("run")})
    del rest["feature"]
    tail = urlencode(rest)  # never empty: it holds the score
    return [f"feature?{run}&feature={int(f)}&{tail}" for f in features]


ui.url_only(
    "score",
    "t",
    "hideshared",
    "group",
    *nav.TABLE_PARAMS,
    *evidence.URL_PARAMS,
    *steering.URL_PARAMS,
)
ref = ui.current_run(files=(FEATURES,))
st.title("Ranked features")
thresholds = ui.coactivation_thresholds(ref)
feats = data.features(ref.location, ref.token)
scores = table.available_scores(list(feats.columns), ref.languages)
# The controls sit close together, and the rarely changed ones (filters, sort)
# in expanders, so that the table starts within the first screen at 1024x768.
with st.container(key="features_controls", gap="xsmall"):
    score, threshold = score_ui(scores, thresholds)
    with st.expander(f"How `{score.key}` ranks features", expanded=False):
        st.caption(score.help + (f" — {score.note}" if score.note else ""))
    old_run = table.missing_peak_evidence(feats.columns, ref.location)
    if old_run:
        st.info(old_run)
    text = token_search_ui()
    with st.container(horizontal=True, gap="medium", key="features_toggles"):
        hide_shared = shared_ui("is_shared_surface" in feats)
        group = families_ui("family" in feats)
    with st.expander("Filters and sort", expanded=False):
        filters = Filters(**{**filters_ui(ref.languages).__dict__, "hide_shared": hide_shared})
        steering_slot = st.container()
        sort_slot = st.container()
    evidence_slot = st.container()

scored = ui.scored_features(ref, threshold)
scored["rank"] = table.ranks(scored, score)
n_act = int(ref.manifest.scoring.get("n_activation_rows") or 0)
index = None
if text or n_act <= EAGER_TOKEN_INDEX_ROWS:
    with st.spinner("Indexing the top tokens of every feature (once per run)…"):
        index = data.top_tokens(ref.location, ref.token)
    scored["top_tokens"] = (
        scored["feature"].map(data.top_token_summary(ref.location, ref.token)).fillna("")
    )
if text:
    found = table.match_labels(scored, text)
    if index is not None:
        found |= table.match_tokens(index, text)
    filters = Filters(**{**filters.__dict__, "features": found})

scored = evidence.add_table_columns(
    ref, scored
)  # evidence columns + filters (explorer/evidence.py)
scored = steering.add_table_columns(ref, scored)
shown = table.apply_filters(scored, score, filters, ref.languages)
with evidence_slot:
    evidence_filters = evidence.table_filters_ui(ref, scored)
shown = evidence.filter_table(shown, evidence_filters, ref.languages)
with steering_slot:
    writes = steering.table_filter_ui(scored)
shown = steering.filter_table(shown, writes)  # explorer/steering.py
columns = table.display_columns(shown, score, ref.languages)
columns += [c for c in evidence.display_columns(shown, ref.languages) if c not in columns]
columns += [c for c in steering.COLUMNS if c in shown and c not in columns]
with sort_slot:
    sort_column, descending = sort_ui(columns)
shown = table.sort_table(shown, sort_column, descending)
# The count line and the table come first; the rarely used family picker below them.
head = st.container()
if group:
    multi = shown["family"][shown["family"].duplicated(keep=False)].astype(int).unique().tolist()
    expand = st.multiselect(
        "Expand families",
        multi,
        key="features_expand",
        format_func=lambda f: table.with_label(f, table.feature_labels(feats)),
        help="Show every member of these families of near-duplicate latents",
    )
    shown = table.collapse_families(shown, frozenset(int(f) for f in expand))
    columns = [c for c in columns if c != "similar"]
    columns.insert(columns.index("label") + 1 if "label" in columns else 1, "similar")
columns = [c for c in columns if c in shown]
shown = shown[columns].reset_index(drop=True)
carry = nav.carried(st.query_params.to_dict())
shown.insert(1, "open", feature_urls(ref, shown["feature"], score, threshold, carry))

active = table.describe_filters(filters)
n_low = int(shown["low_support"].sum()) if "low_support" in shown else 0
sorted_by = (
    f" · sorted by `{sort_column}`" + (" descending" if descending else "")
    if sort_column != "rank" or descending
    else ""
)
head.markdown(
    f"**{len(shown):,}** of {len(scored):,} features · ranked by `{score.key}`"
    + (f" at threshold `{threshold}`" if score.coactivation else "")
    + sorted_by
    + (f" · {active}" if active else "")
    + (" · writes its concept in every language" if writes else "")
    + (f" · {n_low:,} with low support" if n_low else "")
)
event = head.dataframe(
    shown,
    key="features_table",
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    height=table_height(len(shown)),
    column_config={
        "feature": st.column_config.NumberColumn("feature", format="%d", pinned=True),
        "open": st.column_config.LinkColumn(
            "open", display_text="open ↗", width="small", help="Open the feature page in a new tab"
        ),
        "rank": st.column_config.NumberColumn("rank", format="%d"),
        score.column: st.column_config.NumberColumn(score.column, format="%.5g"),
        "support": st.column_config.NumberColumn(
            "support",
            format="%d",
            help="Pairs where the feature fires in every language, at the co-activation threshold",
        ),
        "low_support": st.column_config.CheckboxColumn(
            "low support",
            help=f"Fires in every language on fewer than {table.LOW_SUPPORT_PAIRS} pairs",
        ),
        "top_tokens": st.column_config.TextColumn("top tokens", width="medium"),
        "label": st.column_config.TextColumn(
            "label", width="medium", help="Built from the feature's peak tokens (docs/scores.md)"
        ),
        "similar": st.column_config.TextColumn(
            "family", help="Other near-duplicate latents of its family in this table"
        ),
        "tag": st.column_config.TextColumn(
            "tag",
            help="translation: co-firing mostly cross-token and significant; shared token: "
            "co-firing mostly on the same token",
        ),
        "token_pairs": st.column_config.TextColumn("token pairs", width="medium"),
    },
)
head.caption("Select a row to open its feature page; `open ↗` opens it in a new tab.")
rows = event.selection.rows if event is not None else []
if rows:
    chosen = int(shown["feature"].iloc[rows[0]])
    st.switch_page(nav.FEATURE, query_params=feature_params(ref, chosen, score, threshold, carry))

st.download_button(
    "Download the filtered table (CSV)",
    key="features_csv",
    data=lambda: table.csv_text(shown.drop(columns=["open"])),
    file_name=f"{ref.run_id}-features-{score.key}.csv",
    mime="text/csv",
    on_click="ignore",
)
np_id = ref.manifest.neuronpedia_id
if np_id:
    listed = [int(f) for f in shown["feature"].head(NEURONPEDIA_LIST_MAX)]
    np_name = f"{ref.run_id} {score.key}"
    try:
        np_json = json.dumps(neuronpedia_features(np_id, listed), indent=1)
        np_url = neuronpedia_quick_list_url(np_id, listed, np_name)
    except ValueError as exc:
        st.caption(str(exc))
    else:
        with st.container(horizontal=True, gap="small", key="features_neuronpedia"):
            st.download_button(
                "Neuronpedia list (JSON)",
                key="features_neuronpedia_json",
                data=np_json,
                file_name=f"{ref.run_id}-features-{score.key}-neuronpedia.json",
                mime="application/json",
                on_click="ignore",
            )
            st.link_button(
                "Open as a Neuronpedia quick list", np_url, icon=":material/open_in_new:"
            )
        st.caption(
            f"The first {len(listed)} filtered rows as Neuronpedia features "
            "(`modelId`, `layer`, `index`)."
        )
