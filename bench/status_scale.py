"""`status` and `best` on studies of 100, 1,000 and 10,000 finished trials (issue 23), in one run.

    python bench/status_scale.py                    # 100, 1,000 and 10,000 trials; writes docs/PERFORMANCE.md
    python bench/status_scale.py --sizes 100 1000 --no-docs

Each study is written as the driver leaves it (the compacted Parquet tables and one MLflow run per trial,
on SQLite, with the tags, params and final metrics the recorder logs). Timed: the MLflow tally `status`
prints, counted by one GROUP BY (`trial_run_counts`) against the paged search it replaced, in-process on the
same store; and the command-line `status` and `best --top 5` as a user runs them (a fresh process, imports
included).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from docs_section import write_section
from study_scale import prepopulate_mlflow, prepopulate_parquet, study_raw

from sweeper.reading.query import study_experiment_id
from sweeper.study.spec import parse_study
from sweeper.tracking.mlflow_store import searched_trial_run_counts, tracking_client, trial_run_counts

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    """The fastest of `repeats` calls of `fn` and its answer."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def measure(n: int, work: Path) -> dict:
    """One study of `n` finished trials: the tally both ways, then the two verbs from the command line."""
    name = f"status_{n}"
    raw = study_raw(name, str(work / "studies" / name), f"sqlite:///{work / f'mlflow_{n}.db'}")
    spec = parse_study(raw)
    start = time.perf_counter()
    prepopulate_parquet(spec.store, n)
    prepopulate_mlflow(raw["tracking_uri"], name, n)
    spec.store.write_text("study.yaml", yaml.safe_dump(raw))
    setup_s = time.perf_counter() - start
    client = tracking_client(raw["tracking_uri"], create=False)
    exp_id = study_experiment_id(client, spec)
    grouped_s, grouped = best_of(lambda: trial_run_counts(client, exp_id))
    paged_s, paged = best_of(lambda: searched_trial_run_counts(client, exp_id), repeats=1)
    if grouped != paged:
        raise SystemExit(f"{n} trials: GROUP BY {grouped} differs from the paged search {paged}")
    study_file = work / f"{name}.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    row = {"trials": n, "setup_s": setup_s, "grouped_s": grouped_s, "paged_s": paged_s}
    for key, verb in {"status": ["status"], "best": ["best", "--top", "5"]}.items():
        start = time.perf_counter()
        proc = subprocess.run([str(BIN / "anpyc-sweep"), *verb, str(study_file)], capture_output=True, text=True)
        row[f"{key}_s"] = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{key} on {n} trials: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="status-scale-") as tmp:
        for n in args.sizes:
            rows.append(measure(n, Path(tmp)))
            print(rows[-1], flush=True)
    if args.no_docs:
        return
    lines = [
        "### `status` and `best` as a study grows (bench/status_scale.py)",
        "",
        f"Command: `{' '.join(['python bench/status_scale.py', *sys.argv[1:]])}`",
        "Machine: 2 CPU cores, no GPU; MLflow on SQLite in the study's folder. The MLflow tally `status` prints,",
        "in-process on the same store: one GROUP BY against the paged search it replaced; then the command-line",
        "verbs in a fresh process (about 3 s of that is importing MLflow and pandas).",
        "",
        "| N trials | tally by GROUP BY s | tally by paged search s | speed-up | `status` s | `best --top 5` s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['trials']:,} | {r['grouped_s']:.3f} | {r['paged_s']:.2f} | {r['paged_s'] / r['grouped_s']:.0f}x | "
            f"{r['status_s']:.2f} | {r['best_s']:.2f} |"
        )
    write_section(ROOT / "docs" / "PERFORMANCE.md", "status_scale", lines, "Performance")


if __name__ == "__main__":
    main()
