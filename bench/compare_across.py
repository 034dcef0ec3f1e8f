"""Paired comparisons across two studies that share seeds (same protocol, same CPU): `compare` on their pooled trials.

    python bench/compare_across.py table2_reference_rank table2_reference --storage /work/runs/studies \
        --reference anpyc_update_rank

A study run later beside an earlier one (table2_reference_rank: the rank rule on table2_reference's protocol and
seeds) is compared with the earlier study's groups over the seeds both finished, as `anpyc-sweep compare` does
within one study (Student's t, paired over shared seeds, else Welch). Groups are the ablations of both studies;
a name both use is taken from the first study. Prints the markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from sweeper.reading.compare import compare, table_lines
from sweeper.storage import results
from sweeper.storage.store import StudyStore
from sweeper.study.spec import QueryError, load_study

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Print the pooled comparison of two studies' ablations against one reference group."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("other")
    parser.add_argument("--storage", default="studies_out")
    parser.add_argument("--reference", help="the group to compare against (default: compare's own choice)")
    parser.add_argument("--metric", default="test_acc")
    args = parser.parse_args()
    spec = load_study(ROOT / "studies" / f"{args.study}.yaml")
    frames = [results.read_trials(StudyStore(str(Path(args.storage).resolve() / n))) for n in (args.study, args.other)]
    if any(f.empty for f in frames):
        print(f"no trials recorded for {args.study} or {args.other} in {args.storage}", file=sys.stderr)
        raise SystemExit(2)
    first, second = frames
    pooled = pd.concat([first, second[~second["ablation"].isin(set(first["ablation"]))]], ignore_index=True)
    try:
        rows = compare(spec, "ablation", args.metric, args.reference, frame=pooled)
    except QueryError as error:  # a bad --reference or --metric: one line, exit 2
        print(error, file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(table_lines(rows)))


if __name__ == "__main__":
    main()
