"""A real multi-node Ray cluster on this one machine, brought up by `ray up` over SSH on loopback.

Each node is an sshd listening on its own 127.0.0.x address inside its own PID + mount namespace
(`unshare`), with a private home (bind-mounted over /root) and a private /tmp/ray, so the node's
`ray stop` sees and touches nothing else. The project's own `cluster-local.yaml` is rendered with
these addresses, free ports and the test's storage; nothing else in it changes. An S3-compatible
server (moto) on 127.0.0.1 stands in for the bucket. Every process started here is stopped by its
PID; killing a namespace's PID 1 ends whatever is still inside it.

Needs root, `sshd` (Debian's openssh-server), `rsync`, `unshare` and `mount`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def missing_requirements() -> str | None:
    """Why this machine cannot run the loopback cluster, or None."""
    if os.geteuid() != 0:
        return "needs root (unshare, mount, sshd)"
    for tool in ("rsync", "unshare", "mount", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"needs {tool}"
    if not os.path.exists(SSHD):
        return "needs sshd (apt-get install openssh-server)"
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll `check()` until true, or raise TimeoutError naming `what`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def http_ok(url: str) -> bool:
    """Whether GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def pid_namespace(pid: int) -> str | None:
    """The PID namespace id of a process (None if it is gone)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def cmdline(pid: int) -> str:
    """A process's command line, or '' if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class Node:
    """One loopback machine: an sshd in its own PID + mount namespace."""

    name: str
    ip: str
    base: Path
    unshare: subprocess.Popen | None = None
    init_pid: int | None = None  # PID 1 of the node's namespace, seen from outside

    @property
    def home(self) -> Path:
        """The node's private home (bind-mounted over /root inside it)."""
        return self.base / "home"

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of every process inside the node, as seen from outside."""
        ns = pid_namespace(self.init_pid) if self.init_pid else None
        if ns is None:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and pid_namespace(int(entry)) == ns:
                found.append((int(entry), cmdline(int(entry))))
        return found


@dataclass
class LoopbackCluster:
    """Nodes, the rendered cluster file, moto and the `ray up` / `ray down` calls of one test."""

    head_ip: str = "127.0.0.5"
    worker_ips: tuple[str, ...] = ("127.0.0.6",)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="anpyc-loopback-", dir="/var/tmp")))
    bucket: str = "anpyc-loopback"
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = f"anpyc-loopback-{os.getpid()}"
        self.gcs_port, self.dashboard_port, self.mlflow_port, self.s3_port = (free_port() for _ in range(4))
        self.nodes = [Node("head", self.head_ip, self.base / "head")]
        self.nodes += [Node(f"worker{i}", ip, self.base / f"worker{i}") for i, ip in enumerate(self.worker_ips)]
        self.key = self.base / "id_ed25519"
        self.config_path = self.base / "cluster.yaml"
        self.moto: subprocess.Popen | None = None

    # ------------------------------------------------------------ addresses
    @property
    def storage(self) -> str:
        """The study storage URI every node reaches."""
        return f"s3://{self.bucket}/studies"

    @property
    def tracking_uri(self) -> str:
        """The head's MLflow server, as a port-forward would show it to the laptop."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def dashboard(self) -> str:
        """The head's Ray dashboard (jobs API), as a port-forward would show it."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def aws_env(self) -> dict[str, str]:
        """Credentials and endpoint of the loopback S3 server."""
        return {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ACCESS_KEY_ID": "loopback",
            "AWS_SECRET_ACCESS_KEY": "loopback",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def laptop_env(self) -> dict[str, str]:
        """The environment of commands run 'from the laptop' (outside every node)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        env.update(self.aws_env())
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        return env

    # ----------------------------------------------------------- lifecycle
    def up(self) -> None:
        """Start S3, the nodes' sshd, and `ray up` the rendered on-prem cluster file."""
        self._start_moto()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        for node in self.nodes:
            self._start_node(node)
        self.config_path.write_text(yaml.safe_dump(self.render(), sort_keys=False))
        self.run(["ray", "up", "-y", "--no-config-cache", str(self.config_path)], timeout=600)

    def down(self) -> subprocess.CompletedProcess:
        """`ray down -y` of the rendered file (the user's command)."""
        return self.run(["ray", "down", "-y", str(self.config_path)], timeout=300, check=False)

    def stop_everything(self) -> None:
        """Stop every node (its namespace's PID 1 and so all inside), moto, and remove the files."""
        for node in self.nodes:
            for pid in (node.init_pid, node.unshare.pid if node.unshare else None):
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if node.unshare:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.unshare.wait(timeout=10)
        if self.moto is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.moto.pid, signal.SIGKILL)
            self.moto.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)

    def run(
        self, cmd: list[str], timeout: float, check: bool = True, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        """Run a command from the laptop (extra `env` on top of its environment); output goes to `self.log`."""
        full_env = {**self.laptop_env(), **(env or {})}
        out = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)
        self.log.append(f"$ {' '.join(cmd)}\n[exit {out.returncode}]\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
        if check and out.returncode != 0:
            raise RuntimeError(f"{cmd[:3]} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    # ------------------------------------------------------------- helpers
    def render(self) -> dict:
        """cluster-local.yaml with this cluster's addresses, key, ports and storage; nothing else changed."""
        text = (ROOT / "cluster-local.yaml").read_text()
        text = text.replace("6379", str(self.gcs_port)).replace(
            "--dashboard-port=8265", f"--dashboard-port={self.dashboard_port}"
        )
        text = text.replace("--port 5000", f"--port {self.mlflow_port}")
        text = text.replace("/srv/anpyc-shared/mlflow-artifacts", f"s3://{self.bucket}/mlflow-artifacts")
        config = yaml.safe_load(text)
        # one machine: each node's dashboard agent needs its own port (Ray's default 52365 is per host)
        for key, port in (("head_start_ray_commands", free_port()), ("worker_start_ray_commands", free_port())):
            config[key] = [
                cmd.replace("ray start ", f"ray start --dashboard-agent-listen-port={port} ", 1) for cmd in config[key]
            ]
        config["cluster_name"] = self.name
        config["provider"].update(head_ip=self.head_ip, worker_ips=list(self.worker_ips))
        config["auth"] = {"ssh_user": "root", "ssh_private_key": str(self.key)}
        config["min_workers"] = config["max_workers"] = len(self.worker_ips)
        config["file_mounts"] = {"~/anpyc-sweep": str(ROOT)}
        return config

    def _start_moto(self) -> None:
        self.moto = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: port_open("127.0.0.1", self.s3_port), 60, "the S3 server")
        import boto3

        env = self.aws_env()
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=self.bucket)

    def kill_node(self, node: Node) -> None:
        """The machine dies: SIGKILL its namespace's PID 1, and with it everything on the node."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.init_pid, signal.SIGKILL)
        node.unshare.wait(timeout=30)
        wait_for(lambda: not port_open(node.ip, 22), 30, f"{node.name} to go away")

    def restart_node(self, node: Node) -> None:
        """The machine boots again: same disk (home, /tmp/ray), fresh processes."""
        self._launch_node(node)

    def _start_node(self, node: Node) -> None:
        """Prepare the node's disk, then start it."""
        self._prepare_node(node)
        self._launch_node(node)

    def _prepare_node(self, node: Node) -> None:
        """The node's private home (SSH key, shell profile, venv) and host key."""
        (node.home / ".ssh").mkdir(parents=True, mode=0o700)
        os.chmod(node.home, 0o700)
        shutil.copy(f"{self.key}.pub", node.home / ".ssh" / "authorized_keys")
        os.chmod(node.home / ".ssh" / "authorized_keys", 0o600)
        # the venv already built for this checkout stands in for the one setup_commands would build
        (node.home / "anpyc-venv").symlink_to(VENV_BIN.parent)
        # what an admin puts in a node's shell profile: the bucket's endpoint and credentials
        exports = "".join(f"export {k}={v}\n" for k, v in self.aws_env().items())
        (node.home / ".bashrc").write_text(exports + "export RAY_USAGE_STATS_ENABLED=0\n")
        (node.base / "ray").mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(node.base / "host_key")], check=True)
        (node.base / "sshd_config").write_text(
            f"ListenAddress {node.ip}\nPort 22\nHostKey {node.base / 'host_key'}\n"
            f"PidFile {node.base / 'sshd.pid'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes yes\nMaxStartups 50:30:100\nMaxSessions 50\n"
            "PermitUserEnvironment no\nAcceptEnv LANG LC_*\nSubsystem sftp internal-sftp\n"
        )

    def _launch_node(self, node: Node) -> None:
        """sshd on node.ip:22 in a new PID + mount namespace with the private home and /tmp/ray."""
        os.makedirs("/run/sshd", exist_ok=True)
        os.makedirs("/tmp/ray", exist_ok=True)
        keep = ""  # the interpreter may live under /root (pyenv): keep it visible under the private home
        real = Path(os.path.realpath(sys.executable))
        if real.is_relative_to("/root"):
            top = Path("/root") / real.relative_to("/root").parts[0]
            (node.home / top.name).mkdir(exist_ok=True)
            keep = f"mount --bind {top} {node.home / top.name} && "
        script = (
            f"{keep}mount --rbind {node.home} /root && mount --bind {node.base / 'ray'} /tmp/ray && "
            f"exec {SSHD} -D -e -f {node.base / 'sshd_config'}"
        )
        log = open(node.base / "sshd.log", "ab")  # noqa: SIM115 - owned by the child
        node.unshare = subprocess.Popen(
            ["unshare", "--pid", "--mount", "--fork", "--mount-proc", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_for(lambda: port_open(node.ip, 22), 30, f"sshd on {node.ip}")
        children = Path(f"/proc/{node.unshare.pid}/task/{node.unshare.pid}/children").read_text().split()
        node.init_pid = int(children[0])
