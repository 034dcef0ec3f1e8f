"""Importance measures (SPEC §4.1): non-negativity, zeros, and agreement with slow references."""

import pytest
import torch
from torch.nn import functional as F

from anpyc_core import importance as imp
from anpyc_core.data import build_tasks
from anpyc_core.models import MultiHeadMLP


@pytest.fixture
def setup(digits, make_cfg):
    cfg = make_cfg()
    tasks = build_tasks(cfg.data, digits, cfg.seed)
    torch.manual_seed(0)
    model = MultiHeadMLP(64, [12, 10], tasks.head_sizes).eval()
    return model, tasks.tasks[0]


def test_anpyc_importance_nonnegative_and_zero_exactly_where_weight_is_zero(setup):
    model, task = setup
    with torch.no_grad():
        model.trunk[0].weight[:, :5] = 0.0
        model.trunk[1].bias[3] = 0.0
    omega = imp.anpyc_importance(model, task.train, 0, size=25)
    for name, p in model.trunk_parameters().items():
        assert (omega[name] >= 0).all()
        assert (omega[name][p == 0] == 0).all()
    assert omega["trunk.0.weight"].sum() > 0


def test_anpyc_importance_matches_per_chunk_formula(setup):
    model, task = setup
    x = task.train.inputs(slice(0, 50))
    params = list(model.trunk_parameters().values())
    expected = [torch.zeros_like(p) for p in params]
    for chunk in (x[:25], x[25:50]):
        logq = F.log_softmax(model(chunk, 0), dim=1)
        grads = torch.autograd.grad(-(logq.exp() * logq).sum(), params)
        for e, g, p in zip(expected, grads, params, strict=True):
            e += torch.clamp(g * p.detach() + 0.5 * p.detach() ** 2 * g**2, min=0) / 2
    omega = imp.anpyc_importance(model, task.train, 0, size=25, cap=50)
    for e, o in zip(expected, omega.values(), strict=True):
        torch.testing.assert_close(o, e)


def test_chunk_size_changes_the_scale(setup):
    model, task = setup
    small = imp.anpyc_importance(model, task.train, 0, size=10, cap=100)
    large = imp.anpyc_importance(model, task.train, 0, size=100, cap=100)
    assert not torch.allclose(small["trunk.0.weight"], large["trunk.0.weight"])


def test_mas_is_abs_gradient_of_mean_squared_logit_norm(setup):
    model, task = setup
    x = task.train.inputs(slice(0, 30))
    params = list(model.trunk_parameters().values())
    grads = torch.autograd.grad(model(x, 0).pow(2).sum(1).mean(), params)
    omega = imp.mas_importance(model, task.train, 0, size=30, cap=30)
    for g, o in zip(grads, omega.values(), strict=True):
        torch.testing.assert_close(o, g.abs())


@pytest.mark.parametrize("fisher", ["empirical", "expected"])
def test_ewc_fisher_matches_a_per_sample_loop(setup, fisher):
    model, task = setup
    n = 12
    x, y = task.train.inputs(slice(0, n)), task.train.labels[:n]
    params = list(model.trunk_parameters().values())
    expected = [torch.zeros_like(p) for p in params]
    for i in range(n):
        logq = F.log_softmax(model(x[i : i + 1], 0), dim=1)[0]
        classes = [int(y[i])] if fisher == "empirical" else range(len(logq))
        for c in classes:
            weight = 1.0 if fisher == "empirical" else float(logq[c].detach().exp())
            grads = torch.autograd.grad(logq[c], params, retain_graph=True)
            for e, g in zip(expected, grads, strict=True):
                e += weight * g**2 / n
    omega = imp.ewc_importance(model, task.train, 0, size=5, cap=n, fisher=fisher)
    for e, o in zip(expected, omega.values(), strict=True):
        torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-7)


def test_si_importance_divides_path_by_squared_change_plus_xi():
    p = {"w": torch.tensor([1.0, 2.0, 0.0])}
    start = {"w": torch.tensor([0.0, 2.0, 1.0])}
    path = {"w": torch.tensor([2.2, 0.5, -1.0])}
    out = imp.si_importance(path, p, start, xi=0.1)
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 5.0, 0.0]))


def test_magnitude_and_random_controls():
    p = {"w": torch.tensor([-3.0, 0.5])}
    assert imp.magnitude_importance(p)["w"].tolist() == [3.0, 0.5]
    a = imp.random_importance(p, torch.Generator().manual_seed(1))["w"]
    b = imp.random_importance(p, torch.Generator().manual_seed(1))["w"]
    assert torch.equal(a, b) and ((a >= 0) & (a < 1)).all()
