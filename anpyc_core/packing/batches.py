"""Every member's minibatch of one step, gathered at once from the images the pack holds once.

Member k's epoch order (drawn from its own generator, as in its sequential run) selects rows of
its task's split; for permuted tasks its own pixel permutation reorders each row. Gathered one
member at a time that is three small copies per member and step; here the epoch's rows and labels
are stacked `[K, n]` once per epoch, and each step is one row gather and (permuted tasks) one
pixel gather for the whole pack. Pure data movement: the batches are exactly the members' own.
"""

from __future__ import annotations

import torch

from anpyc_core.data.tasks import Split


class PackBatches:
    """One epoch's minibatches of the active members, `[A, B, features]` inputs and `[A, B]` labels."""

    def __init__(self, splits: list[Split], orders: list[torch.Tensor], stacked: bool = True) -> None:
        self.splits, self.orders = splits, orders
        first = splits[0]
        self.stacked = stacked and all(
            s.images is first.images
            and s.reshape is None
            and s.flips is None
            and (s.perm is None) == (first.perm is None)
            for s in splits
        )
        if self.stacked:
            self.rows = torch.stack([s.rows[o] for s, o in zip(splits, orders, strict=True)])
            self.labels = torch.stack([s.labels[o] for s, o in zip(splits, orders, strict=True)])
            self.perms = None if first.perm is None else torch.stack([s.perm for s in splits]).unsqueeze(1)

    def batch(self, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' samples `start : start + size` of their epoch orders."""
        if not self.stacked:  # per member (CNN-shaped sequences, augmentation)
            pairs = [s.batch(o[start : start + size]) for s, o in zip(self.splits, self.orders, strict=True)]
            return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        rows = self.rows[:, start : start + size]
        images = self.splits[0].images
        x = images.index_select(0, rows.reshape(-1)).view(*rows.shape, images.shape[1])
        if self.perms is not None:
            x = torch.gather(x, 2, self.perms.expand(-1, rows.shape[1], -1))
        return x, self.labels[:, start : start + size]
