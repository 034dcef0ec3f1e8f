"""What a trial of a study is, as every floor sees it: its run config from its Tune config, the key its joint
reference is shared by, and the names of the files it leaves. Imports the study spec only."""

from __future__ import annotations

import json

HISTORY_FILE = "history.json"  # every finished task's record, so a lost report can be recorded later
HEATMAP_FILE = "acc_matrix.png"  # the final accuracy matrices, drawn on the worker, not on the driver
SNAPSHOT_PREFIX = "snapshot_task_"
OPTUNA_DB = "optuna.db"  # a study's Optuna storage, in its study folder
STUDY_FILE = "study.yaml"  # the study as launched, in its shared folder (a resume must match it)


def snapshot_name(task: int) -> str:
    """File name of the snapshot after `task` tasks (sorts by task)."""
    return f"{SNAPSHOT_PREFIX}{task:03d}.pt"


def trial_run_config(spec_dict: dict, config: dict) -> dict:
    """The run config of the trial whose Tune config is `config` (ablation, seed, point)."""
    from sweeper.study.spec import StudySpec

    spec = StudySpec.model_validate(spec_dict)
    point = {k: v for k, v in config.get("point", {}).items()}
    return spec.run_config(config["ablation"], int(config["seed"]), point)


def joint_key(run_cfg: dict) -> str:
    """Joint references are shared by every trial with the same data, model and seed."""
    keep = {"data": run_cfg["data"], "model": run_cfg["model"], "seed": run_cfg["seed"]}
    return json.dumps(keep, sort_keys=True)
