"""Continual-learning strategies and the factory that picks one from a config."""

from anpyc_core.config import RunConfig
from anpyc_core.models import MultiHeadMLP, reference_init, xdg_gates
from anpyc_core.strategies.base import Phase, Strategy
from anpyc_core.strategies.baselines import Finetune, FrozenTrunk, LearningWithoutForgetting
from anpyc_core.strategies.hat import HardAttention
from anpyc_core.strategies.regularised import Regularised

_BY_METHOD = {
    "finetune": Finetune,
    "sgd": Finetune,
    "joint": Finetune,
    "sgd_f": FrozenTrunk,
    "lwf": LearningWithoutForgetting,
    "hat": HardAttention,
}


def build_model(cfg: RunConfig, in_features: int, head_sizes: list[int]) -> MultiHeadMLP:
    """The model a config asks for: single-head for `sgd`, XDG-gated for `pruning: xdg`."""
    model = MultiHeadMLP(
        in_features,
        cfg.model.hidden,
        head_sizes,
        dropout=cfg.model.dropout,
        single_head=cfg.strategy.method == "sgd",
    )
    if cfg.model.init == "reference":
        reference_init(model)
    if cfg.strategy.method == "hat":
        model.enable_hat(len(head_sizes), cfg.strategy.hat_smax)
    if cfg.strategy.pruning == "xdg":
        model.set_gates(xdg_gates(cfg.model.hidden, len(head_sizes), cfg.strategy.xdg_gate, cfg.seed))
    return model


def build_strategy(cfg: RunConfig, model: MultiHeadMLP, num_tasks: int) -> Strategy:
    """The strategy object for `cfg.strategy.method`."""
    if cfg.strategy.regularised:
        return Regularised(cfg, model, num_tasks)
    return _BY_METHOD[cfg.strategy.method](cfg, model, num_tasks)


__all__ = ["Phase", "Strategy", "Regularised", "build_model", "build_strategy"]
