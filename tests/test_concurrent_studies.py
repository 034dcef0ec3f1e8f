"""Two studies writing to the same storage folder and tracking store at once both complete."""

import subprocess
import sys

import mlflow
import pandas as pd
import pytest
import yaml

from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE

BASE = {
    "device": "cpu",
    "data": {"benchmark": "digits", "scenario": "split", "num_tasks": 2},
    "model": {"hidden": [16]},
    "strategy": {"method": "ewc", "importance_batch": 10},
    "optim": {"lr": 0.05, "batch_size": 32, "epochs": 2},
}


@pytest.mark.e2e
def test_two_concurrent_studies_share_storage_and_tracking(tmp_path):
    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    specs, procs = [], []
    for name in ("alpha", "beta"):
        raw = {
            "name": name,
            "base": BASE,
            "search": {"strategy.lam": {"grid": [1.0, 10.0]}},
            "seeds": [0, 1],
            "storage": str(tmp_path / "studies"),
            "tracking_uri": uri,
            "max_concurrent_trials": 1,
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        specs.append(parse_study(raw))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sweeper.cli", "launch", str(path), "--address", "local"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-2000:]
    client = mlflow.tracking.MlflowClient(uri)
    for spec in specs:
        trials = pd.read_parquet(spec.study_dir / "trials.parquet")
        assert len(trials) == 4 and set(trials["status"]) == {"FINISHED"} and trials["trial_id"].is_unique
        tasks = pd.read_parquet(spec.study_dir / "tasks.parquet")
        assert len(tasks) == 4 * 2 * 2 * 2
        exp = client.get_experiment_by_name(spec.name)
        runs = client.search_runs([exp.experiment_id], max_results=100)
        assert len([r for r in runs if r.data.tags.get(TAG_ROLE) == "trial"]) == 4 and len(runs) == 5
        assert {r.info.status for r in runs} == {"FINISHED"}
