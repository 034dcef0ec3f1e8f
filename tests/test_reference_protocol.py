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


def test_a_fractional_step_unit_decays_inside_epochs_at_the_floor_of_steps_over_unit():
    optim = validate_config({"optim": {"lr": 1.0, "lr_decay": 0.5, "lr_decay_steps": 2.5}}).optim
    # steps 0..5 with 2 minibatches per epoch: floor(step / 2.5) = 0, 0, 0, 1, 1, 2
    got = [learning_rate(optim, 1, step // 2, False, step % 2, 2) for step in range(6)]
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    exact = validate_config({"optim": {"lr_decay": 0.9, "lr_decay_steps": 1074.21875}}).optim  # 5·55000/256: exact
    assert learning_rate(exact, 1, 0, False, 1074, 10_000) == exact.lr  # step 1074: not yet
    assert learning_rate(exact, 1, 0, False, 1075, 10_000) == exact.lr * exact.lr_decay  # step 1075: decayed


def test_both_decay_units_at_once_are_refused_in_one_line():
    with pytest.raises(Exception) as err:
        validate_config({"optim": {"lr_decay_steps": 100, "lr_decay_epochs": 5}})
    assert "optim.lr_decay_steps and optim.lr_decay_epochs: set one decay unit" in str(err.value)
    unset = validate_config({"optim": {"lr_decay_epochs": 5}})
    assert "lr_decay_steps" not in unset.model_dump()["optim"]  # run ids from before the option stay as they were


def test_a_step_unit_of_whole_epochs_is_the_epoch_staircase_bit_for_bit():
    """lr_decay_steps = 2 epochs' minibatches decays at exactly the steps lr_decay_epochs = 2 does (same
    kernels, same order: bit for bit), through pruning rounds and across tasks; half a step less does not."""
    base = {
        "seed": 0, "device": "cpu", "data": {"benchmark": "digits", "scenario": "permuted", "num_tasks": 2},
        "model": {"hidden": [32]}, "strategy": {"method": "anpyc", "beta": 20.0},
        "optim": {"epochs": 4, "retrain_epochs": 1, "batch_size": 32, "lr": 0.1, "lr_decay": 0.5},
    }
    by_epochs = Trainer(validate_config({**base, "optim": {**base["optim"], "lr_decay_epochs": 2}}))
    batches = -(-len(by_epochs.tasks.tasks[0].train) // 32)
    runs = [by_epochs]
    for unit in (2 * batches, 2 * batches - 0.5):
        runs.append(Trainer(validate_config({**base, "optim": {**base["optim"], "lr_decay_steps": unit}})))
    for trainer in runs:
        for _ in trainer.run():
            pass
    same, earlier = (dict(r.model.named_parameters()) for r in runs[1:])
    for name, p in runs[0].model.named_parameters():
        assert torch.equal(p, same[name]), name
    assert any(not torch.equal(p, earlier[n]) for n, p in runs[0].model.named_parameters())
    assert runs[0].acc_matrix == runs[1].acc_matrix


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
    assert (cfg.optim.lr, cfg.optim.lr_decay, cfg.optim.lr_decay_first, cfg.optim.lr_decay_steps) == (
        0.02,
        0.9,
        0.99,
        5 * 55000 / 256,  # the code's decay_steps: 5 epochs of its 55,000 training images at batch 256
    )
    assert (cfg.optim.epochs, cfg.optim.retrain_epochs, cfg.strategy.lam) == (30, 30, 3.0)
    assert cfg.strategy.prune_schedule == "reference" and cfg.strategy.beta_decay == 0.8
