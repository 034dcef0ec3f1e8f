"""Baselines that are not importance-weighted (SPEC §5): finetune, sgd, sgd_f and LwF."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from anpyc_core.strategies.base import Strategy


class Finetune(Strategy):
    """Multi-head fine-tuning (and, on the single-head model, the `sgd` baseline)."""


class FrozenTrunk(Strategy):
    """`sgd_f`: the trunk trains on task 1 only; later tasks train only their new head."""

    def trainable(self, task: int) -> list[nn.Parameter]:
        """Trunk and head on task 1, the new head alone afterwards."""
        if task == 0:
            return super().trainable(task)
        return list(self.model.heads[task].parameters())


class LearningWithoutForgetting(Strategy):
    """LwF: distil old heads' softened outputs from the task-start snapshot on current inputs."""

    def before_task(self, task: int) -> None:
        """Snapshot the model (frozen, eval mode) as the teacher for old heads."""
        teacher = copy.deepcopy(self.model).eval().requires_grad_(False) if task > 0 else None
        object.__setattr__(self, "_teacher", teacher)  # not a submodule: never checkpointed

    def extra_loss(self, task: int, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor | None:
        """α · Σ_{s<t} T² · KL(softmax(z_s^old/T) ‖ softmax(z_s/T))."""
        if task == 0:
            return None
        temp, alpha = self.cfg.strategy.lwf_temperature, self.cfg.strategy.lwf_alpha
        with torch.no_grad():
            old_features = self._teacher.features(x, task)
        total = features.new_zeros(())
        for s in range(task):
            old = F.softmax(self._teacher.heads[s](old_features) / temp, dim=1)
            new = F.log_softmax(self.model.heads[s](features) / temp, dim=1)
            total = total + F.kl_div(new, old, reduction="batchmean")
        return alpha * temp**2 * total
