"""`storage: s3://BUCKET/studies` end to end, through the CLI as a user runs it.

An S3-compatible server (moto_server) and a real MLflow tracking server (artifacts proxied into the
same bucket) listen on loopback. The study is launched, killed mid-way (kill -9 of the driver and the
Ray it started), resumed on a "fresh head" (an empty HOME), then queried and rerun from "another
machine" (another empty HOME) given only --storage and --tracking-uri.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent  # the virtualenv's bin: moto_server, mlflow, anpyc-sweep
BUCKET = "anpyc-e2e"
NAME = "s3_e2e"
PREFIX = f"studies/{NAME}/"
NUM_TASKS = 5  # five task checkpoints per trial, of which `checkpoints: latest` keeps two
STUDY = {
    "name": NAME,
    "base": {
        "device": "cpu",
        "data": {"benchmark": "digits", "scenario": "split", "num_tasks": NUM_TASKS},
        "model": {"hidden": [16]},
        "strategy": {"method": "anpyc", "beta": 20, "importance_batch": 1},
        # enough epochs that a task takes most of a second: a wide window to kill the driver mid-trial
        "optim": {"lr": 0.05, "batch_size": 32, "epochs": 100},
    },
    "search": {"strategy.lam": {"grid": [0.5, 8.0]}},
    "seeds": [0],
    "max_concurrent_trials": 2,
    "resources": {"cpu": 1},
    "snapshots": "ends",
}


# ----------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll `check()` until it is true; fail with the server's log if it dies or times out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.3)
    pytest.fail(f"{what} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """Stop a process started with start_new_session=True and everything it spawned."""
    family = [proc.pid, *descendants(proc.pid)]
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    kill_leftovers(pid for pid in family if pid != proc.pid)


def kill_leftovers(pids) -> None:
    """SIGKILL those of `pids` still alive (a process that left its group, e.g. with setsid)."""
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def keys(s3, prefix: str = "") -> list[str]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out += [obj["Key"] for obj in page.get("Contents", [])]
    return out


def trials_recorded(s3) -> int:
    """Trials the study has recorded so far: its compacted trials.parquet and its trial fragments."""
    compacted = table(s3, "trials.parquet")
    ids = set() if compacted is None else set(compacted["trial_id"])
    ids |= {key.rsplit("/", 1)[-1].removesuffix(".parquet") for key in keys(s3, PREFIX + "trials/")}
    return len(ids)


def table(s3, name: str) -> pd.DataFrame | None:
    """A Parquet table of the study, read straight from the bucket (None if not written yet)."""
    try:
        body = s3.get_object(Bucket=BUCKET, Key=PREFIX + name)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return pq.read_table(io.BytesIO(body)).to_pandas()


def checkpoint_known(s3) -> bool:
    """Whether Tune's experiment state in the bucket has a trial checkpoint that a restore would use.

    A trial's `last_result` may name its checkpoint a snapshot before its checkpoint manager registers
    it (and a restore goes by the manager): look for the name inside the manager, which Tune stores as
    a hex-encoded pickle."""
    for key in keys(s3, PREFIX + "tune/experiment_state-"):
        if b"checkpoint_0".hex() in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode():
            return True
    return False


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto_server on a free loopback port, a bucket, and the AWS_* variables in this process's env
    (inherited by every server and CLI run started below, and so by the Ray workers they start)."""
    import boto3

    folder = tmp_path_factory.mktemp("moto")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        # loopback only: no usage reports from Ray or MLflow
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    log = folder / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        client = boto3.client("s3")
        wait_for(lambda: urllib.request.urlopen(endpoint, timeout=2).status == 200, 30, "moto_server", proc, log)
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        stop_group(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def mlflow_server(s3, tmp_path_factory):
    """A real MLflow tracking server: runs in SQLite, artifacts proxied to s3://BUCKET/mlflow-artifacts."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = folder / "mlflow.log"
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        f"s3://{BUCKET}/mlflow-artifacts",
    ]
    # no job runner: it forks seven huey consumers, too much for a 2-core machine
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        health = f"{uri}/health"
        wait_for(lambda: urllib.request.urlopen(health, timeout=2).read() == b"OK", 60, "mlflow server", proc, log)
        yield SimpleNamespace(uri=uri, folder=folder)
    finally:
        stop_group(proc)


class Cli:
    """`anpyc-sweep` as a user on some machine runs it: its own empty HOME (and working folder)."""

    def __init__(self, home: Path, storage: str, tracking_uri: str | None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.where = ["--storage", storage] + (["--tracking-uri", tracking_uri] if tracking_uri else [])

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "PYTHONUNBUFFERED": "1"}

    def args(self, *args: str, where: bool = True) -> list[str]:
        return [str(BIN / "anpyc-sweep"), *args, *(self.where if where else [])]

    def run(self, *args: str, where: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.args(*args, where=where),
            cwd=self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    """The study YAML, in a folder that also holds every HOME of this module's CLI runs."""
    path = tmp_path_factory.mktemp("s3-study") / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def study(s3, mlflow_server, study_file):
    """Launch on head A, kill it mid-trial, resume on head B (both with empty HOMEs)."""
    base = study_file.parent
    storage = f"s3://{BUCKET}/studies"
    mlflow_uri = mlflow_server.uri
    head_a = Cli(base / "head-a", storage, mlflow_uri)
    with open(base / "launch-a.log", "w") as out:
        driver = subprocess.Popen(
            head_a.args("launch", str(study_file), "--address", "local"),
            cwd=head_a.home,
            env=head_a.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    family: list[int] = []
    try:
        deadline = time.time() + 150
        while driver.poll() is None and time.time() < deadline:
            if checkpoint_known(s3):  # a resume can start from a task checkpoint: kill the head now
                family = [driver.pid, *descendants(driver.pid)]
                os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray instance it started
                break
            time.sleep(0.2)
        if family:
            driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
        kill_leftovers(family)  # a Ray process that left the driver's group
    log_a = (base / "launch-a.log").read_text()
    assert family and driver.returncode == -signal.SIGKILL, (
        f"the first launch ended (rc {driver.returncode}) before it was killed:\n{log_a[-3000:]}"
    )
    finished_at_kill = trials_recorded(s3)
    assert finished_at_kill < 2, "both trials finished before the kill: nothing left to resume"

    head_b = Cli(base / "head-b", storage, mlflow_uri)
    resumed = head_b.run("launch", str(study_file), "--resume", "--address", "local", timeout=240)
    (base / "launch-b.log").write_text(resumed.stdout + resumed.stderr)  # for a failing test's reader
    return {
        "base": base,
        "file": study_file,
        "storage": storage,
        "uri": mlflow_uri,
        "server_folder": mlflow_server.folder,
        "resumed": resumed,
        "finished_at_kill": finished_at_kill,
    }


def mlflow_runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(NAME)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return client, runs


def trial_runs(runs):
    return [r for r in runs if r.data.tags.get("anpyc_role") == "trial"]


def one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    err = result.stderr.strip()
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], err[-2000:])
    assert "Traceback" not in result.stderr and len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err, err
    return err


# ----------------------------------------------------------------------------- tests
def test_killed_launch_resumes_on_a_fresh_head_exactly_once(study, s3):
    resumed = study["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"study {NAME} done: results in {study['storage']}/{NAME}" in resumed.stdout
    assert "View run" not in resumed.stdout + resumed.stderr  # MLflow's per-run URL lines stay off the console

    trials = table(s3, "trials.parquet")
    assert len(trials) == 2 and trials["trial_id"].is_unique and set(trials["status"]) == {"FINISHED"}
    assert sorted(trials["cfg.strategy.lam"].astype(float)) == [0.5, 8.0]
    tasks = table(s3, "tasks.parquet")
    assert len(tasks) == 2 * NUM_TASKS * NUM_TASKS * 2  # trials x after_task x eval_task x split
    assert not tasks.duplicated(["trial_id", "after_task", "eval_task", "split"]).any()
    bounds = table(s3, "boundaries.parquet")
    assert len(bounds) == 2 * NUM_TASKS and not bounds.duplicated(["trial_id", "after_task"]).any()

    client, runs = mlflow_runs(study["uri"])
    trial = trial_runs(runs)
    parents = [r for r in runs if r.data.tags.get("anpyc_role") == "parent"]
    assert len(parents) == 1 and len(trial) == 2 and len(runs) == 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.info.run_id for r in trial} == set(trials["mlflow_run_id"])
    for run in trial:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, NUM_TASKS + 1)), steps
    # the head was killed once a checkpoint was recorded: trials continued from checkpoints in the bucket
    resumed_from = sorted(int(r.data.tags.get("resumed_from_task", 0)) for r in trial)
    assert max(resumed_from) >= 1, resumed_from
    print(
        f"\nkilled with {study['finished_at_kill']} of 2 trials finished; resumed_from_task={resumed_from}; "
        f"task seconds {bounds['task_seconds'].round(2).tolist()}"
    )


def test_bucket_holds_the_study_tune_experiment_and_mlflow_artifacts(study, s3):
    assert study["resumed"].returncode == 0
    found = keys(s3, PREFIX)
    for name in ("study.yaml", "trials.parquet", "tasks.parquet", "boundaries.parquet"):
        assert PREFIX + name in found, name
    assert yaml.safe_load(s3.get_object(Bucket=BUCKET, Key=PREFIX + "study.yaml")["Body"].read())["name"] == NAME
    assert not [k for k in found if "/.probe-" in k]  # the writability probe cleaned up after itself

    tune = [k.removeprefix(PREFIX + "tune/") for k in found if k.startswith(PREFIX + "tune/")]
    assert any(k.startswith("experiment_state-") for k in tune) and "tuner.pkl" in tune
    # trial dir -> checkpoint folder -> files: each trial made NUM_TASKS checkpoints and kept the last two
    checkpoints: dict[str, dict[str, set[str]]] = {}
    for key in tune:
        match = re.match(r"([^/]+)/(checkpoint_\d+)/(.+)$", key)
        if match:
            checkpoints.setdefault(match[1], {}).setdefault(match[2], set()).add(match[3])
    assert len(checkpoints) == 2, tune
    for trial_dir, kept in checkpoints.items():
        assert 1 <= len(kept) <= 2, (trial_dir, sorted(kept))
        assert all("state.pt" in files for files in kept.values()), (trial_dir, kept)  # none half-deleted

    art = keys(s3, "mlflow-artifacts/")
    client, runs = mlflow_runs(study["uri"])
    for run in trial_runs(runs):
        mine = {k.split(f"/{run.info.run_id}/artifacts/", 1)[1] for k in art if f"/{run.info.run_id}/artifacts/" in k}
        expected = {"run_config.json", "acc_matrix.json", "snapshots/snapshot_task_001.pt"}
        assert expected | {f"snapshots/snapshot_task_{NUM_TASKS:03d}.pt"} <= mine, mine
        # and MLflow reads them back through the server
        listed = {a.path for a in client.list_artifacts(run.info.run_id, "snapshots")}
        assert "snapshots/snapshot_task_001.pt" in listed


def test_another_machine_reads_status_best_report_and_reruns(study):
    assert study["resumed"].returncode == 0
    other = Cli(study["base"] / "other-machine", study["storage"], study["uri"])
    file = str(study["file"])

    status = other.run("status", file)
    assert status.returncode == 0, status.stderr[-2000:]
    counts = json.loads(status.stdout)
    assert counts["storage"] == f"{study['storage']}/{NAME}" and counts["expected_trials"] == 2
    assert counts["parquet"] == {"FINISHED": 2} and counts["mlflow"] == {"FINISHED": 2}

    best = other.run("best", file, "--json")
    assert best.returncode == 0, best.stderr[-2000:]
    rows = json.loads(best.stdout)
    assert len(rows) == 2 and rows[0]["val_acc"] >= rows[1]["val_acc"]
    assert sorted(r["params"]["strategy.lam"] for r in rows) == [0.5, 8.0]  # numbers stay numbers

    report = other.run("report", file)
    assert report.returncode == 0, report.stderr[-2000:]
    match = re.search(r"wrote (\S+report\.md) and (\d+) figures", report.stdout)
    assert match, report.stdout
    path = Path(match[1])
    assert path.is_relative_to(other.home) and "## Against strategy.lam" in path.read_text()
    pngs = list(path.parent.glob("*.png"))
    assert len(pngs) == int(match[2]) >= 1 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)

    rerun = other.run("rerun", rows[0]["run_ids"][0], "--tracking-uri", study["uri"], where=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rerun.stdout.strip().splitlines()[-1] == "identical", rerun.stdout


def test_resume_of_the_finished_study_on_a_fresh_head_duplicates_nothing(study, s3):
    assert study["resumed"].returncode == 0
    client, before = mlflow_runs(study["uri"])
    head = Cli(study["base"] / "head-c", study["storage"], study["uri"])
    again = head.run("launch", str(study["file"]), "--resume", "--address", "local", timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = table(s3, "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"FINISHED"}
    assert len(table(s3, "tasks.parquet")) == 2 * NUM_TASKS * NUM_TASKS * 2
    _, after = mlflow_runs(study["uri"])
    assert len(after) == 3 and len(trial_runs(after)) == 2 and {r.info.status for r in after} == {"FINISHED"}
    assert {r.info.run_id for r in after} == {r.info.run_id for r in before}
    for run in trial_runs(after):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, NUM_TASKS + 1)), steps


def test_nothing_tracked_on_local_disk(study):
    """Every run of this module had its HOME and working folder under `base`: no local MLflow store
    or artifact folder anywhere (the MLflow server keeps only its SQLite database, in its own folder)."""
    assert study["resumed"].returncode == 0
    base: Path = study["base"]
    homes = sorted(p.name for p in base.iterdir() if p.is_dir())  # and other-machine, head-c if they ran
    assert {"head-a", "head-b"} <= set(homes), homes
    local = [p for p in base.rglob("*") if p.name in ("mlartifacts", "mlruns", "mlflow.db")]
    assert not local, local
    server = [p.name for p in study["server_folder"].iterdir()]
    assert "mlartifacts" not in server and "mlruns" not in server, server
    real = Path.home() / ".anpyc-sweep" / "studies" / NAME
    assert not (real / "mlflow.db").exists() and not (real / "mlartifacts").exists()


def test_missing_bucket_is_a_one_line_error(s3, mlflow_server, study_file, tmp_path):
    cli = Cli(tmp_path / "home", "s3://no-such-bucket-xyz/studies", mlflow_server.uri)
    result = cli.run("launch", str(study_file), "--address", "local")
    one_line_error(result, 1, "s3://no-such-bucket-xyz/studies")
    assert "does not exist" in result.stderr and "Request ID" not in result.stderr
    for command in ("status", "report"):  # a wrong bucket is never read as an empty study
        one_line_error(cli.run(command, str(study_file)), 1, "bucket 'no-such-bucket-xyz' does not exist")


def test_wrong_prefix_says_the_study_is_not_there(s3, mlflow_server, study_file, tmp_path):
    cli = Cli(tmp_path / "home", f"s3://{BUCKET}/no-such-prefix", mlflow_server.uri)
    one_line_error(cli.run("status", str(study_file)), 2, "not found in s3://")
    one_line_error(
        cli.run("launch", str(study_file), "--resume"), 2, f"no study s3_e2e in s3://{BUCKET}/no-such-prefix"
    )


def test_s3_storage_without_a_tracking_server_is_a_usage_error(study_file, tmp_path):
    cli = Cli(tmp_path / "home", f"s3://{BUCKET}/studies", None)
    result = cli.run("launch", str(study_file), "--address", "local")
    one_line_error(result, 2, "tracking_uri")
