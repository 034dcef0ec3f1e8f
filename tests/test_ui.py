"""`anpyc-sweep ui`: the study's MLflow UI and Optuna dashboard on 127.0.0.1, stopped cleanly by Ctrl-C;
artifact locations survive moving the study folder (issue 14, item 5)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml

from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE, TAG_STUDY, study_experiment, tracking_client

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_study(tmp_path, storage, **extra):
    raw = {"name": "seen", "storage": str(storage), **extra}
    path = tmp_path / "seen.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = parse_study(raw)
    client = tracking_client(spec.resolved_tracking_uri())
    exp = study_experiment(client, spec)
    run = client.create_run(exp, tags={TAG_STUDY: spec.name, TAG_ROLE: "trial"})
    client.log_text(run.info.run_id, '{"seed": 0}', "run_config.json")
    client.set_terminated(run.info.run_id)
    return path, spec, exp, run.info.run_id


def start_ui(*args) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(BIN / "anpyc-sweep"), "ui", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    assert proc.poll() is None, proc.stderr.read()
    return proc, line.strip()


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.read()


def stop_with_ctrl_c(proc: subprocess.Popen, port: int) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert proc.stdout.read().strip() == "stopped"
    with pytest.raises(ConnectionRefusedError):  # the server's whole process group is gone
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.e2e
def test_mlflow_ui_serves_the_study_and_stops_on_ctrl_c(tmp_path):
    path, spec, exp, _ = make_study(tmp_path, tmp_path / "out")
    port = free_port()
    proc, line = start_ui(str(path), "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}/#/experiments/{exp}/runs?viewStateShareKey=trials"
        assert line == f"MLflow UI (trial runs) of study seen: {url}  (Ctrl-C to stop)"
        status, body = get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=seen")
        experiment = json.loads(body)["experiment"]
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        assert status == 200 and tags["mlflow.experimentKind"] == "custom_model_development"  # the classic runs view
        view = json.loads(tags["mlflow.sharedViewState.trials"])  # the view the URL opens
        assert view["searchFilter"] == "tags.anpyc_role = 'trial'" and view["orderByKey"] == "metrics.`final_val_acc`"
        assert view["selectedColumns"][:2] == ["metrics.`final_val_acc`", "metrics.`final_test_acc`"]
    finally:
        stop_with_ctrl_c(proc, port)


@pytest.mark.e2e
def test_optuna_dashboard_serves_the_studys_optuna_storage(tmp_path):
    search = {"strategy.lam": {"loguniform": [0.1, 10.0]}}
    path, spec, _, _ = make_study(tmp_path, tmp_path / "out", searcher="optuna", search=search)
    study = optuna.create_study(study_name="seen", storage=f"sqlite:///{spec.study_dir / 'optuna.db'}")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    port = free_port()
    proc, line = start_ui(str(path), "--optuna", "--port", str(port))
    try:
        assert line == f"Optuna dashboard of study seen: http://127.0.0.1:{port}  (Ctrl-C to stop)"
        _, body = get(f"http://127.0.0.1:{port}/api/studies")
        assert [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["seen"]
    finally:
        stop_with_ctrl_c(proc, port)


def test_ui_refuses_in_one_line(tmp_path):
    path, _, _, _ = make_study(tmp_path, tmp_path / "out")
    proc = subprocess.run([str(BIN / "anpyc-sweep"), "ui", str(path), "--optuna"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: study seen: --optuna needs an Optuna study (this one is searcher: grid)"


def test_artifacts_survive_moving_the_study_folder(tmp_path):
    _, spec, _, run_id = make_study(tmp_path, tmp_path / "before")
    shutil.move(tmp_path / "before", tmp_path / "after")
    moved = parse_study({"name": "seen", "storage": str(tmp_path / "after")})
    client = tracking_client(moved.resolved_tracking_uri())
    local = client.download_artifacts(run_id, "run_config.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == {"seed": 0}
    assert client.get_run(run_id).info.artifact_uri.startswith((moved.study_dir / "mlartifacts").as_uri())
