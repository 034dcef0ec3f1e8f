"""A benchmark's images as loaded (`RawDataset`) and the folders searched for them; imports numpy only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SYSTEM_DATA_DIR = Path("/usr/share/datasets")


@dataclass(frozen=True)
class RawDataset:
    """A benchmark's images as float32 rows in [0, 1] with integer labels, train and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    origin: str
    #: (channels, height, width) of one image; None: square grey images (H = W = √features)
    shape: tuple[int, int, int] | None = None

    @property
    def num_features(self) -> int:
        """Values per image (channels × height × width)."""
        return int(self.x_train.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image row."""
        if self.shape is not None:
            return self.shape
        side = int(round(self.num_features**0.5))
        return (1, side, side)


def candidate_dirs(name: str, data_dir: str | None = None) -> list[Path]:
    """The folders searched for `name`'s IDX files, in order (SPEC §2)."""
    dirs: list[Path] = []
    if data_dir:
        dirs.append(Path(data_dir))
        dirs.append(Path(data_dir) / name)
    env = os.environ.get("ANPYC_DATA_DIR")
    if env:
        dirs.append(Path(env) / name)
    dirs.append(SYSTEM_DATA_DIR / name)
    return dirs
