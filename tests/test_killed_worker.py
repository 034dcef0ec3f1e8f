"""A real two-node Ray cluster on loopback: kill -9 the worker node's raylet mid-study.

The head (127.0.0.2) has no CPUs, so every trial runs on worker A (127.0.0.3). When A's raylet is
killed, a replacement node B (127.0.0.4) is already up; the interrupted trials must resume there
from their last task checkpoint, and every trial must land exactly once in Parquet and MLflow.
"""

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import mlflow
import pandas as pd
import pytest

from sweeper.storage import results
from sweeper.storage.store import StudyStore
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE

HEAD, NODE_A, NODE_B, PORT = "127.0.0.2", "127.0.0.3", "127.0.0.4", 6391
ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "token",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_USAGE_STATS_ENABLED": "0",
}
STUDY = {
    "name": "killed_worker",
    "base": {
        "device": "cpu",
        "data": {"benchmark": "digits", "scenario": "permuted", "num_tasks": 8},
        "model": {"hidden": [64, 64]},
        "strategy": {"method": "ewc", "lam": 10.0, "importance_batch": 10},
        "optim": {"lr": 0.05, "batch_size": 16, "epochs": 15},
    },
    "search": {"strategy.lam": {"grid": [1.0, 10.0]}},
    "seeds": [0, 1],
    "max_concurrent_trials": 2,
    "max_failures": 3,
}


def ray_start(*args, attempts: int = 2):
    """`ray start ARGS`; a start refused while the previous cluster's ports are still held is retried once
    after they are free, and a final failure says what `ray start` printed."""
    for attempt in range(attempts):
        done = subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--disable-usage-stats", *args],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode == 0:
            return
        if attempt + 1 < attempts:
            wait_until_bindable(HEAD, PORT, seconds=30)
    raise AssertionError(f"ray start {' '.join(args)} failed: {(done.stderr or done.stdout)[-2000:]}")


def wait_until_bindable(host: str, port: int, seconds: float) -> None:
    """Block until `host:port` can be bound again (a killed GCS's socket is released), at most `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return
            except OSError:
                time.sleep(0.5)


def wait_gone(pids: list[int], seconds: float = 20) -> None:
    """Block until every pid has exited (SIGKILL is delivered asynchronously), at most `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in pids):
        time.sleep(0.2)


def pids_matching(*needles):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmd for n in needles):
            found.append(int(pid))
    return found


def kill(pids):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cluster():
    try:
        ray_start("--head", f"--port={PORT}", "--num-cpus=0", "--include-dashboard=false", f"--node-ip-address={HEAD}")
        ray_start(f"--address={HEAD}:{PORT}", "--num-cpus=2", f"--node-ip-address={NODE_A}")
        yield
    finally:  # only this cluster's processes: the test session's own Ray stays up
        killed = []
        for ip in (NODE_B, NODE_A, HEAD):
            pids = pids_matching(ip)
            kill(pids)
            killed += pids
        wait_gone(killed)  # the next test's cluster binds the same addresses and port
        wait_until_bindable(HEAD, PORT, seconds=30)
        marker = pathlib.Path("/tmp/ray/ray_current_cluster")  # written by `ray start --head`
        if marker.exists() and HEAD in marker.read_text():
            marker.unlink()


@pytest.mark.e2e
@pytest.mark.parametrize("pack", [1, 4], ids=["one_per_process", "packed"])
def test_killed_worker_node_trials_resume_from_checkpoints_exactly_once(tmp_path, cluster, pack):
    study = {**STUDY, "pack": {"max_members": pack}}  # packed: all four trials are members of one pack
    spec = parse_study({**study, "storage": str(tmp_path)})
    driver_code = textwrap.dedent(f"""
        import ray
        from sweeper.running.launch import launch, spec_text
        from sweeper.study.spec import parse_study
        ray.init(address="{HEAD}:{PORT}", _node_ip_address="{HEAD}", log_to_driver=False)
        spec = parse_study({study!r} | {{"storage": {str(tmp_path)!r}}})
        launch(spec, spec_text(spec))
    """)
    driver = subprocess.Popen(
        [sys.executable, "-c", driver_code], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    store = StudyStore(str(spec.study_dir))
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:  # two trials past task 2, none finished
        tasks = results.read_tasks(store)
        if len(tasks):
            done = tasks.groupby("trial_id")["after_task"].max()
            if (done >= 2).sum() >= 2 and results.read_trials(store).empty:
                break
        time.sleep(0.3)
    assert driver.poll() is None, "the study ended before the worker could be killed"
    raylets = pids_matching("raylet", NODE_A)
    assert len(raylets) == 1
    kill(raylets)  # both running trials are between task 2 and task 8 right now
    replacement = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--disable-usage-stats",
            f"--address={HEAD}:{PORT}",
            "--num-cpus=2",
            f"--node-ip-address={NODE_B}",
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    _, err = driver.communicate(timeout=400)
    replacement.wait(timeout=60)
    assert driver.returncode == 0, err[-3000:]

    trials = pd.read_parquet(spec.study_dir / "trials.parquet")
    assert len(trials) == 4 and trials["trial_id"].is_unique and set(trials["status"]) == {"FINISHED"}
    tasks = pd.read_parquet(spec.study_dir / "tasks.parquet")
    assert len(tasks) == 4 * 8 * 8 * 2
    assert not tasks.duplicated(["trial_id", "after_task", "eval_task", "split"]).any()
    client = mlflow.tracking.MlflowClient(spec.resolved_tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name(spec.name).experiment_id], max_results=100)
    trial_runs = [r for r in runs if r.data.tags.get(TAG_ROLE) == "trial"]
    assert len(trial_runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    resumed = [int(r.data.tags.get("resumed_from_task", 0)) for r in trial_runs]
    assert sum(1 for r in resumed if r >= 2) >= (4 if pack > 1 else 2), resumed  # from a checkpoint, not task 1
    for run in trial_runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, 9)), steps
    print(
        f"\nFIGURES killed-worker (pack {pack}): trials=4 resumed_from_task={sorted(r for r in resumed if r)} "
        f"parquet_rows={len(trials)} mlflow_trial_runs={len(trial_runs)} duplicate_task_rows=0 lost=0"
    )
