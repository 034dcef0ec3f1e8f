"""One colour per method or ablation name, the same in every figure of every study.

The paper's methods and the usual ablation names have fixed colours; any other name gets one from
tab20 by a stable hash of the name. Within one figure two names never share a colour: a name whose
colour is taken moves to the next free one, in the order of the sorted names (so the same set of
names is always coloured the same way).
Imports: matplotlib's colour tables only.
"""

from __future__ import annotations

import zlib

from matplotlib import colormaps

#: fixed colours: references dark, baselines in their own hues, ANPyC's variants in reds and oranges
FIXED = {
    "joint": "#000000",
    "finetune": "#7f7f7f",
    "sgd_f": "#bcbd22",
    "ewc": "#1f77b4",
    "mas": "#2ca02c",
    "si": "#9467bd",
    "lwf": "#8c564b",
    "xdg": "#17becf",
    "hat": "#e377c2",
    "anpyc": "#d62728",
    "full": "#d62728",
    "anpyc_free": "#d62728",
    "anpyc_rank": "#ff7f0e",
    "anpyc_free_tol5": "#ff9896",
    "anpyc_rank_tol5": "#ffbb78",
    "no_pruning": "#aec7e8",
}
PALETTE = [colormaps["tab20"](i) for i in range(20)]


def _hex(colour) -> str:
    if isinstance(colour, str):
        return colour.lower()
    return "#" + "".join(f"{round(255 * c):02x}" for c in colour[:3])


def colour_of(name: str) -> str:
    """The colour `name` gets when nothing else in its figure has it."""
    if name in FIXED:
        return FIXED[name]
    return _hex(PALETTE[zlib.crc32(name.encode()) % len(PALETTE)])


def colours_for(names) -> dict[str, str]:
    """A colour for each name, distinct within the set (up to 20 + the fixed ones)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(set(map(str, names)), key=lambda n: (n not in FIXED, n)):  # fixed names first
        colour = colour_of(name)
        if colour in taken:
            start = zlib.crc32(name.encode()) % len(PALETTE)
            free = [_hex(PALETTE[(start + k) % len(PALETTE)]) for k in range(len(PALETTE))]
            colour = next((c for c in free if c not in taken), colour)
        out[name] = colour
        taken.add(colour)
    return out
