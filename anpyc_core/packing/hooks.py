"""The regularised strategy's per-step gradient hook for a whole pack at once (λ and Ω as tensors).

A member's own `after_backward` adds 2λΩ(θ − θ*) to each trunk gradient and zeroes the gradient
of the weights its pruning round froze, one small operation per member and tensor. Here λ, Ω,
θ* and the masks are stacked `[K, …]` beside the pack's weights, so each stacked tensor takes one
`addcmul_` and one `masked_fill_` for every member: the same arithmetic as the member's hook
((2λ·Ω)·(θ − θ*) added to the gradient), so a member's gradient stays bit-identical to its
sequential run's. Strategies whose hooks this does not cover (SI's path integral, HAT, …) keep
their per-member hooks.
"""

from __future__ import annotations

import torch

from anpyc_core.strategies.regularised import Regularised


class StackedPenalty:
    """Penalty gradient and free-weight masks of every member, one operation per stacked tensor."""

    def __init__(self, members: list, slot) -> None:
        self.strategies = [m.strategy for m in members]
        by_stack: dict[int, tuple[torch.Tensor, list[str | None]]] = {}
        for strategy in self.strategies:
            for name, param in strategy.params.items():
                stack, member = slot(param)
                entry = by_stack.setdefault(id(stack), (stack, [None] * len(members)))
                entry[1][member] = name
        #: stacked tensor → each member's parameter name in it, in member order
        self.names = [(stack, names) for stack, names in by_stack.values()]
        self.coef: list[torch.Tensor] | None = None
        self.anchor: list[torch.Tensor] = []
        self.mask: list[torch.Tensor] | None = None

    @staticmethod
    def covers(members: list) -> bool:
        """Whether every member's `after_backward` is the regularised one without SI (all or nothing)."""
        return all(
            type(m.strategy).after_backward is Regularised.after_backward and not m.strategy.uses_si for m in members
        )

    def refresh(self) -> None:
        """Stack the members' current λ·Ω, θ* and round masks (call after `before_task` and `begin_round`)."""
        scales = [s.penalty_scale() for s in self.strategies]
        self.coef, self.anchor = None, []
        if any(scales):
            self.coef = []
            for stack, names in self.names:
                lam2 = torch.tensor(scales, dtype=stack.dtype, device=stack.device).view(-1, *(1,) * (stack.dim() - 1))
                omega = torch.stack([s.omega[n] for s, n in zip(self.strategies, names, strict=True)])
                self.coef.append(omega * lam2)
                self.anchor.append(torch.stack([s.anchor[n] for s, n in zip(self.strategies, names, strict=True)]))
        rounds = [s._round_free for s in self.strategies]
        self.mask = None
        if any(r is not None for r in rounds):
            self.mask = []
            for stack, names in self.names:
                rows = [
                    r[n] if r is not None else torch.zeros_like(stack[0], dtype=torch.bool)
                    for r, n in zip(rounds, names, strict=True)
                ]
                self.mask.append(torch.stack(rows))

    @torch.no_grad()
    def after_backward(self) -> None:
        """Add every member's penalty gradient, then zero the gradients of its round's freed weights."""
        for i, (stack, _) in enumerate(self.names):
            if stack.grad is None:
                continue
            if self.coef is not None:
                stack.grad.addcmul_(self.coef[i], stack.detach() - self.anchor[i])
            if self.mask is not None:
                stack.grad.masked_fill_(self.mask[i], 0.0)
