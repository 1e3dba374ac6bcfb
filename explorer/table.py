"""The feature table as pure pandas: which scores a run offers, filters, ranks.

Nothing here draws a widget or reads a file: pages pass in the frames that
``explorer.data`` loaded and the plain values that ``*_ui()`` functions
returned, so every rule below can be tested without Streamlit.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bilingual_core import score_registry
from bilingual_core.ranking import rank_features
from bilingual_core.score_registry import ScoreSpec

from .safe_text import no_bidi

ANY = "any"
LOW_SUPPORT_PAIRS = 3
"""A feature firing in every language on fewer pairs than this (at the chosen
threshold) is marked "low support" wherever it is listed."""


@dataclass(frozen=True)
class Score:
    """One way to rank features, as the app offers it: a score of the registry
    (``bilingual_core.score_registry.SCORES``), for one language when the score
    is per language. Everything else is read off the registry's declaration."""

    spec: ScoreSpec
    lang: str | None = None
    """The language of a per-language score (``mono_{lang}``), else None."""

    def _fill(self, text: str) -> str:
        return text if self.lang is None else text.format(lang=self.lang)

    @property
    def key(self) -> str:
        """Stable id used in URLs (``?score=bi``)."""
        return self._fill(self.spec.key)

    @property
    def label(self) -> str:
        return self._fill(self.spec.label)

    @property
    def column(self) -> str:
        """Column of the features table (after ``score_table``) holding the value:
        the value at the chosen threshold for a co-activation score."""
        return self._fill(self.spec.threshold_column or self.spec.column)

    @property
    def stored(self) -> str:
        """Its column of features.parquet."""
        return self._fill(self.spec.column)

    @property
    def ascending(self) -> bool:
        """True when lower is better (``bi``, JSDs); ranks count from the best."""
        return not self.spec.higher_is_better

    @property
    def help(self) -> str:
        return self._fill(self.spec.formula)

    @property
    def coactivation(self) -> bool:
        """Comes from coactivation.parquet at the chosen threshold."""
        return self.spec.coactivation is not None

    @property
    def note(self) -> str:
        """What the ranking favours (shown when it is selected)."""
        return self._fill(self.spec.note)

    @property
    def support_ties(self) -> bool:
        """Equal values are ordered by support (else by feature id alone)."""
        return self.spec.ties == "support"


def available_scores(columns: list[str] | pd.Index, languages: list[str]) -> list[Score]:
    """The scores of the registry that a run's features table supports, in the
    registry's order: the first is the default ranking."""
    cols = set(columns)
    out = []
    for spec in score_registry.SCORES:
        for lang in languages if spec.per_language else [None]:
            score = Score(spec, lang)
            if spec.always_offered or score.stored in cols:
                out.append(score)
    return out


def score_by_key(scores: list[Score], key: str | None) -> Score:
    for s in scores:
        if s.key == key:
            return s
    return scores[0]


def score_table(
    features: pd.DataFrame,
    coactivation: pd.DataFrame | None,
    languages: list[str],
    planted: dict[str, str] | None = None,
) -> pd.DataFrame:
    """features.parquet plus the co-activation columns of one threshold
    (``coact_*``), ``support`` (pairs firing in every language at that
    threshold), the language shares used by the specificity filter, and the
    planted kind of synthetic runs."""
    table = features.copy()
    at_threshold = [s for s in score_registry.SCORES if s.coactivation is not None]
    if coactivation is not None and not coactivation.empty:
        co = coactivation.set_index("feature")
        for spec in at_threshold:
            table[spec.threshold_column] = table["feature"].map(co[spec.coactivation])
        table["coact_both"] = table["feature"].map(co["n_intersection"]).fillna(0).astype("int64")
        table["coact_any"] = table["feature"].map(co["n_union"]).fillna(0).astype("int64")
    else:
        for spec in at_threshold:
            table[spec.threshold_column] = table.get(spec.column, np.nan)
    fire = np.stack([table[f"n_fire_{lang}"].to_numpy(np.float64) for lang in languages], axis=1)
    total = fire.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, fire / np.where(total > 0, total, 1), 0.0)
    for i, lang in enumerate(languages):
        table[f"share_{lang}"] = share[:, i]
    if "coact_both" in table:
        table["support"] = table["coact_both"]
    elif "n_both" in table:
        table["support"] = table["n_both"]
    if "support" in table:
        table["low_support"] = low_support(table["support"])
    if planted:
        table["planted"] = table["feature"].astype(str).map(planted).fillna("")
    if "is_shared_surface" in table:
        table["tag"] = np.where(
            table["is_shared_surface"].fillna(False).astype(bool),
            SHARED_TAG,
            np.where(table["is_translation"].fillna(False).astype(bool), TRANSLATION_TAG, ""),
        )
    return table


SHARED_TAG = "shared token"
TRANSLATION_TAG = "translation"
PEAK_COLUMNS = ("translation", "label", "is_shared_surface", "family")
"""What a run scored before peak-token evidence lacks (features.parquet)."""


def missing_peak_evidence(columns: list[str] | pd.Index, run_path: str = "DIR") -> str | None:
    """A note for a run scored before peak-token evidence (None when it has it)."""
    lacking = [c for c in PEAK_COLUMNS if c not in set(columns)]
    if not lacking:
        return None
    return (
        "This run was scored before peak-token evidence: it has no translation ranking, "
        "feature labels, shared-token tags or feature families (features.parquet lacks "
        f"{', '.join(lacking)}). `python -m precompute score --run {run_path}` adds them; "
        "meanwhile the first available score ranks."
    )


def feature_labels(features: pd.DataFrame) -> pd.Series:
    """Feature id -> label ('' when the run has no labels)."""
    if "label" not in features:
        return pd.Series("", index=features["feature"].astype(int), dtype=object)
    return features.set_index(features["feature"].astype(int))["label"].fillna("").astype(str)


def with_label(feature: int, labels: pd.Series) -> str:
    """``feature 123 · want/quiero`` (just ``feature 123`` without a label)."""
    label = labels.get(int(feature), "") if labels is not None else ""
    return f"feature {int(feature)} · {label}" if label else f"feature {int(feature)}"


def match_labels(table: pd.DataFrame, text: str) -> frozenset[int]:
    """Features whose label or commonest peak-token pairs contain ``text`` (case-insensitive)."""
    needle = text.strip().lower()
    hits = pd.Series(False, index=table.index)
    for col in ("label", "token_pairs"):
        if col in table:
            hits |= table[col].fillna("").astype(str).str.lower().str.contains(needle, regex=False)
    return frozenset(table.loc[hits, "feature"].astype(int))


def collapse_families(shown: pd.DataFrame, expand: frozenset[int] = frozenset()) -> pd.DataFrame:
    """One row per feature family among ``shown`` (already in display order):
    its first row, with ``similar`` = "+N similar" for the N other members shown.
    Families in ``expand`` keep every member (the others marked "in family F")."""
    if "family" not in shown or shown.empty:
        return shown
    fam = shown["family"].fillna(shown["feature"]).astype(int)
    first = ~fam.duplicated()
    members = fam.map(fam.value_counts())
    out = shown.copy()
    out["similar"] = np.where(
        first & (members > 1), "+" + (members - 1).astype(str) + " similar", ""
    )
    expanded = fam.isin(expand)
    out.loc[expanded & ~first, "similar"] = "in family " + fam[expanded & ~first].astype(str)
    return out[first | expanded]


def low_support(support: pd.Series | float) -> pd.Series | bool:
    """True where fewer than ``LOW_SUPPORT_PAIRS`` pairs fire in every language;
    ``support`` is a column (``support``, ``n_both``, ``coact_both``) or one value.
    An unknown (missing) support is not marked."""
    if isinstance(support, pd.Series):
        return support.astype("float64").lt(LOW_SUPPORT_PAIRS) & support.notna()
    return bool(pd.notna(support) and support < LOW_SUPPORT_PAIRS)


def ranks(table: pd.DataFrame, score: Score) -> pd.Series:
    """1-based rank of each alive feature under ``score`` (the core's one ranking
    rule: ties by support, then feature id); <NA> for dead features and missing values."""
    support = (
        table["support"].to_numpy(np.float64) if score.support_ties and "support" in table else None
    )
    rank = rank_features(
        table[score.column].to_numpy(np.float64),
        table["alive"].to_numpy(bool),
        higher_is_better=not score.ascending,
        support=support,
        feature_ids=table["feature"].to_numpy(),
    )
    return pd.Series(rank, index=table.index, dtype="Int64").mask(rank == 0)


@dataclass(frozen=True)
class Filters:
    """What the feature table is narrowed to (all values come from widgets or the URL)."""

    alive_only: bool = True
    score_min: float | None = None
    score_max: float | None = None
    min_pairs: int = 0
    """Minimum number of pairs the feature fires on, in every language."""
    min_both: int = 0
    """Minimum pairs where it exceeds the threshold in every language at once."""
    specificity: str = ANY
    """``any``, ``bilingual`` or ``only:<lang>``."""
    share_cutoff: float = 0.8
    """A feature is specific to a language when at least this share of its
    firing sentences are in it; bilingual when no language reaches it."""
    features: frozenset[int] | None = None
    """Keep only these features (the token search), or all when None."""
    hide_shared: bool = True
    """Hide features tagged "shared token" (co-firing mostly on the same token)."""


def apply_filters(
    table: pd.DataFrame, score: Score, filters: Filters, languages: list[str]
) -> pd.DataFrame:
    """Rows of ``table`` that pass ``filters``."""
    keep = pd.Series(True, index=table.index)
    if filters.alive_only:
        keep &= table["alive"].astype(bool)
    values = table[score.column].astype("float64")
    if filters.score_min is not None:
        keep &= values >= filters.score_min
    if filters.score_max is not None:
        keep &= values <= filters.score_max
    if filters.min_pairs > 0:
        for lang in languages:
            keep &= table[f"n_fire_{lang}"] >= filters.min_pairs
    if filters.min_both > 0 and "coact_both" in table:
        keep &= table["coact_both"] >= filters.min_both
    shares = table[[f"share_{lang}" for lang in languages]]
    if filters.specificity == "bilingual":
        keep &= (shares < filters.share_cutoff).all(axis=1) & (shares > 0).all(axis=1)
    elif filters.specificity.startswith("only:"):
        lang = filters.specificity.removeprefix("only:")
        if lang in languages:
            keep &= table[f"share_{lang}"] >= filters.share_cutoff
    if filters.features is not None:
        keep &= table["feature"].isin(filters.features)
    if filters.hide_shared and "is_shared_surface" in table:
        keep &= ~table["is_shared_surface"].fillna(False).astype(bool)
    return table[keep]


INPUT_COLUMNS = (
    "n_cross",
    "n_shared",
    "cross_share",
    "cross_log10p",
    "family",
    "family_size",
    "idaf",
    "coact_both",
)
"""What the scores are built from, shown after them: peak-token counts, families,
bi's frequency term, support at the threshold."""


def score_columns(languages: list[str]) -> list[str]:
    """Every score's column as the table shows it, in registry order: the value (at the
    chosen threshold for a co-activation score; one per language for a per-language
    score), then the stored rank of the post's own rankings (ties by feature id, to
    compare with its published table; the app's ``rank`` column ranks the others)."""
    cols: list[str] = []
    for spec in score_registry.SCORES:
        for lang in languages if spec.per_language else [None]:
            cols.append(Score(spec, lang).column)
        if spec.rank_column is not None and spec.ties == "feature":
            cols.append(spec.rank_column)
    return cols


def display_columns(table: pd.DataFrame, score: Score, languages: list[str]) -> list[str]:
    """The columns the feature table shows, in order."""
    cols = [
        "feature",
        "label",
        "similar",
        "rank",
        score.column,
        "tag",
        "support",
        "low_support",
        "token_pairs",
        "top_tokens",
        "planted",
    ]
    extra = [f"n_fire_{lang}" for lang in languages]
    extra += score_columns(languages)
    extra += INPUT_COLUMNS
    for lang in languages:
        extra += [f"max_act_{lang}", f"share_{lang}"]
    extra += ["alive"]
    cols = [c for c in cols if c in table]
    for c in extra:
        if c in table and c not in cols:
            cols.append(c)
    return cols


def sort_table(table: pd.DataFrame, column: str, descending: bool) -> pd.DataFrame:
    """Sort by ``column`` (missing values last), ties by feature id."""
    if column not in table:
        column = "rank"
    return table.sort_values(
        [column, "feature"], ascending=[not descending, True], na_position="last", kind="stable"
    )


def neighbours(
    table: pd.DataFrame, score: Score, feature: int
) -> tuple[int | None, int | None, int | None]:
    """(rank, previous feature, next feature) of ``feature`` along ``score``'s ranking."""
    r = ranks(table, score)
    ranked = pd.DataFrame({"feature": table["feature"], "rank": r}).dropna().sort_values("rank")
    order = ranked["feature"].astype(int).tolist()
    if feature not in order:
        return None, None, None
    i = order.index(feature)
    prev_f = order[i - 1] if i > 0 else None
    next_f = order[i + 1] if i + 1 < len(order) else None
    return i + 1, prev_f, next_f


def match_tokens(index: pd.DataFrame, text: str) -> frozenset[int]:
    """Features whose top-activating tokens contain ``text`` (case-insensitive)."""
    needle = text.strip().lower()
    if not needle:
        return frozenset(index["feature"].astype(int))
    hits = index["token"].astype(str).str.lower().str.contains(needle, regex=False)
    return frozenset(index.loc[hits, "feature"].astype(int))


def token_summary(index: pd.DataFrame, limit: int = 5) -> pd.Series:
    """Per feature, its most frequent top tokens as one short string."""
    head = index.groupby("feature", sort=False).head(limit)
    return head["token"].astype(str).groupby(head["feature"]).agg(" · ".join)


BY_BOTH = "both"


def top_pairs(sentence_max: pd.DataFrame, languages: list[str], by: str, n: int) -> pd.DataFrame:
    """The ``n`` pairs where a feature fires most, one row per pair with a
    ``max_<lang>`` column per language.

    ``by`` is a language (its per-sentence maximum) or ``both``: the smallest
    maximum across languages, so a pair ranks high only when the feature fires
    strongly in every language (pairs where it fires in all languages first).
    """
    if sentence_max.empty:
        return pd.DataFrame(columns=["pair_id", *[f"max_{lang}" for lang in languages]])
    wide = sentence_max.pivot_table(
        index="pair_id", columns="lang", values="max_activation", aggfunc="max"
    )
    wide = wide.reindex(columns=languages).fillna(0.0)
    wide.columns = [f"max_{lang}" for lang in languages]
    if by == BY_BOTH or f"max_{by}" not in wide:
        key = wide.min(axis=1)
        tie = wide.max(axis=1)
        wide = (
            wide.assign(_k=key, _t=tie)
            .sort_values(["_k", "_t"], ascending=False)
            .drop(columns=["_k", "_t"])
        )
    else:
        wide = wide.sort_values(f"max_{by}", ascending=False)
    return wide.head(n).reset_index()


def pair_feature_table(
    pair_features: pd.DataFrame,
    languages: list[str],
    features: pd.DataFrame | None = None,
    both_only: bool = True,
) -> pd.DataFrame:
    """One row per feature firing on a pair: ``max_<lang>`` per language and
    ``min_max`` (the smallest of them), sorted by it; with the label, the support
    (``n_both``) and every stored ranking of the registry (value and rank) when
    ``features`` is given. ``both_only`` keeps features firing in every language."""
    if pair_features.empty:
        return pd.DataFrame(columns=["feature", *[f"max_{lang}" for lang in languages], "min_max"])
    wide = pair_features.pivot_table(
        index="feature", columns="lang", values="max_activation", aggfunc="max"
    )
    wide = wide.reindex(columns=languages)
    if both_only:
        wide = wide.dropna()
    wide = wide.fillna(0.0)
    wide.columns = [f"max_{lang}" for lang in languages]
    wide["min_max"] = wide.min(axis=1)
    out = wide.reset_index().sort_values(
        ["min_max", "feature"], ascending=[False, True], ignore_index=True
    )
    if features is not None:
        keep = ["label", "n_both"]
        for spec in score_registry.stored_rankings(features.columns):
            keep += [spec.column, spec.rank_column]
        extra = features.set_index("feature")[[c for c in keep if c in features]]
        out = out.join(extra, on="feature")
    return out


def pair_default_features(
    firing: pd.DataFrame,
    features: pd.DataFrame,
    languages: list[str],
    n_pairs: int,
    n: int = 3,
) -> list[int]:
    """The features a pair's heatmaps show first: its most specific ones.

    Among the features of ``firing`` (``pair_feature_table``) that fire in
    every language on this pair, the ``n`` best under the run's default
    ranking (the first score it offers), leaving out features that fire in
    every language on more than half of all pairs (they say nothing about
    this pair; a feature firing on 421 of 421 pairs has evidence 0) unless
    nothing else fires here.
    """
    if firing.empty:
        return []
    here = firing
    maxes = [f"max_{lang}" for lang in languages if f"max_{lang}" in firing]
    if maxes:
        here = firing[(firing[maxes] > 0).all(axis=1)]
    scored = score_table(features, None, languages)
    default = available_scores(scored.columns, languages)[0]
    scored["rank"] = ranks(scored, default)
    info = scored.set_index("feature")
    rank = here["feature"].map(info["rank"]).astype("Float64")
    support = here["feature"].map(info["support"]) if "support" in info else None
    ranked = here.assign(_rank=rank.fillna(np.inf).astype(float))
    if support is not None:
        specific = ranked[support.fillna(0).to_numpy(np.float64) <= n_pairs / 2]
        ranked = specific if not specific.empty else ranked
    ranked = ranked.sort_values(["_rank", "min_max"], ascending=[True, False], kind="stable")
    return [int(f) for f in ranked["feature"].head(n)]


_FORMULA_START = frozenset("=+-@\t\r|")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LEADING = re.compile(r"^[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff]+")


def csv_cell(value: object) -> object:
    """A text cell that no spreadsheet reads as a formula or splits into rows.

    Control characters (CR and LF included: a bare CR starts a new row in some
    spreadsheets) become spaces; a cell whose first visible character, once
    leading whitespace, control and invisible characters are skipped and
    full-width forms folded (``＝`` is ``=``), starts a formula gets a leading
    apostrophe. Other values pass unchanged."""
    if not isinstance(value, str):
        return value
    text = no_bidi(_CONTROL.sub(" ", value))
    first = unicodedata.normalize("NFKC", _LEADING.sub("", text)[:1])[:1]
    if first in _FORMULA_START:
        return "'" + text
    return text


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot start a spreadsheet formula (CSV injection):
    see :func:`csv_cell`."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(csv_cell)
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as the CSV the download button serves: cells made safe
    (:func:`csv_safe`) and every text cell quoted."""
    return csv_safe(frame).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)


def describe_filters(filters: Filters) -> str:
    """The active filters in words ('' when none narrows the table)."""
    parts = []
    if filters.alive_only:
        parts.append("alive only")
    if filters.score_min is not None:
        parts.append(f"score ≥ {filters.score_min:g}")
    if filters.score_max is not None:
        parts.append(f"score ≤ {filters.score_max:g}")
    if filters.min_pairs:
        parts.append(f"fires on ≥ {filters.min_pairs} pairs per language")
    if filters.min_both:
        parts.append(f"≥ {filters.min_both} pairs firing in both")
    if filters.specificity == "bilingual":
        parts.append(f"bilingual (no language ≥ {filters.share_cutoff:.0%} of firing sentences)")
    elif filters.specificity.startswith("only:"):
        lang = filters.specificity.removeprefix("only:")
        parts.append(f"{lang}-specific (≥ {filters.share_cutoff:.0%} of firing sentences)")
    if filters.features is not None:
        parts.append(f"token search: {len(filters.features):,} features")
    if filters.hide_shared:
        parts.append("shared-token features hidden")
    return ", ".join(parts)
