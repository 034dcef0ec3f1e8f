"""Greedy neural pruning (SPEC §4.3): the schedule and the free-set rules, as pure functions."""

from __future__ import annotations

import math

import torch

Masks = dict[str, torch.Tensor]


def prune_percentages(task: int, beta: float, decay: float, step: float, schedule: str = "exact") -> list[float]:
    """Round percentages of 0-based `task`.

    `exact`: p_k = min(k·step, P_t) with P_t = β·decay^task; the last round stops exactly at P_t.
    `reference` (the authors' code): P_0 = int(β), P_t = int(decay·P_{t−1}); rounds k·step for
    k = 1, 2, … up to the first that reaches P_t, which may overshoot it.
    """
    if schedule == "reference":
        target = float(int(beta))
        for _ in range(task):
            target = float(int(decay * target))
        if target <= 0:
            return []
        return [k * step for k in range(1, math.ceil(target / step - 1e-9) + 1)]
    target = beta * decay**task
    if target <= 0:
        return []
    rounds = math.ceil(target / step - 1e-9)
    return [min(k * step, target) for k in range(1, rounds + 1)]


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-th percentile (0..100) of a 1-D tensor, linear interpolation as numpy's default."""
    flat = values.reshape(-1).float()
    if flat.numel() == 0:
        return torch.tensor(float("inf"), device=values.device)
    ordered = flat.sort().values
    pos = (q / 100.0) * (ordered.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    frac = pos - lo
    return ordered[lo] + (ordered[hi] - ordered[lo]) * frac


def _thresholds(
    omega: dict[str, torch.Tensor], candidates: Masks | None, q: float, scope: str
) -> dict[str, torch.Tensor]:
    def pool(name: str) -> torch.Tensor:
        values = omega[name]
        return values.reshape(-1) if candidates is None else values[candidates[name]]

    if scope == "global":
        shared = percentile(torch.cat([pool(n) for n in omega]), q)
        return dict.fromkeys(omega, shared)
    return {n: percentile(pool(n), q) for n in omega}


def greedy_free_set(
    omega: dict[str, torch.Tensor], previous: Masks | None, q: float, scope: str = "tensor", zero_rule: str = "free"
) -> Masks:
    """Weights to free at percentage `q`.

    First task (`previous` is None): {Ω < percentile(Ω, q)} ∪ {Ω = 0}.
    Later tasks: F ∩ {Ω ≤ percentile(Ω restricted to F, q)} with F = the previous free set, so
    weights outside F are never freed and free sets never grow from task to task.
    `zero_rule="rank"`: no special case for Ω = 0; the floor(q% of the candidates) lowest-Ω weights
    are freed (ties by position), so a round never frees more than its percentage.
    """
    if zero_rule == "rank":
        return _rank_free_set(omega, previous, q, scope)
    thresholds = _thresholds(omega, previous, q, scope)
    if previous is None:
        return {n: (w < thresholds[n]) | (w == 0) for n, w in omega.items()}
    return {n: previous[n] & (w <= thresholds[n]) for n, w in omega.items()}


def _rank_free_set(omega: dict[str, torch.Tensor], previous: Masks | None, q: float, scope: str) -> Masks:
    """The floor(q%) lowest-Ω candidates (per tensor, or over all tensors for `global`), ties by position."""
    names = list(omega)
    pools = {n: torch.ones_like(omega[n], dtype=torch.bool) if previous is None else previous[n] for n in names}
    groups = [names] if scope == "global" else [[n] for n in names]
    out = {n: torch.zeros_like(omega[n], dtype=torch.bool) for n in names}
    for group in groups:
        values = torch.cat([omega[n].reshape(-1) for n in group])
        allowed = torch.cat([pools[n].reshape(-1) for n in group])
        k = math.floor(q / 100.0 * int(allowed.sum()) + 1e-9)  # never past the percentage
        if k == 0:
            continue
        ranked = torch.where(allowed, values, torch.full_like(values, float("inf")))
        chosen = torch.zeros_like(allowed)
        chosen[torch.sort(ranked, stable=True).indices[:k]] = True
        start = 0
        for n in group:
            size = omega[n].numel()
            out[n] = chosen[start : start + size].reshape(omega[n].shape)
            start += size
    return out


def random_free_set(
    omega: dict[str, torch.Tensor],
    previous: Masks | None,
    q: float,
    scope: str,
    current: Masks,
    generator: torch.Generator,
    zero_rule: str = "free",
) -> Masks:
    """Same per-tensor counts as the greedy rule, weights chosen uniformly among candidates.

    Weights already freed in an earlier round (`current`) stay free.
    """
    counts = {n: int(m.sum()) for n, m in greedy_free_set(omega, previous, q, scope, zero_rule).items()}
    out = {}
    for name, already in current.items():
        pool = ~already if previous is None else previous[name] & ~already
        need = max(counts[name] - int(already.sum()), 0)
        idx = pool.reshape(-1).nonzero().squeeze(1)
        pick = torch.randperm(idx.numel(), generator=generator)[:need].to(idx.device)
        mask = already.clone().reshape(-1)
        mask[idx[pick]] = True
        out[name] = mask.reshape(already.shape)
    return out


def zero_free_weights(
    params: dict[str, torch.Tensor], free: Masks, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Set freed weights to 0 and zero their optimiser state (momentum, Adam moments)."""
    with torch.no_grad():
        for name, p in params.items():
            p.masked_fill_(free[name], 0.0)
            if optimizer is None or p not in optimizer.state:
                continue
            for value in optimizer.state[p].values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.masked_fill_(free[name], 0.0)
