"""Whole runs: determinism, checkpoint/resume equality, result contents, divergence."""

import json

import pytest
import torch

from anpyc_core.data import build_tasks
from anpyc_core.trainer import Trainer, TrainingDiverged

METHODS = ["anpyc", "ewc", "mas", "si", "finetune", "sgd", "sgd_f", "lwf", "joint", "hat"]


def finish(trainer):
    for _ in trainer.run():
        pass
    return trainer.result()


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_fills_the_whole_matrix(make_trainer, method):
    # HAT's sparsity term (c = 0.75) closes every gate of a 16-unit net on digits' few batches
    # (docs/method.md), so its smoke run uses 128 units and 6 epochs
    extra = {"optim__epochs": 6, "model__hidden": [128, 128]} if method == "hat" else {}
    result = finish(make_trainer(strategy__method=method, **extra))
    T = 3
    assert len(result.acc_matrix) == T + 1 and all(len(r) == T for r in result.acc_matrix)
    assert len(result.val_acc_matrix) == T + 1
    assert all(0 <= v <= 100 for row in result.acc_matrix for v in row)
    assert result.metrics["fwt"] is None
    assert result.metrics["acc"] > 60  # every method learns something on digits


def test_same_seed_gives_bit_identical_results(make_trainer):
    a = make_trainer(model__dropout=0.1)
    b = make_trainer(model__dropout=0.1)
    ra, rb = finish(a), finish(b)
    assert ra.acc_matrix == rb.acc_matrix and ra.val_acc_matrix == rb.val_acc_matrix
    for (k, x), (_, y) in zip(a.strategy.state_dict().items(), b.strategy.state_dict().items(), strict=True):
        assert torch.equal(x, y), k
    c = finish(make_trainer(model__dropout=0.1, seed=4))
    assert c.acc_matrix != ra.acc_matrix


@pytest.mark.parametrize(
    "method,extra",
    [
        ("anpyc", {}),
        ("si", {"optim__momentum": 0.9}),
        ("lwf", {}),
        ("anpyc", {"strategy__pruning": "random"}),
    ],
)
def test_resume_from_checkpoint_equals_uninterrupted_run(make_trainer, tmp_path, method, extra):
    overrides = {"strategy__method": method, "model__dropout": 0.1, **extra}
    full = make_trainer(**overrides)
    expected = finish(full)

    first = make_trainer(**overrides)
    first.run_task(0)
    first.save_checkpoint(tmp_path / "ckpt.pt")
    del first
    resumed = make_trainer(**overrides)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.next_task == 1
    result = finish(resumed)
    assert result.acc_matrix == expected.acc_matrix
    assert result.val_acc_matrix == expected.val_acc_matrix
    for (k, x), (_, y) in zip(full.strategy.state_dict().items(), resumed.strategy.state_dict().items(), strict=True):
        assert torch.equal(x, y), k


def test_checkpoint_holds_the_whole_continual_learning_state(make_trainer):
    tr = make_trainer(strategy__method="si")
    tr.run_task(0)
    keys = set(tr.checkpoint_state()["strategy"])
    for part in (
        "model.trunk.0.weight",
        "model.heads.2.bias",
        "omega.trunk_0_weight",
        "anchor.trunk_1_bias",
        "free.trunk_0_weight",
        "si_path.trunk_0_weight",
        "has_free",
    ):
        assert part in keys


def test_checkpoint_from_another_config_is_refused(make_trainer, tmp_path):
    tr = make_trainer()
    tr.run_task(0)
    tr.save_checkpoint(tmp_path / "c.pt")
    other = make_trainer(strategy__lam=2.0)
    with pytest.raises(ValueError, match="checkpoint belongs to run"):
        other.load_checkpoint(tmp_path / "c.pt")


def test_joint_reference_gives_fwt(make_trainer, digits, make_cfg):
    joint = finish(make_trainer(strategy__method="joint"))
    assert joint.acc_matrix[1] == joint.acc_matrix[3]  # one training phase
    cfg = make_cfg(strategy__method="finetune")
    ref = {"test": joint.acc_matrix[-1], "val": joint.val_acc_matrix[-1]}
    tr = Trainer(cfg, tasks=build_tasks(cfg.data, digits, cfg.seed), joint_reference=ref)
    result = finish(tr)
    P = result.acc_matrix
    expected = ((P[2][1] - ref["test"][1]) + (P[3][2] - ref["test"][2])) / 2
    assert result.metrics["fwt"] == pytest.approx(expected)
    assert result.val_metrics["fwt"] is not None


def test_result_carries_fingerprint_and_timings(make_trainer):
    result = finish(make_trainer())
    fp = result.fingerprint
    assert fp["benchmark"] == "digits" and fp["num_tasks"] == 3 and fp["importance_batch"] == 1
    assert fp["model"]["hidden"] == [16, 16] and fp["version"] and len(fp["hash"]) == 12
    assert len(result.task_seconds) == 3 and result.seconds == pytest.approx(sum(result.task_seconds))
    json.dumps(result.to_dict())


def test_progress_reports_every_epoch_and_task(make_trainer):
    lines = []
    finish(make_trainer(progress=lines.append, strategy__pruning="none"))
    assert sum("epoch" in line for line in lines) == 3 * 2
    assert sum(line.startswith("task ") and " done in " in line for line in lines) == 3
    # before tasks 2 and 3 the penalty's stability number per tensor (issue 15, item 3)
    stability = [line for line in lines if "stability lr·2λ·max Ω per tensor: trunk.0.weight" in line]
    assert [line.split(":")[0] for line in stability] == ["task 2", "task 3"]


def test_diverging_loss_raises_a_clear_error(make_trainer):
    tr = make_trainer(optim__lr=1e6, strategy__pruning="none", strategy__method="finetune")
    with pytest.raises(TrainingDiverged, match="task 1 epoch .*loss became"):
        finish(tr)


def test_a_penalty_past_the_stability_limit_is_a_divergence_while_the_loss_is_still_finite(make_trainer):
    # EWC at λ = 1000 on digits: the stability number lr·2λ·max Ω is 3.1 before task 2, so the penalty step
    # grows the distance to θ* every step. The run's loss stays finite (1.6e5 at task 3) while the penalty
    # reaches 1e19: before the runaway test it finished with every task wiped. 1e6 × max(1, loss) is the
    # runaway bound (anpyc_core/schedule.py); a stable run's penalty stays of the order of its loss.
    lines = []
    tr = make_trainer(strategy__method="ewc", strategy__lam=1000.0, progress=lines.append)
    with pytest.raises(TrainingDiverged, match=r"task \d epoch \d+: penalty .* ran away \(training loss") as err:
        finish(tr)
    loss = float(str(err.value).split("training loss ")[1].split(")")[0])
    assert loss == loss and loss != float("inf")  # the loss alone would not have stopped it
    assert any(line.startswith("warning: task 2: lr·2λ·max Ω") for line in lines)  # it was warned of
    stable = finish(make_trainer(strategy__method="ewc", strategy__lam=100.0))  # stability 0.41: no false alarm
    assert stable.metrics["acc"] > 60
