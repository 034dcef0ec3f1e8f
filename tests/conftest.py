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
        from sweeper.launch import loopback_only

        loopback_only()  # on 127.0.0.1, as every local study
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
