"""Shared fixtures: tiny digits configs that train in well under a second; and a session check that no
test leaves a server or a Ray process running."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from anpyc_core.config import apply_overrides, validate_config
from anpyc_core.data import build_tasks, load_raw

TINY = {
    "seed": 3,
    "device": "cpu",
    "data": {"benchmark": "digits", "scenario": "split", "num_tasks": 3},
    "model": {"hidden": [16, 16]},
    "strategy": {"method": "anpyc", "lam": 1.0, "importance_batch": 1, "beta": 30},
    "optim": {"lr": 0.05, "batch_size": 32, "epochs": 2, "retrain_epochs": 1},
}


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, no dashboard)."""
    import ray

    if not ray.is_initialized():
        # address="local": always a fresh instance, never a cluster some other test started
        from sweeper.running.launch import loopback_only

        loopback_only()  # on 127.0.0.1, as every local study
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


#: What a test may start and must stop (matched in a process's command line).
SERVICES = ("raylet", "gcs_server", "ray::", "default_worker.py", "mlflow", "moto", "sshd", "slurmctld", "slurmd")
LEFTOVER_WAIT_S = 30.0  # Ray's processes take a few seconds to exit after ray.shutdown()


def service_processes() -> dict[int, str]:
    """PID -> command line of every running process that is one of SERVICES (zombies have no command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and any(name in cmd for name in SERVICES):
            found[int(entry.name)] = cmd[:160]
    return found


def pytest_sessionstart(session):
    """Note the services already running (a developer's own Ray or sshd is not the suite's)."""
    session.config.services_before = service_processes()


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a test left a service running (after every fixture has been torn down)."""
    before = getattr(session.config, "services_before", None)
    if before is None or os.environ.get("ANPYC_ALLOW_LEFTOVERS") == "1":
        return
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while True:
        left = {pid: cmd for pid, cmd in service_processes().items() if before.get(pid) != cmd}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items())]
        text = "tests left these processes running (every test must stop what it starts):\n" + "\n".join(lines)
        if reporter is not None:
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        for pid in left:  # reported and failed; then stopped, so the next run starts clean
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def digits():
    """The raw digits dataset, loaded once."""
    return load_raw("digits")


@pytest.fixture
def make_cfg():
    """Build a validated tiny config with dotted-key overrides."""

    def make(**overrides):
        return validate_config(apply_overrides(TINY, {k.replace("__", "."): v for k, v in overrides.items()}))

    return make


@pytest.fixture
def make_trainer(digits, make_cfg):
    """A Trainer on tiny digits for the given overrides."""
    from anpyc_core.trainer import Trainer

    def make(progress=None, **overrides):
        cfg = make_cfg(**overrides)
        return Trainer(cfg, tasks=build_tasks(cfg.data, digits, cfg.seed), progress=progress)

    return make


def watch_freed_weights(trainer) -> list[tuple[str, int, int]]:
    """Check after every training epoch that the round's free weights are exactly 0; the returned list
    fills with (parameter name, freed count, tensor rank) per check."""
    import torch

    strategy, seen, real_epoch = trainer.strategy, [], trainer._epoch

    def checking_epoch(t, split, opt, epoch):
        loss = real_epoch(t, split, opt, epoch)
        if strategy._round_free is not None:
            for name, p in strategy.params.items():
                freed = strategy._round_free[name]
                seen.append((name, int(freed.sum()), p.dim()))
                assert torch.equal(p.detach()[freed], torch.zeros(int(freed.sum()))), name
        return loss

    trainer._epoch = checking_epoch
    return seen
