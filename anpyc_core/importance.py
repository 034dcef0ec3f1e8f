"""Parameter-importance measures Ω^t over the trunk (SPEC §4.1).

Every measure returns one non-negative tensor per trunk parameter, keyed like
`MultiHeadMLP.trunk_parameters()`, so consolidation and pruning never care which one was used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.func import functional_call, grad, jacrev, vmap
from torch.nn import functional as F

from anpyc_core.data.tasks import Split
from anpyc_core.models import MultiHeadMLP

Importances = dict[str, torch.Tensor]


def chunks(split: Split, size: int, cap: int | None = None) -> Iterator[slice]:
    """Consecutive chunk slices of `size` over the first `cap` (or all) samples of `split`."""
    n = len(split) if cap is None else min(cap, len(split))
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _chunk_mean(
    model: MultiHeadMLP,
    split: Split,
    size: int,
    cap: int | None,
    per_chunk: Callable[[list[torch.Tensor], list[torch.Tensor]], list[torch.Tensor]],
    objective: Callable[[torch.Tensor], torch.Tensor],
    task: int,
) -> Importances:
    params = model.trunk_parameters()
    names, tensors = list(params), list(params.values())
    totals = [torch.zeros_like(p) for p in tensors]
    count = 0
    for sl in chunks(split, size, cap):
        logits = model(split.inputs(sl), task)
        grads = torch.autograd.grad(objective(logits), tensors)
        with torch.no_grad():  # θ requires grad: keep ω out of the autograd graph
            for total, omega in zip(totals, per_chunk(grads, tensors), strict=True):
                total.add_(omega)
        count += 1
    return {n: total / max(count, 1) for n, total in zip(names, totals, strict=True)}


def anpyc_importance(model: MultiHeadMLP, split: Split, task: int, size: int, cap: int | None = None) -> Importances:
    """Label-free ANPyC importance: max(g·θ + ½θ²g², 0) of the batch-summed output entropy."""

    def entropy(logits: torch.Tensor) -> torch.Tensor:
        logq = F.log_softmax(logits, dim=1)
        return -(logq.exp() * logq).sum()

    def omega(grads, params):
        return [(g * p + 0.5 * p.square() * g.square()).clamp_(min=0) for g, p in zip(grads, params, strict=True)]

    return _chunk_mean(model, split, size, cap, omega, entropy, task)


def mas_importance(model: MultiHeadMLP, split: Split, task: int, size: int, cap: int | None = None) -> Importances:
    """MAS (Aljundi et al. 2018): |∂ mean_n ‖z_n‖² / ∂θ| averaged over chunks."""

    def sq_norm(logits: torch.Tensor) -> torch.Tensor:
        return logits.square().sum(dim=1).mean()

    def omega(grads, params):
        return [g.abs() for g in grads]

    return _chunk_mean(model, split, size, cap, omega, sq_norm, task)


def ewc_importance(
    model: MultiHeadMLP,
    split: Split,
    task: int,
    size: int,
    cap: int | None = None,
    fisher: str = "empirical",
) -> Importances:
    """Diagonal Fisher: mean over samples of (∂ log q_y / ∂θ)², per-sample grads by torch.func.

    `empirical` uses the true label; `expected` weights every class by the model's q.
    """
    trunk = model.trunk_parameters()
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in trunk}
    frozen.update(dict(model.named_buffers()))
    theta = {n: p.detach() for n, p in trunk.items()}

    def log_probs(params: dict, x: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, {**frozen, **params}, (x.unsqueeze(0), task))
        return F.log_softmax(logits, dim=1)[0]

    totals = {n: torch.zeros_like(p) for n, p in theta.items()}
    n_samples = 0
    if fisher == "empirical":
        per_sample = vmap(grad(lambda p, x, y: log_probs(p, x).gather(0, y[None])[0]), in_dims=(None, 0, 0))
    else:
        per_sample = vmap(jacrev(log_probs), in_dims=(None, 0))
    for sl in chunks(split, size, cap):
        x = split.inputs(sl)
        if fisher == "empirical":
            g = per_sample(theta, x, split.labels[sl])
            for n in totals:
                totals[n].add_(g[n].square().sum(dim=0))
        else:
            jac = per_sample(theta, x)  # each: (batch, classes, *param shape)
            with torch.no_grad():
                q = F.softmax(model(x, task), dim=1)
            for n in totals:
                w = q.reshape(*q.shape, *([1] * theta[n].dim()))
                totals[n].add_((w * jac[n].square()).sum(dim=(0, 1)))
        n_samples += x.shape[0]
    return {n: t / max(n_samples, 1) for n, t in totals.items()}


def si_importance(path: Importances, params: dict[str, torch.Tensor], start: Importances, xi: float) -> Importances:
    """Synaptic Intelligence (Zenke et al. 2017): ω / ((θ − θ_start)² + ξ), clamped at 0."""
    return {n: (path[n] / ((p.detach() - start[n]).square() + xi)).clamp(min=0) for n, p in params.items()}


def magnitude_importance(params: dict[str, torch.Tensor]) -> Importances:
    """|θ|: the magnitude-pruning control."""
    return {n: p.detach().abs() for n, p in params.items()}


def random_importance(params: dict[str, torch.Tensor], generator: torch.Generator) -> Importances:
    """Seeded U(0, 1) per parameter: the random control."""
    return {n: torch.rand(p.shape, generator=generator, device="cpu").to(p.device) for n, p in params.items()}
