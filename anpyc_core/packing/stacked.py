"""K same-shape multi-head MLPs fused into stacked tensors `[K, …]` (HFTA style).

Each member model keeps its own `nn.Parameter`s, but after `StackedMLP(models)` those
parameters are views into the stacks: a member's strategy, evaluation and checkpoint read and
write the pack's storage directly, and one batched forward/backward trains every member.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from anpyc_core.models import MultiHeadMLP


class _StackedLinear(torch.autograd.Function):
    """y_k = x_k W_kᵀ + b_k for every member k, with the same gradient products as `F.linear`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        if x.shape[0] == 1:  # one member: F.linear's own kernels, so a pack of one is its sequential run
            return torch.addmm(bias[0], x[0], weight[0].t()).unsqueeze(0)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        if x.shape[0] == 1:
            g, a, w = grad[0], x[0], weight[0]
            grad_x = g.mm(w).unsqueeze(0) if need_x else None
            grad_w = g.t().mm(a).unsqueeze(0) if need_w else None
            grad_b = g.sum(dim=0).unsqueeze(0) if need_b else None
            return grad_x, grad_w, grad_b
        grad_x = torch.bmm(grad, weight) if need_x else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if need_w else None
        grad_b = grad.sum(dim=1) if need_b else None
        return grad_x, grad_w, grad_b


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Batched linear layer: x `[K, B, in]`, weight `[K, out, in]`, bias `[K, out]` → `[K, B, out]`."""
    return _StackedLinear.apply(x, weight, bias)


def _rebind(module: nn.Module, name: str, stack: torch.Tensor, k: int) -> None:
    module._parameters[name] = nn.Parameter(stack.detach()[k], requires_grad=False)


class StackedMLP:
    """The stacked weights of K `MultiHeadMLP`s with equal shapes; members see views of them."""

    def __init__(self, models: list[MultiHeadMLP]) -> None:
        first = models[0]
        self.size = len(models)
        self.dropout = torch.tensor([m.dropout for m in models], dtype=torch.float64)
        self.single_head = first.single_head
        #: (layer name, stacked weight, stacked bias) for trunk layers then heads
        self.trunk: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.heads: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._slot: dict[int, tuple[torch.Tensor, int]] = {}  # id(member param) -> (stack, k)
        for i in range(len(first.trunk)):
            self.trunk.append(self._stack([m.trunk[i] for m in models]))
        for i in range(len(first.heads)):
            self.heads.append(self._stack([m.heads[i] for m in models]))
        self.gates = None
        if first.gated:
            self.gates = [torch.stack([getattr(m, f"gate_{i}") for m in models]) for i in range(len(first.trunk))]

    def _stack(self, layers: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.stack([layer.weight.detach() for layer in layers])
        bias = torch.stack([layer.bias.detach() for layer in layers])
        for k, layer in enumerate(layers):
            _rebind(layer, "weight", weight, k)
            _rebind(layer, "bias", bias, k)
            self._slot[id(layer.weight)] = (weight, k)
            self._slot[id(layer.bias)] = (bias, k)
        return weight, bias

    def tensors(self) -> list[torch.Tensor]:
        """Every stacked parameter tensor."""
        return [t for pair in self.trunk + self.heads for t in pair]

    def slot(self, param: nn.Parameter) -> tuple[torch.Tensor, int]:
        """(stack, member index) holding a member's parameter."""
        return self._slot[id(param)]

    def head_index(self, task: int) -> int:
        """Which head serves `task`."""
        return 0 if self.single_head else task

    def forward(
        self,
        x: torch.Tensor,
        task: int,
        members: torch.Tensor | None,
        dropout_generators: list[torch.Generator | None],
    ) -> torch.Tensor:
        """Logits `[A, B, classes]` of the active members (`members` = their indices, None = all)."""

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t if members is None else t.index_select(0, members)

        for i, (weight, bias) in enumerate(self.trunk):
            x = F.relu(stacked_linear(x, pick(weight), pick(bias)))
            if self.gates is not None:
                x = x * pick(self.gates[i])[:, task].unsqueeze(1)
            x = self._dropout(x, members, dropout_generators)
        weight, bias = self.heads[self.head_index(task)]
        return stacked_linear(x, pick(weight), pick(bias))

    def _dropout(self, x: torch.Tensor, members: torch.Tensor | None, generators: list) -> torch.Tensor:
        """Each member's own dropout mask, drawn from its own generator exactly as `F.dropout` draws it."""
        rates = self.dropout if members is None else self.dropout[members.cpu()]
        if not bool((rates > 0).any()):
            return x
        scale = torch.ones_like(x)
        for a, (rate, gen) in enumerate(zip(rates.tolist(), generators, strict=True)):
            if rate > 0:
                scale[a].bernoulli_(1 - rate, generator=gen).div_(1 - rate)
        return x * scale
