"""Titles that fit their figure: a long title wraps onto lines no wider than its axes.

Imports: the standard library only (it takes a matplotlib Axes but needs none of matplotlib's names).
"""

from __future__ import annotations

import textwrap

CHAR_WIDTH_EM = 0.6  # a generous mean glyph width of DejaVu Sans, in ems: a line this long fits its axes


def set_fitted_title(ax, title: str, fontsize: float = 10) -> None:
    """Set `title` on `ax`, wrapped at word boundaries to the width of the axes (centred on the axes, a title
    wider than them ran off the figure's left edge)."""
    fig = ax.figure
    width_pt = ax.get_position().width * fig.get_figwidth() * 72
    chars = max(20, int(width_pt / (CHAR_WIDTH_EM * fontsize)))
    ax.set_title("\n".join(textwrap.wrap(title, chars)) or title, fontsize=fontsize)
