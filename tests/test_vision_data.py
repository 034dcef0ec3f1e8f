"""Loaders of the five-dataset sequence and Caltech-101 on tiny files in the real on-disk formats (issue 12)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from anpyc_core.config import validate_config
from anpyc_core.data import DataError, build_tasks, load_data, load_raw
from anpyc_core.trainer import Trainer

RNG = np.random.default_rng(0)


def write_cifar10(root, per_class=3):
    """cifar-10-batches-py: five pickled training batches, a test batch and the meta file."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [c for c in range(10) for _ in range(per_class)]
        data = RNG.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, fh)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{c}" for c in range(10)]}, fh)
    return written


def write_svhn(root, n=30):
    """train_32x32.mat and test_32x32.mat: X (32, 32, 3, N), y (N, 1) with 10 for the digit 0."""
    from scipy.io import savemat

    folder = root / "svhn"
    folder.mkdir(parents=True)
    out = {}
    for split in ("train", "test"):
        x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def write_stl10(root, n=20):
    """stl10_binary/{train,test}_{X,y}.bin: uint8 images stored column-major, labels 1..10."""
    folder = root / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    out = {}
    for split in ("train", "test"):
        images = RNG.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)  # (N, C, H, W)
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # the file holds (N, C, W, H)
        labels = (np.arange(n) % 10 + 1).astype(np.uint8)
        labels.tofile(folder / f"{split}_y.bin")
        out[split] = (images, labels)
    return out


def write_image_folders(folder, classes, per_class, size, mode, suffix):
    """One folder per class of `per_class` images (PNG or JPEG)."""
    from PIL import Image

    for c in classes:
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / c / f"{i}.{suffix}")


def test_cifar10_is_read_by_torchvisions_reader_pixel_for_pixel(tmp_path):
    written = write_cifar10(tmp_path)
    raw = load_raw("cifar10", str(tmp_path))
    assert raw.image_shape == (3, 32, 32) and raw.x_train.shape == (150, 3072) and raw.x_test.shape == (30, 3072)
    data, labels = written["data_batch_1"]
    np.testing.assert_array_equal(raw.x_train[:30], data.astype(np.float32) * np.float32(1 / 255))  # CHW rows
    assert raw.y_train[:30].tolist() == labels and "checksums differ from the published files" in raw.origin


def test_svhn_maps_label_10_to_0_and_keeps_channels_first(tmp_path):
    written = write_svhn(tmp_path)
    raw = load_raw("svhn", str(tmp_path))
    x, y = written["train"]
    assert raw.y_train.tolist() == [int(v) % 10 for v in y.ravel()]
    first = x[..., 0].transpose(2, 0, 1).reshape(-1).astype(np.float32) / 255  # (H, W, C) → (C, H, W)
    np.testing.assert_allclose(raw.x_train[0], first)


def test_stl10_is_shrunk_to_32x32_by_area_averaging(tmp_path):
    written = write_stl10(tmp_path)
    raw = load_raw("stl10", str(tmp_path))
    images, labels = written["test"]
    assert raw.image_shape == (3, 32, 32) and raw.x_test.shape == (20, 3072)
    expected = images[3].reshape(3, 32, 3, 32, 3).mean(axis=(2, 4)) / 255
    np.testing.assert_allclose(raw.x_test[3].reshape(3, 32, 32), expected, rtol=1e-6)
    assert raw.y_test.tolist() == (labels - 1).tolist()


def test_notmnist_reads_letter_folders_and_skips_broken_files(tmp_path):
    root = tmp_path / "notmnist" / "notMNIST_small"
    write_image_folders(root, list("ABCDEFGHIJ"), 4, (28, 28), "L", "png")
    (root / "C" / "broken.png").write_bytes(b"\x89PNG truncated")
    raw = load_raw("notmnist", str(tmp_path))
    assert raw.image_shape == (1, 28, 28) and len(raw.x_train) + len(raw.x_test) == 40
    assert sorted(np.bincount(np.concatenate([raw.y_train, raw.y_test])).tolist()) == [4] * 10
    assert "1 unreadable file(s) skipped" in raw.origin


def test_caltech101_reads_class_folders_at_224_and_splits_classes_by_seeded_subsets(tmp_path):
    root = tmp_path / "caltech101" / "101_ObjectCategories"
    write_image_folders(root, [f"class{c:03d}" for c in range(10)], 4, (40, 30), "RGB", "jpg")
    raw = load_raw("caltech101", str(tmp_path))
    assert raw.image_shape == (3, 224, 224) and raw.x_train.shape[1] == 3 * 224 * 224
    cfg = validate_config(
        {"data": {"benchmark": "caltech101", "task_classes": [4, 3, 3], "data_dir": str(tmp_path), "val_fraction": 0.2}}
    )
    seq = build_tasks(cfg.data, raw, seed=5)
    classes = [t.classes for t in seq.tasks]
    assert [len(c) for c in classes] == [4, 3, 3] and sorted(sum(classes, [])) == list(range(10))
    assert classes == [t.classes for t in build_tasks(cfg.data, raw, seed=5).tasks]  # the seed fixes them
    assert classes != [t.classes for t in build_tasks(cfg.data, raw, seed=6).tasks]


@pytest.mark.parametrize("name", ["cifar10", "svhn", "stl10", "notmnist", "caltech101"])
def test_a_missing_dataset_is_one_line_naming_every_folder_tried(tmp_path, monkeypatch, name):
    monkeypatch.setenv("ANPYC_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError) as err:
        load_raw(name, str(tmp_path / "given"))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "given") in message and str(tmp_path / "env" / name) in message


def test_corrupt_and_incomplete_files_are_one_line_each(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError, match=r"cifar10 files are corrupt or truncated") as err:
        load_raw("cifar10", str(tmp_path))
    assert "\n" not in str(err.value)
    batch.unlink()
    with pytest.raises(DataError, match=r"incomplete CIFAR-10 batches, missing data_batch_3"):
        load_raw("cifar10", str(tmp_path))


def test_a_sequence_of_benchmarks_pads_and_repeats_images_to_one_shape_and_trains(tmp_path, digits):
    write_cifar10(tmp_path, per_class=6)
    cfg = validate_config(
        {
            "device": "cpu",
            "data": {"sequence": ["digits", "cifar10"], "data_dir": str(tmp_path), "val_fraction": 0.2},
            "model": {"hidden": [32]},  # an MLP reads the shared 3×32×32 rows (test_cnn covers the CNNs)
            "strategy": {"method": "anpyc", "beta": 20, "importance_batch": 20},
            "optim": {"epochs": 2, "patience": 1, "batch_size": 64, "lr": 0.01},
        }
    )
    raws = load_data(cfg.data)
    seq = build_tasks(cfg.data, raws, cfg.seed)
    assert seq.image_shape == (3, 32, 32) and [t.num_classes for t in seq.tasks] == [10, 10]
    x = seq.tasks[0].test.inputs()[:2].view(2, 3, 32, 32)  # digits: 8×8 grey, centred, in three channels
    original = torch.as_tensor(raws["digits"].x_test[seq.tasks[0].test.rows[:2].numpy()]).view(2, 8, 8)
    assert torch.equal(x[:, 1, 12:20, 12:20], original) and x[:, :, :12].abs().sum() == 0
    trainer = Trainer(cfg, tasks=seq)
    for _ in trainer.run():
        pass
    assert len(trainer.acc_matrix) == 3


def test_hflip_flips_about_half_of_each_training_batch_reproducibly(digits):
    cfg = validate_config({"data": {"benchmark": "digits", "num_tasks": 2, "augment": "hflip"}})
    first, second = (build_tasks(cfg.data, digits, seed=1).tasks[0] for _ in range(2))
    sel = torch.arange(64)
    plain = first.train.inputs(sel).view(64, 8, 8)
    a, b = first.train.batch(sel)[0].view(64, 8, 8), second.train.batch(sel)[0].view(64, 8, 8)
    assert torch.equal(a, b)  # the seed fixes which images flip
    flipped = [not torch.equal(a[i], plain[i]) for i in range(64)]
    assert 16 <= sum(flipped) <= 48
    assert all(torch.equal(a[i], plain[i].flip(-1)) for i in range(64) if flipped[i])
    assert torch.equal(first.test.inputs(sel[:10]), first.test.batch(sel[:10])[0])  # only training flips


def test_patience_ends_the_initial_phase_when_the_loss_stops_decreasing(make_trainer):
    lines = []
    patient = make_trainer(optim__epochs=30, optim__patience=1, optim__lr=5.0, progress=lines.append)
    epochs = []
    real = patient._epoch
    patient._epoch = lambda t, split, opt, epoch: epochs.append(epoch) or real(t, split, opt, epoch)
    patient.run_task(0)
    initial = [e for e in epochs if e < 30]
    assert len(initial) < 30 and any("has not decreased for 1 epochs" in line for line in lines)


def test_test_samples_evaluates_on_a_seeded_stratified_subsample(digits):
    whole = validate_config({"data": {"benchmark": "digits", "num_tasks": 2}})
    cut = validate_config({"data": {"benchmark": "digits", "num_tasks": 2, "test_samples": 40}})
    full_rows = build_tasks(whole.data, digits, seed=0).tasks[0].test.rows
    rows = [build_tasks(cut.data, digits, seed=s).tasks[0].test for s in (0, 0, 1)]
    assert len(rows[0]) == 40 and set(rows[0].rows.tolist()) <= set(full_rows.tolist())
    assert torch.equal(rows[0].rows, rows[1].rows) and not torch.equal(rows[0].rows, rows[2].rows)
    assert torch.bincount(rows[0].labels).tolist() == [20, 20]  # both classes of the task, equally
