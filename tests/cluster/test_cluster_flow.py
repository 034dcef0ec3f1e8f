"""The user's cluster flow, for real, on a two-node loopback cluster (see loopback.py).

`ray up -y` of the project's cluster-local.yaml → `ray job submit` of a small study whose trials
run and checkpoint on the worker (the head has no CPUs) → `status`, `best`, `report` and `rerun`
from outside the cluster with nothing but the storage URI and the tracking URI → `ray down -y`,
after which nothing of the cluster runs (Ray and the MLflow server are gone).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import boto3
import pytest
import yaml

from tests.cluster.loopback import LoopbackCluster, http_ok, missing_requirements, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(missing_requirements()), reason=str(missing_requirements()))]

STUDY = {
    "name": "cluster_flow",
    "base": {
        "device": "auto",
        "data": {"benchmark": "digits", "scenario": "split", "num_tasks": 2},
        "model": {"hidden": [16]},
        "strategy": {"method": "anpyc", "beta": 20, "importance_batch": 1},
        "optim": {"lr": 0.05, "batch_size": 32, "epochs": 2},
    },
    "search": {"strategy.lam": {"grid": [0.5, 8.0]}},
    "seeds": [0],
    "max_concurrent_trials": 2,
    "resources": {"cpu": 1},
}


@pytest.fixture(scope="module")
def cluster():
    """A loopback cluster up with `ray up`; everything it started is stopped afterwards."""
    c = LoopbackCluster()
    try:
        c.up()

        # the autoscaler adds the worker after the head is up: wait until both nodes are active
        def both_active() -> bool:
            out = c.run(["ray", "status", "--address", f"{c.head_ip}:{c.gcs_port}"], timeout=60, check=False)
            active = out.stdout.split("Active:")[-1].split("Pending:")[0]
            return sum(int(n) for n in re.findall(r"^\s*(\d+) ", active, re.M)) == 1 + len(c.worker_ips)

        wait_for(both_active, 240, "the worker node to join", interval=3)
        yield c
    finally:
        try:
            c.down()
        finally:
            c.stop_everything()


def cli(c: LoopbackCluster, *args: str, home: Path) -> str:
    """Run `anpyc-sweep ARGS` from the laptop with a fresh HOME (nothing local from the cluster)."""
    out = c.run(["anpyc-sweep", *args], timeout=300, env={"HOME": str(home)})
    return out.stdout


FAULTS = {
    **STUDY,
    "name": "cluster_faults",
    "base": {
        **STUDY["base"],
        "data": {"benchmark": "digits", "scenario": "permuted", "num_tasks": 6},
        "model": {"hidden": [32]},
        "strategy": {"method": "ewc", "importance_batch": 10},
        "optim": {"lr": 0.05, "batch_size": 32, "epochs": 40},
    },
    "search": {"strategy.lam": {"grid": [1.0, 10.0]}},
    "max_failures": 5,
}


def s3_client(c: LoopbackCluster):
    """boto3 on the loopback bucket, as the laptop sees it."""
    env = c.aws_env()
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def tasks_done(c: LoopbackCluster, study: str) -> dict[str, int]:
    """Per trial, the last task recorded on the bucket (compacted tasks.parquet and task fragments)."""
    import io

    import pandas as pd

    s3, root = s3_client(c), f"studies/{study}/"
    done: dict[str, int] = {}
    try:  # compacted rows (a previous launch) ...
        body = s3.get_object(Bucket=c.bucket, Key=f"{root}tasks.parquet")["Body"].read()
        done.update(pd.read_parquet(io.BytesIO(body)).groupby("trial_id")["after_task"].max().to_dict())
    except Exception:  # noqa: BLE001 - not written yet
        pass
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=c.bucket, Prefix=f"{root}tasks/")
    for page in pages:  # ... and this launch's fragments: tasks/<trial>/task_0003.parquet
        for obj in page.get("Contents", []):
            trial, name = obj["Key"].removeprefix(f"{root}tasks/").split("/")
            done[trial] = max(done.get(trial, 0), int(name.removeprefix("task_").removesuffix(".parquet")))
    return done


def test_worker_lost_then_head_lost_and_recreated_resume_exactly_once(cluster, tmp_path):
    c = cluster
    work = tmp_path / "job"
    work.mkdir()
    (work / "faults.yaml").write_text(yaml.safe_dump(FAULTS))
    where = ["--storage", c.storage, "--tracking-uri", c.tracking_uri]
    submit = ["ray", "job", "submit", "--address", c.dashboard, "--working-dir", str(work)]
    c.run([*submit, "--no-wait", "--", "anpyc-sweep", "launch", "faults.yaml", "--address", "auto", *where], 300)
    worker, head = c.nodes[1], c.nodes[0]

    wait_for(
        lambda: len(tasks_done(c, "cluster_faults")) == 2 and min(tasks_done(c, "cluster_faults").values()) >= 2,
        300,
        "both trials past task 2",
    )
    c.kill_node(worker)  # the worker machine dies with both trials in flight
    c.restart_node(worker)  # and boots again: the autoscaler restarts Ray on it
    before = dict(tasks_done(c, "cluster_faults"))
    wait_for(
        lambda: any(tasks_done(c, "cluster_faults").get(t, 0) > n for t, n in before.items()),
        400,
        "a trial to progress after the worker came back",
    )

    c.kill_node(head)  # now the head dies: driver, GCS and MLflow server with it
    c.restart_node(head)
    c.run(["ray", "up", "-y", "--no-config-cache", str(c.config_path)], timeout=600)  # a new head, same disk
    resumed = c.run(
        [*submit, "--", "anpyc-sweep", "launch", "faults.yaml", "--address", "auto", "--resume", *where], 900
    )
    assert "study cluster_faults done" in resumed.stdout, resumed.stdout[-3000:]

    import mlflow
    import pandas as pd

    client = mlflow.tracking.MlflowClient(c.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("cluster_faults").experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("anpyc_role") == "trial"]
    assert len(trials) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in trials:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
        assert steps == list(range(1, 7)), steps  # every task exactly once, across two faults
    resumed_from = [int(r.data.tags.get("resumed_from_task", 0)) for r in trials]
    assert max(resumed_from) >= 2, resumed_from  # resumed from a task checkpoint, not from task 1
    import io

    s3 = s3_client(c)
    read = lambda name: pd.read_parquet(  # noqa: E731
        io.BytesIO(s3.get_object(Bucket=c.bucket, Key=f"studies/cluster_faults/{name}")["Body"].read())
    )
    rows = read("trials.parquet")
    assert len(rows) == 2 and set(rows["status"]) == {"FINISHED"}
    tasks = read("tasks.parquet")
    assert len(tasks) == 2 * 6 * 6 * 2 and not tasks.duplicated(["trial_id", "after_task", "eval_task", "split"]).any()
    print(
        f"\nFIGURES cluster-faults: resumed_from_task={sorted(resumed_from)} parquet_rows={len(rows)} "
        f"mlflow_trial_runs={len(trials)} duplicates=0"
    )


def test_ray_up_job_submit_query_from_outside_ray_down(cluster, tmp_path):
    c = cluster
    work = tmp_path / "job"
    work.mkdir()
    (work / "study.yaml").write_text(yaml.safe_dump(STUDY))
    where = ["--storage", c.storage, "--tracking-uri", c.tracking_uri]
    submitted = c.run(
        [
            "ray",
            "job",
            "submit",
            "--address",
            c.dashboard,
            "--working-dir",
            str(work),
            "--",
            "anpyc-sweep",
            "launch",
            "study.yaml",
            "--address",
            "auto",
            *where,
        ],
        timeout=600,
    )
    assert "study cluster_flow done" in submitted.stdout, submitted.stdout[-3000:]

    # trials ran and checkpointed on the worker; everything landed in the bucket, nothing on local disk
    s3 = boto3.client(
        "s3",
        endpoint_url=c.aws_env()["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="loopback",
        aws_secret_access_key="loopback",
    )
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=c.bucket)
        for o in page.get("Contents", [])
    ]
    study = "studies/cluster_flow/"
    for name in ("study.yaml", "trials.parquet", "tasks.parquet", "boundaries.parquet"):
        assert study + name in keys, name
    checkpoints = {
        k.split("/checkpoint_")[0] + "/checkpoint_" + k.split("/checkpoint_")[1].split("/")[0]
        for k in keys
        if k.startswith(study + "tune/") and "/checkpoint_" in k
    }
    assert len(checkpoints) == 4, checkpoints  # 2 trials x 2 tasks (latest two kept)
    assert any(k.startswith("mlflow-artifacts/") and k.endswith("run_config.json") for k in keys)
    assert any(k.endswith("snapshots/snapshot_task_001.pt") for k in keys)

    home = Path(tempfile.mkdtemp(dir=tmp_path))
    status = json.loads(cli(c, "status", str(work / "study.yaml"), *where, home=home))
    assert status["parquet"] == {"FINISHED": 2} and status["mlflow"] == {"FINISHED": 2}, status
    best = json.loads(cli(c, "best", str(work / "study.yaml"), "--json", *where, home=home))
    assert len(best) == 2 and all(b["n"] == 1 and len(b["run_ids"]) == 1 for b in best)  # configurations

    import mlflow

    client = mlflow.tracking.MlflowClient(c.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("cluster_flow").experiment_id])
    trials = [r for r in runs if r.data.tags.get("anpyc_role") == "trial"]
    assert {r.data.tags["node_ip"] for r in trials} == set(c.worker_ips)  # the head has no CPUs for trials
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:") for r in runs)

    report = cli(c, "report", str(work / "study.yaml"), *where, home=home)
    assert "wrote" in report and (home / ".anpyc-sweep" / "studies" / "cluster_flow" / "report" / "report.md").exists()
    analysis = cli(c, "analyze", str(work / "study.yaml"), *where, home=home)  # snapshots through MLflow
    assert (home / ".anpyc-sweep" / "studies" / "cluster_flow" / "report" / "analysis.md").exists(), analysis
    from sweeper.study.version import source_hash

    assert {r.data.tags["anpyc_source_sha"] for r in trials} == {source_hash()}  # rsynced without .git
    rerun = cli(c, "rerun", best[0]["run_ids"][0], "--tracking-uri", c.tracking_uri, home=home)
    assert rerun.strip().endswith("identical"), rerun

    down = c.down()
    assert down.returncode == 0, down.stderr[-2000:]
    wait_for(lambda: not http_ok(f"{c.tracking_uri}/health"), 60, "the MLflow server to stop after ray down")

    def only_sshd_left() -> bool:
        left = [cmd for node in c.nodes for _, cmd in node.processes()]
        return all(cmd.startswith(("sshd", "sh -c", "/usr/sbin/sshd")) for cmd in left)

    try:
        wait_for(only_sshd_left, 60, "every Ray and MLflow process to stop")
    except TimeoutError:
        left = {node.name: node.processes() for node in c.nodes}
        raise AssertionError(f"left running after ray down: {left}") from None
    print(
        f"\nFIGURES cluster-flow: nodes={len(c.nodes)} trials=2 on {sorted(c.worker_ips)} "
        f"checkpoints_in_s3={len(checkpoints)} s3_objects={len(keys)} at {time.strftime('%H:%M:%S')}"
    )
