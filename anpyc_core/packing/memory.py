"""How much device memory one pack member needs, and so how many members fit a budget (`pack: auto`).

An upper estimate from the config alone, in bytes (float32):
- parameters: weight, gradient and momentum buffer of every trunk and head tensor;
- consolidation state of the trunk: θ*, Ω^{1:t−1}, the importance Ω^t of a round, the free sets
  (booleans) of the last and the current task, the penalty coefficients of `update`, and SI's
  path integral with its two step copies; the pack's stacked copies of λ·Ω, θ* and the round's
  free set for its one-operation penalty hook (packing/hooks.py);
- activations of one training step: the input, every layer's output, its ReLU mask and its
  gradient, for one batch;
- the member's task views: training, validation and test row indices (int64) and, for permuted
  tasks, one pixel permutation per task.
Shared by the whole pack, so not counted per member: the images (held once) and the importance
pass's chunk-gradient block (members take turns).
"""

from __future__ import annotations

from anpyc_core.config import NUM_CLASSES, RunConfig

FLOAT, INDEX = 4, 8
#: Per-pack bytes that do not grow with K: the importance pass's block and the Python/PyTorch workspace.
PACK_OVERHEAD = 64 * 2**20


def member_bytes(cfg: RunConfig, input_features: int, samples: int) -> int:
    """Upper estimate of one member's bytes (see the module doc); `samples` counts the benchmark's
    training plus test images, `input_features` the pixels of one."""
    widths = [input_features, *cfg.model.hidden]
    trunk = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
    tasks = cfg.data.tasks
    classes = NUM_CLASSES[cfg.data.benchmark]
    head_out = classes if cfg.data.scenario == "permuted" else cfg.data.classes_per_task
    heads = tasks * (cfg.model.hidden[-1] * head_out + head_out)  # one per task (a single head is smaller)
    params = (trunk + heads) * 3 * FLOAT  # value, gradient, momentum buffer
    per_trunk = 0
    if cfg.strategy.regularised:
        per_trunk = 3 * FLOAT + 2  # θ*, Ω^{1:t-1}, Ω^t; two boolean free sets
        per_trunk += FLOAT if cfg.strategy.consolidation == "update" else 0
        # SI: its path integral and two step copies; otherwise the pack's stacked λ·Ω, θ* and round mask
        per_trunk += 3 * FLOAT if cfg.strategy.importance == "si" else 2 * FLOAT + 1
    consolidation = trunk * per_trunk
    activations = cfg.optim.batch_size * (widths[0] + 3 * sum(cfg.model.hidden) + 2 * head_out) * FLOAT
    per_task_rows = samples if cfg.data.scenario == "permuted" else -(-samples // tasks)
    views = tasks * per_task_rows * INDEX * 2  # row indices and their labels
    if cfg.data.scenario == "permuted":
        views += tasks * input_features * INDEX
    return params + consolidation + activations + views


def members_that_fit(budget_bytes: int, cfg: RunConfig, input_features: int, samples: int, most: int = 1024) -> int:
    """How many members of `cfg`'s shape fit `budget_bytes` beside the pack's fixed overhead (1..most)."""
    room = budget_bytes - PACK_OVERHEAD
    return max(1, min(most, room // member_bytes(cfg, input_features, samples)))
