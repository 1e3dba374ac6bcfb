"""HTML token heatmaps. Every token and sentence passes through ``html.escape``.

Corpus text is untrusted (a sentence can contain ``<script>`` or
``<img onerror=...>``), so nothing from a run reaches the page unescaped: token
strings, titles (the hover text) and language codes are all escaped, and the
only markup is the fixed template below. Colours are computed numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from .safe_text import no_bidi

# Visible stand-ins for whitespace inside tokens (SentencePiece's "▁" is shown as a space).
_WHITESPACE = {"\n": "↵", "\r": "␍", "\t": "⇥", "▁": " "}
LANGUAGE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
"""One colour per language, by its place in the run's language list, on every chart
(none of them the heatmaps' orange)."""
HEAT_RGB = (230, 85, 13)
"""Orange: the colour a token takes at the scale's maximum activation."""


def language_colour(languages: Sequence[str], lang: str) -> str:
    """The colour of ``lang`` on every chart: by its place in ``languages`` (the run's)."""
    i = list(languages).index(lang) if lang in languages else len(languages)
    return LANGUAGE_COLOURS[i % len(LANGUAGE_COLOURS)]


def esc(text: object) -> str:
    """``html.escape`` with quotes, for text and attribute values alike."""
    return html.escape(no_bidi(text), quote=True)


def visible_token(token: str) -> str:
    """A token as displayed: whitespace made visible, not yet escaped."""
    return "".join(_WHITESPACE.get(ch, ch) for ch in token)


def _title_safe(text: str) -> str:
    """Token text for a ``title`` attribute: angle brackets become look-alikes.

    Escaping already makes the attribute inert; this keeps the hover text, since
    ``st.html``'s sanitiser (DOMPurify) drops any attribute whose value looks
    like markup."""
    return text.replace("<", "‹").replace(">", "›")


def heat_style(activation: float, vmax: float) -> str:
    """Inline CSS for a token with ``activation`` on a 0..vmax scale."""
    if vmax <= 0 or not math.isfinite(activation) or activation <= 0:
        return "background-color:transparent"
    alpha = min(1.0, activation / vmax)
    r, g, b = HEAT_RGB
    text = "#fff" if alpha > 0.6 else "inherit"
    return f"background-color:rgba({r},{g},{b},{alpha:.3f});color:{text}"


def token_heatmap(
    tokens: Sequence[str],
    activations: Sequence[float],
    vmax: float,
    *,
    label: str = "",
    peak: bool = False,
) -> str:
    """One sentence as a run of tokens shaded by activation, read as text.

    Pieces of one word touch; a token that starts a word keeps its leading
    space outside the shaded chip, so the page's text is the sentence (with
    ``visible_token``'s stand-ins for newlines and tabs). A token that is
    only whitespace stays a chip, so its activation shows. Hovering a token
    shows its text, position and activation (``title``). ``tokens[i]`` has
    activation ``activations[i]`` (0 when the feature is silent there); BOS
    rows should be left out by the caller. ``peak`` writes the activation
    value after the strongest token (``sup.peak``).
    """
    spans = []
    top = peak_index(activations) if peak else None
    for i, (tok, act) in enumerate(zip(tokens, activations, strict=True)):
        shown = visible_token(tok)
        body = shown.lstrip(" ")
        gap = shown[: len(shown) - len(body)] if body else ""
        body = body if body else shown
        title = f"{_title_safe(shown)!r} · position {i + 1} · activation {act:.3f}"
        mark = (
            f'<sup class="peak" style="font-size:0.7em;font-weight:600">{act:.3g}</sup>'
            if i == top
            else ""
        )
        spans.append(
            f'{gap}<span class="tok" title="{esc(title)}" style="{heat_style(act, vmax)};'
            f'padding:1px 0;border-radius:2px;white-space:pre">'
            f"{esc(body)}{mark}</span>"
        )
    head = f'<div style="font-size:0.75em;opacity:0.7">{esc(label)}</div>' if label else ""
    return (
        f'<div class="heatmap" style="line-height:1.9;white-space:pre-wrap">'
        f"{head}{''.join(spans)}</div>"
    )


def peak_index(activations: Sequence[float]) -> int | None:
    """Position of the largest positive activation (the first, on ties); None when none is."""
    best, where = 0.0, None
    for i, act in enumerate(activations):
        if math.isfinite(act) and act > best:
            best, where = act, i
    return where


def pair_heatmaps(
    sides: Sequence[tuple[str, Sequence[str], Sequence[float]]],
    vmax: float,
    *,
    caption: str = "",
    peak: bool = False,
) -> str:
    """Several languages of one pair side by side: ``(lang, tokens, activations)``
    each, sharing one colour scale so the sides compare (``peak``: see ``token_heatmap``)."""
    cols = "".join(
        f'<div style="flex:1;min-width:0">{token_heatmap(toks, acts, vmax, label=lang, peak=peak)}</div>'
        for lang, toks, acts in sides
    )
    cap = f'<div style="font-size:0.85em;margin-bottom:2px">{esc(caption)}</div>' if caption else ""
    return (
        f'<div class="pair" style="margin-bottom:0.8em">{cap}'
        f'<div style="display:flex;gap:1.5em">{cols}</div></div>'
    )


def sentence(text: str) -> str:
    """A sentence as escaped HTML text (for places that render markup)."""
    return f'<span class="sentence">{esc(text)}</span>'


def legend(vmax: float) -> str:
    """A small colour scale from 0 to ``vmax``."""
    stops = "".join(
        f'<span style="{heat_style(v, 1.0)};padding:0 6px">&nbsp;</span>'
        for v in (0.05, 0.25, 0.5, 0.75, 1.0)
    )
    return f'<div style="font-size:0.8em">activation 0 {stops} {vmax:.3g}</div>'
