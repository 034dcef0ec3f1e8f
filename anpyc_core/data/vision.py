"""Colour and letter benchmarks of the five-dataset sequence (SPEC §2, issue 12): CIFAR-10, SVHN, STL-10,
notMNIST, and Caltech-101 for Appendix A.

CIFAR-10, SVHN and STL-10 are read by torchvision's own dataset classes from their published on-disk
layouts; their checksums are compared with torchvision's and the result is named in `origin` (a file
that reads but differs from the published one is used, and said to differ). notMNIST and Caltech-101
are folders of images, one folder per class. Every image becomes a float32 row in [0, 1]; STL-10 is
area-averaged from 96×96 to 32×32 so that the five-dataset sequence shares one size.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from anpyc_core.data.idx import DataError
from anpyc_core.data.raw import RawDataset
from anpyc_core.data.registry import register

#: (channels, height, width) of each benchmark as loaded.
SHAPES = {"cifar10": (3, 32, 32), "svhn": (3, 32, 32), "stl10": (3, 32, 32), "notmnist": (1, 28, 28)}
CALTECH_SIZE = 224
LETTERS = "ABCDEFGHIJ"


def _rows(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, C, H, W) → float32 rows in [0, 1]."""
    out = images.reshape(len(images), -1).astype(np.float32)
    out *= np.float32(1 / 255)
    return out


def _trusting(cls):
    """A torchvision dataset class that reads its files without insisting on the published checksums."""

    class Trusting(cls):
        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:  # CIFAR's class names: not needed, and checksummed
            self.classes, self.class_to_idx = [], {}

    return Trusting


def _checksums_match(folder: Path, files: list[tuple[str, str]]) -> bool:
    """Whether every file has its published MD5 (each file hashed once per process while it is unchanged)."""
    for name, md5 in files:
        path = folder / name
        if not path.is_file():
            return False
        stat = path.stat()
        if not _md5_matches(str(path), stat.st_size, stat.st_mtime_ns, md5):
            return False
    return True


@functools.lru_cache(maxsize=256)
def _md5_matches(path: str, size: int, mtime_ns: int, md5: str) -> bool:
    """MD5 check of one file; size and mtime are part of the cache key, so a changed file is hashed again."""
    from torchvision.datasets.utils import check_integrity

    return check_integrity(path, md5)


@register("cifar10", "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}")
def _read_cifar10(folder: Path) -> RawDataset | None:
    from torchvision.datasets import CIFAR10

    base = folder / CIFAR10.base_folder
    names = [n for n, _ in CIFAR10.train_list + CIFAR10.test_list]
    present = [n for n in names if (base / n).is_file()]
    if not present:
        return None
    if len(present) < len(names):
        missing = sorted(set(names) - set(present))
        raise DataError(f"{base}: incomplete CIFAR-10 batches, missing {', '.join(missing)}")
    reader = _trusting(CIFAR10)
    train, test = reader(str(folder), train=True), reader(str(folder), train=False)
    verified = _checksums_match(base, CIFAR10.train_list + CIFAR10.test_list)
    return RawDataset(
        "cifar10",
        _rows(train.data.transpose(0, 3, 1, 2)),
        np.asarray(train.targets, dtype=np.int64),
        _rows(test.data.transpose(0, 3, 1, 2)),
        np.asarray(test.targets, dtype=np.int64),
        origin=f"{base} ({'published checksums' if verified else 'checksums differ from the published files'})",
        shape=SHAPES["cifar10"],
    )


@register("svhn", "{train,test}_32x32.mat")
def _read_svhn(folder: Path) -> RawDataset | None:
    from torchvision.datasets import SVHN

    files = {split: SVHN.split_list[split] for split in ("train", "test")}
    present = [s for s, (_, name, _) in files.items() if (folder / name).is_file()]
    if not present:
        return None
    if len(present) < 2:
        missing = [name for s, (_, name, _) in files.items() if s not in present]
        raise DataError(f"{folder}: incomplete SVHN files, missing {', '.join(missing)}")
    reader = _trusting(SVHN)
    train, test = reader(str(folder), split="train"), reader(str(folder), split="test")
    verified = _checksums_match(folder, [(name, md5) for _, name, md5 in files.values()])
    return RawDataset(
        "svhn",
        _rows(train.data),
        train.labels.astype(np.int64),
        _rows(test.data),
        test.labels.astype(np.int64),
        origin=f"{folder} ({'published checksums' if verified else 'checksums differ from the published files'})",
        shape=SHAPES["svhn"],
    )


@register("stl10", "stl10_binary/{train,test}_{X,y}.bin")
def _read_stl10(folder: Path) -> RawDataset | None:
    from torchvision.datasets import STL10

    base = folder / STL10.base_folder
    needed = [STL10.train_list[0][0], STL10.train_list[1][0], STL10.test_list[0][0], STL10.test_list[1][0]]
    present = [n for n in needed if (base / n).is_file()]
    if not present:
        return None
    if len(present) < len(needed):
        raise DataError(f"{base}: incomplete STL-10 files, missing {', '.join(sorted(set(needed) - set(present)))}")
    reader = _trusting(STL10)
    train, test = reader(str(folder), split="train"), reader(str(folder), split="test")
    verified = _checksums_match(base, [STL10.train_list[0], STL10.train_list[1], *STL10.test_list])

    def shrink(images: np.ndarray) -> np.ndarray:  # 96×96 → 32×32 by 3×3 area averaging
        n = len(images)
        return images.reshape(n, 3, 32, 3, 32, 3).mean(axis=(3, 5), dtype=np.float32).reshape(n, -1) / 255

    return RawDataset(
        "stl10",
        shrink(train.data).astype(np.float32),
        train.labels.astype(np.int64),
        shrink(test.data).astype(np.float32),
        test.labels.astype(np.int64),
        origin=f"{base} ({'published checksums' if verified else 'checksums differ from the published files'})",
        shape=SHAPES["stl10"],
    )


def _image_folders(root: Path, names: list[str] | None = None) -> list[Path]:
    """Sub-folders of `root` (those named in `names`, in that order), or [] when none exists."""
    if not root.is_dir():
        return []
    if names is not None:
        return [root / n for n in names if (root / n).is_dir()]
    return sorted(p for p in root.iterdir() if p.is_dir())


def _read_images(folders: list[Path], convert: str, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Every readable image of the class folders as uint8 (N, C, H, W), its class index, and how many
    files could not be read (the published notMNIST holds a few broken PNGs)."""
    from PIL import Image, UnidentifiedImageError

    images, labels, broken = [], [], 0
    for label, folder in enumerate(folders):
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            try:
                with Image.open(path) as img:
                    img = img.convert(convert)
                    if size is not None and img.size != size:
                        img = img.resize(size, Image.BILINEAR)
                    array = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                broken += 1
                continue
            images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        return np.zeros((0, 1, 1, 1), np.uint8), np.zeros(0, np.int64), broken
    return np.stack(images), np.asarray(labels, dtype=np.int64), broken


def _split_70_30(name: str, images: np.ndarray, labels: np.ndarray, origin: str, shape) -> RawDataset:
    """A fixed stratified 70/30 train/test split (seed 0), as for digits."""
    from sklearn.model_selection import train_test_split

    rows = _rows(images)
    x_tr, x_te, y_tr, y_te = train_test_split(rows, labels, test_size=0.3, stratify=labels, random_state=0)
    return RawDataset(name, x_tr, y_tr, x_te, y_te, origin=origin, shape=shape)


@register("notmnist", "notMNIST_small/A..J/*.png (or notMNIST_large/, or A..J/ directly)")
def _read_notmnist(folder: Path) -> RawDataset | None:
    for root in (folder / "notMNIST_small", folder / "notMNIST_large", folder):
        letters = _image_folders(root, list(LETTERS))
        if not letters:
            continue
        if len(letters) < len(LETTERS):
            missing = [c for c in LETTERS if not (root / c).is_dir()]
            raise DataError(f"{root}: notMNIST needs one folder per letter A-J; missing {', '.join(missing)}")
        images, labels, broken = _read_images(letters, "L", (28, 28))
        if min(np.bincount(labels, minlength=10)) < 2:
            raise DataError(f"{root}: every notMNIST letter folder needs at least 2 readable images")
        note = f", {broken} unreadable file(s) skipped" if broken else ""
        return _split_70_30("notmnist", images, labels, f"{root}{note}", SHAPES["notmnist"])
    return None


@register("caltech101", "101_ObjectCategories/<class>/*.jpg")
def _read_caltech101(folder: Path) -> RawDataset | None:
    root = folder / "101_ObjectCategories"
    classes = _image_folders(root)
    if not classes:
        return None
    images, labels, broken = _read_images(classes, "RGB", (CALTECH_SIZE, CALTECH_SIZE))
    if min(np.bincount(labels, minlength=len(classes))) < 2:
        raise DataError(f"{root}: every Caltech-101 class folder needs at least 2 readable images")
    note = f", {broken} unreadable file(s) skipped" if broken else ""
    shape = (3, CALTECH_SIZE, CALTECH_SIZE)
    return _split_70_30("caltech101", images, labels, f"{root} ({len(classes)} classes{note})", shape)
