"""`anpyc-sweep analyze`: the paper's Section V analyses from a study's task-boundary snapshots.

- Fig. 9: distribution of min-max-normalised importance Ω^1 (after task 1) per ablation, with the
  kurtosis and skewness of each trial's distribution (mean ± std over seeds).
- Fig. 10: per trunk layer, the Fréchet distance between the first and the last task's weight
  distributions (each taken as a Gaussian: √((μ₁−μ_T)² + (σ₁−σ_T)²)), and the weighted parameter
  change Σ w|θ_T − θ₁| / Σ w with w the probe importance of task 1 on θ₁ (the same ANPyC measure
  for every method, so methods compare).
- Fig. 7a: model parameters plus stored continual-learning values, and trunk weights in use,
  against the number of tasks, per ablation (from `boundaries.parquet`).

Snapshots are read from each trial's MLflow artifacts (`snapshots/snapshot_task_NNN.pt`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from sweeper.reading.cascade import cascade_section  # noqa: E402
from sweeper.reading.colours import colours_for  # noqa: E402
from sweeper.storage import results  # noqa: E402
from sweeper.study.spec import QueryError, StudySpec  # noqa: E402
from sweeper.study.trials import SNAPSHOT_PREFIX  # noqa: E402

Snapshots = dict[int, dict]  # task number → snapshot


# ------------------------------------------------------------------ statistics
def min_max(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (all zeros when the values are constant)."""
    lo, hi = float(values.min()), float(values.max())
    return np.zeros_like(values) if hi == lo else (values - lo) / (hi - lo)


def skewness(values: np.ndarray) -> float:
    """Sample skewness E[(x−μ)³]/σ³ (0 for a constant sample)."""
    centred = values - values.mean()
    sd = np.sqrt(np.mean(centred**2))
    return 0.0 if sd == 0 else float(np.mean(centred**3) / sd**3)


def kurtosis(values: np.ndarray) -> float:
    """Excess kurtosis E[(x−μ)⁴]/σ⁴ − 3 (0 for a constant sample)."""
    centred = values - values.mean()
    var = np.mean(centred**2)
    return 0.0 if var == 0 else float(np.mean(centred**4) / var**2 - 3.0)


def frechet_1d(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two samples: √((μa−μb)² + (σa−σb)²)."""
    return float(np.hypot(a.mean() - b.mean(), a.std() - b.std()))


def weighted_change(first: np.ndarray, last: np.ndarray, weight: np.ndarray) -> float:
    """Σ w|last − first| / Σ w (plain mean |change| when every weight is 0)."""
    total = weight.sum()
    change = np.abs(last - first)
    return float(change.mean()) if total == 0 else float((weight * change).sum() / total)


def flat(tensors: dict[str, torch.Tensor]) -> np.ndarray:
    """All tensors of a name → tensor dict as one float64 vector (parameter order)."""
    return np.concatenate([t.double().numpy().ravel() for t in tensors.values()])


def layer_names(snapshot: dict) -> list[str]:
    """The trunk's weight matrices (biases left out), in layer order."""
    return [n for n in snapshot["params"] if n.endswith(".weight")]


# ---------------------------------------------------------------- per trial
def importance_stats(snapshot: dict) -> dict[str, float]:
    """Kurtosis and skewness of the min-max-normalised Ω of one snapshot."""
    values = min_max(flat(snapshot["importance"]))
    return {"kurtosis": kurtosis(values), "skewness": skewness(values)}


def drift(first: dict, last: dict) -> list[dict]:
    """Per layer: Fréchet distance and weighted change between two snapshots of one trial."""
    rows = []
    for layer, name in enumerate(layer_names(first)):
        a, b = first["params"][name].double().numpy(), last["params"][name].double().numpy()
        w = first["probe_importance"][name].double().numpy()
        rows.append({"layer": layer + 1, "frechet": frechet_1d(a, b), "weighted_change": weighted_change(a, b, w)})
    return rows


# ---------------------------------------------------------------- loading
def analysed_trials(spec: StudySpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(FINISHED rows, FINISHED and DIVERGED rows) of trials.parquet, or an error saying why there are none.

    Fig. 9 reads Ω after task 1, which a trial that diverged in a later task has too: leaving it out would
    keep only the seeds that survived the later tasks. Everything read at the last task uses FINISHED rows."""
    if not spec.store.exists("study.yaml"):
        raise QueryError(f"study {spec.name}: not found in {spec.tune_storage} (check --storage)")
    frame = results.read_trials(spec.store)
    if frame.empty:
        raise QueryError(f"study {spec.name}: no trial recorded in {spec.tune_storage} yet")
    done = frame[frame["status"] == "FINISHED"]
    if done.empty:
        raise RuntimeError(f"study {spec.name}: no FINISHED trial yet")
    return done, frame[frame["status"].isin(["FINISHED", "DIVERGED"]) & frame["mlflow_run_id"].notna()]


def load_snapshots(spec: StudySpec, run_id: str) -> Snapshots:
    """A trial's snapshots from its MLflow artifacts (empty if it kept none)."""
    import mlflow.artifacts

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per trial is noise
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="snapshots", dst_path=folder, tracking_uri=spec.resolved_tracking_uri()
            )
        except Exception:  # no snapshots/ folder: the study ran with snapshots: none
            return {}
        out = {}
        for path in sorted(Path(local).glob(f"{SNAPSHOT_PREFIX}*.pt")):
            snap = torch.load(path, map_location="cpu", weights_only=True)
            out[int(snap["task"])] = snap
        return out


# ---------------------------------------------------------------- tables
def importance_table(done: pd.DataFrame, snaps: dict[str, Snapshots]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Fig. 9 per trial (ablation, seed, kurtosis, skewness) and pooled normalised Ω per ablation."""
    rows, pooled = [], {}
    for r in done.itertuples():
        first = snaps.get(r.trial_id, {}).get(1)
        if first is None or "importance" not in first:
            continue
        rows.append({"ablation": r.ablation, "seed": r.seed, **importance_stats(first)})
        pooled.setdefault(r.ablation, []).append(min_max(flat(first["importance"])))
    return pd.DataFrame(rows), {k: np.concatenate(v) for k, v in pooled.items()}


def drift_table(done: pd.DataFrame, snaps: dict[str, Snapshots]) -> pd.DataFrame:
    """Fig. 10 per trial and layer: Fréchet distance and weighted change, first → last task."""
    rows = []
    for r in done.itertuples():
        trial = snaps.get(r.trial_id, {})
        if len(trial) < 2:
            continue
        first, last = trial[min(trial)], trial[max(trial)]
        rows += [{"ablation": r.ablation, "seed": r.seed, **row} for row in drift(first, last)]
    return pd.DataFrame(rows)


def capacity_table(spec: StudySpec, done: pd.DataFrame) -> pd.DataFrame:
    """Fig. 7a: mean counts per (ablation, tasks finished) from boundaries.parquet."""
    bounds = results.read_boundaries(spec.store)
    if bounds.empty:
        return pd.DataFrame()
    bounds = bounds.merge(done[["trial_id", "ablation"]], on="trial_id")
    if bounds.empty or "model_params" not in bounds:
        return pd.DataFrame()
    bounds["stored_total"] = bounds["model_params"] + bounds["state_values"]
    columns = ["model_params", "state_values", "stored_total", "trunk_in_use"]
    return bounds.groupby(["ablation", "after_task"])[columns].mean().reset_index()


def mean_std(frame: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean and std (over seeds) of `columns` per `by` group."""
    table = frame.groupby(by)[columns].agg(["mean", "std"])
    table.columns = [f"{c}_{s}" for c, s in table.columns]
    return table.reset_index()


# ---------------------------------------------------------------- figures
def plot_importance(pooled: dict[str, np.ndarray], path: Path) -> None:
    """Histograms of normalised Ω (log counts), one panel per ablation, at most 4 per row."""
    cols = min(4, len(pooled))
    rows = -(-len(pooled) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), sharey=True, squeeze=False)
    for ax, (ablation, values) in zip(axes.flat, sorted(pooled.items()), strict=False):
        ax.hist(values, bins=50, range=(0, 1), color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(ablation)
        ax.set_xlabel("normalised importance")
    for ax in list(axes.flat)[len(pooled) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("weights (log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_drift(table: pd.DataFrame, path: Path) -> None:
    """Grouped bars per layer: Fréchet distance and weighted change (mean ± std over seeds)."""
    ablations = sorted(table["ablation"].unique())
    layers = sorted(table["layer"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(ablations)
    colours = colours_for(ablations)  # each method's colour, as in every other figure
    for ax, metric in zip(axes, ("frechet", "weighted_change"), strict=True):
        for k, ablation in enumerate(ablations):
            part = table[table["ablation"] == ablation].set_index("layer").reindex(layers)
            x = np.arange(len(layers)) + k * width
            err = part[f"{metric}_std"].fillna(0)
            colour = colours[str(ablation)]
            ax.bar(x, part[f"{metric}_mean"], width, yerr=err, capsize=2, label=ablation, color=colour)
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, [f"layer {n}" for n in layers])
        ax.set_title({"frechet": "Fréchet distance, first → last task", "weighted_change": "weighted change"}[metric])
        ax.grid(alpha=0.3, axis="y")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_capacity(table: pd.DataFrame, path: Path) -> None:
    """Two panels against tasks, one line per ablation: values stored (model parameters plus
    continual-learning state) and trunk weights in use (not left free by pruning)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    markers = "osD^vP*Xhp<>"
    colours = colours_for(sorted(table["ablation"].astype(str).unique()))  # as in every other figure
    for k, (ablation, part) in enumerate(table.groupby("ablation")):
        style = {"marker": markers[k % len(markers)], "label": ablation, "alpha": 0.85, "color": colours[str(ablation)]}
        axes[0].plot(part["after_task"], part["stored_total"], **style)
        axes[1].plot(part["after_task"], part["trunk_in_use"], **style)
    for ax, title in zip(axes, ("values stored (params + state)", "trunk weights in use"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("tasks learned")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the lines, never over them
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------- report
def write_analysis(spec: StudySpec) -> Path:
    """Write analysis.md and its figures into <study>/report; returns the markdown path."""
    done, task_one = analysed_trials(spec)
    snaps = {r.trial_id: load_snapshots(spec, r.mlflow_run_id) for r in task_one.itertuples()}
    out = spec.study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Section V analyses: {spec.name}", "", "Mean ± std over seeds; one row per ablation.", ""]
    stats, pooled = importance_table(task_one, snaps)
    if len(stats):
        plot_importance(pooled, out / "fig9_importance.png")
        table = mean_std(stats, ["ablation"], ["kurtosis", "skewness"])
        lines += ["## Importance distributions after task 1 (paper Fig. 9)", "", "![Fig. 9](fig9_importance.png)", ""]
        if (task_one["status"] == "DIVERGED").any():
            lines += ["Trials that diverged in a later task count here with their Ω after task 1.", ""]
        lines += ["| ablation | n | kurtosis | skewness |", "|---|---|---|---|"]
        counts = stats.groupby("ablation").size()
        lines += [
            f"| {r.ablation} | {counts[r.ablation]} | {r.kurtosis_mean:.1f} ± {np.nan_to_num(r.kurtosis_std):.1f} "
            f"| {r.skewness_mean:.2f} ± {np.nan_to_num(r.skewness_std):.2f} |"
            for r in table.itertuples()
        ] + [""]
    drifts = drift_table(done, snaps)
    if len(drifts):
        table = mean_std(drifts, ["ablation", "layer"], ["frechet", "weighted_change"])
        plot_drift(table, out / "fig10_drift.png")
        lines += ["## Parameter drift from the first to the last task (paper Fig. 10)", ""]
        lines += ["![Fig. 10](fig10_drift.png)", "", "| ablation | layer | Fréchet distance | weighted change |"]
        lines += (
            ["|---|---|---|---|"]
            + [
                f"| {r.ablation} | {r.layer} | {r.frechet_mean:.4f} ± {np.nan_to_num(r.frechet_std):.4f} "
                f"| {r.weighted_change_mean:.4f} ± {np.nan_to_num(r.weighted_change_std):.4f} |"
                for r in table.itertuples()
            ]
            + [""]
        )
    capacity = capacity_table(spec, done)
    if len(capacity):
        plot_capacity(capacity, out / "fig7a_parameters.png")
        last = capacity.loc[capacity.groupby("ablation")["after_task"].idxmax()]
        lines += ["## Parameters against tasks (paper Fig. 7a)", "", "![Fig. 7a](fig7a_parameters.png)", ""]
        lines += ["| ablation | tasks | model params | stored state | total | trunk in use |", "|" + "---|" * 6]
        lines += [
            f"| {r.ablation} | {r.after_task} | {r.model_params:,.0f} | {r.state_values:,.0f} | "
            f"{r.stored_total:,.0f} | {r.trunk_in_use:,.0f} |"
            for r in last.itertuples()
        ] + [""]
    lines += cascade_section(spec, done, out)
    if len(lines) == 4:
        raise RuntimeError(
            f"study {spec.name}: no snapshots or boundaries to analyse; run it with snapshots: ends (the default)"
        )
    path = out / "analysis.md"
    path.write_text("\n".join(lines))
    return path
