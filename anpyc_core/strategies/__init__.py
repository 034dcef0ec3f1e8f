"""Continual-learning strategies and the factory that picks one from a config."""

from anpyc_core.config import RunConfig
from anpyc_core.models import ContinualModel, build_model
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


def build_strategy(cfg: RunConfig, model: ContinualModel, num_tasks: int) -> Strategy:
    """The strategy object for `cfg.strategy.method`."""
    if cfg.strategy.regularised:
        return Regularised(cfg, model, num_tasks)
    return _BY_METHOD[cfg.strategy.method](cfg, model, num_tasks)


__all__ = ["Phase", "Strategy", "Regularised", "build_model", "build_strategy"]
