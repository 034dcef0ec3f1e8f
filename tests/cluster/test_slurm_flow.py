"""Studies on a real Slurm (issue 25): `slurm submit` runs a study as one job over two Slurm nodes with Ray
inside the allocation; the job reaches its time limit mid-study, gets USR1 from Slurm (`--signal=B:USR1@N`),
stops, requeues itself and resumes; the finished study has every trial and task exactly once. The study is
sized to outlast its first run's 1-minute time limit on a fast machine; should a faster one still be about to
finish before the limit, the test sends the same USR1 itself (what preemption sends), so the requeue is
always mid-study, and says which of the two happened. Bad input is refused before anything
is submitted. The cluster is tests/cluster/slurm.py (munged, slurmctld, two slurmd on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mlflow
import pytest
import yaml

from sweeper.storage import results
from sweeper.storage.store import StudyStore
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE
from tests.cluster.slurm import NODES, SlurmCluster, missing_requirements

MISSING = missing_requirements()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]

TASKS = 8
LAMBDAS = [0.5, 2.0, 4.0, 16.0]
STUDY = {
    "name": "onslurm",
    "base": {
        "device": "cpu",
        "data": {"benchmark": "digits", "scenario": "permuted", "num_tasks": TASKS},
        "model": {"hidden": [32]},
        "strategy": {"method": "ewc"},
        "optim": {"epochs": 20, "batch_size": 16},
    },
    "search": {"strategy.lam": {"grid": LAMBDAS}},
    "seeds": [0, 1],
    "max_concurrent_trials": 4,
}
TRIALS = len(LAMBDAS) * 2
#: epochs per task of the requeue test: its first run outlasts its 1-minute limit on a fast 2-core machine
LONG_EPOCHS = 70


@pytest.fixture(scope="module")
def slurm():
    cluster = SlurmCluster().up()
    yield cluster
    cluster.down()


def cli(slurm: SlurmCluster, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`anpyc-sweep ARGS` as a user on the login node runs it (SLURM_CONF pointing at the test cluster)."""
    command = [sys.executable, "-m", "sweeper.cli", *args]
    return subprocess.run(command, env=env or slurm.env, capture_output=True, text=True, timeout=120)


def one_line(done, code: int, needle: str) -> None:
    assert done.returncode == code, done.stderr + done.stdout
    lines = [ln for ln in done.stderr.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


@pytest.fixture
def study_file(tmp_path):
    raw = {**STUDY, "storage": str(tmp_path / "shared")}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, parse_study(raw)


def test_bad_requests_are_refused_before_anything_is_submitted(slurm, study_file, tmp_path):
    path, _ = study_file
    one_line(cli(slurm, "slurm", "submit", str(path), "--partition", "gpu"), 2, "--partition gpu: no such partition")
    one_line(cli(slurm, "slurm", "submit", str(path), "--gpus-per-node", "1"), 2, "no node of partition debug has")
    one_line(cli(slurm, "slurm", "submit", str(path), "--time", "90"), 2, "--time '90': use HH:MM:SS")
    one_line(cli(slurm, "slurm", "submit", str(path), "--time", "00:01:00", "--grace", "60"), 2, "--grace 60")
    one_line(cli(slurm, "slurm", "cancel", str(path)), 2, "has no job in the Slurm queue")
    no_slurm = {**slurm.env, "PATH": os.path.dirname(sys.executable)}  # a laptop: no sbatch anywhere
    one_line(cli(slurm, "slurm", "submit", str(path), env=no_slurm), 2, "Slurm is not installed on this machine")
    assert slurm.run("squeue", "--noheader").stdout.strip() == ""  # nothing was submitted
    assert not (tmp_path / "shared" / "onslurm" / "slurm").exists()  # and nothing was written


def wait_for_first_tasks(spec, log, seconds: float = 240) -> None:
    """Block until the study's driver has written its first task rows (trials are running)."""
    deadline = time.time() + seconds
    while time.time() < deadline and not list((spec.study_dir / "tasks").glob("*/*.parquet")):
        time.sleep(0.5)
    assert list((spec.study_dir / "tasks").glob("*/*.parquet")), log.read_text()[-3000:] if log.exists() else ""


def task_reports(spec) -> int:
    """How many task reports the study has written so far (one fragment per trial and task)."""
    return len(list((spec.study_dir / "tasks").glob("*/*.parquet")))


def test_a_study_requeued_at_its_time_limit_finishes_exactly_once_on_two_nodes(slurm, tmp_path):
    raw = {**STUDY, "storage": str(tmp_path / "shared")}
    raw["base"] = {**STUDY["base"], "optim": {**STUDY["base"]["optim"], "epochs": LONG_EPOCHS}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = parse_study(raw)
    dry = cli(slurm, "slurm", "submit", str(path), "--nodes", "2", "--time", "00:01:00", "--grace", "30", "--dry-run")
    assert dry.returncode == 0 and "#SBATCH --signal=B:USR1@30" in dry.stdout and "#SBATCH --requeue" in dry.stdout
    assert slurm.run("squeue", "--noheader").stdout.strip() == ""  # --dry-run submits nothing

    done = cli(slurm, "slurm", "submit", str(path), "--nodes", "2", "--time", "00:01:00", "--grace", "30")
    assert done.returncode == 0, done.stderr
    assert "not a shared one" in done.stderr  # this test's storage is a local folder: warned, not refused
    job = done.stdout.split("submitted Slurm job ")[1].split()[0]
    again = cli(slurm, "slurm", "submit", str(path), "--nodes", "2")
    one_line(again, 2, f"study onslurm is already in Slurm job {job}")

    log_path = spec.study_dir / "slurm" / f"job-{job}.out"
    restarts, sent_by_test, deadline, seen, ended, extended = 0, False, time.time() + 900, [], None, False
    while time.time() < deadline:
        state = slurm.job(job)
        restarts = max(restarts, int(state.get("Restarts", 0)))
        now = (state.get("JobState"), state.get("Restarts"), state.get("Reason"), slurm.node_states())
        if not seen or seen[-1][1:] != now:
            seen.append((round(time.time() % 1000, 1), *now))  # the states the job went through, for a failure
        if state.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            ended = ended or time.time()
            if time.time() - ended >= 6:  # a requeue passes through FAILED for a moment before PENDING
                break
            time.sleep(1)
            continue
        ended = None
        if state.get("JobState") == "PENDING" and restarts and not extended:
            # requeued: Slurm holds it until its BeginTime, the credential lifetime after the requeue (20 s in
            # this cluster), so that the run it ended is over on every node first: the test used to start it at
            # once (StartTime=now), and on a fast machine the job then went FAILED (NonZeroExitCode) a second
            # after restarting, with no line from its new run: most likely the ended run's late exit.
            # The resumed run gets room to finish (a requeued job keeps its time limit otherwise).
            extended = slurm.run("scontrol", "update", f"JobId={job}", "TimeLimit=00:15:00").returncode == 0
        elif not restarts and not sent_by_test and task_reports(spec) >= 0.85 * TRIALS * TASKS:
            sent_by_test = True  # this machine outran the time limit: the batch shell gets USR1 from us
            assert slurm.run("scancel", "--signal=USR1", "--batch", job).returncode == 0
        time.sleep(1)
    print(f"requeue after {'USR1 sent by the test' if sent_by_test else 'the time limit (USR1 from Slurm)'}: {seen}")
    log = log_path.read_text()
    assert state.get("JobState") == "COMPLETED", f"{seen}\n{log[-4000:]}\n{slurm.log_tail()}"
    assert restarts >= 1, log[-4000:]  # it did stop mid-study and come back
    assert "(stopped: requeue)" in log and "requeueing job" in log
    # the driver stopped its trials at their task boundaries (its tasks last seconds; drain_s is 15 s)
    assert "stopped at its trials' task boundaries (SIGUSR1)" in log, log[-4000:]

    store = StudyStore(spec.tune_storage)
    trials, tasks, bounds = results.read_trials(store), results.read_tasks(store), results.read_boundaries(store)
    assert sorted(trials["status"]) == ["FINISHED"] * TRIALS and trials["trial_id"].is_unique
    assert not tasks.duplicated(["trial_id", "after_task", "eval_task", "split"]).any()
    assert len(tasks) == TRIALS * TASKS * TASKS * 2  # the counts of an uninterrupted run
    assert not bounds.duplicated(["trial_id", "after_task"]).any() and len(bounds) == TRIALS * TASKS

    mlflow.set_tracking_uri(spec.resolved_tracking_uri())
    runs = mlflow.search_runs(experiment_names=[spec.name], filter_string=f"tags.{TAG_ROLE} = 'trial'")
    assert len(runs) == TRIALS and sorted(runs["status"]) == ["FINISHED"] * TRIALS
    client = mlflow.MlflowClient()
    for run_id in runs["run_id"]:
        steps = sorted(m.step for m in client.get_metric_history(run_id, "val_acc"))
        assert steps == list(range(1, TASKS + 1)), steps  # each task logged exactly once across the requeue
    assert set(runs["tags.node_ip"]) == set(NODES.values())  # trials ran on both Slurm nodes

    status = cli(slurm, "slurm", "status", str(path))
    assert status.returncode == 0 and '"FINISHED": 8' in status.stdout and '"slurm_jobs": []' in status.stdout


def test_cancel_stops_a_running_study_cleanly_without_requeueing(slurm, tmp_path):
    raw = {**STUDY, "name": "cancelled", "storage": str(tmp_path / "shared")}
    path = tmp_path / "cancelled.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = parse_study(raw)
    done = cli(slurm, "slurm", "submit", str(path), "--nodes", "2", "--time", "00:10:00")
    assert done.returncode == 0, done.stderr
    job = done.stdout.split("submitted Slurm job ")[1].split()[0]
    log = spec.study_dir / "slurm" / f"job-{job}.out"
    wait_for_first_tasks(spec, log)  # the driver is running trials

    cancel = cli(slurm, "slurm", "cancel", str(path))
    assert cancel.returncode == 0 and f"cancelled Slurm job(s) {job}" in cancel.stdout, cancel.stderr
    assert slurm.run("squeue", "--noheader").stdout.strip() == ""  # gone, and not requeued
    text = log.read_text()
    assert "(stopped: cancel)" in text and "requeueing" not in text
    state = slurm.job(job)
    assert state.get("Restarts") == "0" and state.get("JobState") in ("COMPLETED", "FAILED"), state
    status = cli(slurm, "slurm", "status", str(path))
    assert status.returncode == 0 and '"slurm_jobs": []' in status.stdout  # the study waits for a resubmit
