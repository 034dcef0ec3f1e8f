"""Data for the `joint` reference: every task's training samples in one shuffled pool."""

from __future__ import annotations

import torch

from anpyc_core.data.tasks import TaskSequence
from anpyc_core.models import ContinualModel


class JointData:
    """All tasks' training splits as one pool of (image row, task-local label, task id).

    Permutations are applied per sample with one gather, so the images are never copied.
    """

    def __init__(self, tasks: TaskSequence) -> None:
        splits = [t.train for t in tasks.tasks]
        self.images = splits[0].images
        self.rows = torch.cat([s.rows for s in splits])
        self.labels = torch.cat([s.labels for s in splits])
        self.task_ids = torch.cat([torch.full_like(s.rows, i) for i, s in enumerate(splits)])
        identity = torch.arange(tasks.num_features, device=self.rows.device)
        perms = [s.perm if s.perm is not None else identity for s in splits]
        self.perms = torch.stack(perms) if any(s.perm is not None for s in splits) else None

    def __len__(self) -> int:
        return int(self.rows.numel())

    def batch(self, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, task-local labels and task ids of the selected samples."""
        task_ids = self.task_ids[sel]
        x = self.images.index_select(0, self.rows[sel])
        if self.perms is not None:
            x = torch.gather(x, 1, self.perms[task_ids])
        return x, self.labels[sel], task_ids

    @staticmethod
    def logits(model: ContinualModel, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Each sample's logits from its own task's head (linear heads stacked: one batched product)."""
        features = model.features(x, 0)
        if not all(isinstance(h, torch.nn.Linear) for h in model.heads):  # ResNet-18's FC-2048 heads
            out = features.new_empty(len(x), model.heads[0][-1].out_features)
            for t in task_ids.unique().tolist():
                rows = task_ids == t
                out[rows] = model.heads[t](features[rows])
            return out
        weight = torch.stack([h.weight for h in model.heads])  # (T, C, H)
        bias = torch.stack([h.bias for h in model.heads])  # (T, C)
        return torch.einsum("nh,nch->nc", features, weight[task_ids]) + bias[task_ids]
