"""The strategy interface: a few hooks around one training loop (Avalanche style).

A strategy is an `nn.Module` holding the model and every continual-learning tensor as buffers,
so one `state_dict` checkpoints the whole state. Each method fills only the hooks it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from anpyc_core.config import RunConfig
from anpyc_core.data.tasks import Task
from anpyc_core.errors import TrainingDiverged
from anpyc_core.models import MultiHeadMLP


@dataclass
class Phase:
    """What `after_training` may use: the task, its optimiser and a way to train more epochs."""

    task: Task
    optimizer: torch.optim.Optimizer
    fit: Callable[[int], None]
    #: the task's validation accuracy (%) now, a copy / restore of the model's weights, and the console
    #: (what the pruning rounds' guard uses)
    score: Callable[[], float] | None = None
    save: Callable[[], dict] | None = None
    restore: Callable[[dict], None] | None = None
    progress: Callable[[str], None] = print


class TensorStore(nn.Module):
    """Named tensors kept as buffers (dots in names become underscores) so they checkpoint."""

    def __init__(self, like: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.names = list(like)
        for name, tensor in like.items():
            self.register_buffer(self._key(name), torch.zeros_like(tensor, dtype=dtype))

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")

    def __getitem__(self, name: str) -> torch.Tensor:
        return getattr(self, self._key(name))

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """(name, tensor) pairs in parameter order."""
        return [(n, self[n]) for n in self.names]

    def as_dict(self) -> dict[str, torch.Tensor]:
        """A plain name → tensor dict (the tensors themselves, not copies)."""
        return dict(self.items())


class Strategy(nn.Module):
    """Default hooks: plain multi-head fine-tuning of trunk and current head."""

    def __init__(self, cfg: RunConfig, model: MultiHeadMLP, num_tasks: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model
        self.num_tasks = num_tasks

    def trainable(self, task: int) -> list[nn.Parameter]:
        """Parameters the optimiser updates during `task`: the trunk and that task's head."""
        return [
            *self.model.trunk.parameters(),
            *self.model.heads[self.model.head_index(task)].parameters(),
        ]

    def skip_initial_training(self, task: int) -> bool:
        """True when the task's initial `epochs` phase is skipped."""
        return False

    def before_task(self, task: int) -> None:
        """Called before the first step of `task`."""

    def before_batch(self, task: int, batch: int, num_batches: int) -> None:
        """Called before each minibatch's forward pass (HAT anneals its gate scale here)."""

    def extra_loss(self, task: int, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor | None:
        """A differentiable term added to the task's cross-entropy (None for none)."""
        return None

    def after_backward(self, task: int) -> None:
        """Called after `loss.backward()`, before the optimiser step: edit gradients here."""

    def after_step(self, task: int, lr: float) -> None:
        """Called after every optimiser step."""

    def after_training(self, task: int, phase: Phase) -> None:
        """Called after the initial training phase: runs the pruning rounds, each then retrained, measuring
        the task's validation accuracy after each; with `prune_tolerance`, a round that costs more is undone
        and ends the task's rounds."""
        rounds = self.pruning_rounds(task)
        note = self.rounds_note(task)
        if note:
            phase.progress(note)
        tolerance = self.cfg.strategy.prune_tolerance
        guard = RoundGuard(self, phase, tolerance) if rounds and phase.score is not None else None
        for index, percent in enumerate(rounds):
            self.begin_round(task, index, percent, phase.task, phase.optimizer)
            try:
                phase.fit(self.cfg.optim.retrain_epochs)
            except TrainingDiverged as err:
                if guard is None or guard.tolerance is None:
                    raise  # no tolerance asked for: the trial diverged, and says so
                guard.undo_divergence(task, index, str(err))
                break
            if guard is not None and not guard.keep(task, index):
                break
        self.end_rounds(task)

    def round_mask(self) -> dict[str, torch.Tensor] | None:
        """The free set chosen so far in this task's rounds (None for strategies without rounds)."""
        return None

    def restore_round_mask(self, mask: dict[str, torch.Tensor] | None) -> None:
        """Go back to a free set `round_mask` returned (undoing later rounds)."""

    def pruning_rounds(self, task: int) -> list[float]:
        """The pruning percentages of `task`'s rounds (none by default)."""
        return []

    def rounds_note(self, task: int) -> str | None:
        """One line saying why a pruning task runs no rounds (None: nothing to say)."""
        return None

    def begin_round(self, task: int, index: int, percent: float, data: Task, optimizer) -> None:
        """Start pruning round `index`: choose the free set and zero it (retraining follows)."""

    def end_rounds(self, task: int) -> None:
        """Called once after the last pruning round of `task` (also when it had none)."""

    def after_task(self, task: int, data: Task) -> None:
        """Called when the task is finished, before evaluation."""

    def penalty(self) -> float:
        """The current consolidation penalty value (0 when the method has none)."""
        return 0.0

    # ------------------------------------------------------- inspection
    def parameter_counts(self, tasks_seen: int) -> dict[str, int]:
        """What serving `tasks_seen` tasks costs: model parameters, stored state, trunk in use.

        `model_params` counts the trunk, the heads of the tasks seen (one for single-head) and
        HAT's embeddings of those tasks; `state_values` counts every buffer the method keeps
        (Ω, θ*, free sets, SI's path, HAT masks, XDG gates); `trunk_in_use` is the trunk minus
        the weights the last pruning left free.
        """
        model = self.model
        seen = max(1, tasks_seen)
        heads = model.heads[:1] if model.single_head else model.heads[:seen]
        trunk = sum(p.numel() for p in model.trunk.parameters())
        params = trunk + sum(p.numel() for head in heads for p in head.parameters())
        if model.hat_embeddings is not None:
            params += sum(emb.embedding_dim * seen for emb in model.hat_embeddings)
        state = sum(b.numel() for b in self.buffers())
        return {"model_params": params, "state_values": state, "trunk_in_use": trunk - self.free_count()}

    def free_count(self) -> int:
        """Trunk weights left free (zeroed for later tasks) by the last pruning; 0 without pruning."""
        return 0

    def importance(self) -> dict[str, torch.Tensor] | None:
        """The accumulated importance Ω per trunk parameter, or None for methods without one."""
        return None


#: a pruning round that costs more validation points than this is reported even without `prune_tolerance`
ROUND_WARNING_POINTS = 10.0


class RoundGuard:
    """Measures the task's validation accuracy around each pruning round: every round's accuracy goes into its
    `round_stats` entry; a round that costs more than the tolerance (or ROUND_WARNING_POINTS) is reported in one
    line and flagged; with `prune_tolerance` it is undone (weights, free set) and the rounds stop."""

    def __init__(self, strategy: Strategy, phase: Phase, tolerance: float | None) -> None:
        self.strategy, self.phase, self.tolerance = strategy, phase, tolerance
        self.limit = tolerance if tolerance is not None else ROUND_WARNING_POINTS
        self.last = phase.score()
        self.start = self.last
        self.kept = (phase.save(), strategy.round_mask()) if tolerance is not None else None

    def keep(self, task: int, index: int) -> bool:
        """After round `index` was retrained: record it; False when it was undone and the rounds must stop."""
        now = self.phase.score()
        stats = self.strategy.round_stats[-1] if getattr(self.strategy, "round_stats", None) else {}
        stats.update({"val_before": self.last, "val_acc": now})
        cost, self.last = self.last - now, now
        if cost <= self.limit:
            if self.kept is not None:
                self.kept = (self.phase.save(), self.strategy.round_mask())
            return True
        line = round_warning(self.strategy, task, index, stats, self.limit)
        stats["flag"] = line
        if self.tolerance is None:
            self.phase.progress(f"warning: {line}")
            return True
        self._undo(task, index, stats, line)
        return False

    def undo_divergence(self, task: int, index: int, reason: str) -> None:
        """Round `index`'s retraining diverged: with a tolerance, that is a round that cost everything."""
        stats = self.strategy.round_stats[-1] if getattr(self.strategy, "round_stats", None) else {}
        stats.update({"val_before": self.last, "val_acc": None})
        line = f"task {task + 1} round {index + 1}: retraining diverged ({reason})"
        stats["flag"] = line
        self.phase.optimizer.state.clear()  # its momentum holds the NaNs
        self._undo(task, index, stats, line)

    def _undo(self, task: int, index: int, stats: dict, line: str) -> None:
        weights, mask = self.kept
        self.phase.restore(weights)
        self.strategy.restore_round_mask(mask)
        stats["undone"] = True
        kept = "from before its first round" if index == 0 else f"after round {index}"
        self.phase.progress(
            f"warning: {line}; undone (prune_tolerance {self.tolerance:g}): task {task + 1} keeps its weights "
            f"{kept} and stops pruning"
        )


def round_warning(strategy: Strategy, task: int, index: int, stats: dict, limit: float) -> str:
    """'task 1 round 1: val 96.5 -> 50.0 % (more than 10 points); the {Omega = 0} rule freed 83 % of ...'."""
    freed = sorted(((v, k.removeprefix("freed:")) for k, v in stats.items() if k.startswith("freed:")), reverse=True)
    rule = "the {Ω = 0} rule" if strategy.cfg.strategy.zero_importance == "free" else "the rank rule"
    if any(v > 0 for v, _ in freed):
        what = "freed " + ", ".join(f"{100 * v:.0f} % of {name}" for v, name in freed[:3])
    else:  # e.g. every weight kept by an earlier task (an undone first round): nothing left free to prune
        what = "freed no weight: the round's retraining epoch cost it"
    return (
        f"task {task + 1} round {index + 1}: val {stats['val_before']:.1f} -> {stats['val_acc']:.1f} % "
        f"(more than {limit:g} points); {rule} {what}"
    )
