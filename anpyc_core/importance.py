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


#: Floats a batched chunk-gradient block may hold per layer (8 MB in float32: it stays in cache).
GROUP_FLOATS = 2 * 2**20


def linear_trunk(model) -> bool:
    """True when every trunk parameter belongs to an nn.Linear (the fast layer-wise passes apply)."""
    return hasattr(model, "trunk") and all(isinstance(m, torch.nn.Linear) for m in model.trunk)


def layer_signals(
    model: MultiHeadMLP, x: torch.Tensor, task: int, objective: Callable[[torch.Tensor], torch.Tensor], keep=False
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """(logits, inputs a_l, output gradients δ_l = ∂objective/∂z_l) of every trunk Linear layer on `x`.

    For an objective that sums per-sample terms, row n of δ_l belongs to sample n alone, so per-sample
    (or per-chunk) parameter gradients are products of δ and a: no per-sample backward is needed."""
    inputs, outputs = [], []

    def hook(module, args, out):
        inputs.append(args[0].detach())
        outputs.append(out)

    handles = [layer.register_forward_hook(hook) for layer in model.trunk]
    try:
        logits = model(x, task)
    finally:
        for handle in handles:
            handle.remove()
    deltas = torch.autograd.grad(objective(logits), outputs, retain_graph=keep)
    return logits, inputs, list(deltas)


def _chunk_mean_batched(
    model: MultiHeadMLP,
    split: Split,
    size: int,
    cap: int | None,
    per_chunk: Callable[[list[torch.Tensor], list[torch.Tensor]], list[torch.Tensor]],
    objective: Callable[[torch.Tensor, int], torch.Tensor],
    task: int,
) -> Importances:
    """`_chunk_mean` for a Linear trunk: groups of equal chunks share one forward and one backward, and
    each chunk's gradient g_b = δ_bᵀ a_b comes from one batched matmul per layer."""
    params = model.trunk_parameters()
    names, tensors = list(params), list(params.values())
    totals = [torch.zeros_like(p) for p in tensors]
    n = len(split) if cap is None else min(cap, len(split))
    widest = max(layer.weight.numel() for layer in model.trunk)
    group = max(1, GROUP_FLOATS // widest) * size
    count = 0
    full = n - n % size
    spans = [(s, min(s + group, full), size) for s in range(0, full, group)]
    if full < n:
        spans.append((full, n, n - full))  # the last, shorter chunk on its own
    for start, stop, chunk in spans:
        x = split.inputs(slice(start, stop))
        _, acts, deltas = layer_signals(model, x, task, lambda z, c=chunk: objective(z, c))
        k = (stop - start) // chunk
        grads = []
        for a, d in zip(acts, deltas, strict=True):
            a3, d3 = a.reshape(k, chunk, -1), d.reshape(k, chunk, -1)
            grads += [torch.bmm(d3.transpose(1, 2), a3), d3.sum(dim=1)]  # weight, bias per chunk
        with torch.no_grad():
            stacked = [p.unsqueeze(0) for p in tensors]
            for total, omega in zip(totals, per_chunk(grads, stacked), strict=True):
                total.add_(omega.sum(dim=0))
        count += k
    return {name: total / max(count, 1) for name, total in zip(names, totals, strict=True)}


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

    def entropy(logits: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        logq = F.log_softmax(logits, dim=1)
        return -(logq.exp() * logq).sum()

    def omega(grads, params):
        return [(g * p + 0.5 * p.square() * g.square()).clamp_(min=0) for g, p in zip(grads, params, strict=True)]

    def omega_in_place(grads, params):  # the same with u = g·θ: max(u + ½u², 0), overwriting the grads
        out = []
        for g, p in zip(grads, params, strict=True):
            u = g.mul_(p)
            out.append(u.addcmul_(u, u, value=0.5).clamp_(min=0))
        return out

    if linear_trunk(model):
        return _chunk_mean_batched(model, split, size, cap, omega_in_place, entropy, task)
    return _chunk_mean(model, split, size, cap, omega, entropy, task)


def mas_importance(model: MultiHeadMLP, split: Split, task: int, size: int, cap: int | None = None) -> Importances:
    """MAS (Aljundi et al. 2018): |∂ mean_n ‖z_n‖² / ∂θ| averaged over chunks."""

    def sq_norm(logits: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        # the mean within each chunk: a group of k chunks sums k chunk means
        return logits.square().sum(dim=1).sum() / (chunk or logits.shape[0])

    def omega(grads, params):
        return [g.abs() for g in grads]

    # one backward per chunk: with |g| as its only per-chunk work, MAS is faster this way than through
    # the batched chunk gradients (bench/trainer_speed.py measured 0.7x for those)
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
    if linear_trunk(model):
        return _fisher_linear(model, split, task, cap, fisher)
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


def _fisher_linear(model: MultiHeadMLP, split: Split, task: int, cap: int | None, fisher: str) -> Importances:
    """Diagonal Fisher of a Linear trunk without per-sample gradients: with a_n a layer's input and δ_n
    the gradient at its output for sample n, Σ_n (∂ℓ_n/∂W)² = (δ²)ᵀ(a²) and Σ_n (∂ℓ_n/∂b)² = Σ_n δ_n²."""
    params = model.trunk_parameters()
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    n_total = len(split) if cap is None else min(cap, len(split))
    step = max(256, GROUP_FLOATS // max(layer.weight.numel() for layer in model.trunk) * 64)
    for sl in chunks(split, step, n_total):
        x = split.inputs(sl)
        if fisher == "empirical":
            y = split.labels[sl]
            _, acts, deltas = layer_signals(
                model, x, task, lambda z, y=y: F.log_softmax(z, dim=1).gather(1, y[:, None]).sum()
            )
            weighted = [(None, d) for d in deltas]
        else:  # expected: Σ_c q_c (∂ log q_c / ∂θ)², one backward per class on one forward
            with torch.no_grad():
                q = F.softmax(model(x, task), dim=1)
            weighted = []
            for c in range(q.shape[1]):
                _, acts, deltas = layer_signals(model, x, task, lambda z, c=c: F.log_softmax(z, dim=1)[:, c].sum())
                weighted += [(q[:, c : c + 1], d) for d in deltas]
        with torch.no_grad():
            layers = len(acts)
            for i, (w, d) in enumerate(weighted):
                a = acts[i % layers]
                d2 = d.square() if w is None else w * d.square()
                totals[f"trunk.{i % layers}.weight"].add_(d2.T @ a.square())
                totals[f"trunk.{i % layers}.bias"].add_(d2.sum(dim=0))
    return {n: t / max(n_total, 1) for n, t in totals.items()}


def si_importance(path: Importances, params: dict[str, torch.Tensor], start: Importances, xi: float) -> Importances:
    """Synaptic Intelligence (Zenke et al. 2017): ω / ((θ − θ_start)² + ξ), clamped at 0."""
    return {n: (path[n] / ((p.detach() - start[n]).square() + xi)).clamp(min=0) for n, p in params.items()}


def magnitude_importance(params: dict[str, torch.Tensor]) -> Importances:
    """|θ|: the magnitude-pruning control."""
    return {n: p.detach().abs() for n, p in params.items()}


def random_importance(params: dict[str, torch.Tensor], generator: torch.Generator) -> Importances:
    """Seeded U(0, 1) per parameter: the random control."""
    return {n: torch.rand(p.shape, generator=generator, device="cpu").to(p.device) for n, p in params.items()}


def measure(
    kind: str,
    model,
    split,
    task: int,
    size: int,
    cap: int | None,
    fisher: str = "empirical",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Ω of a classifier's trunk by measure name: anpyc, mas, ewc, magnitude or random (`generator` seeds it).

    SI's Ω comes from its path integral, not from data, so it is not measured here."""
    if kind == "anpyc":
        return anpyc_importance(model, split, task, size, cap)
    if kind == "mas":
        return mas_importance(model, split, task, size, cap)
    if kind == "ewc":
        return ewc_importance(model, split, task, size, cap, fisher)
    if kind == "magnitude":
        return magnitude_importance(model.trunk_parameters())
    if kind == "random":
        return random_importance(model.trunk_parameters(), generator or torch.Generator())
    raise ValueError(f"importance: unknown measure {kind!r}; allowed: anpyc, mas, ewc, magnitude, random")
