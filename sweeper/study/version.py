"""Which code ran a trial: the git commit when one can be found, and always a hash of the source.

On a cluster the tree is often rsynced without `.git`; the source hash still names the code
exactly, and `ANPYC_COMMIT` (set by the launching machine, e.g. through `ray job submit
--runtime-env-json`) carries the commit across.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from pathlib import Path

import anpyc_core

PACKAGE_ROOT = Path(anpyc_core.__file__).resolve().parents[1]


@functools.cache
def source_hash() -> str:
    """sha256 (16 hex digits) over the Python sources of anpyc_core and sweeper, in path order."""
    digest = hashlib.sha256()
    for package in ("anpyc_core", "sweeper"):
        for path in sorted((PACKAGE_ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(PACKAGE_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


@functools.cache
def git_commit() -> str:
    """The commit of the code (with `-dirty` for local changes), `ANPYC_COMMIT`, or `unknown`."""
    if os.environ.get("ANPYC_COMMIT"):
        return os.environ["ANPYC_COMMIT"]
    for where in (PACKAGE_ROOT, Path.cwd()):
        commit = _git("rev-parse", "HEAD", cwd=where)
        if commit:
            dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "anpyc_core", "sweeper", cwd=where)
            return commit + ("-dirty" if dirty else "")
    return "unknown"


def code_version_tags() -> dict[str, str]:
    """MLflow tags naming the code: `anpyc_commit` and `anpyc_source_sha`."""
    return {"anpyc_commit": git_commit(), "anpyc_source_sha": source_hash()}
