"""A real Slurm cluster on this one machine: munged, slurmctld and two slurmd "nodes" (and, with
`accounting=True`, slurmdbd on a private MariaDB, so accounts are enforced as on a real cluster).

Each slurmd runs in its own PID + mount + UTS namespace (`unshare`) with its own hostname (n1, n2), its
own 127.0.0.x address (NodeAddr) and its own port, so Slurm sees two machines; a small Python init
reaps the namespace's orphans. Everything lives in one temporary folder with its own ports: the
machine's own Slurm configuration, if any, is never read or touched. Every process started here is
stopped by its PID. Needs root, Debian's `slurm-wlm` and `munge`, and `unshare`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster.loopback import free_port, wait_for

NODES = {"n1": "127.0.0.21", "n2": "127.0.0.22"}
CPUS_PER_NODE = 2
#: Slurm's job credential lifetime, which is also how long a requeued job waits before it starts again
#: (default 120 s): long enough for the run it ended to be over on every node, shorter than the default
#: so that a requeue test does not wait two minutes; the tests let Slurm start a requeued job itself
REQUEUE_WAIT_S = 20
#: PID 1 of a node's namespace: sets the hostname, runs slurmd and reaps every orphan until slurmd exits
INIT = """
import os, socket, subprocess, sys
socket.sethostname(sys.argv[1])
slurmd = subprocess.Popen(["slurmd", "-D"])
while True:
    pid, _ = os.wait()
    if pid == slurmd.pid:
        break
"""


def missing_requirements() -> str | None:
    """Why this machine cannot run the loopback Slurm cluster, or None."""
    if os.geteuid() != 0:
        return "needs root (munge user, unshare)"
    for tool in ("slurmctld", "slurmd", "munged", "sbatch", "unshare"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"needs {tool} (apt-get install slurm-wlm munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "needs the munge user (apt-get install munge)"
    return None


def missing_accounting() -> str | None:
    """Why this machine cannot run the cluster with accounting (slurmdbd on MariaDB), or None."""
    for tool in ("slurmdbd", "mariadbd", "mariadb-install-db", "mariadb", "sacctmgr"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"needs {tool} (apt-get install slurmdbd mariadb-server)"
    return missing_requirements()


#: the accounts the accounting cluster knows: root may charge `good`, nothing else
ACCOUNT = "good"


class SlurmCluster:
    """munged + slurmctld + two slurmd nodes, configured in a private folder; `env` points clients at it."""

    def __init__(self, accounting: bool = False) -> None:
        self.accounting = accounting
        self.mariadb: subprocess.Popen | None = None
        self.slurmdbd: subprocess.Popen | None = None
        self.base = Path(tempfile.mkdtemp(prefix="anpyc-slurm-"))
        self.base.chmod(0o755)  # munged (user munge) must reach its socket folder
        self.conf = self.base / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": f"/usr/sbin:{os.environ['PATH']}"}
        self.slurmctld: subprocess.Popen | None = None
        self.nodes: dict[str, subprocess.Popen] = {}
        self.munged_pid: int | None = None

    # ------------------------------------------------------------------ up
    def up(self) -> SlurmCluster:
        """Start everything and wait until both nodes are idle."""
        try:
            self._start_munge()
            self._write_conf()
            for folder in ("state", "log", "spool"):
                (self.base / folder).mkdir()
            if self.accounting:
                self._start_accounting()
            self.slurmctld = subprocess.Popen(
                ["slurmctld", "-D", "-i"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            wait_for(lambda: self.run("sinfo").returncode == 0, 30, "slurmctld answering")
            for name in NODES:
                self.nodes[name] = subprocess.Popen(
                    ["unshare", "--pid", "--mount", "--uts", "--fork", "--mount-proc"]
                    + [sys.executable, "-c", INIT, name],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            wait_for(self.both_idle, 60, "both slurmd nodes idle")
        except BaseException:
            self.down()
            raise
        return self

    def node_states(self) -> dict[str, str]:
        """Each node's state as sinfo prints it ({"n1": "idle", "n2": "comp"})."""
        out = self.run("sinfo", "--noheader", "--Node", "--format=%n %t").stdout.split()
        return dict(zip(out[::2], out[1::2], strict=True))

    def both_idle(self) -> bool:
        """Both nodes idle: no job, and no earlier run of one still completing on them."""
        return list(self.node_states().values()).count("idle") == len(NODES)

    def _start_munge(self) -> None:
        folder = self.base / "munge"
        folder.mkdir()
        key = folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        munge = pwd.getpwnam("munge")
        for path in (folder, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        folder.chmod(0o755)
        key.chmod(0o400)
        self.socket = folder / "munge.sock"
        subprocess.run(
            ["runuser", "-u", "munge", "--", shutil.which("munged") or "/usr/sbin/munged"]
            + [f"--socket={self.socket}", f"--key-file={key}", f"--pid-file={folder / 'munged.pid'}"]
            + [f"--log-file={folder / 'munged.log'}", f"--seed-file={folder / 'munged.seed'}"],
            check=True,
            capture_output=True,
        )
        self.munged_pid = int((folder / "munged.pid").read_text())

    def _start_accounting(self) -> None:
        """A private MariaDB (root, loopback, its own port and socket), slurmdbd on it, and the cluster, the
        account `good` and user root registered, before slurmctld starts."""
        b, db = self.base, self.base / "mariadb"
        db.mkdir()
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={db}", "--skip-test-db"]
            + ["--auth-root-authentication-method=socket"],
            check=True,
            capture_output=True,
        )
        sock = b / "mariadb.sock"
        self.mariadb = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=root", f"--datadir={db}", f"--socket={sock}"]
            + [f"--port={self.db_port}", "--bind-address=127.0.0.1", f"--pid-file={b}/mariadb.pid"]
            + [f"--log-error={b}/log/mariadb.err"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        sql = ["mariadb", "--no-defaults", "-S", str(sock), "-u", "root", "-e"]
        wait_for(lambda: subprocess.run([*sql, "select 1"], capture_output=True).returncode == 0, 60, "mariadb")
        user = "'slurm'@'127.0.0.1'"
        grant = f"CREATE USER {user} IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO {user};"
        subprocess.run([*sql, grant], check=True, capture_output=True)
        conf = b / "slurmdbd.conf"  # slurmdbd reads it beside slurm.conf; it holds a password: mode 600
        conf.write_text(
            "\n".join(
                ["AuthType=auth/munge", f"AuthInfo=socket={self.socket}", "DbdHost=localhost", "DbdAddr=127.0.0.1"]
                + [f"DbdPort={self.dbd_port}", "SlurmUser=root", "StorageType=accounting_storage/mysql"]
                + ["StorageHost=127.0.0.1", f"StoragePort={self.db_port}", "StorageUser=slurm", "StoragePass=slurm"]
                + ["StorageLoc=slurm_acct_db", f"PidFile={b}/slurmdbd.pid", f"LogFile={b}/log/slurmdbd.log"]
            )
            + "\n"
        )
        conf.chmod(0o600)
        self.slurmdbd = subprocess.Popen(
            ["slurmdbd", "-D"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for(lambda: self.run("sacctmgr", "--noheader", "show", "cluster").returncode == 0, 60, "slurmdbd")
        for command in (["cluster", "anpyc-test"], ["account", ACCOUNT], ["user", "root", f"account={ACCOUNT}"]):
            done = self.run("sacctmgr", "--immediate", "add", *command)
            assert done.returncode == 0, done.stderr

    def _write_conf(self) -> None:
        b = self.base
        node_ports = {name: free_port() for name in NODES}
        lines = [
            "ClusterName=anpyc-test",
            f"SlurmctldHost={os.uname().nodename}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={next(iter(node_ports.values()))}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.socket},cred_expire={REQUEUE_WAIT_S}",
            f"StateSaveLocation={b}/state",
            f"SlurmdSpoolDir={b}/spool/%n",
            f"SlurmctldPidFile={b}/slurmctld.pid",
            f"SlurmdPidFile={b}/spool/slurmd-%n.pid",
            f"SlurmctldLogFile={b}/log/slurmctld.log",
            f"SlurmdLogFile={b}/log/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "JobCompType=jobcomp/none",
            *self._accounting_lines(),
            "JobAcctGatherType=jobacct_gather/none",
            "MinJobAge=600",
            "KillWait=15",
            "InactiveLimit=0",
        ]
        for name, ip in NODES.items():
            lines.append(
                f"NodeName={name} NodeHostname={name} NodeAddr={ip} Port={node_ports[name]} "
                f"CPUs={CPUS_PER_NODE} RealMemory=4000 State=UNKNOWN"
            )
        lines.append(f"PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    def _accounting_lines(self) -> list[str]:
        """slurm.conf's accounting: none, or slurmdbd enforcing associations (an account must exist)."""
        if not self.accounting:
            return ["AccountingStorageType=accounting_storage/none"]
        self.db_port, self.dbd_port = free_port(), free_port()
        return [
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={self.dbd_port}",
            f"AccountingStoragePass={self.socket}",  # for slurmdbd: the munge socket to authenticate with
            "AccountingStorageEnforce=associations",
        ]

    # ------------------------------------------------------------------ use
    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, ...); {} once Slurm forgot it."""
        out = self.run("scontrol", "show", "job", "--oneliner", job_id).stdout
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of slurmctld's and each slurmd's log, for a failing test's message."""
        parts = []
        for log in sorted((self.base / "log").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ------------------------------------------------------------------ down
    def down(self) -> None:
        """Cancel every job, stop the nodes, slurmctld and munged (by PID), remove the folder."""
        if self.slurmctld is not None and self.slurmctld.poll() is None:
            self.run("scancel", "--user=root", "--full")
            time.sleep(2)
        for proc in self.nodes.values():  # killing a namespace's PID 1 ends everything inside it
            if proc.poll() is None:
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                for pid in children.read_text().split() if children.exists() else []:
                    os.kill(int(pid), signal.SIGKILL)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.slurmctld is not None and self.slurmctld.poll() is None:
            self.slurmctld.terminate()
            try:
                self.slurmctld.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.slurmctld.kill()
                self.slurmctld.wait()
        for proc in (self.slurmdbd, self.mariadb):  # slurmdbd before the database it writes to
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.munged_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.munged_pid, signal.SIGTERM)
        shutil.rmtree(self.base, ignore_errors=True)
