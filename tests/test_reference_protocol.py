"""The authors' protocol in config (issue 15, items 1 and 3): the lr staircase with its own rate in
task 1's initial phase, the reference initialisation and pruning schedule, and the stability number."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anpyc_core.config import load_config, validate_config
from anpyc_core.pruning import prune_percentages
from anpyc_core.schedule import learning_rate
from anpyc_core.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def test_staircase_uses_its_first_rate_only_in_task_ones_initial_phase():
    optim = validate_config(
        {"optim": {"lr": 0.02, "lr_decay": 0.9, "lr_decay_first": 0.99, "lr_decay_epochs": 5}}
    ).optim
    assert learning_rate(optim, 0, 4, True) == 0.02
    assert learning_rate(optim, 0, 29, True) == pytest.approx(0.02 * 0.99**5)
    # task 1's pruning rounds: the counter goes on, the rate is the general one
    assert learning_rate(optim, 0, 35, False) == pytest.approx(0.02 * 0.9**7)
    # later tasks: the counter restarts, the general rate from the start
    assert learning_rate(optim, 1, 5, True) == pytest.approx(0.02 * 0.9)
    plain = validate_config({"optim": {"lr": 0.1, "lr_decay": 0.5, "lr_decay_epochs": 2}}).optim
    assert learning_rate(plain, 0, 5, True) == 0.1 * 0.5**2  # without lr_decay_first: as before


def test_trainer_applies_the_schedule_through_the_pruning_rounds(make_trainer, monkeypatch):
    tr = make_trainer(
        optim__lr=0.05, optim__lr_decay=0.5, optim__lr_decay_first=0.9, optim__epochs=2, optim__retrain_epochs=1
    )
    seen = []
    real = Trainer._epoch

    def record(self, t, split, opt, epoch):
        loss = real(self, t, split, opt, epoch)
        seen.append((t, epoch, opt.param_groups[0]["lr"]))
        return loss

    monkeypatch.setattr(Trainer, "_epoch", record)
    tr.run_task(0)
    tr.run_task(1)
    task1 = [(e, lr) for t, e, lr in seen if t == 0]
    assert task1[:2] == [(0, 0.05), (1, pytest.approx(0.05 * 0.9))]  # initial phase: the first rate
    assert all(lr == pytest.approx(0.05 * 0.5**e) for e, lr in task1[2:]) and len(task1) > 2  # rounds
    assert [(e, lr) for t, e, lr in seen if t == 1][:2] == [(0, 0.05), (1, pytest.approx(0.025))]


def test_reference_init_is_a_truncated_normal_with_constant_biases():
    cfg = validate_config({"device": "cpu", "model": {"hidden": [256, 64], "init": "reference"}})
    tr = Trainer(cfg)
    for layer in [*tr.model.trunk, *tr.model.heads]:
        assert torch.all(layer.weight.abs() <= 0.2) and torch.all(layer.bias == 0.1)
    first = tr.model.trunk[1].weight  # 16384 values: std of N(0, 0.1) cut at 2 std is 0.088
    assert 0.084 < float(first.detach().std()) < 0.092


def test_reference_pruning_schedule_decays_in_integers_and_overshoots():
    assert prune_percentages(0, 50, 0.8, 10, "reference") == [10, 20, 30, 40, 50]
    assert prune_percentages(1, 50, 0.8, 10, "reference") == [10, 20, 30, 40]  # int(0.8 * 50) = 40
    assert prune_percentages(2, 50, 0.8, 10, "reference") == [10, 20, 30, 40]  # P_2 = 32: overshoots to 40
    assert prune_percentages(2, 50, 0.8, 10, "exact") == pytest.approx([10, 20, 30, 32.0])
    assert prune_percentages(9, 50, 0.8, 10, "reference")[-1] == 10  # int(0.8·…) reaches 6: one round of 10


def test_stability_number_is_logged_per_task_and_warns_above_two(make_trainer):
    lines = []
    tr = make_trainer(progress=lines.append, strategy__pruning="none", strategy__lam=1.0e9, optim__lr=0.05)
    tr.run_task(0)
    omega = tr.strategy.importance()
    expected = 0.05 * 2 * 1.0e9 * max(float(o.max()) for o in omega.values())
    try:
        record = tr.run_task(1)
    except Exception:  # it may diverge, as warned
        record = None
    warning = [line for line in lines if line.startswith("warning: task 2: lr·2λ·max Ω = ")]
    assert len(warning) == 1 and "exceeds 2: the penalty step will diverge" in warning[0]
    assert tr.stability == pytest.approx(expected, rel=1e-6)
    assert record is None or record.stability == pytest.approx(expected, rel=1e-6)


def test_the_reference_config_validates_and_says_the_codes_settings():
    cfg = load_config(ROOT / "configs" / "reference_permuted.yaml")
    assert cfg.model.hidden == [64, 32] and cfg.model.dropout == 0.5 and cfg.model.init == "reference"
    assert (cfg.optim.lr, cfg.optim.lr_decay, cfg.optim.lr_decay_first, cfg.optim.lr_decay_epochs) == (
        0.02,
        0.9,
        0.99,
        5,
    )
    assert (cfg.optim.epochs, cfg.optim.retrain_epochs, cfg.strategy.lam) == (30, 30, 3.0)
    assert cfg.strategy.prune_schedule == "reference" and cfg.strategy.beta_decay == 0.8
