"""The Ray Tune trainable: one continual-learning run, reported and checkpointed per task."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from anpyc_core.config import validate_config
from anpyc_core.data import RawDataset, build_tasks
from anpyc_core.errors import TrainingDiverged
from anpyc_core.generative.feature_classifier import feature_key
from anpyc_core.metrics import summarize
from anpyc_core.run_state import resolve_device
from anpyc_core.runner import make_trainer
from anpyc_core.trainer import Trainer
from sweeper.study.trials import HEATMAP_FILE, HISTORY_FILE, joint_key, snapshot_name, trial_run_config

CHECKPOINT_FILE = "state.pt"


def wants_snapshot(mode: str, task: int, num_tasks: int) -> bool:
    """Whether the study keeps a snapshot after `task` tasks (`ends`: the first and the last)."""
    return mode == "all" or (mode == "ends" and task in (1, num_tasks))


def task_metrics(acc: list[list[float]], val: list[list[float]], done: int) -> dict[str, float]:
    """Metrics on the tasks seen so far (the leading `done` x `done` block of P)."""
    sub = [row[:done] for row in acc[: done + 1]]
    vsub = [row[:done] for row in val[: done + 1]]
    out = {}
    for prefix, matrix in (("test", sub), ("val", vsub)):
        for k, v in summarize(matrix).items():
            if v is not None and k != "fwt" and not math.isnan(v):  # NaN: a C-GAN's unmet tasks
                out[f"{prefix}_{k}"] = v
    return out


def fid_metrics(extra_rows: dict[str, list[float]], done: int) -> dict[str, float]:
    """FID of the first five and of every task learned so far (generative runs; empty otherwise)."""
    from anpyc_core.generative.trainer import fid_summary

    out = {}
    for prefix, key in (("test", "fid"), ("val", "val_fid")):
        if extra_rows.get(key):
            out.update({f"{prefix}_{k}": v for k, v in fid_summary(extra_rows[key], done).items()})
    return out


def train_trial(
    config: dict[str, Any],
    spec: dict,
    datasets: dict[str, RawDataset],
    joint_refs: dict[str, dict] | None = None,
    features: dict[str, dict] | None = None,
) -> None:
    """Run (or resume) one trial; `tune.report` after every task with a checkpoint."""
    torch.set_num_threads(max(1, int(spec["resources"]["cpu"])))  # no oversubscription across trials
    run_cfg = validate_config(trial_run_config(spec, config))
    device = resolve_device(run_cfg.device)
    tasks = build_tasks(run_cfg.data, {n: datasets[n] for n in run_cfg.data.benchmarks}, run_cfg.seed, device)
    reference = (joint_refs or {}).get(joint_key(run_cfg.model_dump(mode="json")))
    feature = (features or {}).get(feature_key(run_cfg.data))  # generative runs: the driver's feature classifier
    trainer = make_trainer(run_cfg, tasks=tasks, joint_reference=reference, features=feature)
    checkpoint = tune.get_checkpoint()
    history: list[dict] = []
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_checkpoint(Path(folder) / CHECKPOINT_FILE)
            if (Path(folder) / HISTORY_FILE).exists():
                history = json.loads((Path(folder) / HISTORY_FILE).read_text())
    resumed_from = trainer.next_task  # 0 for a fresh trial: tasks already done at (re)start
    try:
        for record in trainer.run():
            report_task(trainer, record, spec, resumed_from, history)
    except TrainingDiverged as err:  # a result, not a fault: reported once, never retried
        diverged = {obj["metric"]: float("nan") for obj in spec["objectives"]}
        tune.report({**diverged, "task": trainer.next_task, "diverged": f"TrainingDiverged: {err}"})


def task_entry(trainer: Trainer, record) -> dict[str, Any]:
    """What the study records for one finished task: metrics so far, accuracy rows, boundary values."""
    return {
        "task": record.task,
        "task_seconds": record.seconds,
        "train_loss": record.loss,
        "penalty": record.penalty,
        "acc_row": record.acc_row,
        "val_acc_row": record.val_acc_row,
        **record.counts,
        **({"stability": record.stability} if getattr(record, "stability", None) is not None else {}),
        **({"rounds": json.dumps(record.rounds)} if getattr(record, "rounds", None) else {}),
        **{f"{name}_row": row for name, row in getattr(record, "extra_rows", {}).items()},
        **task_metrics(trainer.acc_matrix, trainer.val_acc_matrix, record.task),
        **fid_metrics(getattr(record, "extra_rows", {}), record.task),
    }


def task_report(trainer: Trainer, record, resumed_from: int, history: list[dict]) -> dict[str, Any]:
    """What one finished task reports: metrics so far, every task's record (so the driver can fill any
    gap it left) and, after the last task, the final metrics and matrices. Updates `history`."""
    entry = task_entry(trainer, record)
    history[:] = [h for h in history if h["task"] < record.task] + [entry]
    metrics: dict[str, Any] = {
        **entry,
        "num_tasks": record.num_tasks,
        "acc_row": json.dumps(record.acc_row),
        "val_acc_row": json.dumps(record.val_acc_row),
        **{f"{name}_row": json.dumps(row) for name, row in getattr(record, "extra_rows", {}).items()},
        "resumed_from_task": resumed_from,
        "history": json.dumps(history),
    }
    if record.task == record.num_tasks:
        result = trainer.result()
        for prefix, block in (("test", result.metrics), ("val", result.val_metrics)):
            metrics.update({f"{prefix}_{k}": v for k, v in block.items() if v is not None})
        metrics["acc_matrix"] = json.dumps(result.acc_matrix)
        metrics["val_acc_matrix"] = json.dumps(result.val_acc_matrix)
        for name, matrix in (result.extra_matrices or {}).items():
            metrics[f"{name}_matrix"] = json.dumps(matrix)
        if "features" in result.fingerprint:  # which features every FID of this run used
            metrics["fid_features"] = result.fingerprint["features"]
        metrics["seconds"] = result.seconds
        metrics["run_config"] = json.dumps(result.config)
        metrics["prune_flags"] = len(result.prune_flags)  # rounds that cost more accuracy than allowed
        if result.prune_flags:
            metrics["prune_flag"] = result.prune_flags[0]
    return metrics


def write_task_files(folder: Path, trainer: Trainer, record, spec: dict, history: list[dict]) -> list[str]:
    """History (and the snapshot the study keeps, if any) of one run into `folder`; the snapshot names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HISTORY_FILE).write_text(json.dumps(history))
    if hasattr(trainer, "save_samples"):  # generative runs: a sample grid per task boundary instead
        name = f"samples_task_{record.task:03d}.png"
        trainer.save_samples(folder / name)
        return [name]
    if not wants_snapshot(spec.get("snapshots", "ends"), record.task, record.num_tasks):
        return []
    torch.save(trainer.snapshot(), folder / snapshot_name(record.task))
    return [snapshot_name(record.task)]


def write_heatmap(path: Path, metrics: dict) -> None:
    """The run's test and validation accuracy matrices as one PNG (rendering costs ~0.3 s: the worker pays it)."""
    import matplotlib.pyplot as plt

    from sweeper.tracking.plots import accuracy_heatmaps

    fig = accuracy_heatmaps(json.loads(metrics["acc_matrix"]), json.loads(metrics["val_acc_matrix"]))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def report_task(trainer: Trainer, record, spec: dict, resumed_from: int, history: list[dict]) -> None:
    """`tune.report` one finished task with a checkpoint of the whole state."""
    metrics = task_report(trainer, record, resumed_from, history)
    with tempfile.TemporaryDirectory() as folder:
        trainer.save_checkpoint(Path(folder) / CHECKPOINT_FILE)
        snapshots = write_task_files(Path(folder), trainer, record, spec, history)
        if "acc_matrix" in metrics and not hasattr(trainer, "save_samples"):  # the last task of a classifier
            write_heatmap(Path(folder) / HEATMAP_FILE, metrics)
            snapshots.append(HEATMAP_FILE)
        metrics["snapshot_files"] = json.dumps(snapshots)  # the driver copies these to MLflow, nothing else
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
