"""Kill -9 the driver mid-study; `launch --resume` finishes it exactly once (issue: reliability)."""

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pandas as pd
import pytest
import yaml

from sweeper.running.launch import launch, spec_text
from sweeper.running.tune_state import newest_state
from sweeper.storage import results
from sweeper.storage.store import StudyStore
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE

STUDY = {
    "name": "killed",
    "base": {
        "device": "cpu",
        "data": {"benchmark": "digits", "scenario": "permuted", "num_tasks": 8},
        "model": {"hidden": [64, 64]},
        "strategy": {"method": "ewc", "importance_batch": 10},
        "optim": {"lr": 0.05, "batch_size": 16, "epochs": 15},
    },
    "search": {"strategy.lam": {"grid": [0.5, 4.0, 16.0]}},
    "ablations": {"full": {}},
    "seeds": [0, 1],
    "max_concurrent_trials": 2,
}


def cli(*args):
    return [sys.executable, "-m", "sweeper.cli", *args]


def finished_rows(folder):
    """Trials recorded so far (compacted file and fragments, as every reader sees them)."""
    return len(results.read_trials(StudyStore(str(folder))))


def running_past(folder, task):
    """Whether some trial that has not finished has reported `task` or more."""
    store = StudyStore(str(folder))
    tasks = results.read_tasks(store)
    if tasks.empty:
        return False
    done = tasks.groupby("trial_id")["after_task"].max()
    trials = results.read_trials(store)
    finished = set(trials["trial_id"]) if len(trials) else set()
    return any(t not in finished and n >= task for t, n in done.items())


def saved_task(folder):
    """The furthest task an unfinished trial had reported in Tune's newest saved experiment state (0: none).

    Tune asks a trial for its task-k checkpoint as it processes the task-k result and lets the trial go on
    only once that save is processed, so a state that holds a result of task k names a checkpoint of task
    k - 1 or later: this is what a resume restores from, whatever the results tables already show."""
    state = newest_state(StudyStore(str(folder)))
    furthest = 0
    for trial_json, runtime_json in (state or {}).get("trial_data") or []:
        if json.loads(trial_json).get("status") != "TERMINATED":
            furthest = max(furthest, int((json.loads(runtime_json).get("last_result") or {}).get("task", 0)))
    return furthest


@pytest.mark.e2e
def test_killed_driver_resumes_with_exact_counts_and_identical_metrics(tmp_path, ray_session):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({**STUDY, "storage": str(tmp_path / "out")}))
    spec = parse_study({**STUDY, "storage": str(tmp_path / "out")})

    driver = subprocess.Popen(
        cli("launch", str(study_file), "--address", "local"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    # kill once Tune's saved state (not only the results tables, which its snapshot trails by up to a period
    # and more under load) names a checkpoint past task 1 for a trial in flight
    while (
        not (running_past(spec.study_dir, 4) and saved_task(spec.study_dir) >= 3)
        and time.time() < deadline
        and driver.poll() is None
    ):
        time.sleep(0.3)
    assert driver.poll() is None, "the study finished before it could be killed"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    driver.wait()
    killed_at = finished_rows(spec.study_dir)
    assert killed_at < 6

    resumed = subprocess.run(
        cli("launch", str(study_file), "--resume", "--address", "local"), capture_output=True, text=True, timeout=400
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    trials = pd.read_parquet(spec.study_dir / "trials.parquet")
    assert len(trials) == 6 and trials["trial_id"].is_unique and set(trials["status"]) == {"FINISHED"}
    tasks = pd.read_parquet(spec.study_dir / "tasks.parquet")
    assert len(tasks) == 6 * 8 * 8 * 2
    assert not tasks.duplicated(["trial_id", "after_task", "eval_task", "split"]).any()
    for table in results.TABLES:  # the launch ended by compacting: the files above are every row, once
        assert StudyStore(str(spec.study_dir)).list_files(table.name) == [], table.name
    client = mlflow.tracking.MlflowClient(spec.resolved_tracking_uri())
    exp = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trial_runs = [r for r in runs if r.data.tags.get(TAG_ROLE) == "trial"]
    assert len(trial_runs) == 6 and len(runs) == 7
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in trial_runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, 9))

    resumed = sorted(int(r.data.tags.get("resumed_from_task", 0)) for r in trial_runs)
    assert any(r >= 2 for r in resumed), resumed  # in-flight trials continued from a task checkpoint
    print(
        f"\nFIGURES killed-driver: trials=6 finished_before_kill={killed_at} resumed_from_task={resumed} "
        f"parquet_rows={len(trials)} mlflow_runs={len(runs)} duplicate_task_rows=0"
    )
    # the same study, uninterrupted, gives identical final metrics (CPU, same seeds)
    reference = parse_study({**STUDY, "storage": str(tmp_path / "reference")})
    launch(reference, spec_text(reference))
    ref = pd.read_parquet(reference.study_dir / "trials.parquet")
    key = ["seed", "cfg.strategy.lam"]
    merged = trials.merge(ref, on=key, suffixes=("", "_ref"))
    assert len(merged) == 6
    for metric in ("test_acc", "val_acc", "test_bwt", "val_forgetting"):
        assert (merged[metric] == merged[f"{metric}_ref"]).all(), metric
