"""Parquet results of a study: `trials.parquet` (one row per trial) and `tasks.parquet` (long form).

Every write is an upsert on the table's key, written to a temp file and renamed into place, so a
crash never leaves a torn file and a replayed event never duplicates a row.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TRIAL_KEY = ["trial_id"]
TASK_KEY = ["trial_id", "after_task", "eval_task", "split"]
BOUNDARY_KEY = ["trial_id", "after_task"]
BOUNDARY_COLUMNS = ("model_params", "state_values", "trunk_in_use", "task_seconds", "train_loss", "penalty")


def upsert(path: Path, rows: list[dict[str, Any]], key: list[str]) -> pd.DataFrame:
    """Insert or replace `rows` (matched on `key`) in the Parquet file at `path`, atomically."""
    new = pd.DataFrame(rows)
    if path.exists():
        old = pd.read_parquet(path)
        merged = pd.concat([old, new], ignore_index=True)
        merged = merged.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
    else:
        merged = new
    merged = merged.sort_values(key, kind="stable").reset_index(drop=True)
    write_atomic(path, merged)
    return merged


def write_atomic(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as Parquet via temp file + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Flatten nested config dicts to `cfg.section.field` columns (lists kept as strings)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = str(value) if isinstance(value, list) else value
    return out


def task_rows(trial_id: str, after_task: int, acc_row: list[float], val_row: list[float]) -> list[dict]:
    """Long-form rows for one task report: one per (evaluated task, split)."""
    rows = []
    for split, row in (("test", acc_row), ("val", val_row)):
        for i, acc in enumerate(row):
            rows.append(
                {
                    "trial_id": trial_id,
                    "after_task": after_task,
                    "eval_task": i + 1,
                    "split": split,
                    "accuracy": float(acc),
                }
            )
    return rows


def boundary_row(trial_id: str, after_task: int, result: dict[str, Any]) -> dict[str, Any]:
    """One row of `boundaries.parquet`: parameter counts, time and loss after a task."""
    row: dict[str, Any] = {"trial_id": trial_id, "after_task": after_task}
    row.update({k: result[k] for k in BOUNDARY_COLUMNS if k in result})
    return row


def read_trials(study_dir: Path) -> pd.DataFrame:
    """trials.parquet of a study (empty frame if none yet)."""
    path = study_dir / "trials.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def read_tasks(study_dir: Path) -> pd.DataFrame:
    """tasks.parquet of a study (empty frame if none yet)."""
    path = study_dir / "tasks.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def acc_over_tasks(tasks: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per trial and task boundary t: mean accuracy over the tasks learned so far (1..t)."""
    rows = tasks[(tasks["split"] == split) & (tasks["eval_task"] <= tasks["after_task"])]
    curve = rows.groupby(["trial_id", "after_task"])["accuracy"].mean()
    return curve.rename("acc").reset_index()
