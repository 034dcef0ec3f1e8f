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
from anpyc_core.data.raw import RawDataset


@dataclass
class Split:
    """One split (train, val or test) of one task: rows of a shared image tensor."""

    images: torch.Tensor
    rows: torch.Tensor
    labels: torch.Tensor
    perm: torch.Tensor | None
    #: (stored image shape, shape the sequence shares) when this benchmark's images are smaller
    reshape: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None
    #: training splits with `augment: hflip`: the generator of which images are flipped
    flips: torch.Generator | None = None
    image_shape: tuple[int, int, int] | None = None

    def __len__(self) -> int:
        return int(self.rows.numel())

    def inputs(self, sel: torch.Tensor | slice | None = None) -> torch.Tensor:
        """The (optionally selected) inputs of this split, permuted if the task permutes."""
        rows = self.rows if sel is None else self.rows[sel]
        x = self.images.index_select(0, rows)
        if self.perm is not None:
            x = x.index_select(1, self.perm)
        return x if self.reshape is None else pad_rows(x, *self.reshape)

    def batch(self, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (randomly flipped, with `augment: hflip`) and task-local labels of the selected samples."""
        x = self.inputs(sel)
        if self.flips is not None:
            x = hflip_half(x, self.image_shape, self.flips)
        return x, self.labels[sel]


def pad_rows(x: torch.Tensor, shape: tuple[int, int, int], target: tuple[int, int, int]) -> torch.Tensor:
    """Rows of `shape` images → rows of `target` images: grey repeated to colour, zero-padded, centred."""
    from torch.nn import functional as F

    (c, h, w), (tc, th, tw) = shape, target
    images = x.view(len(x), c, h, w)
    if tc != c:
        images = images.expand(-1, tc, -1, -1)
    top, left = (th - h) // 2, (tw - w) // 2
    return F.pad(images, (left, tw - w - left, top, th - h - top)).reshape(len(x), -1)


def hflip_half(x: torch.Tensor, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ½ (drawn from `generator`, on the batch's device)."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    images = x.view(len(x), *shape)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images).reshape(len(x), -1)


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


_STREAM_SUBSAMPLE, _STREAM_VAL, _STREAM_PERM, _STREAM_CLASSES, _STREAM_FLIP, _STREAM_TEST = 1, 2, 3, 4, 5, 6


def build_tasks(
    cfg: DataConfig,
    raw: RawDataset | dict[str, RawDataset],
    seed: int,
    device: torch.device | str = "cpu",
    images: tuple[torch.Tensor, torch.Tensor] | dict | None = None,
) -> TaskSequence:
    """Build the task sequence described by `cfg` from `raw` on `device` (SPEC §2).

    `raw` is the benchmark's dataset, or {name: dataset} for every benchmark of `cfg.benchmarks`;
    `images` = (train, test) tensors of a dataset already on `device` (or {name: (train, test)}),
    shared by several sequences (a pack)."""
    device = torch.device(device)
    raws = raw if isinstance(raw, dict) else {raw.name: raw}
    shared = images if isinstance(images, dict) else ({next(iter(raws)): images} if images else {})
    tensors = {
        name: shared.get(name) or (as_device_tensor(r.x_train, device), as_device_tensor(r.x_test, device))
        for name, r in raws.items()
    }
    common = tuple(max(r.image_shape[i] for r in raws.values()) for i in range(3))
    tasks = [
        _task(cfg, t, raws[name], tensors[name], classes, seed, device, common)
        for t, (name, classes) in enumerate(task_plan(cfg, raws, seed))
    ]
    first = raws[cfg.benchmarks[0]]
    name = "+".join(cfg.benchmarks) if cfg.sequence else first.name
    return TaskSequence(name=name, tasks=tasks, num_features=int(np.prod(common)), image_shape=common)


def task_plan(cfg: DataConfig, raws: dict[str, RawDataset], seed: int) -> list[tuple[str, list[int]]]:
    """(benchmark, classes) of every task: a sequence's benchmarks, seeded class subsets, splits or permutations."""
    if cfg.sequence is not None:
        return [(b, sorted(int(c) for c in np.unique(raws[b].y_train))) for b in cfg.sequence]
    raw = raws[cfg.benchmark]
    if cfg.task_classes is not None:
        order = task_rng(seed, 0, _STREAM_CLASSES).permutation(np.unique(raw.y_train))
        bounds = np.cumsum([0, *cfg.task_classes])
        return [(cfg.benchmark, sorted(int(c) for c in order[a:b])) for a, b in zip(bounds, bounds[1:], strict=False)]
    if cfg.scenario == "split":
        k = cfg.classes_per_task
        return [(cfg.benchmark, list(range(t * k, (t + 1) * k))) for t in range(cfg.tasks)]
    every = sorted(int(c) for c in np.unique(raw.y_train))
    return [(cfg.benchmark, every) for _ in range(cfg.tasks)]


def _task(cfg: DataConfig, t: int, raw: RawDataset, images, classes, seed: int, device, common) -> Task:
    """Task t over `classes` of `raw`: seeded subsample, validation hold-out, permutation, padding, flips."""
    x_train, x_test = images
    perm = None
    if cfg.scenario == "permuted" and cfg.sequence is None and (t > 0 or cfg.permute_first):
        order = task_rng(seed, t, _STREAM_PERM).permutation(raw.num_features)
        perm = torch.as_tensor(order, dtype=torch.long, device=device)
    lookup = np.full(int(max(raw.y_train.max(), raw.y_test.max())) + 1, -1, dtype=np.int64)
    lookup[classes] = np.arange(len(classes))

    train_pos = np.flatnonzero(np.isin(raw.y_train, classes))
    if cfg.train_samples is not None and cfg.train_samples < len(train_pos):
        frac = 1.0 - cfg.train_samples / len(train_pos)
        kept, _ = stratified_holdout(raw.y_train[train_pos], frac, task_rng(seed, t, _STREAM_SUBSAMPLE))
        train_pos = train_pos[kept]
    fit_idx, val_idx = stratified_holdout(raw.y_train[train_pos], cfg.val_fraction, task_rng(seed, t, _STREAM_VAL))
    test_pos = np.flatnonzero(np.isin(raw.y_test, classes))
    if cfg.test_samples is not None and cfg.test_samples < len(test_pos):
        frac = 1.0 - cfg.test_samples / len(test_pos)
        kept, _ = stratified_holdout(raw.y_test[test_pos], frac, task_rng(seed, t, _STREAM_TEST))
        test_pos = test_pos[kept]
    reshape = None if raw.image_shape == common else (raw.image_shape, common)

    def split(images, labels, pos, flips=None):
        return Split(
            images=images,
            rows=torch.as_tensor(pos, dtype=torch.long, device=device),
            labels=torch.as_tensor(lookup[labels[pos]], dtype=torch.long, device=device),
            perm=perm,
            reshape=reshape,
            flips=flips,
            image_shape=common,
        )

    flips = None
    if cfg.augment == "hflip":
        flips = torch.Generator(device=device).manual_seed(int(task_rng(seed, t, _STREAM_FLIP).integers(2**62)))
    return Task(
        index=t,
        classes=classes,
        num_classes=len(classes),
        train=split(x_train, raw.y_train, train_pos[fit_idx], flips),
        val=split(x_train, raw.y_train, train_pos[val_idx]),
        test=split(x_test, raw.y_test, test_pos),
    )
