"""The feature page's sections, one module each, drawn in the order of
:data:`FEATURE_SECTIONS`.

Each module defines ``SECTION`` (``base.Section``): the run files and features
columns it needs, whether the feature must fire, the command that adds its
data, and ``draw(ctx)``. Adding a section is one module here and one line in
:data:`FEATURE_SECTIONS` (docs/extending.md, "Add a feature-page section").
"""

from __future__ import annotations

from . import (
    ablation,
    activity,
    examples,
    header,
    logits,
    neighbours,
    null,
    purity,
    scores,
    steering,
)
from .base import FeatureContext, Section, draw_all

FEATURE_SECTIONS: list[Section] = [
    header.SECTION,  # title, badges, family, previous / next
    scores.SECTION,  # every score and its rank; per-language statistics
    activity.SECTION,  # activation density, firing-rate curve
    examples.SECTION,  # example pairs across the activation range
    neighbours.SECTION,  # co-firing features, nearest decoder directions
    logits.SECTION,  # output side: promoted / suppressed tokens
    ablation.SECTION,  # causal: loss change when ablated
    null.SECTION,  # against a random dictionary
    purity.SECTION,  # share of co-firing on its commonest token pairs
    steering.SECTION,  # steered continuations per language
]

__all__ = ["FEATURE_SECTIONS", "FeatureContext", "Section", "draw_all"]
