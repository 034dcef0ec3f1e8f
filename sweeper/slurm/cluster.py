"""What the Slurm cluster has and is running, asked through its own commands (sinfo, squeue, sbatch)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from sweeper.slurm.script import job_name

SLURM_TIMEOUT_S = 60
SHARED_FILESYSTEMS = {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "cephfs", "ceph", "fuse.sshfs"}
GPU_GRES = re.compile(r"gpu(?::[\w.-]+)?:(\d+)")


class SlurmError(RuntimeError):
    """Slurm cannot take this job (one line naming the problem; exit 2, nothing submitted)."""


def run(*args: str) -> str:
    """stdout of a Slurm command; SlurmError with its first error line if it fails."""
    if shutil.which(args[0]) is None:
        raise SlurmError(f"Slurm is not installed on this machine (no {args[0]} on PATH): run this on a login node")
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{args[0]} did not answer in {SLURM_TIMEOUT_S} s: is slurmctld up?") from None
    if done.returncode != 0:
        said = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise SlurmError(f"{' '.join(args[:2])}: {said[-1] if said else f'exit {done.returncode}'}")
    return done.stdout


def partitions() -> dict[str, int]:
    """Every partition and the most GPUs any of its nodes has."""
    out: dict[str, int] = {}
    for line in run("sinfo", "--noheader", "--format=%R %G").splitlines():
        name, _, gres = line.strip().partition(" ")
        gpus = max((int(n) for n in GPU_GRES.findall(gres)), default=0)
        out[name] = max(out.get(name, 0), gpus)
    return out


def default_partition() -> str | None:
    """The partition marked default (`*` in sinfo), if any."""
    for line in run("sinfo", "--noheader", "--format=%P").splitlines():
        if line.strip().endswith("*"):
            return line.strip().rstrip("*")
    return None


def check_request(partition: str | None, gpus_per_node: int) -> None:
    """Refuse an unknown partition, or more GPUs per node than any node of it has (SlurmError)."""
    known = partitions()
    if partition is not None and partition not in known:
        raise SlurmError(f"--partition {partition}: no such partition; this cluster has {', '.join(sorted(known))}")
    chosen = partition or default_partition()
    most = known.get(chosen, max(known.values(), default=0)) if chosen else max(known.values(), default=0)
    if gpus_per_node > most:
        where = f"partition {chosen}" if chosen else "this cluster"
        raise SlurmError(f"--gpus-per-node {gpus_per_node}: no node of {where} has more than {most} GPU(s) (sinfo)")


def jobs_of(study: str) -> list[tuple[str, str]]:
    """(job id, state) of the study's jobs in the queue (pending, running, requeued)."""
    out = run("squeue", "--noheader", f"--name={job_name(study)}", "--format=%i %T")
    return [tuple(line.split()[:2]) for line in out.splitlines() if line.strip()]


def test_only(script: str, account: str | None = None) -> None:
    """`sbatch --test-only`: Slurm's own verdict on the script (account, partition, limits), nothing submitted;
    a refused `account` is named as the option the user gave."""
    try:
        run("sbatch", "--test-only", script)
    except SlurmError as err:
        if account is not None and "account" in str(err).lower():
            reason = str(err).partition(": ")[2]
            raise SlurmError(
                f"--account {account}: Slurm refuses it ({reason}); `sacctmgr show associations user=$USER` "
                "lists the accounts you may charge"
            ) from None
        raise


def submit(script: str) -> str:
    """Submit the script; its job id."""
    return run("sbatch", "--parsable", script).strip().split(";")[0]


def filesystem_type(path: str) -> str:
    """The type of the filesystem `path` lives on (from /proc/mounts; '' if unknown)."""
    best, kind = "", ""
    target = os.path.realpath(path)
    try:
        mounts = open("/proc/mounts").read().splitlines()  # noqa: SIM115 - one read
    except OSError:
        return ""
    for line in mounts:
        parts = line.split()
        inside = len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/"))
        if inside and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


def shared(path: str) -> bool:
    """Whether `path` is on a filesystem every node can see (NFS, Lustre, GPFS, BeeGFS, CephFS, ...)."""
    return filesystem_type(path) in SHARED_FILESYSTEMS
