"""The features FID is computed on: a classifier trained once per benchmark and cached (issue 13).

Inception weights cannot be downloaded here, so by default the project trains a small CNN on the
benchmark's whole training set (all classes), caches it by a fingerprint of the data, and reads FID off
its penultimate layer (128 values). The same network's predictions give the accuracy of generated
samples. A user with torchvision Inception-v3 weights passes `generative.features: inception:PATH`
and gets FID on its 2048-d pool features instead. Every result names which features it used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from anpyc_core.data.raw import RawDataset

CACHE_FORMAT = 1


class FeatureError(ValueError):
    """A feature extractor file that is missing, unreadable or made for other images."""


class FeatureNet(nn.Module):
    """Conv-Conv-FC-FC classifier of any (C, H, W) images; `features` is the 128-d penultimate layer."""

    def __init__(self, image: tuple[int, int, int], classes: int) -> None:
        super().__init__()
        self.image, self.classes = tuple(image), classes
        self.conv1 = nn.Conv2d(image[0], 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, 128)
        self.out = nn.Linear(128, classes)

    def features(self, rows: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N × 128) of image rows."""
        h = rows.view(len(rows), *self.image)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2) if self.image[1] >= 8 else F.relu(self.conv1(h))
        h = F.adaptive_avg_pool2d(F.relu(self.conv2(h)), 4)
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.out(self.features(rows))


class InceptionFeatures(nn.Module):
    """torchvision Inception-v3 from a local weights file: 2048-d pool features of images resized to 299²."""

    def __init__(self, path: Path, image: tuple[int, int, int]) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        self.image = tuple(image)
        self.net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        state = _load(path, "torchvision Inception-v3 weights")
        try:
            self.net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise FeatureError(
                f"generative.features: {path}: not torchvision Inception-v3 weights ({type(err).__name__})"
            ) from None
        self.net.fc = nn.Identity()
        self.classes = 0

    def features(self, rows: torch.Tensor) -> torch.Tensor:
        """Pool features (N × 2048)."""
        h = rows.view(len(rows), *self.image)
        if h.shape[1] == 1:
            h = h.expand(-1, 3, -1, -1)
        h = F.interpolate(h, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(h * 2 - 1)


def data_fingerprint(raw: RawDataset) -> str:
    """A short hash of a dataset's training images and labels (a strided sample of them) and shapes."""
    digest = hashlib.sha256()
    digest.update(f"{raw.name}:{raw.x_train.shape}:{raw.image_shape}".encode())
    step = max(1, len(raw.x_train) // 512)
    digest.update(np.ascontiguousarray(raw.x_train[::step]).tobytes())
    digest.update(np.ascontiguousarray(raw.y_train).tobytes())
    return digest.hexdigest()[:12]


def feature_key(data_cfg) -> str:
    """Which data a feature classifier covers: the benchmark, or a sequence's benchmarks joined by '+'."""
    return "+".join(data_cfg.benchmarks)


def class_offsets(data_cfg, raws: dict[str, RawDataset]) -> dict[str, int]:
    """Where each benchmark's classes start in the feature classifier's labels (a sequence: one after another)."""
    offsets, start = {}, 0
    for name in data_cfg.benchmarks:
        offsets[name] = start
        raw = raws[name]
        start += int(max(raw.y_train.max(), raw.y_test.max())) + 1
    return offsets


def feature_dataset(data_cfg, raws: dict[str, RawDataset]) -> RawDataset:
    """The images a feature classifier trains on: the benchmark, or every benchmark of a sequence with its
    classes shifted past the earlier benchmarks' (images padded to the sequence's shape)."""
    if data_cfg.sequence is None:
        return raws[data_cfg.benchmark]
    from anpyc_core.data.tasks import pad_rows

    shape, offsets = data_cfg.image_shape, class_offsets(data_cfg, raws)

    def rows(raw: RawDataset, x: np.ndarray) -> np.ndarray:
        if raw.image_shape == shape:
            return x
        return pad_rows(torch.from_numpy(np.ascontiguousarray(x)), raw.image_shape, shape).numpy()

    parts = [raws[name] for name in data_cfg.benchmarks]
    return RawDataset(
        feature_key(data_cfg),
        np.concatenate([rows(r, r.x_train) for r in parts]),
        np.concatenate([r.y_train + offsets[r.name] for r in parts]),
        np.concatenate([rows(r, r.x_test) for r in parts]),
        np.concatenate([r.y_test + offsets[r.name] for r in parts]),
        origin=" + ".join(r.origin for r in parts),
        shape=shape,
    )


def cache_dir(configured: str | None) -> Path:
    """Where `auto` feature classifiers are cached."""
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("ANPYC_CACHE", "~/.cache/anpyc-sweep")).expanduser() / "features"


def train_feature_net(raw: RawDataset, epochs: int, seed: int = 0, progress=None) -> dict:
    """Train a FeatureNet on every training image of `raw`; returns the cache record (state and test accuracy)."""
    torch.manual_seed(seed)
    classes = int(max(raw.y_train.max(), raw.y_test.max())) + 1
    net = FeatureNet(raw.image_shape, classes)
    x, y = torch.from_numpy(np.ascontiguousarray(raw.x_train)), torch.from_numpy(raw.y_train.astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    order_gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=order_gen)
        for start in range(0, len(x), 128):
            idx = order[start : start + 128]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if progress:
            progress(f"  feature classifier {raw.name}: epoch {epoch + 1}/{epochs} done")
    net.eval()
    with torch.no_grad():
        xt, yt = torch.from_numpy(np.ascontiguousarray(raw.x_test)), torch.from_numpy(raw.y_test.astype(np.int64))
        correct = sum(int((net(xt[s : s + 2048]).argmax(1) == yt[s : s + 2048]).sum()) for s in range(0, len(xt), 2048))
    return {
        "format": CACHE_FORMAT,
        "benchmark": raw.name,
        "fingerprint": data_fingerprint(raw),
        "image": list(raw.image_shape),
        "classes": classes,
        "epochs": epochs,
        "test_accuracy": 100.0 * correct / max(1, len(xt)),
        "state": net.state_dict(),
    }


def _load(path: Path, what: str):
    """torch.load of a user's file, or FeatureError in one line naming `what` it should be."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FeatureError(f"generative.features: {path}: no such {what} file") from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        raise FeatureError(f"generative.features: {path}: not a {what} file ({type(err).__name__})") from None


def read_feature_record(path: Path) -> dict:
    """A cached feature classifier record, or FeatureError in one line."""
    record = _load(path, "feature classifier")
    if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT or "state" not in record:
        raise FeatureError(f"generative.features: {path}: not a feature classifier file (format {CACHE_FORMAT})")
    return record


def feature_record(gen_cfg, raw: RawDataset, progress=None) -> dict:
    """The feature classifier record `gen_cfg.features` names for `raw` (training and caching it for `auto`)."""
    if gen_cfg.features.startswith("inception:"):
        return {"inception": str(Path(gen_cfg.features.split(":", 1)[1]).expanduser()), "image": list(raw.image_shape)}
    if gen_cfg.features != "auto":
        record = read_feature_record(Path(gen_cfg.features).expanduser())
        if tuple(record["image"]) != tuple(raw.image_shape):
            raise FeatureError(
                f"generative.features: {gen_cfg.features} was trained on {tuple(record['image'])} images, "
                f"{raw.name}'s are {raw.image_shape}"
            )
        return record
    folder = cache_dir(gen_cfg.feature_cache)
    path = folder / f"{raw.name}-{data_fingerprint(raw)}-e{gen_cfg.feature_epochs}.pt"
    if path.exists():
        return read_feature_record(path)
    if progress:
        progress(f"training the feature classifier of {raw.name} once (cached at {path})")
    record = train_feature_net(raw, gen_cfg.feature_epochs, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(record, tmp)
    os.replace(tmp, path)  # concurrent trainers: the last complete file wins, never a torn one
    return record


def feature_net(record: dict, device: torch.device) -> nn.Module:
    """The network of a feature record, in eval mode on `device`."""
    if "inception" in record:
        net: nn.Module = InceptionFeatures(Path(record["inception"]), tuple(record["image"]))
    else:
        net = FeatureNet(tuple(record["image"]), int(record["classes"]))
        try:
            net.load_state_dict(record["state"])
        except RuntimeError:
            raise FeatureError("generative.features: the feature classifier file does not match its network") from None
    return net.to(device).eval()


def features_name(record: dict) -> str:
    """Which features a reported FID used, in words."""
    if "inception" in record:
        return f"inception-v3 pool (2048-d) from {record['inception']}"
    return (
        f"anpyc feature classifier of {record['benchmark']} ({record['fingerprint']}, 128-d, "
        f"test accuracy {record['test_accuracy']:.2f}%)"
    )


def features_for(cfg, raws: dict[str, RawDataset], progress=None) -> dict:
    """The feature record of a run config's data (its benchmark, or its whole sequence with class offsets)."""
    record = feature_record(cfg.generative, feature_dataset(cfg.data, raws), progress)
    if cfg.data.sequence is not None:
        record = {**record, "offsets": class_offsets(cfg.data, raws)}
    return record
