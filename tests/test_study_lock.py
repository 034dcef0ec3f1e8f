"""One launch per study at a time; a crashed launch leaves no lock that blocks the next (issue 14, item 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from sweeper.running import study_lock
from sweeper.running.study_lock import LOCK_FILE, StudyBusy, StudyLock
from sweeper.study.spec import parse_study
from tests.conftest import TINY


def make_study(tmp_path):
    raw = {"name": "locked", "base": TINY, "seeds": [0], "storage": str(tmp_path / "out")}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, parse_study(raw)


def hold_lock_in_subprocess(study_path) -> subprocess.Popen:
    """A process that takes the study's lock (as a running launch does) and then waits."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from sweeper.study.spec import load_study
        from sweeper.running.study_lock import StudyLock
        with StudyLock(load_study({str(study_path)!r})):
            print("locked", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_launch_of_a_running_study_refuses_in_one_line(tmp_path):
    study_path, spec = make_study(tmp_path)
    holder = hold_lock_in_subprocess(study_path)
    try:
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "sweeper.cli", "launch", str(study_path), "--address", "local"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: study locked is being launched by another process")
        assert f"pid {holder.pid} on" in lines[0] and "--resume" in lines[0]
        assert time.monotonic() - start < 60  # refused before Ray or any trial started
        assert not spec.store.exists("study.yaml")
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_launch_leaves_no_stale_lock(tmp_path):
    study_path, spec = make_study(tmp_path)
    holder = hold_lock_in_subprocess(study_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with StudyLock(spec):  # taken at once: the kernel dropped the dead holder's lock
        assert (spec.study_dir / LOCK_FILE).exists()
    # the launch wrote nothing, so nothing of it stays behind
    assert not spec.study_dir.exists()


def test_object_store_lease_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path, monkeypatch):
    monkeypatch.setattr(study_lock, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(study_lock, "LEASE_S", 1.5)
    _, spec = make_study(tmp_path)
    spec.store.write_text("study.yaml", "x")  # the lease lives beside the study's files
    live = StudyLock(spec)
    live._take_lease()
    try:
        with pytest.raises(StudyBusy, match=r"being launched by another process \(pid \d+ on"):
            StudyLock(spec)._take_lease()
    finally:
        live._stop.set()  # the holder dies: its heartbeat stops, its lease stays behind
        live._beat.join()
    start = time.monotonic()
    successor = StudyLock(spec)
    successor._take_lease()
    assert time.monotonic() - start <= 1.5 + 0.2 + 1.5 + 1  # at most one lease period (+ the race check)
    successor._stop.set()
    successor._beat.join()
