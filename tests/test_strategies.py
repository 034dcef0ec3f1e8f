"""Behaviour of the regularised strategy and the baselines inside real (tiny) runs."""

import pytest
import torch

from anpyc_core.strategies.base import Phase
from tests.conftest import watch_freed_weights


def snapshot(params):
    return {n: p.detach().clone() for n, p in params}


def test_penalty_is_zero_on_task_one_and_positive_after(make_trainer):
    tr = make_trainer(strategy__pruning="none")
    tr.strategy.before_task(0)
    with torch.no_grad():
        for p in tr.model.trunk.parameters():
            p.add_(0.1)
    assert tr.strategy.penalty() == 0.0
    tr.run_task(0)
    tr.strategy.before_task(1)
    assert tr.strategy.penalty() == 0.0  # θ = θ* at the start of task 2
    with torch.no_grad():
        for p in tr.model.trunk.parameters():
            p.add_(0.1)
    assert tr.strategy.penalty() > 0.0


def test_penalty_gradient_is_added_analytically(make_trainer):
    tr = make_trainer(strategy__pruning="none", strategy__lam=3.0)
    tr.run_task(0)
    st = tr.strategy
    st.before_task(1)
    with torch.no_grad():
        for p in st.params.values():
            p.add_(0.05)
    for p in st.params.values():
        p.grad = torch.zeros_like(p)
    st.after_backward(1)
    for name, p in st.params.items():
        expected = 2 * 3.0 * st.omega[name] * (p.detach() - st.anchor[name])
        torch.testing.assert_close(p.grad, expected)


def test_update_consolidation_pulls_towards_anchor_without_overshoot(make_trainer):
    tr = make_trainer(strategy__pruning="none", strategy__consolidation="update", strategy__lam=1e6)
    tr.run_task(0)
    st = tr.strategy
    st.before_task(1)
    with torch.no_grad():
        for p in st.params.values():
            p.add_(1.0)
    st.after_step(1, lr=0.1)
    for name, p in st.params.items():
        coef = (2 * 0.1 * 1e6 * st.omega[name]).clamp(max=1.0)
        expected = st.anchor[name] + (1 - coef)
        torch.testing.assert_close(p.detach(), expected)
        # with a huge λ every weight with Ω > 0 lands on θ* (up to rounding), never past it
        moved = st.omega[name] > 1e-5
        torch.testing.assert_close(p.detach()[moved], st.anchor[name][moved], rtol=0, atol=1e-6)


@pytest.mark.parametrize("optimizer,momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_freed_weights_stay_exactly_zero_through_retraining(make_trainer, optimizer, momentum):
    tr = make_trainer(
        optim__optimizer=optimizer,
        optim__momentum=momentum,
        optim__lr=0.01,
        optim__retrain_epochs=2,
        strategy__beta=40,
    )
    st = tr.strategy
    seen = watch_freed_weights(tr)
    tr.run_task(0)
    assert sum(count for _, count, _ in seen) > 0
    for name, p in st.params.items():
        assert (p.detach()[st.free[name]] == 0).all()


def test_free_sets_never_grow_and_rounds_stop_at_target(make_trainer):
    tr = make_trainer(data__num_tasks=4, strategy__beta=50, strategy__beta_decay=0.8)
    st = tr.strategy
    gen = torch.Generator().manual_seed(0)

    def tie_free_measure(task, data, round_index):
        # distinct positive values, except exactly 0 on weights freed in an earlier round
        freed = st._round_free or {n: torch.zeros_like(p, dtype=torch.bool) for n, p in st.params.items()}
        return {n: (torch.rand(p.shape, generator=gen) + 0.01) * ~freed[n] for n, p in st.params.items()}

    st.measure = tie_free_measure
    previous = None
    for t in range(3):
        tr.run_task(t)
        free = {n: m.clone() for n, m in st.free.items()}
        target = 50 * 0.8**t / 100  # P_t as a fraction: 0.5, 0.4, 0.32
        for n, m in free.items():
            base = m.numel() if previous is None else int(previous[n].sum())
            assert abs(int(m.sum()) - target * base) <= 1.0, (t, n)
            if previous is not None:
                assert not (m & ~previous[n]).any()
        previous = free


def test_last_task_is_not_pruned(make_trainer):
    tr = make_trainer(data__num_tasks=2)
    calls = []
    tr.strategy.measure = lambda *a, **k: (
        calls.append(a[0]) or {n: torch.ones_like(p) for n, p in tr.strategy.params.items()}
    )
    for _ in tr.run():
        pass
    # task 1: 3 rounds (β=30) + end-of-task Ω; task 2: end-of-task Ω only
    assert calls.count(0) == 4 and calls.count(1) == 1


def test_greedy_no_pretrain_skips_the_initial_phase(make_trainer):
    tr = make_trainer(strategy__pruning="greedy_no_pretrain", data__num_tasks=2)
    assert tr.strategy.skip_initial_training(0) and not tr.strategy.skip_initial_training(1)


def test_freed_weights_restart_from_zero_and_train_on_next_task(make_trainer):
    tr = make_trainer(data__num_tasks=2, strategy__importance="magnitude")
    tr.run_task(0)
    free = {n: m.clone() for n, m in tr.strategy.free.items()}
    tr.run_task(1)
    moved = sum(int((p.detach()[free[n]] != 0).sum()) for n, p in tr.strategy.params.items())
    assert moved > 0


def test_old_heads_unchanged_by_later_tasks(make_trainer):
    for method in ("anpyc", "finetune", "lwf", "ewc"):
        tr = make_trainer(strategy__method=method)
        tr.run_task(0)
        head0 = snapshot(tr.model.heads[0].named_parameters())
        tr.run_task(1)
        tr.run_task(2)
        for n, p in tr.model.heads[0].named_parameters():
            assert torch.equal(p.detach(), head0[n]), method


def test_sgd_f_trunk_unchanged_after_task_one(make_trainer):
    tr = make_trainer(
        strategy__method="sgd_f",
        model__dropout=0.2,
        optim__optimizer="adam",
        optim__epochs=20,
        optim__lr=0.01,
    )
    tr.run_task(0)
    trunk = snapshot(tr.model.trunk.named_parameters())
    tr.run_task(1)
    tr.run_task(2)
    for n, p in tr.model.trunk.named_parameters():
        assert torch.equal(p.detach(), trunk[n])
    assert tr.acc_matrix[2][1] > 60  # the new head still learns task 2


def test_sgd_is_single_head_and_finetune_multi_head(make_trainer):
    assert len(make_trainer(strategy__method="sgd").model.heads) == 1
    assert len(make_trainer(strategy__method="finetune").model.heads) == 3


def test_xdg_switches_off_a_fixed_fraction_of_units_per_task(make_trainer):
    tr = make_trainer(strategy__pruning="xdg", strategy__xdg_gate=0.75, model__hidden=[16, 8])
    g0, g1 = tr.model.gate_0, tr.model.gate_1
    assert g0.shape == (3, 16) and (g0.sum(1) == 4).all() and (g1.sum(1) == 2).all()
    assert not torch.equal(g0[0], g0[1])
    x = tr.tasks.tasks[0].test.inputs(slice(0, 8))
    feats = tr.model.features(x, 0)
    assert (feats[:, g1[0] == 0] == 0).all()


def test_lwf_adds_no_loss_on_task_one_and_a_positive_one_later(make_trainer):
    tr = make_trainer(strategy__method="lwf")
    tr.run_task(0)
    tr.strategy.before_task(1)
    x = tr.tasks.tasks[1].train.inputs(slice(0, 16))
    feats = tr.model.features(x, 1)
    assert float(tr.strategy.extra_loss(1, x, feats).detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        tr.model.trunk[0].weight.add_(0.5)
    assert float(tr.strategy.extra_loss(1, x, tr.model.features(x, 1)).detach()) > 0
    assert tr.strategy.extra_loss(0, x, feats) is None


def test_si_path_integral_accumulates_minus_gradient_times_step(make_trainer):
    tr = make_trainer(strategy__method="si", strategy__lam=0.0)
    st = tr.strategy
    st.before_task(0)
    p = st.params["trunk.0.bias"]
    for q in st.params.values():
        q.grad = torch.full_like(q, 2.0)
    st.after_backward(0)
    with torch.no_grad():
        p.add_(-0.5)
    st.after_step(0, lr=0.1)
    torch.testing.assert_close(st.si_path["trunk.0.bias"], torch.full_like(p, 1.0))


def test_phase_fit_runs_extra_epochs(make_trainer):
    tr = make_trainer(strategy__pruning="none")
    calls = []
    tr.strategy.after_training = lambda t, phase: calls.append(isinstance(phase, Phase))
    tr.run_task(0)
    assert calls == [True]


@pytest.mark.parametrize("accumulate", ["sum", "max"])
def test_importance_accumulates_by_sum_or_max(make_trainer, accumulate):
    tr = make_trainer(strategy__accumulate=accumulate, strategy__pruning="none")
    st = tr.strategy
    measured = []
    real = st.measure

    def recording(task, data, round_index):
        out = real(task, data, round_index)
        measured.append({n: v.clone() for n, v in out.items()})
        return out

    st.measure = recording
    tr.run_task(0)
    tr.run_task(1)
    combine = torch.add if accumulate == "sum" else torch.maximum
    for name, total in st.omega.items():
        torch.testing.assert_close(total, combine(measured[0][name], measured[1][name]))
