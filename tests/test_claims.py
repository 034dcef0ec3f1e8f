"""The claims table: cells read from a results document, Welch intervals, verdict words (issue 26, item 2)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from scipy import stats

from sweeper.reading.claims import ClaimError, claims_table, evaluate, parse_cell, slug

DOC = """# Results

## Table X: every method (reduced)

| method | n | diverged | ACC |
|---|---|---|---|
| ours | 3 | 0 | 90.00 ± 1.00 |
| rival | 3 | 0 | 80.00 ± 1.00 |
| close | 3 | 0 | 89.50 ± 2.00 |
| gone | 0 | 3 | - |

## Fig. Y: a grid

| ablation | 1.0 | 4.0 |
|---|---|---|
| full | 70.00 ± 0.50 (3) | **70.20 ± 0.40 (3)** |

### Drift (paper Fig. Z)

| ablation | layer | distance |
|---|---|---|
| ours | 1 | 0.0060 ± 0.0001 |
| ours | 2 | 0.0040 ± 0.0001 |
| rival | 1 | 0.0050 ± 0.0001 |
| rival | 2 | 0.0050 ± 0.0001 |

## Table W: one run

| measure | acc trained → compressed |
|---|---|
| ours | 85.61 → 85.98 |
"""


def claim(section, *comparisons, **extra):
    """A claim of the test document with `comparisons` (a, b, expect) on column ACC unless given."""
    comps = []
    for a, b, expect, *rest in comparisons:
        column = rest[0] if rest else "ACC"
        comps.append({"a": {"row": a, "column": column}, "b": {"row": b, "column": column}, "expect": expect})
    return {"claim": "c", "paper": "p", "section": section, "scale": "s", "comparisons": comps, **extra}


def test_a_comparison_is_welchs_interval_from_the_cells_and_the_words_follow_it():
    heading, word, (j,), cells = evaluate(claim("Table X", ("ours", "rival", "higher")), DOC)
    assert heading == "Table X: every method (reduced)" and word == "holds"
    welch = stats.ttest_ind_from_stats(90.0, 1.0, 3, 80.0, 1.0, 3, equal_var=False)  # the same test by scipy
    half = stats.t.ppf(0.975, 4) * math.sqrt(2 / 3)  # equal stds and n: df = 2n − 2
    assert (j.diff, j.low, j.high) == pytest.approx((10.0, 10.0 - half, 10.0 + half), abs=1e-9)
    assert welch.pvalue < 0.05 and cells["ours (ACC)"].n == 3
    assert evaluate(claim("Table X", ("ours", "rival", "lower")), DOC)[1] == "does not hold"
    assert evaluate(claim("Table X", ("ours", "close", "higher")), DOC)[1] == "not shown at this n"
    both = claim("Table X", ("ours", "rival", "higher"), ("ours", "rival", "lower"))
    assert evaluate(both, DOC)[1] == "mixed"
    assert evaluate(claim("Table X", ("ours", "gone", "higher")), DOC)[1] == "not shown at this n"  # diverged


def test_same_needs_the_whole_interval_inside_the_margin():
    tight = claim("Fig. Y", ("full", "full", "same", "4.0"))
    tight["comparisons"][0]["b"]["column"] = "1.0"
    assert evaluate(tight, DOC)[1] == "not shown at this n"  # 0 inside, but the interval is wider than ±0
    tight["comparisons"][0]["margin"] = 2.0
    assert evaluate(tight, DOC)[1] == "holds"


def test_layer_rows_n_from_the_claim_and_cells_without_an_interval():
    drift = claim("Drift", ("ours layer 1", "rival layer 1", "higher", "distance"), n=3)
    drift["comparisons"].append({"a": {"row": "ours layer 2", "column": "distance"},
                                 "b": {"row": "rival layer 2", "column": "distance"}, "expect": "higher"})
    assert evaluate(drift, DOC)[1] == "mixed"  # layer 1 more, layer 2 less
    one = {"a": {"row": "ours", "column": "acc trained → compressed", "side": "after"},
           "b": {"row": "ours", "column": "acc trained → compressed", "side": "before"}, "expect": "higher"}
    _, word, (j,), _ = evaluate({**claim("Table W"), "comparisons": [one]}, DOC)
    assert word == "not shown at this n" and j.diff == pytest.approx(0.37) and math.isinf(j.low)
    assert parse_cell("-, 3 diverged") is None and parse_cell("**85.20 ± 8.00 (3)**").mean == 85.2
    assert parse_cell("98.76 ± 0.06 (n=3)").n == 3 and parse_cell("2,158,693").mean == 2158693


def test_unknown_section_row_or_column_is_named():
    with pytest.raises(ClaimError, match="section 'Table Q'"):
        evaluate(claim("Table Q", ("ours", "rival", "higher")), DOC)
    with pytest.raises(ClaimError, match="row 'nobody', column 'ACC'"):
        evaluate(claim("Table X", ("nobody", "rival", "higher")), DOC)


def test_the_table_links_each_section_and_says_why_a_claim_was_not_run():
    rows = claims_table(
        [claim("Table X", ("ours", "rival", "higher")),
         {"claim": "Fig. 5", "paper": "p", "not_run": "no data here", "command": "anpyc-sweep launch x.yaml"}],
        DOC,
    )
    assert f"(#{slug('Table X: every method (reduced)')})" in rows[2] and "**holds**" in rows[2]
    assert slug("Fig. 8b: sensitivity to λ") == "fig-8b-sensitivity-to-λ"
    assert "**not run**: no data here" in rows[3] and "`anpyc-sweep launch x.yaml`" in rows[3]


def test_the_projects_claims_file_reads_against_its_results():
    """Every claim in docs/claims.yaml names a section, rows and columns RESULTS.md has."""
    root = Path(__file__).resolve().parents[1]
    claims = yaml.safe_load((root / "docs" / "claims.yaml").read_text())
    rows = claims_table(claims, (root / "docs" / "RESULTS.md").read_text())
    assert len(rows) == len(claims) + 2


def test_not_lower_is_a_loss_no_larger_than_the_margin():
    same_or_better = claim("Fig. Y", ("full", "full", "not_lower", "4.0"))
    same_or_better["comparisons"][0]["b"]["column"] = "1.0"  # 70.20 ± 0.40 against 70.00 ± 0.50, n = 3
    same_or_better["comparisons"][0]["margin"] = 2.0
    assert evaluate(same_or_better, DOC)[1] == "holds"
    worse = claim("Table X", ("rival", "ours", "not_lower"))  # 10 points below, interval far from −2
    worse["comparisons"][0]["margin"] = 2.0
    assert evaluate(worse, DOC)[1] == "does not hold"
