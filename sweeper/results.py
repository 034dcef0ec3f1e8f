"""Parquet results of a study: `trials.parquet` (one row per trial), `tasks.parquet` (long form) and
`boundaries.parquet` (one row per task boundary), in the study's storage (`sweeper.storage`).

Every write is an atomic upsert on the table's key, so a crash never leaves a torn file and a
replayed event never duplicates a row.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from sweeper.storage import StudyStore

TRIAL_KEY = ["trial_id"]
TASK_KEY = ["trial_id", "after_task", "eval_task", "split"]
BOUNDARY_KEY = ["trial_id", "after_task"]
TRIALS, TASKS, BOUNDARIES = "trials.parquet", "tasks.parquet", "boundaries.parquet"
BOUNDARY_COLUMNS = (
    "model_params",
    "state_values",
    "trunk_in_use",
    "task_seconds",
    "train_loss",
    "penalty",
    "stability",  # lr·2λ·max Ω at the task's start (penalty methods, tasks after the first)
)

#: generative runs' further per-task rows (a column each in tasks.parquet) and final matrices (MLflow JSON)
EXTRA_ROWS = ("fid_row", "val_fid_row", "elbo_row")
EXTRA_MATRICES = ("fid_matrix", "val_fid_matrix", "elbo_matrix")


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Flatten nested config dicts to `cfg.section.field` columns (lists kept as strings)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = str(value) if isinstance(value, list) else value
    return out


def task_rows(
    trial_id: str, after_task: int, acc_row: list[float], val_row: list[float], extra: dict | None = None
) -> list[dict]:
    """Long-form rows for one task report: one per (evaluated task, split).

    `extra` (generative runs): {"fid": row, "val_fid": row, "elbo": row} become the `fid` column of both
    splits (each its own split's) and the test rows' `elbo` column."""
    extra = {k: json.loads(v) if isinstance(v, str) else v for k, v in (extra or {}).items()}
    rows = []
    for split, row in (("test", acc_row), ("val", val_row)):
        for i, acc in enumerate(row):
            one = {"trial_id": trial_id, "after_task": after_task, "eval_task": i + 1, "split": split}
            one["accuracy"] = float(acc)
            fid = extra.get("fid" if split == "test" else "val_fid")
            if fid is not None:
                one["fid"] = float(fid[i])
            if split == "test" and "elbo" in extra:
                one["elbo"] = float(extra["elbo"][i])
            rows.append(one)
    return rows


def boundary_row(trial_id: str, after_task: int, result: dict[str, Any]) -> dict[str, Any]:
    """One row of `boundaries.parquet`: parameter counts, time and loss after a task."""
    row: dict[str, Any] = {"trial_id": trial_id, "after_task": after_task}
    row.update({k: result[k] for k in BOUNDARY_COLUMNS if k in result})
    if "rounds" in result:  # JSON list, one object per pruning round of the task (freed:<tensor>, zero_omega:<tensor>)
        row["rounds"] = result["rounds"] if isinstance(result["rounds"], str) else json.dumps(result["rounds"])
    return row


def read_trials(store: StudyStore) -> pd.DataFrame:
    """trials.parquet of a study (empty frame if none yet)."""
    return store.read_table(TRIALS)


def read_tasks(store: StudyStore) -> pd.DataFrame:
    """tasks.parquet of a study (empty frame if none yet)."""
    return store.read_table(TASKS)


def read_boundaries(store: StudyStore) -> pd.DataFrame:
    """boundaries.parquet of a study (empty frame if none yet)."""
    return store.read_table(BOUNDARIES)


def acc_over_tasks(tasks: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per trial and task boundary t: mean accuracy over the tasks learned so far (1..t)."""
    rows = tasks[(tasks["split"] == split) & (tasks["eval_task"] <= tasks["after_task"])]
    curve = rows.groupby(["trial_id", "after_task"])["accuracy"].mean()
    return curve.rename("acc").reset_index()
