"""The models of SPEC §3: the multi-head MLP and the CNNs (VGG-9, LeNet, ResNet-18), and the factory."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from anpyc_core.models.cnn import ARCH_INPUT, MultiHeadCNN, TaskBatchNorm2d, input_refusal, torchvision_init
from anpyc_core.models.mlp import MultiHeadMLP, reference_init, xdg_gates

ContinualModel = MultiHeadMLP | MultiHeadCNN


class ModelInitError(ValueError):
    """`model.init: PATH` names a file that is missing, unreadable or shaped for another model."""


def build_model(cfg, image_shape: tuple[int, int, int], head_sizes: list[int]) -> ContinualModel:
    """The model a config asks for: its architecture, single-head for `sgd`, HAT, XdG gates, init."""
    single = cfg.strategy.method == "sgd"
    if cfg.model.arch == "mlp":
        in_features = image_shape[0] * image_shape[1] * image_shape[2]
        model = MultiHeadMLP(in_features, cfg.model.hidden, head_sizes, cfg.model.dropout, single)
        widths = cfg.model.hidden
    else:
        refusal = input_refusal(cfg.model.arch, image_shape)
        if refusal:
            raise ModelInitError(refusal)
        model = MultiHeadCNN(cfg.model.arch, image_shape, head_sizes, cfg.model.dropout, single, cfg.model.bn_stats)
        widths = model.unit_widths()
    if cfg.model.init == "reference":
        reference_init(model)
    elif cfg.model.init == "torchvision":
        torchvision_init(model)
    elif cfg.model.init != "default":
        load_init(model, cfg.model.init)
    if cfg.strategy.method == "hat":
        model.enable_hat(len(head_sizes), cfg.strategy.hat_smax)
    if cfg.strategy.pruning == "xdg":
        model.set_gates(xdg_gates(widths, len(head_sizes), cfg.strategy.xdg_gate, cfg.seed))
    return model


def load_init(model: nn.Module, path: str) -> None:
    """Load a local state dict (e.g. converted pretrained weights) into `model`, strictly by name and shape.

    Keys of the file that the model lacks are ignored only when they belong to a classifier (`fc.`) or
    count batches, so a torchvision checkpoint loads into the ResNet-18 trunk (its batch-norm statistics
    become every task's starting statistics); anything else is one error line."""
    file = Path(path).expanduser()
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelInitError(f"model.init: {file}: no such file") from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        raise ModelInitError(f"model.init: {file}: not a PyTorch state dict ({type(err).__name__})") from None
    if not isinstance(state, dict):
        raise ModelInitError(f"model.init: {file}: expected a state dict, found {type(state).__name__}")
    own = model.state_dict()
    renamed = {_our_name(k, own): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for key, value in renamed.items():  # one set of batch-norm statistics starts every task's
        if key in own and key.endswith(("running_mean", "running_var")) and own[key].shape[1:] == value.shape:
            renamed[key] = value.expand_as(own[key])
    for key, value in renamed.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise ModelInitError(
                f"model.init: {file}: {key} has shape {tuple(value.shape)}, this model's is {tuple(own[key].shape)}"
            )
    unknown = [k for k in renamed if k not in own and k.split(".")[-2:-1] != ["fc"]]
    if unknown:
        raise ModelInitError(f"model.init: {file}: {unknown[0]} is not a parameter of this model")
    with torch.no_grad():
        for key, value in renamed.items():
            if key in own:
                own[key].copy_(value)


def _our_name(key: str, own: dict) -> str:
    """A torchvision ResNet key (`layer1.0.conv1.weight`) → ours (`trunk.0.layer1.0.conv1.weight`)."""
    if key in own or f"trunk.0.{key}" not in own:
        return key
    return f"trunk.0.{key}"


__all__ = [
    "ARCH_INPUT",
    "ContinualModel",
    "ModelInitError",
    "MultiHeadCNN",
    "MultiHeadMLP",
    "TaskBatchNorm2d",
    "build_model",
    "load_init",
    "reference_init",
    "xdg_gates",
]
