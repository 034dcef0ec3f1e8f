"""Ctrl-C during `launch` (a real SIGINT to the process group, as a terminal sends it) exits 130 with the
`--resume` command and no "best"; the resume then records every trial exactly once (issue 14, item 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweeper.storage import results
from sweeper.study.spec import parse_study

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def test_ctrl_c_with_trials_running_and_pending_exits_130_and_resume_finishes(tmp_path):
    raw = {
        "name": "interrupted",
        "base": {
            "device": "cpu",
            "data": {"benchmark": "digits", "num_tasks": 3},
            "model": {"hidden": [16]},
            "strategy": {"method": "ewc"},
            "optim": {"lr": 0.05, "batch_size": 32, "epochs": 40},
        },
        "search": {"strategy.lam": {"grid": [0.5, 1.0, 2.0]}},
        "max_concurrent_trials": 1,  # one trial running, two pending when Ctrl-C comes
        "storage": str(tmp_path / "out"),
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = parse_study(raw)
    cmd = [str(BIN / "anpyc-sweep"), "launch", str(path), "--address", "local"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if spec.store.list_files(results.BOUNDARIES_TABLE.name):  # the first task of a trial is recorded
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the study ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: study interrupted interrupted with ")
    assert last.endswith(f"of 3 trials unfinished; continue it with: anpyc-sweep launch {path} --resume")
    assert "done" not in out and "best" not in out
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = results.read_trials(spec.store)
    assert len(trials) == 3 and set(trials["status"]) == {"FINISHED"}
    boundaries = spec.store.read_table(results.BOUNDARIES)
    assert len(boundaries) == 9 and not boundaries.duplicated(results.BOUNDARY_KEY).any()
