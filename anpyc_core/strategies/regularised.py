"""The one regularised strategy: importance × consolidation × pruning (SPEC §4-§5).

ANPyC, EWC, MAS and SI are configurations of this class. Its buffers — accumulated Ω, anchor
θ*, the last free set and SI's path integral — live in `TensorStore`s, so the strategy's
`state_dict` is the whole continual-learning state.
"""

from __future__ import annotations

import torch

from anpyc_core import importance as imp
from anpyc_core.config import RunConfig
from anpyc_core.data.tasks import Task
from anpyc_core.models import MultiHeadMLP
from anpyc_core.pruning import (
    greedy_free_set,
    prune_percentages,
    random_free_set,
    zero_free_weights,
)
from anpyc_core.strategies.base import Strategy, TensorStore

PRUNING_ROUNDS = {"greedy", "greedy_no_pretrain", "random"}


class Regularised(Strategy):
    """Importance-weighted consolidation with optional greedy neural pruning."""

    def __init__(self, cfg: RunConfig, model: MultiHeadMLP, num_tasks: int) -> None:
        super().__init__(cfg, model, num_tasks)
        self.s = cfg.strategy
        self.params = model.trunk_parameters()
        self.omega = TensorStore(self.params)  # Ω^{1:t-1}
        self.anchor = TensorStore(self.params)  # θ*, snapshot at task start
        self.free = TensorStore(self.params, dtype=torch.bool)  # final free set of last pruned task
        self.register_buffer("has_free", torch.tensor(False))
        self.uses_si = self.s.importance == "si"
        if self.uses_si:
            self.si_path = TensorStore(self.params)  # ω, reset each task
        self._round_free: dict[str, torch.Tensor] | None = None
        #: per pruning round: the freed fraction and the Ω = 0 fraction of every tensor (the cascade, made visible)
        self.round_stats: list[dict] = []
        self._consolidating = False
        self._coef_lr: float | None = None

    # ----------------------------------------------------------------- hooks
    def skip_initial_training(self, task: int) -> bool:
        """`greedy_no_pretrain` starts pruning rounds without the initial training phase (if it has rounds)."""
        return self.s.pruning == "greedy_no_pretrain" and self.prunes(task) and not self.nothing_left_free()

    def before_task(self, task: int) -> None:
        """Take θ* and reset SI's path integral."""
        with torch.no_grad():
            for name, p in self.params.items():
                self.anchor[name].copy_(p)
                if self.uses_si:
                    self.si_path[name].zero_()
        self._consolidating = task > 0 and self.s.lam > 0
        self._coef_lr = None

    def after_backward(self, task: int) -> None:
        """Keep SI's unregularised gradient, add the penalty gradient, zero freed weights."""
        if self.uses_si:
            self._si_grad = {n: p.grad.detach().clone() for n, p in self.params.items()}
            self._si_prev = {n: p.detach().clone() for n, p in self.params.items()}
        scale = self.penalty_scale()
        if scale:
            for name, p in self.params.items():  # d/dθ λΣΩ(θ-θ*)² = 2λΩ(θ-θ*)
                p.grad.addcmul_(self.omega[name], p.detach() - self.anchor[name], value=scale)
        if self._round_free is not None:
            for name, p in self.params.items():
                p.grad.masked_fill_(self._round_free[name], 0.0)

    def penalty_scale(self) -> float:
        """2λ while the quadratic penalty acts (a later task under `consolidation: penalty`), else 0."""
        return 2 * self.s.lam if self._consolidating and self.s.consolidation == "penalty" else 0.0

    @torch.no_grad()
    def after_step(self, task: int, lr: float) -> None:
        """Decoupled pull towards θ* (`update`) and SI's path-integral step."""
        if self._consolidating and self.s.consolidation == "update":
            if self._coef_lr != lr:
                self._coef = {n: (2 * lr * self.s.lam * o).clamp_(max=1.0) for n, o in self.omega.items()}
                self._coef_lr = lr
            for name, p in self.params.items():
                p.sub_(self._coef[name] * (p - self.anchor[name]))
        if self.uses_si:
            for name, p in self.params.items():
                self.si_path[name].sub_(self._si_grad[name] * (p - self._si_prev[name]))

    def pruning_rounds(self, task: int) -> list[float]:
        """Greedy (or random) pruning rounds of `task`: percentages p_k up to P_t."""
        self.round_stats = []
        if not self.prunes(task):
            return []
        self._previous = self.free.as_dict() if bool(self.has_free) else None
        self._current = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in self.params.items()}
        if self.nothing_left_free():
            # a free set never grows: with none left by the earlier tasks (an undone round), every round would
            # free nothing and be a plain retraining epoch, so the task has no rounds (and no Ω to measure)
            return []
        return self.schedule(task)

    def rounds_note(self, task: int) -> str | None:
        """Why `task` has no pruning rounds though it prunes (None when it has them or never prunes)."""
        if not (self.prunes(task) and self.nothing_left_free()):
            return None
        return (
            f"task {task + 1}: no pruning rounds: the earlier tasks left no weight free (a free set never grows; "
            "e.g. an undone first round)"
        )

    def begin_round(self, task: int, index: int, percent: float, data: Task, optimizer) -> None:
        """Free the weights of round `index` at `percent` and zero them (and their optimiser state)."""
        omega_t = self.measure(task, data, round_index=index + 1)
        rule, scope = self.s.zero_importance, self.s.prune_scope
        if self.s.pruning == "random":
            gen = torch.Generator().manual_seed(_derive(self.cfg.seed, task, 1000 + index))
            self._current = random_free_set(omega_t, self._previous, percent, scope, self._current, gen, rule)
        else:
            self._current = greedy_free_set(omega_t, self._previous, percent, scope, rule)
        self.round_stats.append(
            {
                "task": task + 1,
                "round": index + 1,
                "percent": percent,
                **{f"freed:{n}": float(m.float().mean()) for n, m in self._current.items()},
                **{f"zero_omega:{n}": float((o == 0).float().mean()) for n, o in omega_t.items()},
            }
        )
        zero_free_weights(self.params, self._current, optimizer)
        self._round_free = self._current

    def round_mask(self) -> dict[str, torch.Tensor] | None:
        """The free set chosen so far in this task's rounds."""
        current = getattr(self, "_current", None)
        return None if current is None else {n: m.clone() for n, m in current.items()}

    def restore_round_mask(self, mask: dict[str, torch.Tensor] | None) -> None:
        """Back to an earlier round's free set (its weights are restored by the trainer)."""
        if mask is not None:
            self._current = {n: m.clone() for n, m in mask.items()}
            self._round_free = self._current

    def end_rounds(self, task: int) -> None:
        """Keep the task's final free set for the next task's rounds."""
        self._round_free = None
        if not self.prunes(task):
            return
        with torch.no_grad():
            for name, mask in self._current.items():
                self.free[name].copy_(mask)
            self.has_free.fill_(True)

    def after_task(self, task: int, data: Task) -> None:
        """Ω^{1:t} = Ω^{1:t-1} (+ or max) Ω^t, measured on the task's final weights."""
        omega_t = self.measure(task, data, round_index=0)
        with torch.no_grad():
            for name, total in self.omega.items():
                if self.s.accumulate == "sum":
                    total.add_(omega_t[name])
                else:
                    torch.maximum(total, omega_t[name], out=total)
        self._coef_lr = None

    @torch.no_grad()
    def penalty(self) -> float:
        """λ · Σ Ω^{1:t-1} ⊙ (θ − θ*)²."""
        total = sum((self.omega[n] * (p - self.anchor[n]).square()).sum() for n, p in self.params.items())
        return float(self.s.lam * total)

    def free_count(self) -> int:
        """Weights in the free set of the last pruned task."""
        return int(sum(m.sum() for _, m in self.free.items())) if bool(self.has_free) else 0

    def importance(self) -> dict[str, torch.Tensor]:
        """Ω^{1:t} of the tasks finished so far."""
        return self.omega.as_dict()

    # ------------------------------------------------------------- helpers
    def nothing_left_free(self) -> bool:
        """True when an earlier task pruned but left no weight free (so no later round can free one)."""
        return bool(self.has_free) and not any(bool(m.any()) for _, m in self.free.items())

    def prunes(self, task: int) -> bool:
        """Whether pruning rounds run after `task` (never the last one unless `prune_last`)."""
        is_last = task == self.num_tasks - 1
        return self.s.pruning in PRUNING_ROUNDS and (not is_last or self.s.prune_last)

    def schedule(self, task: int) -> list[float]:
        """This task's round percentages."""
        return prune_percentages(task, self.s.beta, self.s.beta_decay, self.s.prune_step, self.s.prune_schedule)

    def measure(self, task: int, data: Task, round_index: int) -> dict[str, torch.Tensor]:
        """Ω^t of the configured importance measure on the current weights (eval mode)."""
        kind, size, cap = self.s.importance, self.s.importance_batch, self.s.importance_samples
        was_training = self.model.training
        self.model.eval()
        try:
            if kind == "si":
                return imp.si_importance(self.si_path.as_dict(), self.params, self.anchor.as_dict(), self.s.si_xi)
            gen = torch.Generator().manual_seed(_derive(self.cfg.seed, task, round_index))
            return imp.measure(kind, self.model, data.train, task, size, cap, self.s.fisher, gen)
        finally:
            self.model.train(was_training)


def _derive(seed: int, task: int, stream: int) -> int:
    return (seed * 1_000_003 + task * 10_007 + stream) % (2**63)
