"""The CNN half of SPEC §3: LeNet, VGG-9, ResNet-18 in the trainer (issue 12, item 1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anpyc_core.config import ConfigError, validate_config
from anpyc_core.models import ModelInitError, MultiHeadCNN, TaskBatchNorm2d, build_model
from anpyc_core.trainer import Trainer
from tests.conftest import watch_freed_weights

CNN = {
    "model__arch": "lenet",
    "data__train_samples": 120,
    "data__test_samples": 40,
    "optim__batch_size": 16,
    "strategy__importance_batch": 20,
}


@pytest.fixture
def make_cfg(digits):
    """Tiny digits configs without MLP widths (a CNN's layers are fixed)."""
    from anpyc_core.config import apply_overrides
    from tests.conftest import TINY

    base = {**TINY, "model": {}}

    def make(**overrides):
        return validate_config(apply_overrides(base, {k.replace("__", "."): v for k, v in overrides.items()}))

    return make


@pytest.fixture
def make_trainer(digits, make_cfg):
    """A Trainer on tiny digits for a CNN config."""
    from anpyc_core.data import build_tasks

    def make(**overrides):
        cfg = make_cfg(**overrides)
        return Trainer(cfg, tasks=build_tasks(cfg.data, digits, cfg.seed))

    return make


def test_lenet_has_table_ivs_layer_sizes_exactly(make_cfg):
    model = build_model(make_cfg(model__arch="lenet"), (1, 28, 28), [10])
    sizes = [p.numel() for p in model.trunk_parameters().values()]
    assert sizes == [800, 32, 51_200, 64, 1_605_632, 512, 131_072, 256]
    assert sum(sizes) == 1_789_568  # the paper's total


def test_vgg9_has_nine_convolutions_one_batch_norm_and_512_features(make_cfg):
    model = build_model(make_cfg(model__arch="vgg9"), (1, 28, 28), [2, 2])
    convs = [m for m in model.trunk if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512]
    assert sum(isinstance(m, TaskBatchNorm2d) for m in model.modules()) == 1
    assert model(torch.rand(3, 784), 1).shape == (3, 2)
    assert {"trunk.1.weight", "trunk.1.bias"} <= set(model.trunk_parameters())  # BN affine is trunk


def test_resnet18_is_torchvisions_with_per_task_batch_norm_and_appendix_a_heads(make_cfg):
    model = build_model(make_cfg(model__arch="resnet18"), (1, 8, 8), [2, 2, 2])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, TaskBatchNorm2d) for m in model.modules()) == 20
    head = model.heads[0]
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear] and head[0].out_features == 2048
    assert model(torch.rand(4, 64), 2).shape == (4, 2)


def test_a_pruned_conv_weight_stays_exactly_zero_through_retraining_with_momentum(make_trainer):
    tr = make_trainer(
        **CNN,
        optim__momentum=0.9,
        optim__lr=0.01,
        optim__retrain_epochs=2,
        strategy__beta=40,
        strategy__prune_step=20,
        strategy__zero_importance="rank",
    )
    st = tr.strategy
    seen = watch_freed_weights(tr)
    tr.run_task(0)
    assert sum(count for _, count, rank in seen if rank == 4) > 0  # conv weights were freed and checked
    for name, p in st.params.items():
        assert (p.detach()[st.free[name]] == 0).all()


@pytest.mark.parametrize("importance", ["anpyc", "mas", "ewc", "magnitude"])
def test_importance_is_zero_exactly_where_a_conv_weight_is_zero(make_trainer, importance):
    tr = make_trainer(**CNN, strategy__importance=importance, strategy__pruning="none", data__num_tasks=2)
    with torch.no_grad():
        for p in tr.strategy.params.values():
            p[torch.rand_like(p) < 0.3] = 0.0
    omega = tr.strategy.measure(0, tr.tasks.tasks[0], 0)
    for name, p in tr.strategy.params.items():
        assert (omega[name] >= 0).all(), name
        if importance in ("anpyc", "magnitude"):
            assert (omega[name][p == 0] == 0).all(), name
    conv = [n for n, p in tr.strategy.params.items() if p.dim() == 4]
    assert conv and all(omega[n].shape == tr.strategy.params[n].shape for n in conv)


@pytest.mark.parametrize("bn_stats", ["per_task", "shared"])
def test_per_task_batch_norm_keeps_old_tasks_evaluation_when_the_trunk_is_frozen(make_trainer, bn_stats):
    tr = make_trainer(
        **{**CNN, "model__arch": "vgg9", "data__train_samples": 48},
        model__bn_stats=bn_stats,
        strategy__method="sgd_f",
        data__num_tasks=2,
        optim__epochs=1,
    )
    tr.run_task(0)
    after_first = tr.evaluate("test")[0]
    tr.run_task(1)
    unchanged = tr.evaluate("test")[0] == after_first
    norm = next(m for m in tr.model.modules() if isinstance(m, TaskBatchNorm2d | nn.BatchNorm2d))
    if bn_stats == "per_task":
        assert unchanged  # task 2's training moved only task 2's statistics
        assert not torch.equal(norm.running_mean[0], norm.running_mean[1])
    else:
        assert isinstance(norm, nn.BatchNorm2d)  # one shared set: training task 2 moved task 1's statistics


def test_xdg_switches_off_whole_channels_per_task(make_trainer):
    tr = make_trainer(**CNN, strategy__method="anpyc", strategy__pruning="xdg", strategy__xdg_gate=0.5)
    model: MultiHeadCNN = tr.model
    assert model.gated and model.unit_widths() == [32, 64, 512, 256]
    x = tr.tasks.tasks[0].test.inputs()[:4]
    acts = {}
    handle = model.trunk[1].register_forward_hook(lambda m, i, o: acts.setdefault("relu0", o))
    model.eval()
    with torch.no_grad():
        model.features(x, 1)
    handle.remove()
    gate = model.gate_0[1]
    assert gate.sum() == 16
    # the gate multiplies after the ReLU; check through the gated features of the next layer's input
    gated = acts["relu0"] * gate.view(1, -1, 1, 1)
    assert (gated[:, gate == 0] == 0).all()


def test_model_init_loads_a_state_dict_and_refuses_the_wrong_shapes_in_one_line(make_cfg, tmp_path):
    lenet = build_model(make_cfg(model__arch="lenet"), (1, 28, 28), [2])
    path = tmp_path / "lenet.pt"
    torch.save(lenet.state_dict(), path)
    loaded = build_model(make_cfg(model__arch="lenet", model__init=str(path)), (1, 28, 28), [2])
    for (name, a), b in zip(lenet.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ModelInitError, match=r"model.init: .*trunk.0.weight has shape \(32, 1, 5, 5\), this model's"):
        build_model(make_cfg(model__arch="vgg9", model__init=str(path)), (1, 28, 28), [2])
    with pytest.raises(ModelInitError, match="model.init: .*no such file"):
        build_model(make_cfg(model__arch="lenet", model__init=str(tmp_path / "missing.pt")), (1, 28, 28), [2])
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ModelInitError, match="model.init: .*not a PyTorch state dict"):
        build_model(make_cfg(model__arch="lenet", model__init=str(tmp_path / "junk.pt")), (1, 28, 28), [2])


def test_a_torchvision_resnet18_state_dict_loads_into_the_trunk(make_cfg, tmp_path):
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pt")
    model = build_model(make_cfg(model__arch="resnet18", model__init=str(tmp_path / "r18.pt")), (1, 8, 8), [2])
    assert torch.equal(model.trunk[0].conv1.weight, reference.conv1.weight)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"model": {"arch": "lenet", "hidden": [64]}}, "model.hidden: only arch mlp takes hidden widths"),
        ({"model": {"arch": "vgg9"}, "strategy": {"method": "hat"}}, "strategy.method: hat gates MLP units only"),
        ({"model": {"arch": "resnet18"}, "strategy": {"method": "anpyc", "pruning": "xdg"}}, "strategy.pruning: xdg"),
        ({"model": {"arch": "alexnet"}}, "model.arch"),
        ({"model": {"bn_stats": "per_batch"}}, "model.bn_stats"),
        ({"model": {"arch": "vgg9"}, "strategy": {"method": "joint"}}, "model.bn_stats: joint trains every task"),
        ({"model": {"arch": "lenet"}, "data": {"benchmark": "cifar10"}}, "model.arch: lenet reads 1-channel images"),
        (
            {"model": {"arch": "vgg9"}, "data": {"benchmark": "caltech101"}},
            r"up to 32x32; .* \(resnet18 takes any size\)",
        ),
        ({"data": {"sequence": ["digits", "svhn"], "num_tasks": 3}}, "data.num_tasks: a data.sequence has one"),
        ({"data": {"benchmark": "caltech101", "task_classes": [60, 50]}}, "data.task_classes: counts of at least 2"),
    ],
)
def test_what_a_cnn_cannot_take_is_refused_in_one_line(overrides, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        validate_config({"data": {"benchmark": "digits", **overrides.pop("data", {})}, **overrides})
    assert "\n" not in str(err.value)


def test_every_regularised_method_trains_a_cnn_sequence(make_trainer):
    for method in ("anpyc", "ewc", "mas", "si", "finetune", "lwf", "joint"):
        tr = make_trainer(
            **{**CNN, "data__train_samples": 40}, strategy__method=method, data__num_tasks=2, optim__epochs=1
        )
        for _ in tr.run():
            pass
        assert len(tr.acc_matrix) == 3, method
