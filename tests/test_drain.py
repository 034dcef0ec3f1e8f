"""SIGUSR1 stops a study at its trials' task boundaries (sweeper/running/drain.py), on a real local Ray:
no trial starts after the signal, each running trial finishes the task it is in and is paused there, and
`--resume` continues every paused trial from that boundary (no task redone) to an exactly-once study."""

import os
import signal
import threading
import time

import mlflow
import pandas as pd
from ray.tune import ExperimentAnalysis

from sweeper.running.drain import DRAIN, goes_on, last_launch_drained
from sweeper.running.launch import launch, spec_text, unfinished_trials
from sweeper.running.tune_state import saved_trial_statuses
from sweeper.storage import results
from sweeper.study.spec import parse_study
from sweeper.tracking.mlflow_store import TAG_ROLE, TAG_TRIAL

TASKS = 3
TRIALS = 4


def tasks_done(spec) -> dict[str, int]:
    """Tasks recorded per trial so far (the boundary fragments the study writes as it goes)."""
    try:
        frame = results.read_boundaries(spec.store)
    except Exception:  # noqa: BLE001 - nothing written yet
        return {}
    return frame.groupby("trial_id")["after_task"].nunique().to_dict() if len(frame) else {}


def test_goes_on_reads_the_last_report_of_a_trial_and_of_a_pack():
    assert goes_on({"task": 1, "num_tasks": 3}) and not goes_on({"task": 3, "num_tasks": 3})
    assert not goes_on({"task": 1, "num_tasks": 3, "diverged": "TrainingDiverged: nan"})
    ended = '[{"task": 1, "diverged": "x"}, {"task": 2, "stopped": "asha"}]'
    assert not goes_on({"task": 2, "num_tasks": 3, "members": ended})
    assert goes_on({"task": 2, "num_tasks": 3, "members": '[{"task": 2}, {"task": 1, "stopped": "asha"}]'})


def test_sigusr1_stops_at_task_boundaries_and_resume_redoes_no_task(ray_session, tmp_path):
    spec = parse_study(
        {
            "name": "tiny_drain",
            "base": {
                "device": "cpu",
                "data": {"benchmark": "digits", "scenario": "split", "num_tasks": TASKS},
                "model": {"hidden": [32]},
                "strategy": {"method": "finetune"},
                "optim": {"lr": 0.05, "batch_size": 32, "epochs": 60},  # a task lasts about a second
            },
            "seeds": list(range(TRIALS)),
            "storage": str(tmp_path),
            "max_concurrent_trials": 2,
            "resources": {"cpu": 1},
        }
    )
    at_signal: dict[str, int] = {}

    def signal_after_the_first_task() -> None:
        deadline = time.time() + 300
        while not tasks_done(spec) and time.time() < deadline:
            time.sleep(0.05)
        at_signal.update(tasks_done(spec))
        os.kill(os.getpid(), signal.SIGUSR1)  # what the Slurm script forwards at the time limit

    DRAIN.clear()
    sender = threading.Thread(target=signal_after_the_first_task, daemon=True)
    sender.start()
    grid = launch(spec, spec_text(spec))
    sender.join(timeout=10)
    assert at_signal, "no task was recorded before the deadline"
    assert last_launch_drained() and not DRAIN.is_set()  # consumed: a next launch starts undrained
    assert unfinished_trials(spec, grid) > 0

    after = tasks_done(spec)
    statuses = {t.trial_id: t.status for t in ExperimentAnalysis(str(tmp_path / "tiny_drain" / "tune")).trials}
    assert "RUNNING" not in statuses.values() and "PAUSED" in statuses.values(), statuses
    # unfinished_trials reads the statuses from the saved state itself, as Tune's analysis does (which a
    # RUNNING trial restores as PENDING)
    saved = [{"RUNNING": "PENDING"}.get(s, s) for s in saved_trial_statuses(spec.store)]
    assert sorted(saved) == sorted(statuses.values())
    # Tune's per-trial log files are off (MLflow and Parquet hold every metric)
    tune_dir = tmp_path / "tiny_drain" / "tune"
    assert not [p for p in tune_dir.rglob("*") if p.name in ("result.json", "progress.csv")
                or p.name.startswith("events.out.tfevents")]
    # no trial started after the signal got anywhere: only those running then (at most 2) went on
    went_on = {tid for tid, n in after.items() if n > at_signal.get(tid, 0)}
    assert 1 <= len(went_on) <= spec.max_concurrent_trials, (at_signal, after)
    paused = {tid: after.get(tid, 0) for tid, status in statuses.items() if status == "PAUSED"}
    # each paused trial that had begun finished the task it was in (a stop at once, as Ctrl-C, would leave
    # it at its count at the signal)
    for tid, done in paused.items():
        assert done == 0 or done >= at_signal.get(tid, 0) + 1, (tid, at_signal, after)

    resumed = launch(spec, spec_text(spec), resume=True)
    assert unfinished_trials(spec, resumed) == 0
    bounds = results.read_boundaries(spec.store)
    assert len(bounds) == TRIALS * TASKS and not bounds.duplicated(["trial_id", "after_task"]).any()
    trials = pd.read_parquet(spec.study_dir / "trials.parquet")
    assert len(trials) == TRIALS and set(trials["status"]) == {"FINISHED"}
    # every paused trial continued from its boundary: it redid no task
    client = mlflow.tracking.MlflowClient(spec.resolved_tracking_uri())
    exp = client.get_experiment_by_name(spec.name)
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get(TAG_ROLE) == "trial"]
    resumed_from = {r.data.tags[TAG_TRIAL]: int(r.data.tags.get("resumed_from_task", 0)) for r in runs}
    for tid, done in paused.items():
        assert resumed_from[tid] == done, (tid, paused, resumed_from)
