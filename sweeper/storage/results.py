"""Parquet results of a study: `trials` (one row per trial), `tasks` (long form) and `boundaries`
(one row per task boundary), in the study's storage (`sweeper.storage.store`).

Each event (a task report, its boundary row, a trial's final row) is one fragment file named by its
key (`sweeper.storage.fragments`): a write never reads a table, a replayed event rewrites its own file, and
`compact` folds the fragments into `trials.parquet`, `tasks.parquet` and `boundaries.parquet`.

May import: `sweeper.storage.fragments`, `sweeper.storage.store`, pandas.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from sweeper.storage import fragments
from sweeper.storage.fragments import Compaction, Table
from sweeper.storage.store import StudyStore

TRIAL_KEY = ("trial_id",)
TASK_KEY = ("trial_id", "after_task", "eval_task", "split")
BOUNDARY_KEY = ("trial_id", "after_task")


def _per_task(row: dict[str, Any]) -> str:
    return f"{row['trial_id']}/task_{int(row['after_task']):04d}"


TRIALS_TABLE = Table("trials", TRIAL_KEY, lambda row: str(row["trial_id"]))
TASKS_TABLE = Table("tasks", TASK_KEY, _per_task)
BOUNDARIES_TABLE = Table("boundaries", BOUNDARY_KEY, _per_task)
TABLES = (TRIALS_TABLE, TASKS_TABLE, BOUNDARIES_TABLE)
#: the compacted files (the whole tables after `compact`; the only files of studies from before fragments)
TRIALS, TASKS, BOUNDARIES = (t.compacted for t in TABLES)
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


def write_trial(store: StudyStore, row: dict[str, Any]) -> None:
    """A trial's final row (its own fragment; a replay rewrites it)."""
    fragments.append(store, TRIALS_TABLE, [row])


def write_task(store: StudyStore, rows: list[dict[str, Any]], boundary: dict[str, Any]) -> None:
    """One task report: its long-form accuracy rows and its boundary row (a fragment each)."""
    fragments.append(store, TASKS_TABLE, rows)
    fragments.append(store, BOUNDARIES_TABLE, [boundary])


def read_trials(store: StudyStore) -> pd.DataFrame:
    """The trials table of a study (empty frame if none yet); torn fragments are reported and skipped."""
    return fragments.read(store, TRIALS_TABLE)[0]


def read_tasks(store: StudyStore) -> pd.DataFrame:
    """The tasks table of a study (empty frame if none yet)."""
    return fragments.read(store, TASKS_TABLE)[0]


def read_boundaries(store: StudyStore) -> pd.DataFrame:
    """The boundaries table of a study (empty frame if none yet)."""
    return fragments.read(store, BOUNDARIES_TABLE)[0]


def compact(store: StudyStore) -> list[Compaction]:
    """Fold every table's fragments into its compacted file (the caller holds the study's launch lock)."""
    return [fragments.compact(store, table) for table in TABLES]


def acc_over_tasks(tasks: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per trial and task boundary t: mean accuracy over the tasks learned so far (1..t)."""
    rows = tasks[(tasks["split"] == split) & (tasks["eval_task"] <= tasks["after_task"])]
    curve = rows.groupby(["trial_id", "after_task"])["accuracy"].mean()
    return curve.rename("acc").reset_index()
