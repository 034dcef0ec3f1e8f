"""The learning-rate schedule, the penalty's stability number and its runaway test, shared by the sequential,
packed and generative trainers."""

from __future__ import annotations

from anpyc_core.config import OptimConfig

#: Above this, lr·2λ·Ω makes the penalty's gradient step overshoot θ* by more than the distance it corrects.
DIVERGENCE_LIMIT = 2.0
#: A penalty past this multiple of max(1, the epoch's training loss) has run away (see `runaway_penalty`).
RUNAWAY_RATIO = 1e6


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


def runaway_penalty(strategy, loss: float, penalty: float | None = None) -> str | None:
    """Why a finite run has diverged through its penalty, or None (`penalty`: its value, when the caller has it).

    Under `consolidation: penalty` each task starts at θ = θ*, where the penalty λΣΩ(θ − θ*)² is 0, and
    SGD descends loss + penalty, so while the step is stable the penalty stays of the order of the loss the
    task started from (a few nats). Past the stability limit the distance to θ* grows by a factor
    |1 − lr·2λΩ| > 1 each step: the penalty climbs by orders of magnitude while the loss, though useless,
    can stay finite for a whole task (a run wiped every task at penalty 4e15 and loss 69). A penalty above
    RUNAWAY_RATIO · max(1, loss) is that climb; it is also a non-finite penalty."""
    s = strategy.cfg.strategy
    if not s.regularised or s.consolidation != "penalty" or not strategy.penalty_scale():
        return None
    penalty = strategy.penalty() if penalty is None else penalty
    if penalty == penalty and penalty <= RUNAWAY_RATIO * max(1.0, loss):
        return None
    return (
        f"penalty {penalty:.3g} ran away (training loss {loss:.4g}): lr·2λ·Ω is past the stability limit "
        f"{DIVERGENCE_LIMIT:g}; lower strategy.lam or optim.lr"
    )
