"""`launch` prints one status line per event, not Tune's boxes, logs and tracebacks (issue 14, item 2)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sweeper.running.console import OWED_S, ProgressLine
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE, study_experiment, tracking_client

BIN = Path(sys.executable).parent
STATUS = re.compile(r"study quiet: \d+/3 done \(\d diverged, \d failed\), \d running, \d pending( · .*)?")


def write_study(tmp_path) -> Path:
    raw = {
        "name": "quiet",
        "description": "three trials; the one at lambda 1e12 diverges on purpose",
        "base": {
            "device": "cpu",
            "data": {"benchmark": "digits", "num_tasks": 2},
            "model": {"hidden": [16]},
            "strategy": {"method": "ewc"},
            "optim": {"lr": 0.05, "batch_size": 32, "epochs": 2},
        },
        "search": {"strategy.lam": {"grid": [1.0, 2.0, 1.0e12]}},
        "storage": str(tmp_path / "out"),
    }
    path = tmp_path / "quiet.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.e2e
def test_default_console_is_a_few_plain_lines(tmp_path):
    path = write_study(tmp_path)
    proc = subprocess.run(
        [str(BIN / "anpyc-sweep"), "launch", str(path), "--address", "local"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr.strip().splitlines()
    assert err[0] == "quiet: three trials; the one at lambda 1e12 diverges on purpose"
    assert all(STATUS.fullmatch(line) for line in err[1:]), err
    assert err[-1].startswith("study quiet: 3/3 done (1 diverged, 0 failed), 0 running, 0 pending · best mean val_acc")
    out = proc.stdout.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("study quiet done:") and out[1].startswith("best configuration")
    for noise in ("Traceback", "WARNING", "INFO", "╭", "tensorboard", "Trial name"):
        assert noise not in proc.stdout + proc.stderr, noise
    # no per-trial Tune log files (sweeper/running/tune_logs.py): the results live in Parquet and MLflow only
    assert not list((tmp_path / "out").rglob("result.json")) and not list((tmp_path / "out").rglob("events.out.*"))
    # a fresh local Ray is on loopback only: every trial ran on a node at 127.0.0.1 (the run's node_ip tag)
    spec = parse_study(yaml.safe_load(path.read_text()))
    client = tracking_client(spec.resolved_tracking_uri())
    runs = client.search_runs([study_experiment(client, spec)], f"tags.{TAG_ROLE} = 'trial'")
    assert len(runs) == 3 and {r.data.tags.get("node_ip") for r in runs} == {"127.0.0.1"}


def test_a_failed_trial_is_one_line_with_its_reason_and_traceback_file(tmp_path):
    spec = parse_study({"name": "quiet", "storage": str(tmp_path)})
    stream = io.StringIO()
    line = ProgressLine(spec, total=2, stream=stream)
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n")
    trial = SimpleNamespace(
        trial_id="t1",
        config={"ablation": "full", "point": {"strategy.lam": 4}},
        last_result={},
        error_file=str(error_file),
    )
    line.on_trial_start(0, [], trial)
    line.on_trial_error(0, [], trial)
    lines = stream.getvalue().strip().splitlines()
    assert lines[0] == (
        f"trial t1 (full {{'strategy.lam': 4}}) failed: RuntimeError: CUDA out of memory (traceback: {error_file})"
    )
    assert lines[-1].startswith("study quiet: 1/2 done (0 diverged, 1 failed), 0 running, 1 pending")


def test_off_a_terminal_a_trials_end_is_printed_once_the_next_trial_has_its_slot(tmp_path, monkeypatch):
    spec = parse_study({"name": "quiet", "storage": str(tmp_path)})
    stream = io.StringIO()
    line = ProgressLine(spec, total=3, stream=stream)
    config = {"ablation": "full", "point": {}}
    trials = [SimpleNamespace(trial_id=f"t{i}", config=config, last_result={}) for i in range(3)]
    for trial in trials[:2]:
        line.on_trial_start(0, [], trial)
    trials[0].last_result = {"val_acc": 90.0}
    line.on_trial_complete(0, [], trials[0])
    line.on_step_end(0, [])  # at once: the slot is still being handed over, nothing printed yet
    assert stream.getvalue() == ""
    line.on_trial_start(0, [], trials[2])
    counts = [text.split(" · ")[0] for text in stream.getvalue().splitlines()]  # the counts, without best and ETA
    assert counts == ["study quiet: 1/3 done (0 diverged, 0 failed), 2 running, 0 pending"]
    trials[1].last_result = {"val_acc": 80.0}
    line.on_trial_complete(0, [], trials[1])  # nothing pending: printed at once
    assert stream.getvalue().splitlines()[-1].startswith("study quiet: 2/3 done (0 diverged, 0 failed), 1 running")
    # a trial's end that no start follows is printed after OWED_S (here: a study whose last slot stays empty)
    line = ProgressLine(spec, total=3, stream=(stream := io.StringIO()))
    for trial in trials[:2]:
        line.on_trial_start(0, [], trial)
    line.on_trial_complete(0, [], trials[0])
    clock = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: clock + OWED_S)
    line.on_step_end(0, [])
    counts = [text.split(" · ")[0] for text in stream.getvalue().splitlines()]
    assert counts == ["study quiet: 1/3 done (0 diverged, 0 failed), 1 running, 1 pending"]


def test_the_best_mean_ranks_a_configuration_that_lost_a_seed_last(tmp_path, monkeypatch):
    """As `best`: λ = 32 averages 95 over its one surviving seed but lost the other to divergence, so the
    status line's best is λ = 4 (85 over 2 seeds); only when every configuration lost a seed does one that lost
    a seed lead, and the line says so. A resumed study's recorded divergence counts the same way."""
    import pandas as pd

    spec = parse_study({"name": "quiet", "storage": str(tmp_path), "search": {"strategy.lam": {"grid": [4, 32]}}})
    clock = [time.monotonic()]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    def end(line, tid, lam, result):
        trial = SimpleNamespace(trial_id=tid, config={"ablation": "full", "point": {"strategy.lam": lam}})
        line.on_trial_start(0, [], trial)
        trial.last_result = result
        line.on_trial_complete(0, [], trial)
        clock[0] += 1.0  # past BEST_EVERY_S: the next read recomputes the best

    line = ProgressLine(spec, total=6, stream=io.StringIO())
    end(line, "a", 32, {"val_acc": 95.0})
    assert line.best_mean() == (95.0, 1, 0)
    end(line, "b", 32, {"diverged": "task 2: loss became nan"})
    end(line, "c", 4, {"val_acc": 80.0})
    end(line, "d", 4, {"val_acc": 90.0})
    assert line.best_mean() == (85.0, 2, 0)
    assert "best mean val_acc 85.00 (n=2)" in line.status()
    end(line, "e", 4, {"diverged": "task 3: loss became nan"})  # now both lost a seed: the better mean leads
    assert line.best_mean() == (95.0, 1, 1)
    assert "best mean val_acc 95.00 (n=1, 1 diverged)" in line.status()
    prior = pd.DataFrame(
        [
            {"trial_id": "a", "status": "FINISHED", "ablation": "full", "cfg.strategy.lam": 32, "val_acc": 95.0},
            {"trial_id": "b", "status": "DIVERGED", "ablation": "full", "cfg.strategy.lam": 32, "val_acc": None},
            {"trial_id": "c", "status": "FINISHED", "ablation": "full", "cfg.strategy.lam": 4, "val_acc": 80.0},
        ]
    )
    resumed = ProgressLine(spec, total=6, prior=prior, stream=io.StringIO())
    assert resumed.best_mean() == (80.0, 1, 0)
