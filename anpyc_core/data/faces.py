"""Face benchmarks of the VAE's two-domain sequence (paper Fig. 6): CelebA and a folder of anime faces.

Both become one-class datasets of 32×32 RGB rows in [0, 1] (a square centre crop, then bilinear resizing;
CelebA's aligned faces are cropped to their central 140×140 first, as usual for generative models).
CelebA's train/test split follows `list_eval_partition.txt` when present (partitions 0 and 1 train,
2 test); otherwise, and for anime faces, every tenth image in file-name order is a test image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anpyc_core.data.idx import DataError
from anpyc_core.data.raw import RawDataset
from anpyc_core.data.registry import register

SIZE = 32
SHAPE = (3, SIZE, SIZE)
CELEBA_CROP = 140
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def _load_faces(files: list[Path], crop: int | None) -> tuple[np.ndarray, list[Path], int]:
    """uint8 (N, 3, 32, 32) images of the readable `files`, those files, and how many could not be read."""
    from PIL import Image, UnidentifiedImageError

    images, kept, broken = [], [], 0
    for path in files:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                w, h = img.size
                side = min(w, h, crop or min(w, h))
                left, top = (w - side) // 2, (h - side) // 2
                img = img.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
                kept.append(path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            broken += 1
    return (np.stack(images) if images else np.zeros((0, *SHAPE), np.uint8)), kept, broken


def _dataset(name: str, images: np.ndarray, test: np.ndarray, origin: str) -> RawDataset:
    rows = images.reshape(len(images), -1).astype(np.float32) / 255
    labels = np.zeros(len(rows), dtype=np.int64)
    return RawDataset(name, rows[~test], labels[~test], rows[test], labels[test], origin=origin, shape=SHAPE)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def _checked(name: str, folder: Path, files: list[Path], crop: int | None) -> tuple[np.ndarray, list[Path], str]:
    images, kept, broken = _load_faces(files, crop)
    if len(kept) < 2:
        raise DataError(f"{folder}: {name} needs at least 2 readable images ({len(kept)} of {len(files)} files read)")
    note = f", {broken} unreadable file(s) skipped" if broken else ""
    return images, kept, f"{folder} ({len(kept)} images{note})"


def every_tenth(count: int) -> np.ndarray:
    """The fixed test mask: every tenth image (at least one)."""
    mask = np.zeros(count, dtype=bool)
    mask[9::10] = True
    if not mask.any():
        mask[-1] = True
    return mask


@register("celeba", "celeba/img_align_celeba/*.jpg (and celeba/list_eval_partition.txt)")
def read_celeba(folder: Path) -> RawDataset | None:
    """CelebA from `celeba/img_align_celeba/*.jpg` (or `img_align_celeba/` directly) under `folder`."""
    for root in (folder / "celeba", folder):
        images_dir = root / "img_align_celeba"
        if not images_dir.is_dir():
            continue
        images, kept, origin = _checked("celeba", images_dir, _image_files(images_dir), CELEBA_CROP)
        partition = root / "list_eval_partition.txt"
        if partition.is_file():
            split = {}
            for line in partition.read_text().split("\n"):
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    split[parts[0]] = int(parts[1])
            test = np.array([split.get(p.name, 0) == 2 for p in kept])
            if test.all() or not test.any():
                raise DataError(f"{partition}: needs images in both partitions 0/1 (train) and 2 (test)")
            origin += ", list_eval_partition.txt"
        else:
            test = every_tenth(len(kept))
        return _dataset("celeba", images, test, origin)
    return None


@register("anime", "images/*.png|jpg (or the image files directly)")
def read_anime(folder: Path) -> RawDataset | None:
    """Anime faces: image files in `folder/images/` or directly in `folder`."""
    for root in (folder / "images", folder):
        if not root.is_dir():
            continue
        files = _image_files(root)
        if not files:
            continue
        images, _, origin = _checked("anime", root, files, None)
        return _dataset("anime", images, every_tenth(len(images)), origin)
    return None
