"""Verbs for clusters: the MLflow tracking server, `stop-with-ray`, `gpu-check`, and `slurm submit/status/cancel`."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import typer

from sweeper.cli.common import (
    _study,
    app,
    fail,
)

server_app = typer.Typer(no_args_is_help=True, help="The cluster's MLflow server (started on the head).")


app.add_typer(server_app, name="tracking-server")


@server_app.command("start")
def server_start(
    state_dir: Path = typer.Option(Path("~/anpyc-state"), "--state-dir", help="Pid file and log."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(5000, "--port"),
    backend_store_uri: str = typer.Option(..., "--backend-store-uri", help="e.g. sqlite:////data/mlflow.db"),
    artifacts_destination: str = typer.Option(..., "--artifacts-destination", help="s3://... or a shared path"),
    stop_with_ray: str = typer.Option(None, "--stop-with-ray", help="HOST:PORT of Ray's GCS: stop when Ray stops."),
    wait: float = typer.Option(90.0, "--wait", help="Seconds to wait for /health."),
) -> None:
    """Start MLflow (--serve-artifacts) once, wait until healthy; a no-op if it already runs."""
    from sweeper.tracking.server import ServerError, start

    args = ["--backend-store-uri", backend_store_uri, "--serve-artifacts"]
    args += ["--artifacts-destination", artifacts_destination]
    try:
        pid = start(state_dir.expanduser(), host, port, args, stop_with_ray, wait)
    except ServerError as err:
        fail(str(err), 1)
    typer.echo(f"MLflow server healthy at http://{host}:{port} (supervisor pid {pid})")


@server_app.command("stop")
def server_stop(state_dir: Path = typer.Option(Path("~/anpyc-state"), "--state-dir")) -> None:
    """Stop the tracking server started with `start`."""
    from sweeper.tracking.server import stop

    typer.echo("stopped" if stop(state_dir.expanduser()) else "not running")


@app.command("stop-with-ray")
def stop_with_ray(
    address: str = typer.Argument(..., help="HOST:PORT of the head's GCS."),
    grace: float = typer.Option(30.0, "--grace", help="Seconds of silence from the head before stopping."),
    log: Path = typer.Option(Path("~/anpyc-state/stop-with-ray.log"), "--log"),
) -> None:
    """Detach a watcher that runs `ray stop` on this node once the head is gone (`ray down` of an on-prem
    cluster stops the head only)."""
    from sweeper.tracking.server import start_watch

    typer.echo(f"watching {address} (pid {start_watch(address, grace, log.expanduser())})")


@app.command("gpu-check")
def gpu_check(
    require: bool = typer.Option(False, "--require", help="Fail when this node has no GPU at all."),
) -> None:
    """Fail loudly when this node has an NVIDIA GPU that torch cannot use (e.g. a driver too old)."""
    import shutil
    import subprocess

    import torch

    listed = []
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
        listed = [ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")]
    build = f"torch {torch.__version__} (CUDA {torch.version.cuda})"
    if torch.cuda.is_available():
        typer.echo(f"ok: {torch.cuda.device_count()} GPU(s) usable by {build}: {torch.cuda.get_device_name(0)}")
    elif listed:
        fail(f"{len(listed)} GPU(s) present but {build} cannot use them: update the NVIDIA driver", 1)
    elif require:
        fail(f"no GPU on this node ({build})", 1)
    else:
        typer.echo(f"no GPU on this node; trials here run on the CPU ({build})")


slurm_app = typer.Typer(no_args_is_help=True, help="Studies on a Slurm cluster: submit, status, cancel.")


app.add_typer(slurm_app, name="slurm")


@slurm_app.command("submit")
def slurm_submit(
    study: Path = typer.Argument(..., help="Study YAML."),
    nodes: int = typer.Option(1, "--nodes", min=1, help="Nodes: one Ray node each (the first is the head)."),
    gpus_per_node: int = typer.Option(0, "--gpus-per-node", min=0),
    cpus_per_node: int = typer.Option(None, "--cpus-per-node", min=1, help="Default: what the partition gives."),
    time: str = typer.Option("04:00:00", "--time", help="Wall-time limit of each run of the job, [D-]HH:MM:SS."),
    grace: int = typer.Option(300, "--grace", min=1, help="Seconds before the limit to stop and requeue."),
    partition: str = typer.Option(None, "--partition"),
    account: str = typer.Option(None, "--account"),
    sbatch_arg: list[str] = typer.Option([], "--sbatch-arg", help="More #SBATCH options, e.g. --sbatch-arg=--qos=long"),
    venv: Path = typer.Option(None, "--venv", help="Environment on the shared filesystem (default: this one)."),
    storage: str = typer.Option(None, "--storage", help="Override the study's storage (a shared folder or s3://)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sbatch script; submit nothing."),
) -> None:
    """Run a study as one Slurm job (Ray inside the allocation); it requeues itself at its time limit."""
    from sweeper.slurm import cluster
    from sweeper.slurm.script import JobRequest, render, seconds

    spec = _study(study, storage)
    try:
        limit = seconds(time)
    except ValueError as err:
        fail(str(err), 2)
    if grace >= limit:
        fail(f"--grace {grace}: must be shorter than --time ({time} = {limit} s)", 2)
    venv = (venv or Path(sys.prefix)).expanduser().absolute()
    if not (venv / "bin" / "activate").is_file():
        fail(f"--venv {venv}: no bin/activate there (give the environment that has anpyc-sweep installed)", 2)
    if spec.remote_storage:
        location, output = spec.storage, Path("anpyc-slurm").absolute() / spec.name
    else:
        location = str(Path(spec.storage).expanduser().absolute())
        output = spec.study_dir / "slurm"
    request = JobRequest(
        study_yaml=str(study.absolute()),
        storage=location,
        study=spec.name,
        output_dir=str(output),
        venv=str(venv),
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        cpus_per_node=cpus_per_node,
        time=time,
        grace_s=grace,
        partition=partition,
        account=account,
        sbatch_args=sbatch_arg,
    )
    text = render(request)
    if dry_run:
        typer.echo(text)
        return
    try:
        cluster.check_request(partition, gpus_per_node)
        running = cluster.jobs_of(spec.name)
        if running:
            job, state = running[0]
            again = f"anpyc-sweep slurm cancel {study}"
            fail(f"study {spec.name} is already in Slurm job {job} ({state}); wait for it, or: {again}", 2)
        if not spec.remote_storage and not cluster.shared(location):
            kind = cluster.filesystem_type(location) or "unknown"
            typer.echo(
                f"warning: storage {location} is on a {kind} filesystem, not a shared one (NFS, Lustre, GPFS, ...): "
                "nodes other than the first would not see it",
                err=True,
            )
        output.mkdir(parents=True, exist_ok=True)
        script = output / f"{spec.name}.sbatch"
        fd, tmp = tempfile.mkstemp(dir=output, prefix=".sbatch-")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        try:
            cluster.test_only(tmp, account)  # Slurm's own verdict (account, limits) before anything is queued
            os.replace(tmp, script)
        finally:
            Path(tmp).unlink(missing_ok=True)
        job = cluster.submit(str(script))
    except cluster.SlurmError as err:
        fail(str(err), 2)
    except OSError as err:
        fail(f"{output}: cannot write the sbatch script ({err.strerror or err})", 1)
    typer.echo(
        f"submitted Slurm job {job} for study {spec.name}: script {script}, log {output}/job-{job}.out; "
        f"follow it with: anpyc-sweep slurm status {study}"
    )


@slurm_app.command("status")
def slurm_status(
    study: Path = typer.Argument(..., help="Study YAML."),
    storage: str = typer.Option(None, "--storage"),
) -> None:
    """The study's Slurm jobs and its trial counts."""
    from sweeper.reading.query import QueryError, study_status
    from sweeper.slurm import cluster

    spec = _study(study, storage)
    try:
        jobs = [{"job": job, "state": state} for job, state in cluster.jobs_of(spec.name)]
    except cluster.SlurmError as err:
        fail(str(err), 2)
    try:
        counts = study_status(spec)
    except QueryError:
        counts = {"study": spec.name, "storage": spec.tune_storage, "expected_trials": spec.trial_count()}
    except RuntimeError as err:
        fail(str(err), 1)
    typer.echo(json.dumps({"slurm_jobs": jobs, **counts}, indent=2))


@slurm_app.command("cancel")
def slurm_cancel(
    study: Path = typer.Argument(..., help="Study YAML."),
    storage: str = typer.Option(None, "--storage"),
    wait: float = typer.Option(120.0, "--wait", help="Seconds to let a running job stop the study cleanly."),
) -> None:
    """Stop the study's jobs: a running one stops its trials at their checkpoints and tears Ray down."""
    import time as clock

    from sweeper.slurm import cluster

    spec = _study(study, storage)
    try:
        jobs = cluster.jobs_of(spec.name)
        if not jobs:
            fail(f"study {spec.name} has no job in the Slurm queue", 2)
        for job, state in jobs:
            if state == "RUNNING":  # USR2: the script interrupts the driver, stops Ray and does not requeue
                cluster.run("scancel", "--batch", "--signal=USR2", job)
            else:
                cluster.run("scancel", job)
        deadline = clock.time() + wait
        while cluster.jobs_of(spec.name) and clock.time() < deadline:
            clock.sleep(2)
        left = cluster.jobs_of(spec.name)
        for job, _ in left:  # did not stop in time: Slurm's own cancel (trials keep their last checkpoints)
            cluster.run("scancel", job)
    except cluster.SlurmError as err:
        fail(str(err), 2)
    ids = ", ".join(job for job, _ in jobs)
    typer.echo(f"cancelled Slurm job(s) {ids} of study {spec.name}; continue it with: anpyc-sweep slurm submit {study}")
