"""The generative part of a study report (issue 13): FID per method, FID over tasks, the final sample grids.

Reads tasks.parquet's `fid` (and `elbo`) columns and each trial's last sample grid from MLflow; writes
`fid_over_tasks.png` and `samples.png` beside report.md and returns the markdown lines.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from sweeper.storage import results
from sweeper.study.spec import StudySpec

FIRST = 5  # Table III: FID on the first five tasks


def is_generative(tasks: pd.DataFrame) -> bool:
    """True when the study's task rows carry FID (C-GAN or VAE runs)."""
    return "fid" in tasks.columns and tasks["fid"].notna().any()


def final_table(done: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """Per ablation, mean ± std over seeds after the last task: FID of the first five, FID of all, accuracy."""
    test = tasks[(tasks["split"] == "test") & tasks["trial_id"].isin(done["trial_id"])]
    last = test[test["after_task"] == test.groupby("trial_id")["after_task"].transform("max")]
    per_trial = last.groupby("trial_id").apply(
        lambda g: pd.Series(
            {
                "fid_first5": g.loc[g["eval_task"] <= FIRST, "fid"].mean(),
                "fid_all": g["fid"].mean(),
                "acc": g["accuracy"].mean(),
                **({"elbo_task1": g.loc[g["eval_task"] == 1, "elbo"].mean()} if "elbo" in g else {}),
            }
        ),
        include_groups=False,
    )
    merged = per_trial.join(done.set_index("trial_id")["ablation"])
    return merged.groupby("ablation").agg(["mean", "std", "count"])


def plot_fid_over_tasks(done: pd.DataFrame, tasks: pd.DataFrame, path: Path) -> None:
    """Mean FID of the first five tasks learned so far, after each task, one line per ablation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    test = tasks[
        (tasks["split"] == "test") & (tasks["eval_task"] <= tasks["after_task"]) & (tasks["eval_task"] <= FIRST)
    ]
    curve = test.groupby(["trial_id", "after_task"])["fid"].mean().rename("fid").reset_index()
    curve = curve.merge(done[["trial_id", "ablation"]], on="trial_id")
    from sweeper.reading.colours import colours_for

    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = list(curve.groupby("ablation"))
    colours = colours_for(curve["ablation"])
    width = 0.3 / max(1, len(groups))  # side by side at each task: equal curves stay visible
    for k, (ablation, part) in enumerate(groups):
        stats = part.groupby("after_task")["fid"].agg(["mean", "std"])
        shift = (k - (len(groups) - 1) / 2) * width
        ax.errorbar(
            stats.index + shift,
            stats["mean"],
            yerr=np.nan_to_num(stats["std"]),
            marker="o",
            capsize=3,
            label=ablation,
            color=colours[str(ablation)],
        )
    ax.set_xlabel("tasks learned (curves side by side at each task)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    shown = min(FIRST, int(curve["after_task"].max())) if len(curve) else FIRST
    what = f"the first {shown} tasks" if shown < int(tasks["after_task"].max() or 0) else "every task"
    ax.set_ylabel(f"FID of {what} learned so far (lower is better)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_samples(spec: StudySpec, done: pd.DataFrame, path: Path) -> list[str]:
    """One panel per ablation: the final sample grid (one row per task) of its lowest-seed trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in a report command
    client = MlflowClient(spec.resolved_tracking_uri())
    panels = []
    with tempfile.TemporaryDirectory() as folder:
        for ablation, part in done.sort_values("seed").groupby("ablation", sort=False):
            row = part.iloc[0]
            name = f"snapshots/samples_task_{int(row['tasks_done']):03d}.png"
            try:
                local = client.download_artifacts(row["mlflow_run_id"], name, folder)
            except Exception:  # noqa: BLE001 - an older run without grids: that panel is skipped
                continue
            panels.append((ablation, plt.imread(local)))
    if not panels:
        return []
    aspect = max(image.shape[0] / image.shape[1] for _, image in panels)  # grid height over width
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.2 * aspect + 0.7), squeeze=False)
    for ax, (ablation, image) in zip(axes[0], panels, strict=True):
        ax.imshow(image, cmap="gray")
        ax.set_title(ablation, fontsize=9)
        ax.axis("off")
    fig.suptitle("samples after the last task: one row per task, task 1 at the top (lowest seed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return [a for a, _ in panels]


def generative_section(spec: StudySpec, done: pd.DataFrame, out: Path) -> list[str]:
    """Markdown lines (and figures in `out`) of a generative study's results; [] for a classifier study."""
    tasks = results.read_tasks(spec.store)
    if tasks.empty or not is_generative(tasks) or done.empty:
        return []
    table = final_table(done, tasks)
    plot_fid_over_tasks(done, tasks, out / "fid_over_tasks.png")
    shown = plot_samples(spec, done, out / "samples.png")
    metrics = [m for m in ("fid_first5", "fid_all", "acc", "elbo_task1") if m in table.columns.get_level_values(0)]
    heads = {"fid_first5": f"FID first {FIRST}", "fid_all": "FID all", "acc": "sample ACC %", "elbo_task1": "ELBO T1"}
    lines = [
        "## Generation after the last task (mean ± std over seeds)",
        "",
        "FID on the features the runs name (their fingerprint); sample ACC: the share of each task's generated "
        "images the feature classifier assigns to the task's classes.",
        "",
        "| ablation | n | " + " | ".join(heads[m] for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for ablation, r in table.iterrows():
        cells = [f"{r[(m, 'mean')]:.2f} ± {np.nan_to_num(r[(m, 'std')]):.2f}" for m in metrics]
        lines.append(f"| {ablation} | {int(r[(metrics[0], 'count')])} | " + " | ".join(cells) + " |")
    lines += ["", "![FID over tasks](fid_over_tasks.png)", ""]
    if shown:
        lines += ["![final samples per method](samples.png)", ""]
    return lines
