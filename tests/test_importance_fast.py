"""The layer-wise importance passes of a Linear trunk equal the per-chunk / per-sample references.

ANPyC: one forward and backward per group of chunks, chunk gradients by batched matmul.
EWC: the diagonal Fisher as (δ²)ᵀ(a²) per layer, no per-sample gradients. Each must equal the
generic path (autograd per chunk; torch.func per sample) to 1e-5 relative, including a shorter
last chunk, a sample cap, XdG gates, and exact zeros where a weight is zero.
"""

import pytest
import torch

from anpyc_core import importance as imp
from anpyc_core.data import build_tasks
from anpyc_core.models import MultiHeadMLP, xdg_gates


@pytest.fixture
def setup(digits, make_cfg):
    cfg = make_cfg()
    tasks = build_tasks(cfg.data, digits, cfg.seed)
    torch.manual_seed(0)
    model = MultiHeadMLP(64, [24, 16], tasks.head_sizes).eval()
    with torch.no_grad():
        model.trunk[0].weight[:, :7] = 0.0  # pruned inputs: Ω must stay exactly 0 there
    return model, tasks.tasks[1]


def reference(monkeypatch, fn, *args, **kwargs):
    """The same measure through the generic path (as for conv trunks)."""
    with monkeypatch.context() as m:
        m.setattr(imp, "linear_trunk", lambda model: False)
        return fn(*args, **kwargs)


def assert_close(fast: dict, slow: dict) -> None:
    assert fast.keys() == slow.keys()
    for name in fast:
        scale = slow[name].abs().max().clamp(min=1e-12)
        assert ((fast[name] - slow[name]).abs().max() / scale) <= 1e-5, name
        assert torch.equal(fast[name] == 0, slow[name] == 0) or name.endswith("bias"), name


@pytest.mark.parametrize("size,cap", [(25, None), (7, None), (10, 93), (1, 40)])
@pytest.mark.parametrize("measure", ["anpyc_importance"])
def test_chunked_measures_equal_the_per_chunk_reference(setup, monkeypatch, measure, size, cap):
    model, task = setup
    fn = getattr(imp, measure)
    fast = fn(model, task.train, 1, size, cap)
    assert_close(fast, reference(monkeypatch, fn, model, task.train, 1, size, cap))
    if measure == "anpyc_importance":  # ANPyC's Ω carries θ: exactly 0 where the weight is 0
        assert (fast["trunk.0.weight"][:, :7] == 0).all()


@pytest.mark.parametrize("fisher", ["empirical", "expected"])
@pytest.mark.parametrize("cap", [None, 111])
def test_fisher_by_layer_products_equals_per_sample_gradients(setup, monkeypatch, fisher, cap):
    model, task = setup
    fast = imp.ewc_importance(model, task.train, 1, 10, cap, fisher)
    assert_close(fast, reference(monkeypatch, imp.ewc_importance, model, task.train, 1, 10, cap, fisher))


def test_gated_trunk_equal_too(setup, monkeypatch):
    model, task = setup
    model.set_gates(xdg_gates([24, 16], 3, 0.5, seed=1))
    for fn, args in ((imp.anpyc_importance, (9,)), (imp.ewc_importance, (9, None, "empirical"))):
        fast = fn(model, task.train, 1, *args)
        assert_close(fast, reference(monkeypatch, fn, model, task.train, 1, *args))
