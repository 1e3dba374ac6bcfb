"""What a feature-page section is: the data it needs and how it draws.

A :class:`Section` declares the run files it reads (``needs``), the columns of
the features table it reads (``columns``), whether it only makes sense for a
feature that fires (``fires``), and the command that adds its data when the
run lacks it (``compute``). :func:`draw_all` draws a list of them: a section
whose data the run lacks says so in one line, under its title, and the page
goes on. Every section draws from one :class:`FeatureContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from bilingual_core.evidence import EVIDENCE_FILES
from explorer import data, evidence, nav
from explorer.data import RunRef
from explorer.table import ANY, Score


@dataclass(frozen=True)
class FeatureContext:
    """What every section of one feature page draws from."""

    ref: RunRef
    scored: pd.DataFrame
    """The features table at the chosen threshold (``ui.scored_features``)."""
    scores: list[Score]
    """The scores the run offers (``table.available_scores``)."""
    feature: int
    score: Score
    """The ranking previous / next follow."""
    threshold: str
    """The co-activation threshold (``any``, ``mean``, ``q…``)."""

    @cached_property
    def profile(self) -> data.FeatureProfile:
        """Where the feature fires (read once, on first use)."""
        return data.feature_profile(self.ref.location, self.ref.token, self.feature)

    @property
    def fires(self) -> bool:
        return bool(self.profile.n_activations)

    @cached_property
    def row(self) -> pd.Series:
        """The feature's row of :attr:`scored`."""
        return self.scored.loc[self.scored["feature"] == self.feature].iloc[0]


@dataclass(frozen=True)
class Section:
    """One section of the feature page."""

    name: str
    """Short id (its module's name)."""
    draw: Callable[[FeatureContext], None]
    title: str | None = None
    """The subheader :func:`draw_all` puts above it (None: the section has none)."""
    needs: tuple[str, ...] = ()
    """Run files it reads beyond those every feature page needs (features,
    activations, tokens): names from ``bilingual_core.schema`` or ``.evidence``."""
    columns: tuple[str, ...] = ()
    """Columns of the features table it reads beyond the contract's."""
    fires: bool = False
    """Only for a feature with stored activations."""
    compute: str | None = None
    """The ``python -m precompute`` arguments that add the data it needs, ``{run}``
    standing for the run's directory (``"logits --run {run}"``); None: the section is
    left out quietly when its data is missing."""


def has_file(ref: RunRef, name: str) -> bool:
    """The run has the file ``name`` (an evidence table, or a usable run file)."""
    if name in EVIDENCE_FILES:
        return name in evidence.present(ref.location, ref.token, evidence.stamp(ref))
    return not data.file_problems(ref.location, ref.token, (name,))


def lacking(section: Section, ctx: FeatureContext) -> list[str]:
    """The files and columns ``section`` needs that the run lacks."""
    files = [name for name in section.needs if not has_file(ctx.ref, name)]
    cols = [f"features.parquet column {c}" for c in section.columns if c not in ctx.scored]
    return files + cols


def draw_all(sections: Sequence[Section], ctx: FeatureContext) -> None:
    """Draw ``sections`` in order. A section whose data the run lacks gets one line
    (the command that adds it); sections that need activations are replaced by one
    note when the feature never fires."""
    silent_noted = False
    for section in sections:
        if section.fires and not ctx.fires:
            if not silent_noted:
                st.info(
                    f"Feature {ctx.feature} never fires in this run: it has no stored activation."
                )
                silent_noted = True
            continue
        missing = lacking(section, ctx)
        if missing and section.compute is None:
            continue
        if section.title:
            st.subheader(section.title)
        if missing:
            command = section.compute.format(run=f"<results>/{ctx.ref.run_id}")
            st.caption(f"Not computed for this run: `python -m precompute {command}`.")
            continue
        section.draw(ctx)


# --------------------------------------------- links to other feature pages ---


def nav_params(ctx: FeatureContext, feature: int) -> dict[str, str]:
    """URL parameters of another feature page: the ranking, and the feature
    table's parameters this page carries (``nav.TABLE_PARAMS``)."""
    params = {"run": ctx.ref.run_id, "feature": str(feature), "score": ctx.score.key}
    if ctx.threshold != ANY:
        params["t"] = ctx.threshold
    return {**params, **nav.carried(st.query_params.to_dict())}


def table_params(ctx: FeatureContext) -> dict[str, str]:
    """The "Feature table" link: the table as it was when this page was opened from it."""
    params = {"run": ctx.ref.run_id, "score": ctx.score.key}
    if ctx.threshold != ANY:
        params["t"] = ctx.threshold
    return {**params, **nav.carried(st.query_params.to_dict())}


def feature_link(ctx: FeatureContext, feature: int) -> str:
    """Relative URL of a feature page (for link columns)."""
    return "feature?" + urlencode(nav_params(ctx, feature))
