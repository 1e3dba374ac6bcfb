"""``/pairs?run=R&pair=K``: one sentence pair's texts and tokens in every
language, the features firing on both sides, and a heatmap per chosen feature."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from bilingual_core.schema import ACTIVATIONS, FEATURES, PAIRS, SENTENCE_MAX, TOKENS
from bilingual_core.score_registry import rank_columns
from explorer import data, nav, render, table, ui
from explorer.data import RunRef
from explorer.safe_text import md

ui.require_entry()

SEARCH_LIMIT = 200
FEATURE_ROWS = 300  # rows of the firing-features table sent to the browser
MAX_HEATMAPS = 12


def _pick_result(pair_ids: list[int]) -> None:
    """Selection callback of the search results: jump to the chosen pair."""
    rows = st.session_state["pairs_results"].selection.rows
    if rows:
        st.session_state["pairs_id"] = pair_ids[rows[0]]


def pair_ui(n_pairs: int) -> int:
    ui.url_seed("pairs_id", "pair", ui.parse_int(0, n_pairs - 1), 0)
    pair = st.number_input(
        f"Pair (0 – {n_pairs - 1})", min_value=0, max_value=n_pairs - 1, step=1, key="pairs_id"
    )
    ui.url_publish("pair", int(pair))
    return int(pair)


def search_ui() -> str:
    ui.url_seed("pairs_search", "q", str, "")
    text = st.text_input(
        "Search pairs by text", key="pairs_search", placeholder="a word or phrase, any language"
    )
    ui.url_publish("q", text.strip(), "")
    return text.strip()


def features_ui(candidates: list[int], default: list[int], d_sae: int) -> list[int]:
    ui.url_seed(
        "pairs_features",
        "feats",
        lambda raw: ui.parse_int_list(0, d_sae - 1)(raw)[:MAX_HEATMAPS],
        default,
    )
    # Keep URL-named features selectable even when they are not among the top rows.
    current = [int(f) for f in st.session_state.get("pairs_features", [])]
    options = list(dict.fromkeys([*current, *candidates]))
    chosen = st.multiselect(
        "Features to show as heatmaps", options, key="pairs_features", max_selections=MAX_HEATMAPS
    )
    ui.url_publish("feats", [int(f) for f in chosen], default, ui.encode_int_list)
    return [int(f) for f in chosen]


def search_results(ref: RunRef, text: str) -> None:
    hits = data.search_pairs(ref.location, ref.token, text, SEARCH_LIMIT)
    if hits.empty:
        st.info(f"No sentence contains “{md(text)}”.")
        return
    wide = hits.pivot_table(index="pair_id", columns="lang", values="text", aggfunc="first")
    wide = wide.reindex(columns=ref.languages).reset_index()
    ids = [int(p) for p in wide["pair_id"]]
    more = " (first matches)" if len(ids) >= SEARCH_LIMIT else ""
    st.caption(f"{len(ids)} pairs{more}; select one to open it.")
    st.dataframe(
        wide,
        key="pairs_results",
        hide_index=True,
        on_select=partial(_pick_result, ids),
        selection_mode="single-row",
        height=min(400, 38 + 35 * len(ids)),
    )


def token_table(tokens: pd.DataFrame, lang: str) -> pd.DataFrame:
    part = tokens[(tokens["lang"] == lang)][["position", "token_id", "token"]]
    return part.reset_index(drop=True)


ui.url_only("pair", "q", "feats", "all")
ref = ui.current_run(files=(PAIRS, TOKENS, SENTENCE_MAX, ACTIVATIONS, FEATURES))
man = ref.manifest
st.title("Sentence pairs")
with st.sidebar:
    st.subheader("Pair")
    pair = pair_ui(man.n_pairs)
text = search_ui()
if text:
    search_results(ref, text)

texts = data.pair_texts(ref.location, ref.token, (pair,))
tokens = data.pair_tokens(ref.location, ref.token, (pair,))
st.header(f"Pair {pair}")
cols = st.columns(len(ref.languages))
for col, lang in zip(cols, ref.languages, strict=True):
    sentence = texts.loc[texts["lang"] == lang, "text"]
    toks = tokens[(tokens["lang"] == lang) & (tokens["position"] > 0)]
    with col:
        st.caption(f"{lang} · {len(toks)} tokens")
        st.html(
            f'<div style="font-size:1.1em">{render.sentence(sentence.iloc[0] if len(sentence) else "")}</div>'
        )
        st.html(render.token_heatmap(toks["token"].astype(str).tolist(), [0.0] * len(toks), 1.0))
        with st.expander(f"Tokens ({lang})"):
            st.dataframe(token_table(tokens, lang), hide_index=True, key=f"pairs_tokens_{lang}")

st.subheader("Features firing on this pair")
show_all = ui.url_toggle(
    "Include features that fire in only some languages", "pairs_all", "all", False
)
feats = data.features(ref.location, ref.token)
firing = table.pair_feature_table(
    data.pair_features(ref.location, ref.token, pair), ref.languages, feats, both_only=not show_all
)
label = "in any language" if show_all else "in every language"
st.caption(
    f"{len(firing):,} features fire {label}, sorted by the weaker side's maximum activation "
    f"(`min_max`); showing the first {min(len(firing), FEATURE_ROWS)}."
)
st.dataframe(
    firing.head(FEATURE_ROWS),
    hide_index=True,
    key="pairs_firing",
    height=300,
    column_config={
        "feature": st.column_config.NumberColumn(format="%d"),
        "label": st.column_config.TextColumn(width="medium"),
        **{rank: st.column_config.NumberColumn(format="%d") for rank in rank_columns()},
    },
)

candidates = [int(f) for f in firing["feature"].head(FEATURE_ROWS)]
labels = table.feature_labels(feats)
default_features = table.pair_default_features(firing, feats, ref.languages, man.n_pairs)
st.caption(
    "The heatmaps start with this pair's most specific features: the best ranked by "
    "the run's default score among those firing here in every language."
)
chosen = features_ui(candidates, default_features, man.d_sae)
if chosen:
    acts = data.token_activations(ref.location, ref.token, tuple(sorted(chosen)), (pair,))
    vmax_by_feature = feats.set_index("feature")[[f"max_act_{lang}" for lang in ref.languages]].max(
        axis=1
    )
    for f in chosen:
        sides = []
        for lang in ref.languages:
            toks = tokens[(tokens["lang"] == lang) & (tokens["position"] > 0)]
            fa = acts[(acts["feature"] == f) & (acts["lang"] == lang)].set_index("position")[
                "activation"
            ]
            sides.append(
                (
                    lang,
                    toks["token"].astype(str).tolist(),
                    [float(fa.get(p, 0.0)) for p in toks["position"]],
                )
            )
        vmax = float(vmax_by_feature.get(f, 0.0)) or 1.0
        named = table.with_label(f, labels)
        st.html(
            render.pair_heatmaps(
                sides, vmax, caption=f"{named} (colour scale 0 – {vmax:.3g}, its maximum)"
            )
        )
        st.page_link(
            nav.FEATURE,
            label=f"Open {md(named)}",
            icon=":material/neurology:",
            query_params={"run": ref.run_id, "feature": str(f)},
        )
