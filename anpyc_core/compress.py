"""Table IV: importance as a compression criterion (train a network, then prune and retrain, iteratively).

    result = compress(cfg, "anpyc")          # train task 1 of cfg's data (the whole 10-class set)
    for row in result.rows: ...              # iteration 0 (trained) then one row per pruning step

Each iteration measures Ω on the current weights, frees the `fraction` of the still-remaining trunk
values (weights and biases) with the lowest Ω, ranked globally over every trunk tensor, and retrains
`retrain_epochs` with the freed values held at exactly 0 (their gradients and momentum zeroed). The
head is never pruned and is not counted, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch.nn import functional as F

from anpyc_core import importance as imp
from anpyc_core.config import RunConfig
from anpyc_core.data import build_tasks, load_data
from anpyc_core.data.tasks import Split
from anpyc_core.models import build_model
from anpyc_core.run_state import derive_seed, resolve_device
from anpyc_core.trainer import accuracy

#: The paper's schedule: fractions of the remaining weights pruned at each iteration.
PAPER_SCHEDULE = (0.8, 0.7, 0.5, 0.4, 0.1)
MEASURES = ("anpyc", "magnitude", "mas", "random")


@dataclass
class CompressionRow:
    """The network after one iteration: remaining values per trunk tensor, their total, and test accuracy."""

    iteration: int
    fraction: float
    remaining: dict[str, int]
    total: int
    compression: float
    prune_ratio: float
    test_acc: float


@dataclass
class CompressionResult:
    """Every iteration of one measure's compression run."""

    measure: str
    config: dict
    rows: list[CompressionRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"measure": self.measure, "config": self.config, "rows": [asdict(r) for r in self.rows]}


def compress(
    cfg: RunConfig,
    measure: str,
    schedule: tuple[float, ...] = PAPER_SCHEDULE,
    progress: Callable[[str], None] | None = None,
) -> CompressionResult:
    """Train `cfg`'s model on the first task of its data, then prune it by `measure` along `schedule`."""
    if measure not in MEASURES:
        raise ValueError(f"--importance: {measure!r} is not a measure; allowed: {', '.join(MEASURES)}")
    say = progress or (lambda msg: None)
    device = resolve_device(cfg.device)
    sequence = build_tasks(cfg.data, load_data(cfg.data), cfg.seed, device)
    task = sequence.tasks[0]
    torch.manual_seed(derive_seed(cfg.seed, -1))
    model = build_model(cfg, sequence.image_shape, [task.num_classes]).to(device)
    params = model.trunk_parameters()
    pruned = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in params.items()}
    gen = torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, 0))
    train(model, task.train, cfg, cfg.optim.epochs, pruned, gen)
    result = CompressionResult(measure, cfg.model_dump(mode="json"))
    initial = sum(p.numel() for p in params.values())
    result.rows.append(_row(0, 0.0, model, pruned, initial, task.test))
    say(f"trained: {initial:,} trunk values, test acc {result.rows[-1].test_acc:.2f}%")
    for i, fraction in enumerate(schedule, 1):
        omega = _measure(measure, model, task.train, cfg, i)
        _prune_lowest(omega, pruned, fraction)
        with torch.no_grad():
            for name, p in params.items():
                p.masked_fill_(pruned[name], 0.0)
        train(model, task.train, cfg, cfg.optim.retrain_epochs, pruned, gen)
        result.rows.append(_row(i, fraction, model, pruned, initial, task.test))
        row = result.rows[-1]
        say(
            f"iteration {i}: pruned {fraction:.0%} of the rest, {row.total:,} left ({row.compression:.2f}x), "
            f"test acc {row.test_acc:.2f}%"
        )
    return result


def train(model, split: Split, cfg: RunConfig, epochs: int, pruned: dict, gen: torch.Generator) -> None:
    """Plain minibatch SGD on one task; values in `pruned` keep gradient, momentum and value exactly 0."""
    params = model.trunk_parameters()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    model.train()
    bs = cfg.optim.batch_size
    for _ in range(epochs):
        order = torch.randperm(len(split), generator=gen, device=gen.device)
        for start in range(0, len(split), bs):
            x, y = split.batch(order[start : start + bs])
            loss = F.cross_entropy(model(x, 0), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for name, p in params.items():
                p.grad.masked_fill_(pruned[name], 0.0)
            opt.step()
    model.eval()


def _measure(measure: str, model, split: Split, cfg: RunConfig, iteration: int) -> dict[str, torch.Tensor]:
    """Ω of every trunk value on the current weights (eval mode)."""
    model.eval()
    size, cap = cfg.strategy.importance_batch, cfg.strategy.importance_samples
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, 1000 + iteration))
    return imp.measure(measure, model, split, 0, size, cap, generator=gen)


def _prune_lowest(omega: dict[str, torch.Tensor], pruned: dict[str, torch.Tensor], fraction: float) -> None:
    """Add the `fraction` of the remaining values with the lowest Ω (global ranking, ties by position)."""
    names = list(omega)
    scores = torch.cat([omega[n].detach().flatten().float() for n in names])
    alive = ~torch.cat([pruned[n].flatten() for n in names])
    count = int(fraction * int(alive.sum()))
    if count == 0:
        return
    scores = torch.where(alive, scores, torch.full_like(scores, float("inf")))
    order = torch.sort(scores, stable=True).indices[:count]
    flat = torch.zeros_like(alive)
    flat[order] = True
    offset = 0
    for n in names:
        size = pruned[n].numel()
        pruned[n] |= flat[offset : offset + size].view_as(pruned[n])
        offset += size


def _row(iteration: int, fraction: float, model, pruned: dict, initial: int, test: Split) -> CompressionRow:
    remaining = {n: int((~mask).sum()) for n, mask in pruned.items()}
    total = sum(remaining.values())
    return CompressionRow(
        iteration=iteration,
        fraction=fraction,
        remaining=remaining,
        total=total,
        compression=initial / max(total, 1),
        prune_ratio=1.0 - total / initial,
        test_acc=accuracy(model, test, 0),
    )
