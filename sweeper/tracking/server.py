"""The cluster's MLflow tracking server: started once, checked healthy, stopped with Ray.

`start` is idempotent (a pid file under a lock, never a process-name match), waits until the
server answers `/health`, and fails loudly otherwise. A small supervisor process owns the server;
given `--stop-with-ray HOST:PORT`, it stops the server once Ray's GCS there stops answering, so
`ray down` (which runs `ray stop` on every node) leaves no MLflow server behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PID_FILE, LOG_FILE, LOCK_FILE = "tracking-server.pid", "tracking-server.log", "tracking-server.lock"


class ServerError(RuntimeError):
    """The tracking server could not be started (one line, with where its log is)."""


def healthy(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether an MLflow server answers GET /health at host:port."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=timeout) as reply:
            return reply.status == 200
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether process `pid` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_supervisor(pid: int, state_dir: Path) -> bool:
    """Whether `pid` is this state dir's supervisor, not another process that reuses a stale pid (a node
    rebooted, or a new PID namespace, hands out the same small pids again)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"sweeper.tracking.server" in args and str(state_dir.resolve()).encode() in args


def running_pid(state_dir: Path) -> int | None:
    """The supervisor's pid from the pid file, if that process is alive and is the supervisor."""
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) and is_supervisor(pid, state_dir) else None


def start(state_dir: Path, host: str, port: int, mlflow_args: list[str], stop_with: str | None, wait_s: float) -> int:
    """Start the supervised server unless it already runs; returns the supervisor's pid."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two concurrent starts: the second sees the first's pid file
        pid = running_pid(state_dir)
        if pid is None:
            log = open(state_dir / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child
            where = str(state_dir.resolve())  # the supervisor's identity (is_supervisor)
            cmd = [sys.executable, "-m", "sweeper.tracking.server", where, host, str(port), stop_with or ""]
            child = subprocess.Popen(
                [*cmd, *mlflow_args], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
            pid = child.pid
            (state_dir / PID_FILE).write_text(str(pid))
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if healthy(host, port):
            return pid
        if not alive(pid):
            break
        time.sleep(0.5)
    tail = (state_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()[-1:] or ["(empty log)"]
    raise ServerError(f"MLflow server on {host}:{port} is not healthy; log {state_dir / LOG_FILE}: {tail[0]}")


def stop(state_dir: Path, wait_s: float = 20.0) -> bool:
    """Stop the supervisor (and so the server); False if none was running."""
    pid = running_pid(state_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + wait_s
    while alive(pid) and time.time() < deadline:
        time.sleep(0.2)
    return True


def _gcs_up(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2):
        return True
    return False


def supervise(state_dir: Path, host: str, port: int, stop_with: str, mlflow_args: list[str]) -> int:
    """Run `mlflow server` until it exits, we are told to stop, or Ray's GCS goes away."""
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow, "server", "--host", host, "--port", str(port), *mlflow_args]
    # no job runner (7 worker processes by default in MLflow 3) and no telemetry from a cluster head
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(cmd, start_new_session=True, env=env)
    stopping = False

    def on_term(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    seen_ray, misses = False, 0
    while not stopping and server.poll() is None:
        time.sleep(1.0)
        if stop_with:
            up = _gcs_up(stop_with)
            seen_ray |= up
            misses = 0 if up else misses + 1
            if seen_ray and misses >= 3:
                print(f"Ray at {stop_with} stopped: stopping the MLflow server", flush=True)
                stopping = True
    if server.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # mlflow's own workers are in its process group
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    with contextlib.suppress(OSError):
        if int((state_dir / PID_FILE).read_text().strip()) == os.getpid():
            (state_dir / PID_FILE).unlink()
    return 0 if stopping else (server.returncode or 1)


def watch_ray(address: str, grace_s: float = 30.0) -> int:
    """Wait until Ray's GCS at `address` has answered and then stayed silent for `grace_s`; then `ray stop`
    this node. `ray down` of a local-provider cluster stops Ray on the head only; this stops the rest."""
    seen, silent_since = False, None
    while True:
        time.sleep(2.0)
        if _gcs_up(address):
            seen, silent_since = True, None
        elif seen:
            silent_since = silent_since or time.time()
            if time.time() - silent_since >= grace_s:
                break
    ray = str(Path(sys.executable).with_name("ray"))
    print(f"Ray's head at {address} is gone: stopping Ray on this node", flush=True)
    return subprocess.run([ray, "stop"], stdin=subprocess.DEVNULL).returncode


def start_watch(address: str, grace_s: float, log_path: Path) -> int:
    """Detach a `watch_ray` process; returns its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    cmd = [sys.executable, "-m", "sweeper.tracking.server", "--watch", address, str(grace_s)]
    return subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True).pid


if __name__ == "__main__":
    if sys.argv[1] == "--watch":
        sys.exit(watch_ray(sys.argv[2], float(sys.argv[3])))
    state, host_arg, port_arg, stop_arg, *rest = sys.argv[1:]
    sys.exit(supervise(Path(state), host_arg, int(port_arg), stop_arg, rest))
