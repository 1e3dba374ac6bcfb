"""One feature of a run as a JSON document (the feature page's export and
``python -m precompute export-feature``), and a feature list for Neuronpedia.

The document holds what the feature page shows: every score column of
``features.parquet`` (the label too, when the scorer wrote one), the top pairs
with their texts, tokens and per-token activations, the logit effects, and the
evidence tables that hold a row for it (output languages, decoder neighbours,
ablation, purity). Reads are filtered to the feature: a run's activations are
never loaded whole.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from bilingual_core.run import Run

EXPORT_VERSION = 1
EVIDENCE_TABLES = ("output_languages", "neighbours", "ablation", "purity")
"""Evidence tables (``<name>.parquet``) exported when the run has them."""


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars unwrapped, NaN and NA as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _for_feature(run: Run, name: str, feature: int) -> pd.DataFrame | None:
    name = f"{name}.parquet"
    if not run.has(name):
        return None
    frame = run.read_pandas(name, filters=[("feature", "=", feature)])
    if "lang" in frame:
        frame["lang"] = frame["lang"].astype(str)
    return frame


def top_pairs(run: Run, feature: int, n: int) -> list[dict[str, Any]]:
    """The ``n`` pairs where the feature's weaker language is strongest (every
    language firing first), each with its texts and every token's activation."""
    languages = run.languages
    sm = _for_feature(run, "sentence_max", feature)
    if sm is None or sm.empty:
        return []
    wide = sm.pivot_table(index="pair_id", columns="lang", values="max_activation", aggfunc="max")
    wide = wide.reindex(columns=languages).fillna(0.0)
    order = wide.assign(_min=wide.min(axis=1), _max=wide.max(axis=1)).sort_values(
        ["_min", "_max"], ascending=False
    )
    ids = [int(p) for p in order.index[:n]]
    if not ids:
        return []
    pairs = run.read_pandas("pairs.parquet", filters=[("pair_id", "in", ids)])
    tokens = run.read_pandas(
        "tokens.parquet", filters=[("pair_id", "in", ids), ("position", ">", 0)]
    )
    acts = run.read_pandas(
        "activations.parquet", filters=[("feature", "=", feature), ("pair_id", "in", ids)]
    )
    for frame in (pairs, tokens, acts):
        frame["lang"] = frame["lang"].astype(str)
    value = {
        (int(r.pair_id), r.lang, int(r.position)): float(r.activation) for r in acts.itertuples()
    }
    out = []
    for pair_id in ids:
        sides = {}
        for lang in languages:
            text = pairs.loc[(pairs["pair_id"] == pair_id) & (pairs["lang"] == lang), "text"]
            toks = tokens[(tokens["pair_id"] == pair_id) & (tokens["lang"] == lang)].sort_values(
                "position"
            )
            sides[lang] = {
                "text": str(text.iloc[0]) if len(text) else "",
                "max_activation": _plain(wide.at[pair_id, lang]),
                "tokens": [str(t) for t in toks["token"]],
                "activations": [value.get((pair_id, lang, int(p)), 0.0) for p in toks["position"]],
            }
        out.append({"pair_id": pair_id, **sides})
    return out


def feature_export(run: Run, feature: int, n_pairs: int = 10) -> dict[str, Any]:
    """The JSON-ready document of ``feature`` (ValueError when it is out of range)."""
    man = run.manifest
    if not 0 <= feature < man.d_sae:
        raise ValueError(f"feature {feature} is outside 0..{man.d_sae - 1} of run {run.run_id!r}")
    feats = run.read_pandas("features.parquet", filters=[("feature", "=", feature)])
    scores = _records(feats)[0] if len(feats) else {"feature": feature}
    doc: dict[str, Any] = {
        "export_version": EXPORT_VERSION,
        "run_id": run.run_id,
        "feature": feature,
        "languages": run.languages,
        "model": man.model.get("name"),
        "sae": {
            k: man.sae.get(k) for k in ("release", "id", "path", "hook_name", "neuronpedia_id")
        },
        "label": scores.get("label"),
        "scores": scores,
        "top_pairs": top_pairs(run, feature, n_pairs),
    }
    logits = _for_feature(run, "logits", feature)
    if logits is not None:
        doc["logit_effects"] = {
            sign: _records(
                part.sort_values("rank")[
                    [c for c in ("rank", "token", "token_id", "logit", "lang_tag") if c in part]
                ]
            )
            for sign, part in logits.groupby("sign", sort=True)
        }
    evidence = {}
    for name in EVIDENCE_TABLES:
        frame = _for_feature(run, name, feature)
        if frame is not None:
            evidence[name] = _records(frame.drop(columns=["feature"]))
    doc["evidence"] = evidence
    return doc


def feature_json(run: Run, feature: int, n_pairs: int = 10) -> str:
    """``feature_export`` as indented JSON text."""
    return json.dumps(feature_export(run, feature, n_pairs), indent=1, ensure_ascii=False)


NEURONPEDIA_QUICK_LIST = "https://www.neuronpedia.org/quick-list/"


def neuronpedia_features(neuronpedia_id: str, features: list[int]) -> list[dict[str, str]]:
    """Features in Neuronpedia's list format: one ``{"modelId", "layer", "index"}``
    object each, ``modelId`` and ``layer`` (the SAE's source id) being the two
    halves of a run's Neuronpedia id (``gemma-2-2b/20-gemmascope-res-16k``) and
    ``index`` the feature id as a string; the same triple names a feature in a
    Neuronpedia URL (``neuronpedia.org/<modelId>/<layer>/<index>``)."""
    model_id, _, source = neuronpedia_id.strip("/").partition("/")
    if not model_id or not source:
        raise ValueError(
            f"Neuronpedia id {neuronpedia_id!r} is not <model>/<source>, e.g. "
            "gemma-2-2b/20-gemmascope-res-16k"
        )
    return [{"modelId": model_id, "layer": source, "index": str(int(f))} for f in features]


def neuronpedia_quick_list_url(neuronpedia_id: str, features: list[int], name: str) -> str:
    """A Neuronpedia quick list of ``features``: the page opens them side by side
    (``?name=<name>&features=<the list as URL-encoded JSON>``)."""
    from urllib.parse import quote

    listed = json.dumps(neuronpedia_features(neuronpedia_id, features), separators=(",", ":"))
    return f"{NEURONPEDIA_QUICK_LIST}?name={quote(name)}&features={quote(listed)}"
