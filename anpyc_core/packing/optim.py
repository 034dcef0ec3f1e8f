"""SGD with momentum over stacked parameters, one learning rate and momentum per member.

Each member's update is the arithmetic of `torch.optim.SGD` (first step: buffer = gradient;
then buffer = momentum·buffer + gradient; θ ← θ − lr·buffer), so a member moves exactly as its
own optimiser would. Members that are not active in a step keep their weights and buffers.
"""

from __future__ import annotations

import torch
from torch import nn


class StackedSGD:
    """Per-member SGD over stacked tensors `[K, …]`; rebuilt at every task start, like the sequential one."""

    def __init__(self, stacks: list[torch.Tensor], momentum: list[float]) -> None:
        self.stacks = stacks
        self.momentum = torch.tensor(momentum, dtype=torch.float64)
        self.uses_momentum = bool((self.momentum > 0).any())
        self.buffers = [torch.zeros_like(s) for s in stacks] if self.uses_momentum else []
        self.started = torch.zeros(len(momentum), dtype=torch.bool)  # buffer initialised per member

    def zero_grad(self) -> None:
        """Drop every stack's gradient."""
        for s in self.stacks:
            s.grad = None

    @torch.no_grad()
    def step(self, members: list[int], lrs: list[float]) -> None:
        """Update the `members` (indices) with their learning rates `lrs`."""
        everyone = len(members) == len(self.momentum)
        index = None if everyone else torch.tensor(members, device=self.stacks[0].device)
        shape = (len(members),)
        fresh = [a for a, k in enumerate(members) if not self.started[k]]
        first = self.stacks[0]  # every stack shares dtype and device: the per-member rates are made once per step
        neg_lrs = torch.tensor([-lr for lr in lrs], dtype=first.dtype, device=first.device)
        for i, stack in enumerate(self.stacks):
            view = (1,) * (stack.dim() - 1)
            neg_lr = neg_lrs.view(*shape, *view)
            grad = stack.grad if everyone else stack.grad.index_select(0, index)
            direction = grad
            if self.uses_momentum:
                buf = self.buffers[i] if everyone else self.buffers[i].index_select(0, index)
                momentum = self.momentum[members].to(stack.dtype).to(stack.device).view(*shape, *view)
                buf.mul_(momentum).add_(grad)
                for a in fresh:
                    buf[a].copy_(grad[a])
                if not everyone:
                    self.buffers[i].index_copy_(0, index, buf)
                direction = buf if bool((momentum > 0).all()) else torch.where(momentum > 0, buf, grad)
            if everyone:
                stack.addcmul_(direction, neg_lr)
            else:
                stack.index_copy_(0, index, stack.index_select(0, index).addcmul_(direction, neg_lr))
        self.started[members] = True

    def member_view(self, k: int, slot) -> _MemberOptimizer:
        """An object with `.state[param]` for member k's parameters, as `zero_free_weights` expects."""
        return _MemberOptimizer(self, k, slot)


class _MemberOptimizer:
    """Member k's momentum buffers, keyed by the member's own parameters (views of the stacks)."""

    def __init__(self, opt: StackedSGD, k: int, slot) -> None:
        self.opt, self.k, self.slot = opt, k, slot

    @property
    def state(self) -> dict[nn.Parameter, dict[str, torch.Tensor]]:
        """param → {"momentum_buffer": view}, for parameters whose buffer has started."""
        opt = self.opt
        if not opt.uses_momentum or not bool(opt.started[self.k]) or float(opt.momentum[self.k]) == 0.0:
            return {}
        return _BufferLookup(opt, self.k, self.slot)


class _BufferLookup(dict):
    """Lazy `param → {"momentum_buffer": buffer view}` mapping for one member."""

    def __init__(self, opt: StackedSGD, k: int, slot) -> None:
        super().__init__()
        self.opt, self.k, self.slot = opt, k, slot
        self.position = {id(s): i for i, s in enumerate(opt.stacks)}

    def _find(self, param):
        stack, k = self.slot(param)
        i = self.position.get(id(stack))
        return None if i is None or k != self.k else self.opt.buffers[i][k]

    def __contains__(self, param) -> bool:
        return self._find(param) is not None

    def __getitem__(self, param):
        buf = self._find(param)
        if buf is None:
            raise KeyError(param)
        return {"momentum_buffer": buf}
