"""Where each benchmark's raw images come from (SPEC §2): embedded digits, IDX files, or a registered reader.

Imports the format modules (vision, faces) so that their readers are registered; none of them imports this one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from anpyc_core.data import faces, vision  # noqa: F401 - importing them registers their readers
from anpyc_core.data.idx import DataError, read_idx
from anpyc_core.data.raw import RawDataset, candidate_dirs
from anpyc_core.data.registry import READERS, load_registered

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def load_digits_dataset() -> RawDataset:
    """scikit-learn's bundled 8x8 digits, split 70/30 stratified with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    return RawDataset("digits", x_tr, y_tr, x_te, y_te, origin="sklearn.datasets.load_digits")


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_folder(name: str, folder: Path) -> RawDataset | None:
    paths = {key: _idx_path(folder, stem) for key, stem in IDX_FILES.items()}
    if not any(paths.values()):
        return None
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"{folder}: incomplete {name} files, missing {', '.join(missing)}[.gz]")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match")
    return RawDataset(
        name,
        x_train=_scale(arrays["x_train"]),
        y_train=arrays["y_train"].astype(np.int64),
        x_test=_scale(arrays["x_test"]),
        y_test=arrays["y_test"].astype(np.int64),
        origin=str(folder),
    )


def _scale(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) → float32 rows (N, H·W) in [0, 1], without a float64 detour."""
    out = images.reshape(len(images), -1).astype(np.float32)
    out *= np.float32(1 / 255)
    return out


def _download(name: str, root: Path) -> Path:
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION_CLASS[name])
    cls(root=str(root), train=True, download=True)
    cls(root=str(root), train=False, download=True)
    return root / _TORCHVISION_CLASS[name] / "raw"


def load_idx_dataset(name: str, data_dir: str | None = None, download: bool = True) -> RawDataset:
    """Find and read `name`'s IDX files; download via torchvision as a last resort."""
    tried: list[str] = []
    for folder in candidate_dirs(name, data_dir):
        found = _read_folder(name, folder)
        if found is not None:
            return found
        tried.append(str(folder))
    cache = Path(os.environ.get("ANPYC_CACHE_DIR", Path.home() / ".cache" / "anpyc-sweep")) / name
    raw_dir = cache / _TORCHVISION_CLASS[name] / "raw"
    found = _read_folder(name, raw_dir)
    if found is not None:
        return found
    if download:
        try:
            return _read_folder(name, _download(name, cache)) or _missing(name, tried, raw_dir)
        except DataError:
            raise
        except Exception as err:  # no network, no torchvision, a broken mirror: say so
            tried.append(f"{raw_dir} (torchvision download failed: {type(err).__name__})")
    else:
        tried.append(f"{raw_dir} (download disabled)")
    raise DataError(
        f"{name}: no IDX files found; tried {'; '.join(tried)}. Put the four "
        f"*-idx?-ubyte[.gz] files in $ANPYC_DATA_DIR/{name} or set data.data_dir"
    )


def _missing(name: str, tried: list[str], raw_dir: Path) -> RawDataset:
    raise DataError(f"{name}: download finished but {raw_dir} holds no IDX files; tried {tried}")


def load_raw(name: str, data_dir: str | None = None, download: bool = True) -> RawDataset:
    """Load a benchmark's raw images by name (digits, mnist, fashion-mnist, cifar10, svhn, stl10, notmnist,
    caltech101)."""
    if name == "digits":
        return load_digits_dataset()
    if name in _TORCHVISION_CLASS:
        return load_idx_dataset(name, data_dir, download)
    if name in READERS:
        return load_registered(name, data_dir)
    allowed = ", ".join(["digits", *_TORCHVISION_CLASS, *READERS])
    raise DataError(f"data.benchmark: unknown {name!r}; allowed: {allowed}")


def load_data(cfg) -> dict[str, RawDataset]:
    """Every benchmark a data config's tasks come from, by name (`cfg` is a `DataConfig`)."""
    return {name: load_raw(name, cfg.data_dir, cfg.download) for name in cfg.benchmarks}
