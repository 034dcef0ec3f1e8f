"""Shared fixtures: tiny digits configs that train in well under a second."""

from __future__ import annotations

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
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield


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
