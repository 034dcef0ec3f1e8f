"""The MLflow server goes down in the middle of a study: one line, nothing lost, `--resume` finishes.

A real `mlflow server` (started with `anpyc-sweep tracking-server start`, as on a cluster head) is
stopped once the study has recorded its first tasks. The launch must exit 1 with one line that
says how to continue; after the server is back, `launch --resume` finishes and every trial is
recorded exactly once: one run per trial, every task step once, one Parquet row per trial.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from sweeper.storage import results
from sweeper.storage.store import StudyStore

BIN = Path(sys.executable).parent
TASKS = 5
STUDY = {
    "name": "outage",
    "base": {
        "device": "cpu",
        "data": {"benchmark": "digits", "scenario": "permuted", "num_tasks": TASKS},
        "model": {"hidden": [32]},
        "strategy": {"method": "ewc", "importance_batch": 10},
        "optim": {"lr": 0.05, "batch_size": 32, "epochs": 12},
    },
    "search": {"strategy.lam": {"grid": [1.0, 10.0]}},
    "seeds": [0],
    "max_concurrent_trials": 2,
    "max_failures": 0,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server(state: Path, port: int, *verb: str) -> subprocess.CompletedProcess:
    args = ["--state-dir", str(state)]
    if verb[0] == "start":
        args += ["--port", str(port), "--backend-store-uri", f"sqlite:///{state}/mlflow.db"]
        args += ["--artifacts-destination", str(state / "artifacts")]
    return subprocess.run([str(BIN / "anpyc-sweep"), "tracking-server", *verb, *args], capture_output=True, text=True)


@pytest.mark.e2e
def test_tracking_server_lost_mid_study_is_one_line_and_resume_loses_nothing(tmp_path):
    state, port = tmp_path / "server", free_port()
    uri = f"http://127.0.0.1:{port}"
    assert server(state, port, "start").returncode == 0
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({**STUDY, "storage": str(tmp_path / "out"), "tracking_uri": uri}))
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    launch = [str(BIN / "anpyc-sweep"), "launch", str(study), "--address", "local"]
    driver = subprocess.Popen(
        launch, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    tasks = tmp_path / "out" / "outage" / "tasks.parquet"
    store = StudyStore(str(tmp_path / "out" / "outage"))
    try:
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None:
            if len(results.read_tasks(store)):  # a first task is recorded (a fragment)
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the study ended before the server could be stopped"
        assert server(state, port, "stop").returncode == 0
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    lines = err.strip().splitlines()
    assert driver.returncode == 1, err[-3000:]
    assert lines[-1].startswith(f"error: tracking server {uri} stopped answering during the study")
    assert lines[-1].endswith(f"continue with: anpyc-sweep launch {study} --resume")
    assert "Traceback" not in err

    assert server(state, port, "start").returncode == 0
    try:
        resumed = subprocess.run(launch + ["--resume"], env=env, capture_output=True, text=True, timeout=400)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        client = mlflow.tracking.MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id], max_results=100)
        trial_runs = [r for r in runs if r.data.tags.get("anpyc_role") == "trial"]
        assert len(trial_runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
        for run in trial_runs:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
            assert steps == list(range(1, TASKS + 1)), steps
            assert len(client.get_metric_history(run.info.run_id, "final_val_acc")) == 1
    finally:
        server(state, port, "stop")
    trials = pd.read_parquet(tmp_path / "out" / "outage" / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"FINISHED"}
    rows = pd.read_parquet(tasks)
    assert (
        len(rows) == 2 * TASKS * TASKS * 2
        and not rows.duplicated(["trial_id", "after_task", "eval_task", "split"]).any()
    )
