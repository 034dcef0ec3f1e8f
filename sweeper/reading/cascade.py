"""The pruning cascade made visible (issue 15): per round and tensor, the freed share against the nominal one.

Reads the `rounds` JSON of boundaries.parquet (one object per pruning round: `percent`, `freed:<tensor>`,
`zero_omega:<tensor>`) and draws, for each ablation, the freed share of every tensor over task 1's rounds
beside the round's nominal percentage; with the `{Ω = 0}` rule the freed share runs far past it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from sweeper.storage import results
from sweeper.study.spec import StudySpec


def cascade_table(spec: StudySpec, done: pd.DataFrame) -> pd.DataFrame:
    """One row per (trial, task, round, tensor): nominal percent, freed share and Ω = 0 share (in %)."""
    bounds = results.read_boundaries(spec.store)
    if bounds.empty or "rounds" not in bounds.columns:
        return pd.DataFrame()
    rows = []
    ablation = done.set_index("trial_id")["ablation"]
    for r in bounds[bounds["trial_id"].isin(ablation.index)].itertuples():
        if not isinstance(r.rounds, str) or not r.rounds:
            continue
        for one in json.loads(r.rounds):
            for key, value in one.items():
                if key.startswith("freed:"):
                    tensor = key.split(":", 1)[1]
                    rows.append(
                        {
                            "ablation": ablation[r.trial_id],
                            "trial_id": r.trial_id,
                            "task": one["task"],
                            "round": one["round"],
                            "percent": one["percent"],
                            "tensor": tensor,
                            "freed": 100 * value,
                            "zero_omega": 100 * one.get(f"zero_omega:{tensor}", float("nan")),
                        }
                    )
    return pd.DataFrame(rows)


def plot_cascade(table: pd.DataFrame, path: Path, task: int = 1) -> None:
    """Freed share per round of `task`, one panel per ablation, one line per weight tensor (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = table[(table["task"] == task) & table["tensor"].str.endswith("weight")]
    ablations = list(dict.fromkeys(part["ablation"]))
    fig, axes = plt.subplots(1, len(ablations), figsize=(3.6 * len(ablations), 3.4), sharey=True, squeeze=False)
    for ax, ablation in zip(axes[0], ablations, strict=True):
        mine = part[part["ablation"] == ablation]
        for tensor, lines in mine.groupby("tensor"):
            stats = lines.groupby("round")["freed"].agg(["mean", "std"])
            ax.errorbar(
                stats.index, stats["mean"], yerr=np.nan_to_num(stats["std"]), marker="o", capsize=3, label=tensor
            )
        nominal = mine.groupby("round")["percent"].first()
        ax.plot(nominal.index, nominal.values, "k--", label="nominal")
        ax.set_title(ablation, fontsize=9)
        ax.set_xlabel(f"pruning round of task {task}")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("freed share of the tensor (%)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cascade_section(spec: StudySpec, done: pd.DataFrame, out: Path) -> list[str]:
    """Markdown lines (and `cascade.png`) of the per-round freed shares; [] when no trial pruned."""
    table = cascade_table(spec, done)
    if table.empty:
        return []
    plot_cascade(table, out / "cascade.png")
    first = table[table["task"] == 1]
    last_round = first[first["round"] == first.groupby("trial_id")["round"].transform("max")]
    summary = last_round.groupby(["ablation", "tensor"])[["percent", "freed", "zero_omega"]].agg(["mean", "std"])
    lines = [
        "## The pruning cascade (issue 15): freed share per round of task 1",
        "",
        "![freed share per round](cascade.png)",
        "",
        "After task 1's last round, mean ± std over seeds (%):",
        "",
        "| ablation | tensor | nominal | freed | Ω = 0 |",
        "|---|---|---|---|---|",
    ]
    for (ablation, tensor), r in summary.iterrows():
        lines.append(
            f"| {ablation} | {tensor} | {r[('percent', 'mean')]:.0f} | {r[('freed', 'mean')]:.1f} ± "
            f"{np.nan_to_num(r[('freed', 'std')]):.1f} | {r[('zero_omega', 'mean')]:.1f} ± "
            f"{np.nan_to_num(r[('zero_omega', 'std')]):.1f} |"
        )
    return [*lines, ""]
