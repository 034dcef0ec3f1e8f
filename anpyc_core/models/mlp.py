"""The multi-head MLP of SPEC §3: a shared trunk, one linear head per task, optional XDG gates."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MultiHeadMLP(nn.Module):
    """Trunk of Linear+ReLU(+dropout) layers and one head per task (or one shared head)."""

    def __init__(
        self,
        in_features: int,
        hidden: list[int],
        head_sizes: list[int],
        dropout: float = 0.0,
        single_head: bool = False,
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        self.trunk = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        sizes = [max(head_sizes)] if single_head else head_sizes
        self.heads = nn.ModuleList(nn.Linear(hidden[-1], c) for c in sizes)
        self.dropout = dropout
        self.single_head = single_head
        self.gated = False
        self.hat_embeddings: nn.ModuleList | None = None
        self.hat_s = 1.0

    def set_gates(self, gates: list[torch.Tensor]) -> None:
        """Install per-task XDG gates: one (num_tasks, width) 0/1 tensor per hidden layer."""
        for i, g in enumerate(gates):
            self.register_buffer(f"gate_{i}", g)
        self.gated = True

    def enable_hat(self, num_tasks: int, smax: float) -> None:
        """HAT (Serra et al. 2018): per-task unit embeddings e, gate σ(s·e) on every hidden layer."""
        self.hat_embeddings = nn.ModuleList(nn.Embedding(num_tasks, layer.out_features) for layer in self.trunk)
        for emb in self.hat_embeddings:
            nn.init.normal_(emb.weight, 0.0, 1.0)
        self.hat_s = smax

    def hat_gate(self, layer: int, task: int) -> torch.Tensor:
        """σ(s·e) of `layer`'s units for `task` at the current annealing scale s."""
        return torch.sigmoid(self.hat_s * self.hat_embeddings[layer].weight[task])

    def trunk_parameters(self) -> dict[str, nn.Parameter]:
        """The shared parameters θ (weights and biases) by name: what Ω, θ* and pruning cover."""
        return {f"trunk.{n}": p for n, p in self.trunk.named_parameters()}

    def head_index(self, task: int) -> int:
        """Which head serves `task` (always 0 for the single-head model)."""
        return 0 if self.single_head else task

    def features(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Trunk output for inputs of `task` (XDG gates of that task applied when installed)."""
        for i, layer in enumerate(self.trunk):
            x = F.relu(layer(x))
            if self.gated:
                x = x * getattr(self, f"gate_{i}")[task]
            if self.hat_embeddings is not None:
                x = x * self.hat_gate(i, task)
            if self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
        return x

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Logits of `task`'s head."""
        return self.heads[self.head_index(task)](self.features(x, task))


def xdg_gates(hidden: list[int], num_tasks: int, off_fraction: float, seed: int) -> list[torch.Tensor]:
    """Context-dependent gates (Masse et al. 2018): per task a fixed random `off_fraction` of
    each hidden layer's units is switched off."""
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    gates = []
    for width in hidden:
        n_off = int(round(off_fraction * width))
        g = torch.ones(num_tasks, width)
        for t in range(num_tasks):
            g[t, torch.randperm(width, generator=gen)[:n_off]] = 0.0
        gates.append(g)
    return gates


@torch.no_grad()
def reference_init(model: nn.Module, std: float = 0.1, bias: float = 0.1) -> None:
    """The authors' initialisation: weights from a normal truncated at two standard deviations, biases constant
    (every Linear and Conv2d of trunk and heads, in registration order)."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            layer.bias.fill_(bias)
