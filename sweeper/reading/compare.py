"""`anpyc-sweep compare`: each ablation (or method) of a study against its reference, with a 95 % interval.

For every group its configuration is the one `best` would pick (the searched values with the best mean
validation objective among those where no seed diverged); the compared metric (test accuracy by default:
selection on validation, reporting on test) is then taken per seed. Where the group and the reference share
seeds the difference is paired over those seeds (the seeds fix data order and initialisation, so pairing
removes their shared variance); otherwise the two are compared unpaired (Welch). The reference, unless
named, is the first group (in the study's order) whose chosen configuration finished on the most seeds, so a
reference that lost seeds to divergence does not turn every row into an unpaired n = 1 comparison. The
interval is Student's t at 95 %; the verdict says `better` or `worse` when the interval excludes 0 and `no
difference at this n` otherwise. Diverged runs of the chosen configuration are counted, never averaged in. A
searched key that is an axis of the experiment (data.*, model.*: the number of tasks, the width) is not
chosen on validation: the groups are compared at each of its values, one row per value (`full @
data.num_tasks=20`).

May import: `sweeper.storage.results`, `sweeper.study.spec`, `sweeper.reading.figure_text`, numpy, pandas, scipy,
matplotlib (figures only).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweeper.reading.figure_text import set_fitted_title
from sweeper.storage import results
from sweeper.study.spec import QueryError, StudySpec

CONFIDENCE = 0.95
#: statuses of a run that did not finish its tasks (it diverged, or its trainer failed)
DIVERGED_STATUSES = ("DIVERGED", "ERROR")
#: searched keys under these are axes of the experiment, not hyperparameters (as RESULTS' grid tables treat them)
AXIS_PREFIXES = ("data.", "model.")
#: metrics where lower is better
LOWER_IS_BETTER = ("forgetting", "fid")


@dataclass
class Comparison:
    """One group against the reference on one metric."""

    group: str
    reference: str
    metric: str
    config: str  # the group's chosen searched values
    n: int  # seeds (pairs when paired)
    paired: bool
    mean: float  # group mean minus reference mean (points)
    low: float
    high: float
    diverged: int  # diverged runs of the group's chosen configuration
    verdict: str


def units(metric: str) -> str:
    """What a difference in `metric` is measured in: points for accuracies and forgetting, else its own units."""
    return "points" if metric.endswith(("acc", "bwt", "fwt", "forgetting")) else "its own units"


def report_metric(spec: StudySpec, recorded) -> str:
    """The metric a report compares on: the test counterpart of the study's objective (test_fid_first5 for a
    C-GAN study selected on val_fid_first5) where recorded, else test accuracy."""
    objective = spec.objectives[0].metric
    test = "test_" + objective.removeprefix("val_")
    return test if objective.startswith("val_") and test in recorded else "test_acc"


def lower_is_better(metric: str) -> bool:
    """True for metrics to minimise (forgetting, FID)."""
    return any(word in metric for word in LOWER_IS_BETTER)


def axis_keys(spec: StudySpec) -> list[str]:
    """The searched keys that are axes of the experiment (data.*, model.*: the number of tasks, the width),
    compared at each of their values, never chosen on validation as a hyperparameter is."""
    return [k for k in spec.search if k.startswith(AXIS_PREFIXES)]


def chosen_rows(frame: pd.DataFrame, spec: StudySpec, by: str, group: str, objective: str) -> pd.DataFrame:
    """The trials of `group` at its best configuration by the mean validation objective (all statuses); a
    configuration where some seed diverged is chosen only when every one did (the mean of its survivors
    would flatter it)."""
    rows = frame[frame[by] == group]
    columns = [f"cfg.{k}" for k in spec.search if f"cfg.{k}" in rows and k not in axis_keys(spec)]
    if not columns:
        return rows
    done = rows[rows["status"] == "FINISHED"]
    if done.empty:
        return rows.iloc[0:0]
    means = done.groupby(columns, dropna=False)[objective].mean()
    lost = rows[rows["status"].isin(DIVERGED_STATUSES)].groupby(columns, dropna=False).size()
    stable = means[[key not in lost.index for key in means.index]]
    means = stable if len(stable) else means  # as `best` ranks: a configuration that lost a seed comes last
    best = means.idxmax() if not lower_is_better(objective) else means.idxmin()
    best = best if isinstance(best, tuple) else (best,)
    mask = np.ones(len(rows), dtype=bool)
    for column, value in zip(columns, best, strict=True):
        mask &= (rows[column] == value).to_numpy()
    return rows[mask]


def interval(values: np.ndarray, other: np.ndarray | None = None) -> tuple[float, float, float]:
    """Mean difference and its 95 % t-interval: of paired differences (`other` None) or Welch's unpaired."""
    from scipy import stats

    if other is None:
        n = len(values)
        mean = float(values.mean())
        if n < 2:
            return mean, -math.inf, math.inf
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
        return mean, mean - half, mean + half
    a, b = values, other
    sd = (float(a.std(ddof=1)) if len(a) > 1 else 0.0, float(b.std(ddof=1)) if len(b) > 1 else 0.0)
    return welch(float(a.mean()), sd[0], len(a), float(b.mean()), sd[1], len(b))


def welch(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int) -> tuple[float, float, float]:
    """Welch's mean difference a − b and its 95 % t-interval from each side's mean, sample std and n."""
    from scipy import stats

    mean = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return mean, -math.inf, math.inf
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return mean, mean, mean
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se
    return mean, mean - half, mean + half


def verdict(low: float, high: float, metric: str) -> str:
    """better / worse when the interval excludes 0 (the metric's direction decides which), else no difference."""
    if low > 0 or high < 0:
        up = low > 0
        return "better" if up != lower_is_better(metric) else "worse"
    return "no difference at this n"


def finished_seeds(rows: pd.DataFrame, metric: str) -> int:
    """How many distinct seeds of `rows` finished with `metric` recorded."""
    done = rows[rows["status"] == "FINISHED"].dropna(subset=[metric])
    return int(done["seed"].nunique())


def default_reference(chosen: dict[str, pd.DataFrame], metric: str) -> str:
    """The first group (study order) whose chosen configuration (`chosen`: group -> rows) finished on the
    most seeds."""
    counts = {group: finished_seeds(rows, metric) for group, rows in chosen.items()}
    return max(counts, key=counts.__getitem__)  # the first of equal counts, in the study's order


def compare(
    spec: StudySpec,
    by: str = "ablation",
    metric: str = "test_acc",
    reference: str | None = None,
    frame: pd.DataFrame | None = None,
) -> list[Comparison]:
    """Every group of the study against the reference group on `metric` (see the module docstring); `frame`:
    the trials to compare instead of the study's own (another study's pooled in, bench/compare_across.py)."""
    frame = results.read_trials(spec.store) if frame is None else frame
    if frame.empty:
        raise QueryError(f"study {spec.name}: no trial recorded in {spec.tune_storage} yet")
    column = {"ablation": "ablation", "method": "cfg.strategy.method"}[by]
    if column not in frame:
        raise QueryError(f"--by {by}: the study's trials have no {column} column")
    if metric not in frame:
        recorded = sorted(c for c in frame.columns if c.startswith(("val_", "test_")) and frame[c].notna().any())
        raise QueryError(f"--metric {metric}: study {spec.name} records {', '.join(recorded)}")
    groups = list(dict.fromkeys(frame[column].dropna()))
    ordered = [g for g in (spec.ablations if by == "ablation" else []) if g in groups]
    groups = ordered + [g for g in groups if g not in ordered]
    if reference is not None and reference not in groups:
        raise QueryError(
            f"--reference {reference}: not a{'n' if by == 'ablation' else ''} {by} of study "
            f"{spec.name} ({', '.join(map(str, groups))})"
        )
    axes = [f"cfg.{k}" for k in axis_keys(spec) if f"cfg.{k}" in frame]
    if not axes:
        return compare_groups(spec, frame, column, groups, metric, reference)
    out = []  # an axis (the number of tasks, the width) is compared at each of its values
    parts = [(v if isinstance(v, tuple) else (v,), part) for v, part in frame.groupby(axes, sort=False, dropna=False)]
    for values, part in sorted(parts, key=lambda p: [natural(v) for v in p[0]]):
        at = ", ".join(f"{a.removeprefix('cfg.')}={v}" for a, v in zip(axes, values, strict=True))
        present = [g for g in groups if g in set(part[column])]
        for row in compare_groups(spec, part, column, present, metric, reference if reference in present else None):
            row.group = f"{row.group} @ {at}"
            out.append(row)
    return out


def natural(value: Any) -> tuple:
    """A sort key that orders axis values as numbers and lists of numbers (widths stored as their text)."""
    try:
        return (0, json.loads(value) if isinstance(value, str) else value)
    except ValueError:
        return (1, str(value))


def compare_groups(
    spec: StudySpec, frame: pd.DataFrame, column: str, groups: list, metric: str, reference: str | None
) -> list[Comparison]:
    """Every group of `frame` (one value of each axis) against the reference: the rows of `compare`."""
    objective = spec.objectives[0].metric
    chosen = {group: chosen_rows(frame, spec, column, group, objective) for group in groups}
    reference = reference or default_reference(chosen, metric)
    ref_rows = chosen[reference]
    ref_done = ref_rows[ref_rows["status"] == "FINISHED"].dropna(subset=[metric]).set_index("seed")[metric]
    out = []
    for group in groups:
        if group == reference:
            continue
        rows = chosen[group]
        diverged = int(rows["status"].isin(DIVERGED_STATUSES).sum())
        done = rows[rows["status"] == "FINISHED"].dropna(subset=[metric]).set_index("seed")[metric]
        shared = sorted(set(done.index) & set(ref_done.index))
        searched = {k: rows[f"cfg.{k}"].iloc[0] for k in spec.search if f"cfg.{k}" in rows and len(rows)}
        config = ", ".join(f"{k}={v}" for k, v in searched.items())
        if len(shared) >= 2:
            diffs = np.array([done[s] - ref_done[s] for s in shared], dtype=float)
            mean, low, high = interval(diffs)
            n, paired = len(shared), True
        elif len(done) and len(ref_done):
            mean, low, high = interval(done.to_numpy(float), ref_done.to_numpy(float))
            n, paired = min(len(done), len(ref_done)), False
        else:
            mean, low, high, n, paired = math.nan, math.nan, math.nan, 0, False
        word = verdict(low, high, metric) if n else "no finished runs"
        out.append(Comparison(str(group), str(reference), metric, config, n, paired, mean, low, high, diverged, word))
    return out


def table_lines(rows: list[Comparison]) -> list[str]:
    """The comparison as a markdown table."""
    if not rows:
        return ["(one group only: nothing to compare)"]
    lines = [
        f"Against `{rows[0].reference}` on `{rows[0].metric}`: mean difference ({units(rows[0].metric)}) with its 95 % "
        "t-interval, "
        "paired over shared seeds (else Welch).",
        "",
        "| group | chosen config | n | paired | difference | 95 % interval | diverged | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        span = "-" if not r.n else f"[{r.low:+.2f}, {r.high:+.2f}]"
        diff = "-" if not r.n else f"{r.mean:+.2f}"
        lines.append(
            f"| {r.group} | {r.config or '-'} | {r.n} | {'yes' if r.paired else 'no'} | {diff} | {span} | "
            f"{r.diverged} | {r.verdict} |"
        )
    return lines


def figure(rows: list[Comparison], path: Path, title: str) -> Path:
    """A forest plot: each group's difference to the reference with its interval; 0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.n]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(3, len(shown)) + 1.2))
    colours = {"better": "tab:green", "worse": "tab:red"}
    for i, r in enumerate(shown):
        low = r.low if math.isfinite(r.low) else r.mean
        high = r.high if math.isfinite(r.high) else r.mean
        colour = colours.get(r.verdict, "tab:gray")
        ax.errorbar(r.mean, i, xerr=[[r.mean - low], [high - r.mean]], fmt="o", color=colour, capsize=4)
        note = f"  n={r.n}" + (f", {r.diverged} diverged" if r.diverged else "") + ("" if r.paired else ", unpaired")
        ax.annotate(note, (high, i), va="center", fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(shown)), [r.group for r in shown])
    ax.invert_yaxis()
    metric = rows[0].metric if rows else ""
    ax.set_xlabel(f"{metric} difference to {rows[0].reference if rows else ''} ({units(metric)}, 95 % interval)")
    set_fitted_title(ax, title)
    ax.margins(x=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def as_dicts(rows: list[Comparison]) -> list[dict]:
    """JSON-ready rows."""
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(r).items()} for r in rows
    ]
