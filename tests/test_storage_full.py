"""A storage that fills up mid-study (issue 23, bad input): one line naming the file, exit 1, and
`launch --resume` (once there is room again) finishes the study with every trial and task exactly once.

The storage is a real filesystem that really fills: a 16 MiB tmpfs, topped up with a ballast file while
the study runs. Mounting needs root (as CI runs); elsewhere the test is skipped, saying why."""

import subprocess
import sys
import time

import mlflow
import pytest
import yaml

from sweeper.running.tune_state import GOOD_DIR
from sweeper.storage import results
from sweeper.storage.store import StudyStore
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE

TASKS = 8
STUDY = {
    "name": "full",
    "base": {
        "device": "cpu",
        "data": {"benchmark": "digits", "scenario": "permuted", "num_tasks": TASKS},
        "model": {"hidden": [32]},
        "strategy": {"method": "ewc"},
        "optim": {"epochs": 15, "batch_size": 16},
    },
    "search": {"strategy.lam": {"grid": [0.5, 4.0, 16.0]}},
    "seeds": [0, 1],
    "max_concurrent_trials": 2,
}


@pytest.fixture
def small_volume(tmp_path):
    """A 16 MiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(volume)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield volume
    subprocess.run(["umount", "-l", str(volume)], check=True)


def task_fragments(folder) -> int:
    return sum(1 for _ in (folder / "tasks").glob("*/*.parquet"))


@pytest.mark.e2e
def test_a_storage_that_fills_up_stops_the_study_in_one_line_and_resume_loses_nothing(tmp_path, small_volume):
    raw = {**STUDY, "storage": str(small_volume)}
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    spec = parse_study(raw)
    folder = spec.study_dir
    launch = [sys.executable, "-m", "sweeper.cli", "launch", str(study_file), "--address", "local"]

    driver = subprocess.Popen(launch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:
        if task_fragments(folder) >= 3 and (folder / GOOD_DIR).is_dir():
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the study ended before the storage could fill up"
    ballast = small_volume / "ballast"
    subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", "bs=64k"], capture_output=True)  # fills it: dd fails
    out, err = driver.communicate(timeout=300)

    assert driver.returncode == 1, err[-3000:]
    said = [ln for ln in err.strip().splitlines() if not ln.startswith(("study full:", "full:"))]
    assert len(said) == 1, said  # besides the progress line: one line, no traceback
    line = said[0].lower()
    assert line.startswith(f"error: {small_volume}/full/".lower()), line  # names the file that could not be written
    assert "no space left on device" in line or "disk is full" in line, line
    assert line.endswith(f"anpyc-sweep launch {str(study_file).lower()} --resume"), line

    ballast.unlink()  # the storage is fixed
    resumed = subprocess.run([*launch, "--resume"], capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    store = StudyStore(spec.tune_storage)
    trials, tasks, bounds = results.read_trials(store), results.read_tasks(store), results.read_boundaries(store)
    assert sorted(trials["status"]) == ["FINISHED"] * 6 and trials["trial_id"].is_unique
    key = ["trial_id", "after_task", "eval_task", "split"]
    assert not tasks.duplicated(key).any()
    assert len(tasks) == 6 * TASKS * TASKS * 2  # every trial, after every task, on every task, val and test
    assert not bounds.duplicated(["trial_id", "after_task"]).any() and len(bounds) == 6 * TASKS
    assert set(tasks["trial_id"]) == set(trials["trial_id"]) == set(bounds["trial_id"])

    mlflow.set_tracking_uri(spec.resolved_tracking_uri())
    runs = mlflow.search_runs(experiment_names=[spec.name], filter_string=f"tags.{TAG_ROLE} = 'trial'")
    assert len(runs) == 6 and sorted(runs["status"]) == ["FINISHED"] * 6
    histories = [mlflow.MlflowClient().get_metric_history(r, "val_acc") for r in runs["run_id"]]
    assert all(sorted(m.step for m in h) == list(range(1, TASKS + 1)) for h in histories)  # each task logged once
