"""Greedy pruning rules (SPEC §4.3) as pure functions."""

import pytest
import torch

from anpyc_core.pruning import (
    greedy_free_set,
    percentile,
    prune_percentages,
    random_free_set,
    zero_free_weights,
)


def test_schedule_never_overshoots_the_task_target():
    assert prune_percentages(0, beta=50, decay=0.8, step=10) == [10, 20, 30, 40, 50]
    rounds = prune_percentages(1, beta=50, decay=0.8, step=10)  # P_2 = 40
    assert rounds == pytest.approx([10, 20, 30, 40])
    rounds = prune_percentages(2, beta=50, decay=0.8, step=10)  # P_3 = 32
    assert rounds == pytest.approx([10, 20, 30, 32])
    assert max(rounds) == pytest.approx(50 * 0.8**2)
    assert prune_percentages(0, beta=0, decay=1.0, step=10) == []


def test_percentile_matches_numpy_linear_interpolation():
    np = pytest.importorskip("numpy")
    values = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    for q in (0, 7.5, 50, 99, 100):
        assert float(percentile(values, q)) == pytest.approx(float(np.percentile(values.numpy(), q)), rel=1e-5)


def test_first_task_frees_below_percentile_and_all_zeros():
    omega = {"w": torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])}
    free = greedy_free_set(omega, None, q=30)["w"]  # percentile 30 = 1.7
    assert free.tolist() == [True, True, True] + [False] * 7


def test_later_tasks_free_only_inside_the_previous_free_set():
    omega = {"w": torch.tensor([5.0, 1.0, 2.0, 3.0, 0.5, 9.0])}
    previous = {"w": torch.tensor([True, True, True, True, False, False])}
    free = greedy_free_set(omega, previous, q=50)["w"]  # Ω on F = [5,1,2,3]: p50 = 2.5
    assert free.tolist() == [False, True, True, False, False, False]
    assert not (free & ~previous["w"]).any()


def test_global_scope_uses_one_threshold_across_tensors():
    omega = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0, 4.0, 5.0, 6.0])}
    tensor = greedy_free_set(omega, None, q=50, scope="tensor")
    global_ = greedy_free_set(omega, None, q=50, scope="global")  # p50 of all = 3.5
    assert tensor["a"].tolist() == [True, False] and tensor["b"].tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert global_["a"].tolist() == [True, True] and global_["b"].tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_random_free_set_matches_greedy_counts_and_keeps_earlier_rounds():
    gen = torch.Generator().manual_seed(0)
    omega = {"w": torch.arange(1.0, 101.0)}
    previous = {"w": torch.arange(100) % 2 == 0}
    current = {"w": torch.zeros(100, dtype=torch.bool)}
    current["w"][0] = True
    out = random_free_set(omega, previous, 40, "tensor", current, gen)["w"]
    greedy = greedy_free_set(omega, previous, 40)["w"]
    assert int(out.sum()) == int(greedy.sum())
    assert out[0] and not (out & ~previous["w"]).any()


def test_zero_free_weights_clears_weights_and_optimizer_state():
    w = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = torch.ones(4)
    opt.step()
    free = {"w": torch.tensor([True, False, True, False])}
    zero_free_weights({"w": w}, free, opt)
    assert w.detach()[free["w"]].eq(0).all()
    assert opt.state[w]["momentum_buffer"][free["w"]].eq(0).all()


def test_rank_rule_frees_exactly_its_percentage_even_among_zero_importances():
    from anpyc_core.pruning import greedy_free_set

    omega = {"w": torch.tensor([0.0] * 6 + [1.0, 2.0, 3.0, 4.0])}  # 60 % of Ω is exactly 0
    free_rule = greedy_free_set(omega, None, 20.0, "tensor", "free")
    rank_rule = greedy_free_set(omega, None, 20.0, "tensor", "rank")
    assert int(free_rule["w"].sum()) == 6  # the paper's rule: every Ω = 0 weight, far past 20 %
    assert rank_rule["w"].tolist() == [True, True] + [False] * 8  # exactly 2 of 10, ties by position
    later = greedy_free_set(
        {"w": torch.arange(10.0)}, {"w": torch.tensor([True] * 5 + [False] * 5)}, 40.0, "tensor", "rank"
    )
    assert later["w"].tolist() == [True, True] + [False] * 8  # 40 % of the 5 candidates, inside them


def test_rounds_record_the_freed_and_zero_importance_fractions(make_trainer):
    for rule in ("free", "rank"):
        tr = make_trainer(strategy__zero_importance=rule, strategy__beta=30.0, strategy__prune_step=10.0)
        record = tr.run_task(0)
        assert [r["round"] for r in record.rounds] == [1, 2, 3]
        freed = [r["freed:trunk.1.weight"] for r in record.rounds]
        assert freed == sorted(freed) and all(0 <= r["zero_omega:trunk.1.weight"] <= 1 for r in record.rounds)
        if rule == "rank":  # never past the round's percentage
            assert all(r[k] <= r["percent"] / 100 + 1e-6 for r in record.rounds for k in r if k.startswith("freed:"))
