"""Pruning never silently wipes out a task (issue 28, item 2): each round's validation accuracy is recorded,
a round that costs too much is reported and flagged, and `prune_tolerance` undoes it."""

from __future__ import annotations

import pytest
import torch

from anpyc_core.config import ConfigError, validate_config
from anpyc_core.packing import pack_refusal
from anpyc_core.strategies.base import round_warning
from anpyc_core.trainer import Trainer, TrainingDiverged

#: a 16-16 MLP on split digits whose 45 % rounds, with the {Ω = 0} rule, free most of the trunk at once
WIPING = {
    "seed": 3,
    "device": "cpu",
    "data": {"benchmark": "digits", "num_tasks": 2},
    "model": {"hidden": [16, 16]},
    "strategy": {"method": "anpyc", "beta": 95, "prune_step": 45},
    "optim": {"lr": 0.05, "batch_size": 32, "epochs": 2, "retrain_epochs": 1},
}


def run_first_task(tolerance=None):
    raw = {**WIPING, "strategy": {**WIPING["strategy"], "prune_tolerance": tolerance}}
    lines: list[str] = []
    trainer = Trainer(validate_config(raw), progress=lines.append)
    record = trainer.run_task(0)
    return trainer, record, [line for line in lines if line.startswith("warning: task 1 round")]


def test_every_round_records_its_accuracy_and_a_wiping_round_is_reported_and_flagged():
    trainer, record, warnings = run_first_task()
    assert [r["round"] for r in record.rounds] == [1, 2, 3]
    for before, after in zip(record.rounds, record.rounds[1:], strict=False):
        assert after["val_before"] == before["val_acc"]  # each round starts where the last one ended
    first = record.rounds[0]
    assert first["val_before"] - first["val_acc"] > 10 and "flag" in first and "undone" not in first
    assert len(warnings) == 1 and "the {Ω = 0} rule freed" in warnings[0] and "trunk.0.weight" in warnings[0]
    assert trainer.prune_flags == [first["flag"]]
    assert record.val_acc_row[0] == pytest.approx(record.rounds[-1]["val_acc"])  # the task ends where it was left


def test_prune_tolerance_undoes_the_round_that_costs_too_much_and_stops():
    untouched, _, _ = run_first_task()
    trainer, record, warnings = run_first_task(tolerance=3.0)
    assert len(record.rounds) == 1 and record.rounds[0]["undone"] is True
    assert "undone (prune_tolerance 3)" in warnings[0] and "from before its first round" in warnings[0]
    assert record.val_acc_row[0] == record.rounds[0]["val_before"]  # the weights from before the round, exactly
    assert trainer.strategy.free_count() == 0  # and its free set: nothing was pruned in the end
    assert untouched.strategy.free_count() > 0
    assert len(trainer.prune_flags) == 1


def test_an_undone_round_takes_its_retraining_loss_with_it():
    """The task's reported training loss is the last kept epoch's, not the undone round's retraining."""
    raw = {**WIPING, "strategy": {**WIPING["strategy"], "prune_tolerance": 3.0}}
    trainer = Trainer(validate_config(raw), progress=lambda _: None)
    losses: list[float] = []
    epoch = trainer._epoch
    trainer._epoch = lambda *args: losses.append(epoch(*args)) or losses[-1]
    record = trainer.run_task(0)
    assert record.rounds[0]["undone"] is True and len(losses) == WIPING["optim"]["epochs"] + 1
    assert record.loss == losses[WIPING["optim"]["epochs"] - 1] != losses[-1]


def test_after_an_undone_first_round_later_tasks_run_no_rounds_and_say_so():
    raw = {**WIPING, "data": {"benchmark": "digits", "num_tasks": 3}}  # the last task prunes nothing anyway
    lines: list[str] = []
    cfg = validate_config({**raw, "strategy": {**WIPING["strategy"], "prune_tolerance": 3.0}})
    trainer = Trainer(cfg, progress=lines.append)
    first = trainer.run_task(0)
    assert first.rounds[0]["undone"] is True
    measured = []
    measure = trainer.strategy.measure
    trainer.strategy.measure = lambda task, data, round_index: (
        measured.append((task, round_index)) or measure(task, data, round_index)
    )
    second = trainer.run_task(1)  # task 1 kept every weight, so no weight is left free for task 2 to prune
    assert second.rounds == []  # no round: a round would free nothing and only retrain (it cost > 5 points)
    assert measured == [(1, 0)]  # only the Ω that consolidation needs; no round's Ω
    assert any(line.startswith("task 2: no pruning rounds: the earlier tasks left no weight free") for line in lines)
    assert trainer.strategy.free_count() == 0
    nothing = {**first.rounds[0], **{k: 0.0 for k in first.rounds[0] if k.startswith("freed:")}}
    costly = {**nothing, "val_before": 96.0, "val_acc": 50.0}
    line = round_warning(trainer.strategy, 1, 1, costly, 5.0)
    assert line == (
        "task 2 round 2: val 96.0 -> 50.0 % (more than 5 points); the {Ω = 0} rule freed no weight: "
        "the round's retraining epoch cost it"
    )  # a round that freed nothing (should one run): not "freed 0 % of ...", its cost cannot be the pruning's
    assert "rule freed" in round_warning(trainer.strategy, 0, 0, first.rounds[0], 3.0)  # task 1's did free


def test_without_pretraining_a_task_with_nothing_left_free_still_trains():
    raw = {**WIPING, "data": {"benchmark": "digits", "num_tasks": 3}}
    raw = {**raw, "strategy": {**WIPING["strategy"], "pruning": "greedy_no_pretrain", "prune_tolerance": 3.0}}
    trainer = Trainer(validate_config(raw))
    trainer.run_task(0)
    with torch.no_grad():  # as an undone first round leaves it: the task pruned, and kept every weight
        for _, mask in trainer.strategy.free.items():
            mask.fill_(False)
    before = [p.detach().clone() for p in trainer.model.trunk.parameters()]
    second = trainer.run_task(1)  # no rounds to train in, so its initial training phase is not skipped
    assert second.rounds == []
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.trunk.parameters(), strict=True))
    assert second.val_acc_row[1] > 80  # two digit classes, learned (chance is 50)


def test_a_kept_round_within_tolerance_leaves_the_schedule_as_it_was():
    raw = {**WIPING, "strategy": {"method": "anpyc", "beta": 20, "prune_step": 10, "zero_importance": "rank"}}
    plain = Trainer(validate_config(raw))
    plain.run_task(0)
    guarded = Trainer(validate_config({**raw, "strategy": {**raw["strategy"], "prune_tolerance": 50.0}}))
    guarded.run_task(0)
    for (name, a), b in zip(plain.model.state_dict().items(), guarded.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # measuring accuracy draws nothing and changes nothing: same run
    assert plain.strategy.free_count() == guarded.strategy.free_count() > 0


def blow_up_in_round(trainer: Trainer, index: int) -> None:
    """Make round `index` of the first task diverge, as a VGG-9 round with a large step does: a trunk weight
    becomes inf, so the retraining loss becomes NaN (nothing else of the run is touched)."""
    begin = trainer.strategy.begin_round

    def begin_round(task, i, percent, data, optimizer):
        begin(task, i, percent, data, optimizer)
        if i == index:
            with torch.no_grad():
                trainer.model.trunk[0].weight[0, 0] = float("inf")

    trainer.strategy.begin_round = begin_round


@pytest.mark.parametrize("index", [0, 1])
def test_a_round_whose_retraining_diverges_is_undone_with_a_tolerance(index):
    raw = {**WIPING, "strategy": {**WIPING["strategy"], "zero_importance": "rank", "prune_tolerance": 100.0}}
    lines: list[str] = []
    trainer = Trainer(validate_config(raw), progress=lines.append)
    blow_up_in_round(trainer, index)
    record = trainer.run_task(0)
    last = record.rounds[-1]
    assert len(record.rounds) == index + 1 and last["undone"] is True and last["val_acc"] is None
    assert "retraining diverged" in last["flag"] and "nan" in last["flag"]
    before = "from before its first round" if index == 0 else f"after round {index}"
    assert any("retraining diverged" in ln and before in ln for ln in lines)
    assert record.val_acc_row[0] == last["val_before"]  # the weights from before the round, exactly
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert trainer.prune_flags == [last["flag"]]
    trainer.run_task(1)  # and the run goes on with the next task


def test_without_a_tolerance_a_diverging_round_is_a_diverged_trial():
    trainer = Trainer(validate_config(WIPING))
    blow_up_in_round(trainer, 0)
    with pytest.raises(TrainingDiverged, match="task 1 epoch 3: training loss became nan"):
        trainer.run_task(0)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("strategy.prune_tolerance", 150, "strategy.prune_tolerance: Input should be less than or equal to 100"),
        ("strategy.prune_tolerance", -1, "strategy.prune_tolerance: Input should be greater than or equal to 0"),
        ("model.init", "kaiming", "model.init: 'kaiming' is not one of auto, default, torchvision, reference"),
        ("model.init", "torchvision", "model.init: torchvision initialises the CNNs"),
    ],
)
def test_bad_init_and_tolerance_are_one_line_naming_the_field_and_the_allowed_values(field, value, needle):
    section, name = field.split(".")
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        validate_config({"device": "cpu", section: {name: value}})


def test_a_pack_refuses_prune_tolerance_in_one_line():
    cfg = validate_config({"device": "cpu", "strategy": {"method": "anpyc", "prune_tolerance": 5}})
    assert pack_refusal(cfg).startswith("strategy.prune_tolerance: undoing a pruning round is not packable")
