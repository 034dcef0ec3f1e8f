"""`anpyc-sweep ui STUDY [--optuna]`: the study's MLflow UI (or Optuna dashboard) on 127.0.0.1.

The server runs as a child process in its own process group; Ctrl-C stops that group by its PID
and returns. A study tracked on an MLflow server needs no local UI: its URL is printed instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sweeper.study.spec import QueryError, StudySpec
from sweeper.tracking.mlflow_store import TRIALS_VIEW

BIN = Path(sys.executable).parent


class UIError(RuntimeError):
    """The UI cannot start (one line)."""


def mlflow_command(spec: StudySpec, port: int) -> list[str]:
    """`mlflow server` on the study's local store, bound to 127.0.0.1, without job runner or telemetry."""
    db = spec.study_dir / "mlflow.db"
    if not db.exists():
        raise QueryError(f"study {spec.name}: no MLflow store at {db} (launch it first, or check --storage)")
    return [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--default-artifact-root",
        (spec.study_dir / "mlartifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def optuna_command(spec: StudySpec, port: int) -> list[str]:
    """optuna-dashboard on the study's Optuna storage, bound to 127.0.0.1."""
    from sweeper.study.trials import OPTUNA_DB

    db = spec.study_dir / OPTUNA_DB
    if spec.searcher != "optuna":
        raise UIError(f"study {spec.name}: --optuna needs an Optuna study (this one is searcher: {spec.searcher})")
    if not db.exists():
        raise QueryError(f"study {spec.name}: no Optuna storage at {db} (launch it first, or check --storage)")
    return [str(BIN / "optuna-dashboard"), f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port), "--quiet"]


def trials_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table in the study's shared view: trial runs, best first, key columns shown."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={TRIALS_VIEW}"


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound now."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def serve(cmd: list[str], health_url: str, log: Path, timeout: float = 90.0) -> subprocess.Popen:
    """Start `cmd` in its own process group and wait until `health_url` answers 200."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
            raise UIError(f"{Path(cmd[0]).name} exited with {proc.returncode}: {tail[0]} (log: {log})")
        with contextlib.suppress(OSError), urllib.request.urlopen(health_url, timeout=2) as reply:
            if reply.status == 200:
                return proc
        time.sleep(0.3)
    stop(proc)
    raise UIError(f"{Path(cmd[0]).name} did not answer at {health_url} within {timeout:.0f} s (log: {log})")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group (by the leader's PID): SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
