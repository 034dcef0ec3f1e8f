"""Pool a study's method table in docs/RESULTS.md with more seeds run later into another store.

    python bench/pool_seeds.py STUDY --storage STORE [--section HEADING] [--table N]

For a study whose first store is gone (it lived on an earlier machine) but whose section's method table
(n, diverged, then `mean ± std` cells) is in docs/RESULTS.md: reads that table (the N-th of the section,
0 = first) and the trials of STORE/STUDY (the same study file with other seeds, e.g. `seeds: [2]`), and
prints the method table over all the seeds, in the layout (and with the columns) of
bench/paper_results.py's `method_table`.

Pooling is exact arithmetic on the table's statistics: with n₁ seeds of mean m₁ and sample std s₁ and the
new values x, the pooled mean is (n₁m₁ + Σx) / n and the pooled sum of squares about it is
(n₁ − 1)s₁² + n₁(m₁ − m)² + Σ(x − m)². The table prints 2 decimals, so a pooled cell is exact to about
±0.01. The table does not say which seeds its rows were: the caller runs other seeds into STORE (and the
text says which); the script checks that the store's ablations are rows of the table. A diverged trial
has no statistics, only a count: where the table's diverged trials were of the seeds the store reran, pass
`--diverged-rerun ABLATION` so they are not counted twice.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
from paper_results import METHOD_COLUMNS

from sweeper.reading.claims import parse_cell, section, tables
from sweeper.storage import results
from sweeper.storage.store import StudyStore

ROOT = Path(__file__).resolve().parents[1]


def pooled(earlier: str, n_earlier: int, new: list[float]) -> tuple[float, float] | None:
    """(mean, sample std) of an earlier `mean ± std` cell over `n_earlier` seeds joined with `new`."""
    cell = parse_cell(earlier, n_earlier)
    if cell is None or n_earlier == 0:
        if not new:
            return None
        n1, m1, ss1 = 0, 0.0, 0.0
    else:
        n1, m1 = n_earlier, cell.mean
        ss1 = (n1 - 1) * (cell.std or 0.0) ** 2
    n = n1 + len(new)
    mean = (n1 * m1 + sum(new)) / n
    ss = ss1 + n1 * (m1 - mean) ** 2 + sum((x - mean) ** 2 for x in new)
    return mean, math.sqrt(ss / (n - 1)) if n > 1 else 0.0


def pool_table(rows: list[dict[str, str]], frame: pd.DataFrame, rerun: set[str] = frozenset()) -> list[str]:
    """The method table over the earlier rows' seeds and the trials in `frame`, best test ACC first; for the
    ablations in `rerun` the table's diverged trials were of the store's seeds, so only the store's count."""
    done = frame[frame["status"] == "FINISHED"]
    diverged = frame[frame["status"].isin(["ERROR", "DIVERGED"])].groupby("ablation").size()
    earlier = {row[""]: row for row in rows}
    unknown = sorted(set(frame["ablation"]) - set(earlier))
    if unknown:
        sys.exit(f"ablations {unknown} of the store are not rows of the table {sorted(earlier)}")
    out = []
    for ablation, row in earlier.items():
        part = done[done["ablation"] == ablation]
        stats = {
            header: pooled(row[header], int(row["n"]), [float(x) for x in part.get(column, pd.Series()).dropna()])
            for header, column in METHOD_COLUMNS.items()
        }
        cells = ["-" if st is None else f"{st[0]:.2f} ± {st[1]:.2f}" for st in stats.values()]
        lost = (0 if ablation in rerun else int(row["diverged"])) + int(diverged.get(ablation, 0))
        n = int(row["n"]) + len(part)
        acc = stats["ACC"][0] if stats["ACC"] else -1.0
        out.append((acc, f"| {ablation} | {n} | {lost} | " + " | ".join(cells) + " |"))
    head = "| method | n | diverged | " + " | ".join(METHOD_COLUMNS) + " |"
    return [head, "|" + "---|" * (head.count("|") - 1)] + [line for _, line in sorted(out, key=lambda x: -x[0])]


def main() -> None:
    """Print the pooled table of STUDY."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--section", default=None, help="heading the section starts with (default: its marker)")
    parser.add_argument("--table", type=int, default=0)
    parser.add_argument(
        "--diverged-rerun",
        action="append",
        default=[],
        metavar="ABLATION",
        help="the table's diverged trials of ABLATION were of the store's seeds (rerun there): count the store's",
    )
    args = parser.parse_args()
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    marker = f"<!-- study_{args.study}:start -->"
    if args.section is None:
        if marker not in text:
            sys.exit(f"{args.study}: no section in docs/RESULTS.md (give --section)")
        heading = text.split(marker, 1)[1].lstrip().splitlines()[0].lstrip("# ")
    else:
        heading = args.section
    _, body = section(text, heading)
    rows = tables(body)[args.table]
    frame = results.read_trials(StudyStore(str(Path(args.storage).resolve() / args.study)))
    if frame.empty:
        sys.exit(f"{args.study}: no trials in {args.storage}")
    print("\n".join(pool_table(rows, frame, set(args.diverged_rerun))))


if __name__ == "__main__":
    main()
