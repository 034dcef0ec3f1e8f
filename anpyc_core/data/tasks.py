"""Cut a raw dataset into a task sequence: split or permuted, with a seeded validation split.

Each task is a view: indices into one shared image tensor on the run's device plus an optional
pixel permutation applied per minibatch. A permuted sequence of 20 tasks therefore holds the
images once, and minibatches are gathered by index (no DataLoader in the hot loop).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from anpyc_core.config import DataConfig
from anpyc_core.data.sources import RawDataset


@dataclass
class Split:
    """One split (train, val or test) of one task: rows of a shared image tensor."""

    images: torch.Tensor
    rows: torch.Tensor
    labels: torch.Tensor
    perm: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.rows.numel())

    def inputs(self, sel: torch.Tensor | slice | None = None) -> torch.Tensor:
        """The (optionally selected) inputs of this split, permuted if the task permutes."""
        rows = self.rows if sel is None else self.rows[sel]
        x = self.images.index_select(0, rows)
        return x if self.perm is None else x.index_select(1, self.perm)

    def batch(self, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and task-local labels of the selected samples."""
        return self.inputs(sel), self.labels[sel]


@dataclass
class Task:
    """One task of the sequence: its classes and its train/val/test splits."""

    index: int
    classes: list[int]
    num_classes: int
    train: Split
    val: Split
    test: Split


@dataclass
class TaskSequence:
    """The whole benchmark as the trainer sees it."""

    name: str
    tasks: list[Task]
    num_features: int
    image_shape: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def head_sizes(self) -> list[int]:
        """Output width of each task's head."""
        return [t.num_classes for t in self.tasks]


def as_device_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Wrap a numpy array as a tensor on `device`; zero-copy on CPU, also for read-only arrays."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(array).to(device)


def stratified_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator):
    """Split positions 0..n-1 into (keep, held_out), `fraction` of each class held out."""
    keep, held = [], []
    for cls in np.unique(labels):
        pos = np.flatnonzero(labels == cls)
        pos = pos[rng.permutation(len(pos))]
        n_held = int(round(fraction * len(pos)))
        held.append(pos[:n_held])
        keep.append(pos[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def task_rng(seed: int, task: int, stream: int) -> np.random.Generator:
    """A numpy generator derived from (seed, task, stream): independent, reproducible streams."""
    return np.random.default_rng([seed, task, stream])


_STREAM_SUBSAMPLE, _STREAM_VAL, _STREAM_PERM = 1, 2, 3


def build_tasks(
    cfg: DataConfig,
    raw: RawDataset,
    seed: int,
    device: torch.device | str = "cpu",
    images: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TaskSequence:
    """Build the task sequence described by `cfg` from `raw` on `device` (SPEC §2).

    `images` = (train, test) tensors of `raw` already on `device`, shared by several sequences (a pack)."""
    device = torch.device(device)
    if images is None:
        images = as_device_tensor(raw.x_train, device), as_device_tensor(raw.x_test, device)
    x_train, x_test = images
    tasks = []
    for t in range(cfg.tasks):
        if cfg.scenario == "split":
            classes = list(range(t * cfg.classes_per_task, (t + 1) * cfg.classes_per_task))
            perm = None
        else:
            classes = sorted(int(c) for c in np.unique(raw.y_train))
            perm = None
            if t > 0 or cfg.permute_first:
                order = task_rng(seed, t, _STREAM_PERM).permutation(raw.num_features)
                perm = torch.as_tensor(order, dtype=torch.long, device=device)
        lookup = np.full(int(max(raw.y_train.max(), raw.y_test.max())) + 1, -1, dtype=np.int64)
        lookup[classes] = np.arange(len(classes))

        train_pos = np.flatnonzero(np.isin(raw.y_train, classes))
        if cfg.train_samples is not None and cfg.train_samples < len(train_pos):
            frac = 1.0 - cfg.train_samples / len(train_pos)
            rng = task_rng(seed, t, _STREAM_SUBSAMPLE)
            kept, _ = stratified_holdout(raw.y_train[train_pos], frac, rng)
            train_pos = train_pos[kept]
        fit_idx, val_idx = stratified_holdout(raw.y_train[train_pos], cfg.val_fraction, task_rng(seed, t, _STREAM_VAL))
        test_pos = np.flatnonzero(np.isin(raw.y_test, classes))

        def split(images, labels, pos, perm=perm, lookup=lookup):
            return Split(
                images=images,
                rows=torch.as_tensor(pos, dtype=torch.long, device=device),
                labels=torch.as_tensor(lookup[labels[pos]], dtype=torch.long, device=device),
                perm=perm,
            )

        tasks.append(
            Task(
                index=t,
                classes=classes,
                num_classes=len(classes),
                train=split(x_train, raw.y_train, train_pos[fit_idx]),
                val=split(x_train, raw.y_train, train_pos[val_idx]),
                test=split(x_test, raw.y_test, test_pos),
            )
        )
    return TaskSequence(name=raw.name, tasks=tasks, num_features=raw.num_features, image_shape=raw.image_shape)
