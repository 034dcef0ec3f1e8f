"""HAT: hard attention to the task (Serrà et al. 2018), as SPEC §5 describes it.

Per task and hidden layer a unit embedding e; the gate σ(s·e) multiplies the layer's output, with
s annealed from 1/s_max to s_max within every epoch and fixed at s_max for evaluation. After each
task the cumulative mask m = max(m, σ(s_max·e_t)); weight gradients are scaled by
1 − min(m_out, m_in) so units earlier tasks rely on stay fixed, and a sparsity term
c · Σ a(1 − m) / Σ (1 − m) makes a new task claim as few still-free units as it can.
"""

from __future__ import annotations

import torch
from torch import nn

from anpyc_core.config import RunConfig
from anpyc_core.data.tasks import Task
from anpyc_core.models import MultiHeadMLP
from anpyc_core.strategies.base import Strategy, TensorStore


class HardAttention(Strategy):
    """HAT's masks, gradient scaling, sparsity term and embedding compensation."""

    def __init__(self, cfg: RunConfig, model: MultiHeadMLP, num_tasks: int) -> None:
        super().__init__(cfg, model, num_tasks)
        self.smax, self.c, self.clamp = cfg.strategy.hat_smax, cfg.strategy.hat_c, cfg.strategy.hat_clamp
        widths = {f"layer{i}": torch.zeros(layer.out_features) for i, layer in enumerate(model.trunk)}
        self.masks = TensorStore(widths)  # cumulative mask of tasks so far, one per hidden layer

    def mask(self, layer: int) -> torch.Tensor:
        """Cumulative mask of hidden `layer` (units used by earlier tasks are ≈ 1)."""
        return self.masks[f"layer{layer}"]

    def trainable(self, task: int) -> list[nn.Parameter]:
        """Trunk, the task's head and the unit embeddings."""
        return [*super().trainable(task), *self.model.hat_embeddings.parameters()]

    def before_batch(self, task: int, batch: int, num_batches: int) -> None:
        """s = 1/s_max + (s_max − 1/s_max) · b / (B − 1) within each epoch."""
        lo = 1.0 / self.smax
        self.model.hat_s = lo + (self.smax - lo) * batch / max(num_batches - 1, 1)

    def extra_loss(self, task: int, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor | None:
        """c · Σ_l Σ_i a_li (1 − m_li) / Σ_l Σ_i (1 − m_li)."""
        if self.c == 0:
            return None
        used = free = features.new_zeros(())
        for i in range(len(self.model.trunk)):
            room = 1.0 - self.mask(i)
            used = used + (self.model.hat_gate(i, task) * room).sum()
            free = free + room.sum()
        return self.c * used / free.clamp(min=1.0)

    @torch.no_grad()
    def after_backward(self, task: int) -> None:
        """Freeze what earlier tasks use; compensate the embeddings' annealing (HAT §2.5)."""
        for i, layer in enumerate(self.model.trunk):
            m_out = self.mask(i)
            # inputs count as fully used, so the first layer's scale is 1 − m_out
            m_in = self.mask(i - 1) if i > 0 else torch.ones(layer.in_features, device=m_out.device)
            layer.weight.grad.mul_(1.0 - torch.minimum(m_out[:, None], m_in[None, :]))
            layer.bias.grad.mul_(1.0 - m_out)
        s = self.model.hat_s
        for emb in self.model.hat_embeddings:
            if emb.weight.grad is not None:
                e = emb.weight
                ratio = (torch.cosh(torch.clamp(s * e, -50, 50)) + 1) / (torch.cosh(e) + 1)
                emb.weight.grad.mul_(self.smax / s * ratio)

    @torch.no_grad()
    def after_step(self, task: int, lr: float) -> None:
        """Keep embeddings within ±clamp."""
        for emb in self.model.hat_embeddings:
            emb.weight.clamp_(-self.clamp, self.clamp)

    @torch.no_grad()
    def after_task(self, task: int, data: Task) -> None:
        """m = max(m, σ(s_max · e_t)); evaluation uses s = s_max."""
        self.model.hat_s = self.smax
        for i in range(len(self.model.trunk)):
            torch.maximum(self.mask(i), self.model.hat_gate(i, task), out=self.mask(i))
