"""A recorded trial keeps only its objectives and outcome in Tune's memory (issue 23: driver RSS per trial)."""

from __future__ import annotations

import json

from ray.train._internal.session import _TrainingResult
from ray.tune import Checkpoint
from ray.tune.experiment import Trial

from sweeper.running.result_slim import SlimRecorded, slim_result


def finished_trial(result: dict) -> Trial:
    """A Tune trial (stub: no trainable registered) whose last result is `result`."""
    trial = Trial("anything", stub=True, config={"ablation": "full"})
    trial.update_last_result(result)
    return trial


def full_result() -> dict:
    """A trial's last result as our trainable reports it: many numbers and several JSON strings."""
    return {
        "trial_id": "t1",
        "config": {"ablation": "full", "seed": 0},
        "task": 3,
        "num_tasks": 3,
        "training_iteration": 3,
        "done": True,
        "val_acc": 91.5,
        "test_acc": 90.0,
        "test_bwt": -3.2,
        "penalty": 0.4,
        "task_seconds": 1.3,
        "time_total_s": 4.0,
        "history": json.dumps([{"task": k, "acc_row": [90.0] * k} for k in range(1, 4)]),
        "acc_matrix": json.dumps([[90.0] * 3] * 3),
        "run_config": json.dumps({"model": {"hidden": [16]}}),
    }


def test_recorded_trial_keeps_objectives_and_outcome_only(tmp_path):
    trial = finished_trial(full_result())
    manager = trial.run_metadata.checkpoint_manager
    for task in (1, 2, 3):  # Tune keeps the full result of every task checkpoint the trial reported
        folder = tmp_path / f"checkpoint_{task}"
        folder.mkdir()
        manager.register_checkpoint(_TrainingResult(Checkpoint.from_directory(str(folder)), full_result()))
    assert {"test_bwt", "penalty", "history"} <= set(trial.last_result)
    assert "test_bwt" in trial.run_metadata.metric_analysis  # Tune tracks every numeric field
    before = trial.run_metadata.get_json_state()

    SlimRecorded(["val_acc"]).on_trial_complete(0, [trial], trial)

    assert trial.last_result == {  # "config": what a ResultGrid's Result.config reads
        "trial_id": "t1", "config": {"ablation": "full", "seed": 0}, "task": 3, "num_tasks": 3,
        "training_iteration": 3, "done": True, "val_acc": 91.5,
    }
    assert set(trial.run_metadata.metric_analysis) == {"task", "num_tasks", "training_iteration", "done", "val_acc"}
    assert trial.run_metadata.metric_analysis["val_acc"]["last"] == 91.5  # the statistics kept are Tune's own
    assert len(manager.best_checkpoint_results) == 3  # every checkpoint stays, with a slim result beside it
    assert all(saved.metrics == trial.last_result for saved in manager.best_checkpoint_results)
    assert manager.latest_checkpoint_result.metrics == trial.last_result
    after = trial.run_metadata.get_json_state()  # the cached JSON was rebuilt, not the stale one
    for gone in ("test_bwt", "penalty", "history", "acc_matrix", "run_config"):
        assert gone in before and gone not in after, gone
    assert len(after) < len(before)


def test_pack_members_keep_their_own_outcome():
    parts = [
        {**full_result(), "trial_id": "p_m0"},
        {"task": 2, "diverged": "TrainingDiverged: task 2 epoch 1: loss nan"},
        {"task": 1, "stopped": "asha rung 1"},
    ]
    slim = slim_result({"task": 3, "pack_size": 3, "val_acc": 91.5, "members": json.dumps(parts)}, ["val_acc"])
    members = json.loads(slim["members"])
    assert members[0] == {"trial_id": "p_m0", "config": {"ablation": "full", "seed": 0}, "task": 3, "num_tasks": 3,
                          "training_iteration": 3, "done": True, "val_acc": 91.5}
    assert members[1] == parts[1] and members[2] == parts[2]  # diverged and stopped stay as they were
    assert slim["pack_size"] == 3 and slim["val_acc"] == 91.5


def test_trial_without_a_result_is_left_alone():
    trial = Trial("anything", stub=True, config={})
    SlimRecorded(["val_acc"]).on_trial_complete(0, [trial], trial)
    assert trial.run_metadata.last_result == {}
