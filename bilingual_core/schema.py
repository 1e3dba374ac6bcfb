"""The run-directory contract: file names, column names and Arrow types.

One run is a directory holding ``manifest.json`` and long-format Parquet tables
(README, "The run directory"). Every writer and reader in the project goes through the
schemas below, so a column is named in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from . import score_registry
from .errors import RunFormatError

FORMAT_VERSION = 1

MANIFEST = "manifest.json"
PAIRS = "pairs.parquet"
TOKENS = "tokens.parquet"
ACTIVATIONS = "activations.parquet"
FEATURES = "features.parquet"
THRESHOLDS = "thresholds.parquet"
CURVES = "curves.parquet"
# Derived by the scorer (not part of the minimal contract, but always written):
SENTENCE_MAX = "sentence_max.parquet"
COACTIVATION = "coactivation.parquet"
# Optional: pad-position activations kept only by the importer of the post's
# published data, for the `notebook` score variant (docs/scores.md, notebook variant).
PAD_ACTIVATIONS = "pad_activations.parquet"

# Threshold names in display order: the mean and five quantiles of all positive
# token activations in a scope.
THRESHOLD_QUANTILES: dict[str, float] = {
    "q0.05": 0.05,
    "q0.25": 0.25,
    "q0.5": 0.5,
    "q0.75": 0.75,
    "q0.95": 0.95,
}
THRESHOLD_NAMES: tuple[str, ...] = ("mean", *THRESHOLD_QUANTILES)
# Co-activation is also reported at "any" (t = 0: the feature fires at all).
COACTIVATION_THRESHOLDS: tuple[str, ...] = ("any", *THRESHOLD_NAMES)
GLOBAL_SCOPE = "global"

LANG_TYPE = pa.dictionary(pa.int8(), pa.string())


@dataclass(frozen=True)
class Column:
    """One required column: its name and the Arrow type writers must use."""

    name: str
    type: pa.DataType


def _schema(columns: list[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type, nullable=False) for c in columns])


PAIRS_COLUMNS = [
    Column("pair_id", pa.int32()),
    Column("lang", LANG_TYPE),
    Column("text", pa.string()),
]
TOKENS_COLUMNS = [
    Column("pair_id", pa.int32()),
    Column("lang", LANG_TYPE),
    Column("position", pa.int32()),
    Column("token_id", pa.int32()),
    Column("token", pa.string()),
]
ACTIVATIONS_COLUMNS = [
    Column("pair_id", pa.int32()),
    Column("lang", LANG_TYPE),
    Column("position", pa.int32()),
    Column("feature", pa.int32()),
    Column("activation", pa.float32()),
]
SENTENCE_MAX_COLUMNS = [
    Column("pair_id", pa.int32()),
    Column("lang", LANG_TYPE),
    Column("feature", pa.int32()),
    Column("max_activation", pa.float32()),
    Column("n_tokens", pa.int32()),
]
# Written by the scorer since peak-token evidence (runs scored earlier lack them).
SENTENCE_MAX_PEAK_COLUMNS = [
    Column("peak_position", pa.int32()),
    Column("peak_token_id", pa.int32()),
]
THRESHOLDS_COLUMNS = [
    Column("threshold", pa.string()),
    Column("scope", pa.string()),
    Column("value", pa.float64()),
    Column("n_activations", pa.int64()),
]
CURVES_COLUMNS = [
    Column("threshold", pa.string()),
    Column("scope", pa.string()),
    Column("rank", pa.int32()),
    Column("fraction", pa.float64()),
    Column("feature", pa.int32()),
]

PAIRS_SCHEMA = _schema(PAIRS_COLUMNS)
TOKENS_SCHEMA = _schema(TOKENS_COLUMNS)
ACTIVATIONS_SCHEMA = _schema(ACTIVATIONS_COLUMNS)
SENTENCE_MAX_SCHEMA = _schema(SENTENCE_MAX_COLUMNS + SENTENCE_MAX_PEAK_COLUMNS)

# features.parquet: the per-feature quantities the scorer writes before the
# scores; ``{lang}`` stands for each language of the run. The scores and their
# rank columns come from the score registry (score_registry.SCORES).
FEATURE_BASE_COLUMNS = [
    Column("feature", pa.int32()),
    Column("alive", pa.bool_()),
    Column("idaf", pa.float64()),
    Column("n_both", pa.int32()),
    Column("n_fire_{lang}", pa.int32()),
    Column("n_tokens_{lang}", pa.int64()),
    Column("max_act_{lang}", pa.float32()),
    Column("mean_act_{lang}", pa.float64()),
    Column("cond_{lang}", pa.float64()),
]
NOTEBOOK_BASE_COLUMNS = [
    Column("notebook_jsd", pa.float64()),
    Column("notebook_idaf", pa.float64()),
]
_FEATURE_REQUIRED_BASE = ("feature", "alive", "idaf")
# Peak-token evidence, feature families and labels (docs/scores.md), written
# after the scores; a run scored before them lacks these columns.
PEAK_FEATURE_COLUMNS = [
    Column("n_cross", pa.int32()),
    Column("n_shared", pa.int32()),
    Column("cross_share", pa.float64()),
    Column("cross_log10p", pa.float64()),
    Column("cross_repeated", pa.float64()),
    Column("is_translation", pa.bool_()),
    Column("is_shared_surface", pa.bool_()),
    Column("label", pa.string()),
    Column("token_pairs", pa.string()),
    Column("family", pa.int32()),
    Column("family_size", pa.int32()),
]


def _expand(columns: list[Column], languages: list[str]) -> list[Column]:
    out = []
    for c in columns:
        names = [c.name.format(lang=lang) for lang in languages] if "{lang}" in c.name else [c.name]
        out.extend(Column(name, c.type) for name in names)
    return out


def _score_columns(
    languages: list[str], notebook: bool, required_only: bool = False
) -> list[Column]:
    out = []
    for spec in score_registry.SCORES:
        if (required_only and not spec.required) or (spec.key == "notebook" and not notebook):
            continue
        out.extend(Column(name, pa.float64()) for name in spec.columns(languages))
        if spec.rank_column is not None:
            out.append(Column(spec.rank_column, pa.int32()))
    return out


def feature_columns(languages: list[str], *, notebook: bool = False) -> list[Column]:
    """Every column the scorer writes to features.parquet, in order."""
    base = FEATURE_BASE_COLUMNS + (NOTEBOOK_BASE_COLUMNS if notebook else [])
    return _expand(base, languages) + _score_columns(languages, notebook) + PEAK_FEATURE_COLUMNS


def _feature_required() -> list[Column]:
    base = [c for c in FEATURE_BASE_COLUMNS if c.name in _FEATURE_REQUIRED_BASE]
    return base + _score_columns([], notebook=False, required_only=True)


# Columns every reader may rely on (more are welcome; feature_columns lists
# everything the scorer writes to features.parquet).
REQUIRED_COLUMNS: dict[str, list[Column]] = {
    PAIRS: PAIRS_COLUMNS,
    TOKENS: TOKENS_COLUMNS,
    ACTIVATIONS: ACTIVATIONS_COLUMNS,
    PAD_ACTIVATIONS: ACTIVATIONS_COLUMNS,
    SENTENCE_MAX: SENTENCE_MAX_COLUMNS,
    THRESHOLDS: THRESHOLDS_COLUMNS[:3],
    CURVES: CURVES_COLUMNS[:4],
    FEATURES: _feature_required(),
}

# The files scoring writes (a rescore replaces them).
SCORE_FILES = (FEATURES, THRESHOLDS, CURVES, SENTENCE_MAX, COACTIVATION)

# Activation rows are written in row groups of this many rows, sorted by
# feature, so a reader filtering on one feature touches one or two groups.
ACTIVATION_ROW_GROUP = 1 << 20


def _kind(t: pa.DataType) -> str:
    t = t.value_type if pa.types.is_dictionary(t) else t
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "floating"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    return str(t)


def check_columns(schema: pa.Schema, file: str) -> None:
    """``file``'s required columns (REQUIRED_COLUMNS) are present with the right
    kind of type (any integer width, any float width, string or dictionary of
    strings); raises RunFormatError naming the file and column."""
    for column in REQUIRED_COLUMNS.get(file, []):
        if column.name not in schema.names:
            raise RunFormatError(
                file, column.name, f"missing (the file has columns {schema.names})"
            )
        actual = schema.field(column.name).type
        if _kind(actual) != _kind(column.type):
            raise RunFormatError(
                file, column.name, f"has type {actual}, expected {_kind(column.type)}"
            )
