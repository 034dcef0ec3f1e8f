"""The learning-rate schedule and the penalty's stability number, shared by the sequential and packed trainers."""

from __future__ import annotations

from anpyc_core.config import OptimConfig

#: Above this, lr·2λ·Ω makes the penalty's gradient step overshoot θ* by more than the distance it corrects.
DIVERGENCE_LIMIT = 2.0


def learning_rate(
    optim: OptimConfig, task: int, epoch: int, initial_phase: bool, batch: int = 0, batches: int = 1
) -> float:
    """The lr of minibatch `batch` (of `batches` per epoch) in `epoch`, the epoch counted from the task's start
    through its pruning rounds (reset per task): a staircase decay every `lr_decay_epochs` epochs, or every
    `lr_decay_steps` SGD steps when that is set (then the lr can change inside an epoch), at rate
    `lr_decay_first` during task 1's initial phase (when set; the authors' code uses 0.99 there) and
    `lr_decay` everywhere else."""
    first = task == 0 and initial_phase and optim.lr_decay_first is not None
    rate = optim.lr_decay_first if first else optim.lr_decay
    if optim.lr_decay_steps is None:
        return optim.lr * rate ** (epoch // optim.lr_decay_epochs)
    return optim.lr * rate ** int((epoch * batches + batch) // optim.lr_decay_steps)


def per_step(optim: OptimConfig) -> bool:
    """True when the lr can change between minibatches of one epoch (`lr_decay_steps` is set)."""
    return optim.lr_decay_steps is not None


def stability_numbers(strategy, lr: float) -> dict[str, float] | None:
    """lr·2λ·max Ω per trunk tensor under the penalty (None for other methods): the penalty alone moves a
    weight by lr·2λΩ·(θ − θ*) per step, so above 1 it overshoots θ* and above 2 every step grows the error."""
    s = strategy.cfg.strategy
    omega = strategy.importance() if s.regularised else None
    if omega is None or s.consolidation != "penalty" or s.lam <= 0:
        return None
    return {name: lr * 2 * s.lam * float(t.max()) if t.numel() else 0.0 for name, t in omega.items()}


def stability_message(task: int, numbers: dict[str, float]) -> list[str]:
    """Progress lines: the numbers, and a one-line warning when the largest exceeds the divergence limit."""
    worst = max(numbers, key=numbers.get)
    text = ", ".join(f"{n} {v:.3g}" for n, v in numbers.items())
    lines = [f"task {task + 1}: stability lr·2λ·max Ω per tensor: {text}"]
    if numbers[worst] > DIVERGENCE_LIMIT:
        lines.append(
            f"warning: task {task + 1}: lr·2λ·max Ω = {numbers[worst]:.3g} on {worst} exceeds "
            f"{DIVERGENCE_LIMIT:g}: the penalty step will diverge; lower strategy.lam or optim.lr"
        )
    return lines
