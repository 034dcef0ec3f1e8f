"""Packed trials: every member of a pack follows its own sequential run (issue 11, item 2)."""

from __future__ import annotations

import math

import pytest
import torch

from anpyc_core.config import ConfigError, validate_config
from anpyc_core.packing import PackedTrainer, group_by_signature, pack_refusal, pack_signature
from anpyc_core.packing.trainer import MemberStopped
from anpyc_core.trainer import Trainer, TrainingDiverged

# method settings shared by a pack, and per-member values (member k of 4) that differ inside it
CASES = {
    "anpyc": ({"method": "anpyc", "beta": 20.0}, {"strategy.lam": [0.5, 1, 2, 4], "strategy.beta": [20, 10, 0, 35]}),
    "ewc_permuted": (  # one pixel permutation per member and task, gathered for the whole pack at once
        {"method": "ewc"},
        {"strategy.lam": [10, 20, 30, 40], "data.scenario": ["permuted"] * 4, "optim.epochs": [6] * 4},
    ),
    "anpyc_update_momentum": (
        {"method": "anpyc", "consolidation": "update", "beta": 20.0},
        {"optim.momentum": [0, 0.9, 0.5, 0.9], "strategy.lam": [1, 2, 3, 4]},
    ),
    "ewc": ({"method": "ewc"}, {"strategy.lam": [10, 20, 30, 40]}),
    "ewc_expected_max": (
        {"method": "ewc", "fisher": "expected", "accumulate": "max"},
        {"strategy.lam": [10, 20, 30, 40]},
    ),
    "mas": ({"method": "mas"}, {"strategy.lam": [0.5, 1, 2, 3], "optim.lr": [0.1, 0.05, 0.2, 0.08]}),
    "si": ({"method": "si"}, {"strategy.lam": [0.5, 1, 2, 3], "strategy.si_xi": [0.1, 0.2, 0.05, 1.0]}),
    "magnitude_random_pruning": (
        {"method": "regularised", "importance": "magnitude", "pruning": "random"},
        {"strategy.beta": [50, 40, 30, 20]},
    ),
    "random_importance_no_pretrain": (
        {"method": "regularised", "importance": "random", "pruning": "greedy_no_pretrain", "beta": 20.0},
        {"strategy.prune_step": [10, 20, 5, 50]},
    ),
    "xdg": ({"method": "anpyc", "pruning": "xdg"}, {"strategy.xdg_gate": [0.8, 0.5, 0.2, 0.6]}),
    "finetune_dropout_decay": (
        {"method": "finetune"},
        {"model.dropout": [0.0, 0.2, 0.5, 0.1], "optim.lr_decay": [1.0, 0.5, 0.9, 0.7]},
    ),
    "sgd": ({"method": "sgd"}, {"optim.momentum": [0, 0.9, 0.5, 0.9]}),
    "anpyc_lr_decay_steps": (  # the lr changes inside epochs, at each member's own fractional step unit
        {"method": "anpyc", "beta": 20.0},
        {"optim.lr_decay": [0.5, 0.7, 0.9, 0.8], "optim.lr_decay_steps": [7.5, None, 20.25, 3.0]},
    ),
    "sgd_f": ({"method": "sgd_f"}, {"optim.lr": [0.1, 0.05, 0.2, 0.02]}),
}


#: How close a member of a pack of K > 1 stays to its sequential run, relative to each tensor's largest value.
#: The pack sums its minibatch products in a batched kernel, the sequential run in a single matmul: the two
#: orders agree to about n·u per reduction (fp32 u = 6e-8; n <= 64 here, so <= 4e-6), and SGD carries these
#: differences through every later step; momentum 0.9 multiplies them by up to 1/(1 - 0.9) = 10. Measured
#: worst over every case below on AVX-512, AVX2 and scalar (`ATEN_CPU_CAPABILITY=default`) kernels with 1
#: and 2 threads: 6e-7 without momentum, 3.3e-6 with it. A member that moves when it should not, or trains
#: with a 1 % different lr or λ, misses by far more (λ: 6e-5, lr: 0.8 on the anpyc case):
#: `test_the_tolerance_catches_a_one_percent_change` proves it.
REL = 1e-5
REL_MOMENTUM = 10 * REL


def tolerance(cfgs) -> float:
    """REL, or REL_MOMENTUM when some member uses momentum."""
    return REL_MOMENTUM if any(c.optim.momentum > 0 for c in cfgs) else REL


def member_config(strategy: dict, varied: dict, k: int, **extra):
    """Member k's run config: digits, 3 tasks, a small net, its own seed and varied values."""
    raw = {
        "seed": k,
        "device": "cpu",
        "data": {"benchmark": "digits", "num_tasks": 3},
        "model": {"hidden": [48, 24]},
        "optim": {"epochs": 3, "batch_size": 32, "lr": 0.1},
        "strategy": dict(strategy),
    }
    for key, values in {**varied, **extra}.items():
        section, name = key.split(".")
        raw[section][name] = values[k]
    return validate_config(raw)


def state_of(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Parameters and (where the method has one) Ω of a run, by name."""
    out = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    omega = trainer.strategy.importance()
    for n, t in (omega or {}).items():
        out[f"omega:{n}"] = t.clone()
    return out


def assert_close(seq: dict, packed: dict, rel: float) -> None:
    """Every tensor of `packed` equals `seq` (rel = 0) or matches it to `rel` of its largest value."""
    assert seq.keys() == packed.keys()
    for name, a in seq.items():
        b = packed[name]
        if rel == 0:
            assert torch.equal(a, b), name
        else:
            scale = a.abs().max().clamp(min=1e-12)
            assert float((a - b).abs().max() / scale) <= rel, name


def follow(cfgs, rel: float, acc_points: float) -> None:
    """Train the pack and each member's sequential run side by side, comparing at every task boundary."""
    pack = PackedTrainer(cfgs)
    singles = [Trainer(cfg) for cfg in cfgs]
    for t in range(len(singles[0].tasks)):
        pack.run_task(t)
        for k, single in enumerate(singles):
            single.run_task(t)
            member = pack.members[k]
            assert_close(state_of(single), state_of(member), rel)
            assert single.strategy.free_count() == member.strategy.free_count()
            for split in ("acc_matrix", "val_acc_matrix"):
                rows_a, rows_b = getattr(single, split), getattr(member, split)
                pairs = [(a, b) for ra, rb in zip(rows_a, rows_b, strict=True) for a, b in zip(ra, rb, strict=True)]
                worst = max(abs(a - b) for a, b in pairs)
                assert worst <= acc_points, split
    learned = [pack.members[0].acc_matrix[t + 1][t] for t in range(len(singles[0].tasks))]
    assert max(learned) > 70, f"the case must learn something to be a test: {learned}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_pack_of_one_is_the_sequential_run_bit_for_bit(case):
    strategy, varied = CASES[case]
    follow([member_config(strategy, varied, 1)], rel=0.0, acc_points=0.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_member_of_four_follows_its_sequential_run(case):
    strategy, varied = CASES[case]
    cfgs = [member_config(strategy, varied, k) for k in range(4)]
    follow(cfgs, rel=tolerance(cfgs), acc_points=0.5)


def test_the_stacked_penalty_hook_is_each_members_own_hook_bit_for_bit():
    """λ·Ω, θ* and round masks stacked: one addcmul_ and masked_fill_ per tensor give every member the
    gradient its own `after_backward` gives (λ = 0, a member in a pruning round and one without)."""
    strategy, varied = {"method": "anpyc", "beta": 20.0}, {"strategy.lam": [0.0, 1.5, 7.0]}
    pack = PackedTrainer([member_config(strategy, varied, k) for k in range(3)])
    assert pack.penalty is not None
    pack.run_task(0)
    members, gen = [0, 1, 2], torch.Generator().manual_seed(0)
    pack._begin_task(1, members)
    pack._optimizer(1)
    for m in pack.members:
        m.strategy.before_task(1)
    with torch.no_grad():  # move off θ* so the penalty is not zero
        for s in pack.stack.tensors():
            s.add_(0.01 * torch.randn(s.shape, generator=gen))
    one = pack.members[1].strategy
    one._round_free = {n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in one.params.items()}
    grads = [torch.randn(s.shape, generator=gen) for s in pack.stack.tensors()]

    def gradients_after(hook) -> list[torch.Tensor]:
        for s, g in zip(pack.stack.tensors(), grads, strict=True):
            s.grad = g.clone()
        hook()
        return [s.grad.clone() for s in pack.stack.tensors()]

    def own_hooks() -> None:
        pack._expose_grads(members)
        for m in pack.members:
            m.strategy.after_backward(1)

    def stacked() -> None:
        pack.penalty.refresh()
        pack.penalty.after_backward()

    expected, got = gradients_after(own_hooks), gradients_after(stacked)
    assert any(not torch.equal(e, g) for e, g in zip(expected, grads, strict=True)), "the hooks must act"
    assert all(torch.equal(e, g) for e, g in zip(expected, got, strict=True))
    si = PackedTrainer([member_config({"method": "si"}, {}, k) for k in range(2)])
    assert si.penalty is None  # SI's path integral keeps its per-member hook


def test_vectorised_steps_change_no_number():
    """Stacked hooks and pack-wide minibatch gathers against member-by-member ones: the same run, bit for bit
    (permuted tasks with pruning rounds, so every gather, penalty and mask path is taken)."""
    strategy = {"method": "anpyc", "beta": 20.0}
    varied = {
        "strategy.lam": [0.5, 2, 4],
        "strategy.beta": [20, 0, 35],
        "data.scenario": ["permuted"] * 3,
        "data.num_tasks": [2] * 3,
    }
    runs = []
    for vectorised in (True, False):
        pack = PackedTrainer([member_config(strategy, varied, k) for k in range(3)], vectorised=vectorised)
        for _ in pack.run():
            pass
        runs.append(pack)
    assert runs[0].penalty is not None and runs[1].penalty is None
    for fast, slow in zip(runs[0].members, runs[1].members, strict=True):
        assert fast.acc_matrix == slow.acc_matrix
        assert_close(state_of(slow), state_of(fast), 0.0)


def others_follow_their_sequential_runs(cfgs, pack, outcome, members) -> None:
    """Each of `members` ended as its sequential run does (accuracies, parameters, Ω)."""
    for k in members:
        single = Trainer(cfgs[k])
        for _ in single.run():
            pass
        assert outcome[k].acc_matrix == single.acc_matrix
        assert_close(state_of(single), state_of(pack.members[k]), tolerance(cfgs))


def test_a_diverging_member_stops_and_the_others_go_on():
    strategy, varied = CASES["ewc"]
    lrs = {"optim.lr": [0.1, 1e6, 0.1]}
    cfgs = [member_config(strategy, varied, k, **lrs) for k in range(3)]
    pack = PackedTrainer(cfgs)
    for _ in pack.run():
        pass
    outcome = pack.results()
    assert isinstance(outcome[1], TrainingDiverged) and "training loss became" in str(outcome[1])
    others_follow_their_sequential_runs(cfgs, pack, outcome, (0, 2))


def test_a_member_whose_penalty_runs_away_stops_as_diverged_and_the_others_go_on():
    # member 1's λ = 1000 puts its penalty step past the stability limit (tests/test_trainer.py): it stops with
    # the sequential trainer's reason, the others end as their sequential runs
    strategy, varied = CASES["ewc"]
    cfgs = [member_config(strategy, varied, k, **{"strategy.lam": [10, 1000, 20]}) for k in range(3)]
    pack = PackedTrainer(cfgs)
    for _ in pack.run():
        pass
    outcome = pack.results()
    assert isinstance(outcome[1], TrainingDiverged) and "ran away" in str(outcome[1])
    with pytest.raises(TrainingDiverged) as sequential:
        for _ in Trainer(cfgs[1]).run():
            pass
    assert str(outcome[1]) == str(sequential.value)
    others_follow_their_sequential_runs(cfgs, pack, outcome, (0, 2))


def test_a_stopped_member_freezes_survives_a_resume_and_the_others_go_on(tmp_path):
    strategy, varied = CASES["anpyc"]
    cfgs = [member_config(strategy, varied, k) for k in range(3)]
    pack = PackedTrainer(cfgs)
    pack.run_task(0)
    pack.stop(1, "asha: below the rung cutoff after task 1")
    frozen = state_of(pack.members[1])
    path = pack.save_checkpoint(tmp_path / "pack.pt")
    resumed = PackedTrainer(cfgs)
    resumed.load_checkpoint(path)
    assert resumed.live() == [0, 2]
    for records in resumed.run():
        assert records[1] is None
    assert_close(frozen, state_of(resumed.members[1]), 0.0)
    outcome = resumed.results()
    assert isinstance(outcome[1], MemberStopped) and outcome[1].tasks_done == 1
    others_follow_their_sequential_runs(cfgs, resumed, outcome, (0, 2))
    everyone = PackedTrainer(cfgs)
    everyone.run_task(0)
    for k in range(3):
        everyone.stop(k, "asha")
    assert list(everyone.run()) == []  # no member left: the pack ends at once


def test_pack_checkpoint_resume_is_bit_identical(tmp_path):
    strategy, varied = CASES["anpyc"]
    cfgs = [member_config(strategy, varied, k) for k in range(3)]
    whole = PackedTrainer(cfgs)
    for _ in whole.run():
        pass
    first = PackedTrainer(cfgs)
    first.run_task(0)
    path = first.save_checkpoint(tmp_path / "pack.pt")
    resumed = PackedTrainer(cfgs)
    resumed.load_checkpoint(path)
    assert resumed.next_task == 1
    for _ in resumed.run():
        pass
    for a, b in zip(whole.members, resumed.members, strict=True):
        assert_close(state_of(a), state_of(b), 0.0)
        assert a.acc_matrix == b.acc_matrix


def test_members_that_do_not_prune_keep_still_while_others_retrain():
    """Member 1 has β = 0 (no rounds): while member 0 retrains, member 1's weights do not change by a bit
    (nothing is summed for it, so this is exact on any machine); after the task it is its sequential run,
    to the rounding of the pack's batched kernels."""
    strategy, varied = CASES["anpyc"]
    cfgs = [member_config(strategy, varied, k, **{"strategy.beta": [30, 0]}) for k in range(2)]
    pack = PackedTrainer(cfgs)
    real_fit, still = pack._fit, []

    def fit_watching_member_1(t, members, *args, **kwargs):
        before = None if 1 in members else state_of(pack.members[1])
        real_fit(t, members, *args, **kwargs)
        if before is not None:
            still.append(before)
            assert_close(before, state_of(pack.members[1]), 0.0)

    pack._fit = fit_watching_member_1
    pack.run_task(0)
    assert still, "member 0 must have retrained without member 1"
    alone = Trainer(cfgs[1])
    alone.run_task(0)
    assert_close(state_of(alone), state_of(pack.members[1]), tolerance(cfgs))
    assert pack.members[0].strategy.free_count() > 0 and pack.members[1].strategy.free_count() == 0


@pytest.mark.parametrize("field", ["optim.lr", "strategy.lam"])
def test_the_tolerance_catches_a_one_percent_change(field):
    """The tolerance is tighter than a real defect: a member whose lr or λ is off by 1 % fails it."""
    strategy, varied = CASES["anpyc"]
    varied = {**varied, "data.num_tasks": [2] * 4}
    cfgs = [member_config(strategy, varied, k) for k in range(2)]
    section, name = field.split(".")
    value = getattr(getattr(cfgs[1], section), name)
    wrong = cfgs[1].model_copy(update={section: getattr(cfgs[1], section).model_copy(update={name: value * 1.01})})
    pack = PackedTrainer(cfgs)
    off = Trainer(wrong)
    for _ in pack.run():
        pass
    for _ in off.run():
        pass
    assert tolerance(cfgs) == REL
    with pytest.raises(AssertionError):
        assert_close(state_of(off), state_of(pack.members[1]), REL)


@pytest.mark.parametrize(
    ("strategy", "optim", "needle"),
    [
        ({"method": "lwf"}, {}, "strategy.method: 'lwf' is not packable"),
        ({"method": "hat"}, {}, "strategy.method: 'hat' is not packable"),
        ({"method": "joint"}, {}, "strategy.method: 'joint' is not packable"),
        ({"method": "ewc"}, {"optimizer": "adam"}, "optim.optimizer: 'adam' is not packable"),
    ],
)
def test_unpackable_configs_are_refused_in_one_line(strategy, optim, needle):
    cfg = validate_config({"device": "cpu", "strategy": strategy, "optim": optim})
    assert needle in pack_refusal(cfg) and "\n" not in pack_refusal(cfg)
    with pytest.raises(ConfigError, match=needle):
        PackedTrainer([cfg])


def test_signature_separates_shapes_and_keeps_member_fields_apart():
    base = {"device": "cpu", "strategy": {"method": "anpyc"}}
    a = validate_config(base)
    same = validate_config({**base, "seed": 3, "optim": {"lr": 0.01}, "model": {"dropout": 0.5}})
    wider = validate_config({**base, "model": {"hidden": [256, 256]}})
    other = validate_config({**base, "strategy": {"method": "ewc"}})
    assert pack_signature(a) == pack_signature(same)
    assert len({pack_signature(a), pack_signature(wider), pack_signature(other)}) == 3
    with pytest.raises(ConfigError, match="member 1 differs"):
        PackedTrainer([a, wider])
    lwf = validate_config({**base, "strategy": {"method": "lwf"}})
    packs = group_by_signature([a, wider, same, lwf, a, a], max_members=2)
    assert packs == [[0, 2], [1], [3], [4, 5]]
    assert math.prod(len(p) for p in packs) == 4


def tensor_bytes(obj, seen: set, depth: int = 0) -> int:
    """Bytes of every distinct tensor storage reachable from `obj` (our objects, containers, modules)."""
    if depth > 6:
        return 0
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() == 0:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen, depth + 1) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v, seen, depth + 1) for v in obj)
    if isinstance(obj, torch.nn.Module):
        return tensor_bytes([*obj.parameters(), *obj.buffers(), vars(obj)], seen, depth + 1)
    if type(obj).__module__.startswith("anpyc_core") and hasattr(obj, "__dict__"):
        return tensor_bytes(vars(obj), seen, depth + 1)
    return 0


@pytest.mark.parametrize("scenario", ["split", "permuted"])
@pytest.mark.parametrize(
    "strategy", [{"method": "anpyc"}, {"method": "si"}, {"method": "anpyc", "consolidation": "update"}]
)
def test_the_member_memory_estimate_bounds_what_a_member_holds(strategy, scenario):
    from anpyc_core.data import load_raw
    from anpyc_core.packing.memory import member_bytes, members_that_fit

    cfgs = [member_config(strategy, {"optim.momentum": [0.9] * 3}, k) for k in range(3)]
    cfgs = [c.model_copy(update={"data": c.data.model_copy(update={"scenario": scenario})}) for c in cfgs]
    pack = PackedTrainer(cfgs)
    for _ in pack.run():
        pass
    seen: set = set()
    tensor_bytes(pack.members[0].tasks.tasks[0].train.images, seen)  # the images are the pack's, held once
    held = (tensor_bytes(vars(pack.stack), seen) + tensor_bytes(pack.members, seen)) / len(cfgs)
    digits = load_raw("digits")
    estimate = member_bytes(cfgs[0], digits.num_features, len(digits.x_train) + len(digits.x_test))
    assert held <= estimate <= 10 * held, (held, estimate)
    samples = len(digits.x_train) + len(digits.x_test)
    assert members_that_fit(64 * 2**20 + 10 * estimate, cfgs[0], digits.num_features, samples) == 10
    assert members_that_fit(0, cfgs[0], digits.num_features, samples) == 1
