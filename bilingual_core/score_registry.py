"""Every score, declared once: the scorer, the features schema and the app's
menus read :data:`SCORES`.

A declaration says what the score is called (``key`` in URLs, ``label`` in
menus), where it is stored (``column`` of features.parquet and its
``rank_column``), which way is better, its formula in one line, and how it is
computed: either a ``block`` kernel (one value per feature of a block of
per-sentence maxima, run in the scorer's worker threads) or a ``run`` kernel
(from the per-feature quantities of the whole run, :class:`FeatureQuantities`).
The first entry is the default ranking everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from . import peaks as peak_kernels
from . import score_kernels as kernels
from .ranking import rank_features
from .score_kernels import Coactivation, Ranking
from .sparse import SentenceMax

Better = Literal["higher", "lower"]
Ties = Literal["support", "feature"]


@dataclass(frozen=True)
class NotebookInputs:
    """What the notebook variant adds (its own jsd and idaf)."""

    jsd: np.ndarray
    idaf: np.ndarray


@dataclass(frozen=True)
class FeatureQuantities:
    """Per-feature quantities of a whole run, the input of every ``run`` kernel."""

    n_pairs: int
    languages: list[str]
    k: int
    """The jsd order statistic of the blog score."""
    alive: np.ndarray
    """(f,) bool: fires in at least one sentence of every language."""
    counts: np.ndarray
    """(f, m): sentences each feature fires in, per language."""
    idaf: np.ndarray
    coact: Coactivation
    """Co-activation at ``t = 0`` (fires at all)."""
    mean_activation: np.ndarray
    """(f, m): mean activation over all real tokens of each language, zeros included."""
    block_scores: dict[str, np.ndarray] = field(default_factory=dict)
    """The values of the ``block`` scores, by column."""
    notebook: NotebookInputs | None = None
    peaks: peak_kernels.PeakEvidence | None = None
    """Peak-token evidence (every language pair), when the run's tokens were read."""

    @cached_property
    def cross(self) -> peak_kernels.CrossSummary | None:
        """The weakest language pair's cross-token counts, flags and ``translation``."""
        if self.peaks is None:
            return None
        alignment = None
        if "mass_jsd" in self.block_scores:
            alignment = np.clip(
                1.0 - self.block_scores["mass_jsd"] / np.log(len(self.languages)), 0.0, 1.0
            )
        return peak_kernels.summarise(self.peaks, self.alive, alignment)

    @property
    def support(self) -> np.ndarray:
        """Pairs where the feature fires in every language (the rankings' tie-break)."""
        return self.coact.n_intersection

    @cached_property
    def blog(self) -> Ranking:
        return kernels.bilingual_score(self.block_scores["jsd"], self.idaf, self.alive, k=self.k)

    @cached_property
    def notebook_blog(self) -> Ranking | None:
        if self.notebook is None:
            return None
        return kernels.bilingual_score(
            self.notebook.jsd, self.notebook.idaf, self.alive, k=self.k, beta_sign=+1.0
        )


@dataclass(frozen=True)
class ScoreSpec:
    """One score."""

    key: str
    """Stable id used in URLs (``?score=evidence``)."""
    label: str
    """What the menus show."""
    column: str
    """Column of features.parquet; ``{lang}`` in it makes one column (and one menu entry) per language."""
    better: Better
    formula: str
    """The definition in one line (the app's help text)."""
    block: Callable[[SentenceMax], np.ndarray] | None = None
    """Per-block kernel: one value per feature of the block."""
    run: Callable[[FeatureQuantities], np.ndarray | None] | None = None
    """Whole-run kernel: (f,) values, (f, m) for a per-language score, None when it does not apply."""
    rank_column: str | None = None
    """Where the scorer stores the ranks (1 = best, null when not alive); None: not stored."""
    ties: Ties = "support"
    """Equal values: larger support first (``support``), or by feature id alone (the post's rule)."""
    coactivation: str | None = None
    """Column of coactivation.parquet with this score at every threshold; the app then ranks
    by the chosen threshold's value, which it puts in :attr:`threshold_column`."""
    threshold_column: str | None = None
    """The app's column for the value at the chosen threshold (with ``coactivation``)."""
    note: str = ""
    """What the ranking favours, shown when it is selected."""
    required: bool = False
    """Every features.parquet must have the column (the run-directory contract)."""
    always_offered: bool = False
    """Offered even when the features table lacks the column (the app derives it)."""

    def __post_init__(self) -> None:
        if (self.block is None) == (self.run is None):
            raise ValueError(f"score {self.key!r}: give exactly one of block and run")
        if (self.coactivation is None) != (self.threshold_column is None):
            raise ValueError(f"score {self.key!r}: coactivation and threshold_column go together")

    @property
    def per_language(self) -> bool:
        return "{lang}" in self.column

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    def columns(self, languages: list[str]) -> list[str]:
        return (
            [self.column.format(lang=lang) for lang in languages]
            if self.per_language
            else [self.column]
        )


SCORES: tuple[ScoreSpec, ...] = (
    ScoreSpec(
        "translation",
        "translation: co-firing on different tokens beyond chance (higher = more bilingual)",
        "translation",
        "higher",
        "s = cross_share × -cross_log10p × (1 - mass_jsd / ln m) × (1 + cross_repeated) / 2; "
        "1 + s for translation "
        "features (co-firing mostly cross-token and significant), s/(1+s) < 1 for the others",
        run=lambda q: None if q.cross is None else q.cross.translation,
        rank_column="translation_rank",
        note="Counts pairs where the feature fires in every language on *different* peak tokens "
        "(want/quiero), beyond chance; features co-firing mostly on the same token (?/?, Tom/Tom) "
        "rank after every significant translation feature. A cross-token pair can still be "
        "context (you/¿) rather than a translation.",
    ),
    ScoreSpec(
        "evidence",
        "evidence: co-firing beyond chance × alignment (higher = more bilingual)",
        "evidence",
        "higher",
        "-log10 p × (1 - mass_jsd / ln m): p the co-activation p-value (fires at all), "
        "mass_jsd the JSD of the per-pair maxima normalised per language",
        run=lambda q: kernels.evidence(
            q.coact.log10_pvalue, q.block_scores["mass_jsd"], len(q.languages)
        ),
        rank_column="evidence_rank",
        note="Needs many pairs firing in every language, more than chance predicts, with similar "
        "strength on both sides: one pair of n scores log10 n. It does not look at which tokens "
        "fire, so features firing on the same token in both languages (?/?, names) rank high.",
    ),
    ScoreSpec(
        "bi",
        "bi: the blog post's score (lower = more bilingual)",
        "bi",
        "lower",
        "jsd + beta × idaf, the score of the post's text",
        run=lambda q: q.blog.bi,
        rank_column="bi_rank",
        ties="feature",
        required=True,
        note="The post's score favours rare features: its top is mostly features seen on one or two "
        "pairs. Set 'Min. firing pairs per language' to see well-supported ones.",
    ),
    ScoreSpec(
        "notebook",
        "notebook bi (the post's published table)",
        "notebook_bi",
        "lower",
        "the variant of the post's notebook",
        run=lambda q: None if q.notebook_blog is None else q.notebook_blog.bi,
        rank_column="notebook_rank",
        ties="feature",
    ),
    ScoreSpec(
        "jaccard",
        "co-activation Jaccard at the threshold (higher = more bilingual)",
        "jaccard",
        "higher",
        "|pairs firing in every language| / |pairs firing in any|, at the chosen threshold",
        run=lambda q: q.coact.jaccard,
        rank_column="jaccard_rank",
        coactivation="jaccard",
        threshold_column="coact_jaccard",
        always_offered=True,
    ),
    ScoreSpec(
        "pvalue",
        "co-activation p-value, log10 (lower = more co-firing than chance)",
        "coact_log10p",
        "lower",
        "log10 P(overlap ≥ observed) for independent sets of the observed sizes, at the chosen threshold",
        run=lambda q: q.coact.log10_pvalue,
        coactivation="log10_pvalue",
        threshold_column="coact_log10p",
    ),
    ScoreSpec(
        "mass_jsd",
        "mass JSD (lower = more bilingual)",
        "mass_jsd",
        "lower",
        "JSD of the per-pair maxima normalised to sum 1 per language",
        block=kernels.mass_jsd,
        rank_column="mass_jsd_rank",
    ),
    ScoreSpec(
        "jsd",
        "softmax JSD alone (lower = more bilingual)",
        "jsd",
        "lower",
        "the JSD term of bi, without idaf",
        block=kernels.softmax_jsd,
        required=True,
    ),
    ScoreSpec(
        "mono_{lang}",
        "monolinguality {lang} (higher = more {lang}-specific)",
        "mono_{lang}",
        "higher",
        "mean activation on {lang} tokens minus the other languages' mean",
        run=lambda q: kernels.monolinguality(q.mean_activation),
    ),
)
DEFAULT = SCORES[0]


def score_by_key(key: str) -> ScoreSpec:
    for spec in SCORES:
        if spec.key == key:
            return spec
    raise KeyError(key)


def rank_columns() -> list[str]:
    return [spec.rank_column for spec in SCORES if spec.rank_column is not None]


def stored_rankings(*tables: Iterable[str]) -> list[ScoreSpec]:
    """The scores stored as a ranking (``column`` and ``rank_column``) in every one
    of ``tables`` (column names), in registry order."""
    sets = [set(cols) for cols in tables]
    return [
        spec
        for spec in SCORES
        if spec.rank_column is not None
        and all(spec.column in cols and spec.rank_column in cols for cols in sets)
    ]


def candidate_rankings() -> tuple[str, ...]:
    """Every stored rank column, in the order a command picks the features to study
    when no score is named: registry order (the default first), the post's own
    rankings (ties by feature id: ``bi``, ``notebook``) last, since they favour
    features seen on one or two pairs."""
    ranked = [spec for spec in SCORES if spec.rank_column is not None]
    ordered = sorted(ranked, key=lambda spec: spec.ties == "feature")  # stable: registry order
    return tuple(spec.rank_column for spec in ordered if spec.rank_column is not None)


def compute_block_scores(block: SentenceMax) -> dict[str, np.ndarray]:
    """Every ``block`` score of one block, by column."""
    return {spec.column: spec.block(block) for spec in SCORES if spec.block is not None}


def compute_run_scores(q: FeatureQuantities) -> dict[str, np.ndarray]:
    """Every score and stored rank column, by column, in registry order."""
    out: dict[str, np.ndarray] = {}
    for spec in SCORES:
        values = q.block_scores[spec.column] if spec.block is not None else spec.run(q)
        if values is None:
            continue
        if spec.per_language:
            for li, name in enumerate(spec.columns(q.languages)):
                out[name] = values[:, li]
            continue
        out[spec.column] = values
        if spec.rank_column is not None:
            out[spec.rank_column] = rank(spec, values, q.alive, q.support)
    return out


def rank(
    spec: ScoreSpec,
    values: np.ndarray,
    alive: np.ndarray,
    support: np.ndarray | None,
    feature_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Ranks of alive features under ``spec`` (0 = unranked), by the project's one ranking rule."""
    return rank_features(
        values,
        alive,
        higher_is_better=spec.higher_is_better,
        support=support if spec.ties == "support" else None,
        feature_ids=feature_ids,
    )
