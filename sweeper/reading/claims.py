"""The paper's claims against our numbers: a claims table built from the tables of a results document.

A claim (one entry of `docs/claims.yaml`) names the paper's statement and number, the section of the
results document that holds ours (a heading, matched by its start), and the comparisons that decide it:
`a` and `b` are table cells of that section addressed by row label and column header, `expect` is
`higher`, `lower`, `same` (within ±`margin`) or `not_lower` (a − b above −`margin`). Each comparison is
Welch's mean difference a − b with its 95 % t-interval from the two cells' mean, std and n (the cells are
what the study generators wrote from the studies' stores: `12.3 ± 1.0 (3)`, or a table with an `n`
column); a cell without std or n gives the difference without an interval. A comparison *supports* the
claim when its interval lies on the expected side of 0 (`same`: within ±margin; `not_lower`: above
−margin), *contradicts* it when it lies on the other side, and is *inconclusive* otherwise. The claim
**holds** when every comparison supports it, **does not hold** when one contradicts it and none supports
it, **mixed** when some support and others contradict it, and is **not shown at this n** otherwise.
Claims not run say why and name the command that runs them.

May import: `sweeper.reading.compare` (the interval), re, math, dataclasses. Never Ray, MLflow or torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sweeper.reading.compare import welch

STAT = re.compile(r"(-?[\d,]*\.?\d+)(?:\s*±\s*(\d*\.?\d+))?(?:\s*\((?:n=)?(\d+)\))?")
VERDICTS = ("holds", "does not hold", "mixed", "not shown at this n")


class ClaimError(ValueError):
    """A claim names a section, row or column the results document does not have."""


@dataclass
class Cell:
    """One table cell read as a statistic: mean, sample std and number of seeds (None where not given)."""

    mean: float
    std: float | None
    n: int | None
    raw: str = ""  # the cell as the table prints it

    def text(self) -> str:
        """The cell as the table prints it, with n where the table gives it elsewhere."""
        shown = self.raw or f"{self.mean:g}"
        return shown if self.n is None or "(" in shown else f"{shown} (n={self.n})"


@dataclass
class Judgement:
    """One comparison of a claim: a − b with its interval and what it says about the claim."""

    label: str
    diff: float
    low: float
    high: float
    word: str  # supports / contradicts / inconclusive


def slug(heading: str) -> str:
    """The anchor GitHub gives a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def section(markdown: str, heading: str) -> tuple[str, str]:
    """(full heading, body) of the first section whose heading starts with `heading`; the body runs to the
    next heading of the same or a higher level."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"(#+) (.*)", line)
        if match and match.group(2).startswith(heading):
            level = len(match.group(1))
            body = []
            for other in lines[i + 1 :]:
                nxt = re.match(r"(#+) ", other)
                if nxt and len(nxt.group(1)) <= level:
                    break
                body.append(other)
            return match.group(2), "\n".join(body)
    raise ClaimError(f"section {heading!r}: no heading starting so in the results document")


def tables(body: str) -> list[list[dict[str, str]]]:
    """Every markdown table of `body` as rows of {column header: cell text}; a row's label (key `""`) is
    its first cell, with the second appended when that column is `layer` (`anpyc layer 1`)."""
    out, header, rows = [], None, []
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                row = dict(zip(header, cells, strict=False))
                label = cells[0].replace("**", "")
                if len(header) > 1 and header[1] == "layer":
                    label = f"{label} layer {cells[1]}"
                row[""] = label
                rows.append(row)
        elif header is not None:
            out.append(rows)
            header, rows = None, []
    return out


def parse_cell(text: str, n: int | None = None, side: str = "after") -> Cell | None:
    """A cell's statistic (`before`/`after` picks a side of `x → y`); None for a diverged or empty cell."""
    text = text.replace("**", "").replace("−", "-")
    if "→" in text:
        text = text.split("→")[0 if side == "before" else 1]
    match = STAT.search(text)
    if not match or text.strip().startswith("-,") or text.strip() in ("-", "—"):
        return None
    mean = float(match.group(1).replace(",", ""))
    std = float(match.group(2)) if match.group(2) is not None else None
    seeds = int(match.group(3)) if match.group(3) is not None else n
    return Cell(mean, std, seeds, text.strip())


def find_cell(found: list[list[dict[str, str]]], row: str, column: str, n: int | None, side: str) -> Cell | None:
    """The cell at (`row`, `column`) of the first table having both; `n` where the table gives none."""
    for rows in found:
        for candidate in rows:
            if candidate[""] == row and column in candidate:
                seeds = candidate.get("n", "")
                return parse_cell(candidate[column], int(seeds) if seeds.isdigit() else n, side)
    raise ClaimError(f"row {row!r}, column {column!r}: not in any table of the section")


def judge(label: str, a: Cell | None, b: Cell | None, expect: str, margin: float = 0.0) -> Judgement:
    """a − b with Welch's 95 % interval, and whether it supports the expected direction (`same`: the whole
    interval within ±`margin`; a wide interval that merely contains 0 shows nothing)."""
    if a is None or b is None:
        return Judgement(label, math.nan, math.nan, math.nan, "inconclusive")
    if a.std is None or b.std is None or a.n is None or b.n is None:
        diff = a.mean - b.mean
        return Judgement(label, diff, -math.inf, math.inf, "inconclusive")
    diff, low, high = welch(a.mean, a.std, a.n, b.mean, b.std, b.n)
    if expect == "same":
        word = "supports" if -margin <= low and high <= margin else "inconclusive"
        word = "contradicts" if low > 0 or high < 0 else word
    elif expect == "not_lower":  # no loss beyond the margin (a compression that keeps its accuracy)
        word = "supports" if low > -margin else "contradicts" if high < -margin else "inconclusive"
    elif low > 0 or high < 0:
        word = "supports" if (low > 0) == (expect == "higher") else "contradicts"
    else:
        word = "inconclusive"
    return Judgement(label, diff, low, high, word)


def verdict(judgements: list[Judgement]) -> str:
    """holds / does not hold / not shown at this n (see the module docstring)."""
    words = [j.word for j in judgements]
    if words and all(w == "supports" for w in words):
        return VERDICTS[0]
    if "contradicts" in words:
        return VERDICTS[2] if "supports" in words else VERDICTS[1]
    return VERDICTS[3]


def evaluate(claim: dict, markdown: str) -> tuple[str, str, list[Judgement], dict[str, Cell | None]]:
    """(full heading, verdict, judgements, our cells) of one claim with comparisons."""
    heading, body = section(markdown, claim["section"])
    found = tables(body)
    n = claim.get("n")
    cells: dict[str, Cell | None] = {}

    def cell(ref: dict) -> Cell | None:
        key = f"{ref['row']} ({ref['column']}{', ' + ref['side'] if 'side' in ref else ''})"
        if key not in cells:
            cells[key] = find_cell(found, str(ref["row"]), str(ref["column"]), n, ref.get("side", "after"))
        return cells[key]

    judgements = []
    for comp in claim.get("comparisons", []):
        a, b = cell(comp["a"]), cell(comp["b"])
        label = comp.get("label") or f"{comp['a']['row']} − {comp['b']['row']}"
        judgements.append(judge(label, a, b, comp.get("expect", "higher"), float(comp.get("margin", 0.0))))
    for ref in claim.get("show", []):
        cell(ref)
    return heading, verdict(judgements) if judgements else "", judgements, cells


def interval_text(j: Judgement) -> str:
    """`label +1.23 [-0.50, 2.96] word` (no interval: `label +1.23, no interval`)."""
    if math.isnan(j.diff):
        return f"{j.label}: diverged or missing"
    if math.isinf(j.low):
        return f"{j.label} {j.diff:+.3g}, no interval"
    return f"{j.label} {j.diff:+.3g} [{j.low:+.3g}, {j.high:+.3g}] {j.word}"


def claims_table(claims: list[dict], markdown: str) -> list[str]:
    """The claims table (markdown lines): paper, ours, scale, verdict with intervals, section link."""
    lines = [
        "| claim (paper) | paper | ours | scale | verdict: a − b [95 % interval] | section |",
        "|---|---|---|---|---|---|",
    ]
    for claim in claims:
        if "not_run" in claim:
            command = f" Run: `{claim['command']}`." if claim.get("command") else ""
            lines.append(
                f"| {claim['claim']} | {claim['paper']} | not run | - | **not run**: {claim['not_run']}{command} | - |"
            )
            continue
        heading, word, judgements, cells = evaluate(claim, markdown)
        ours = "; ".join(f"{k}: {v.text() if v else 'diverged'}" for k, v in cells.items())
        detail = "; ".join(interval_text(j) for j in judgements)
        shown = f"**{word}**: {detail}" if word else claim.get("note", "descriptive, nothing to test")
        if claim.get("note") and word:
            shown += f". {claim['note']}"
        link = f"[{heading.split(' (')[0]}](#{slug(heading)})"
        lines.append(f"| {claim['claim']} | {claim['paper']} | {ours} | {claim['scale']} | {shown} | {link} |")
    return lines
