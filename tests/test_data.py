"""Benchmarks (SPEC §2): IDX loading in the real on-disk format, search order, task builders."""

import gzip

import numpy as np
import pytest
import torch

from anpyc_core.config import DataConfig
from anpyc_core.data import DataError, build_tasks, load_raw, read_idx, write_idx
from anpyc_core.data.sources import RawDataset, load_idx_dataset


def write_fake_mnist(folder, n_train=60, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, arr in data.items():
        write_idx(folder / (name + ext), arr)
    return data


def test_idx_header_is_the_real_format(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-idx3-ubyte", arr)
    raw = (tmp_path / "x-idx3-ubyte").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03"
    assert raw[4:16] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte"), arr)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_loads_plain_and_gzip(tmp_path, gz):
    data = write_fake_mnist(tmp_path / "mnist", gz=gz)
    raw = load_idx_dataset("mnist", data_dir=str(tmp_path), download=False)
    assert raw.x_train.shape == (60, 784) and raw.x_train.dtype == np.float32
    assert raw.x_train.max() <= 1.0 and raw.x_train.min() >= 0.0
    np.testing.assert_allclose(raw.x_train[0] * 255, data["train-images-idx3-ubyte"][0].reshape(-1), atol=1e-3)
    assert raw.y_test.tolist() == (np.arange(20) % 10).tolist()


def test_search_order_prefers_data_dir_then_env(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "env" / "fashion-mnist", n_train=30)
    write_fake_mnist(tmp_path / "explicit", n_train=40)
    monkeypatch.setenv("ANPYC_DATA_DIR", str(tmp_path / "env"))
    assert len(load_idx_dataset("fashion-mnist", download=False).y_train) == 30
    assert len(load_idx_dataset("fashion-mnist", str(tmp_path / "explicit"), download=False).y_train) == 40


def test_missing_dataset_lists_every_path_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("ANPYC_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("ANPYC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        load_raw("mnist", data_dir=str(tmp_path / "mine"), download=False)
    msg = str(err.value)
    for path in (
        tmp_path / "mine",
        tmp_path / "nowhere" / "mnist",
        "/usr/share/datasets/mnist",
        "download disabled",
    ):
        assert str(path) in msg
    assert "\n" not in msg


def test_truncated_idx_file_gives_a_clear_error(tmp_path):
    write_fake_mnist(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated or corrupt IDX file"):
        load_idx_dataset("mnist", data_dir=str(tmp_path), download=False)


def test_corrupt_gzip_and_bad_magic_give_clear_errors(tmp_path):
    write_fake_mnist(tmp_path / "mnist", gz=True)
    gz = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot read"):
        load_idx_dataset("mnist", data_dir=str(tmp_path), download=False)
    gz.write_bytes(gzip.compress(b"\x12\x34\x08\x01abcd"))
    with pytest.raises(DataError, match="not an IDX file"):
        load_idx_dataset("mnist", data_dir=str(tmp_path), download=False)


def test_incomplete_folder_names_missing_files(tmp_path):
    write_fake_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
        load_idx_dataset("mnist", data_dir=str(tmp_path), download=False)


def test_digits_split_is_fixed_and_stratified(digits):
    again = load_raw("digits")
    assert np.array_equal(digits.y_test, again.y_test)
    assert len(digits.y_train) + len(digits.y_test) == 1797
    test, total = (
        np.bincount(digits.y_test),
        np.bincount(np.concatenate([digits.y_train, digits.y_test])),
    )
    assert np.all(np.abs(test - 0.3 * total) <= 1)  # every class keeps its 30 % share


def test_split_tasks_reindex_labels_and_hold_out_validation(digits):
    cfg = DataConfig(benchmark="digits", scenario="split", classes_per_task=2, val_fraction=0.2)
    seq = build_tasks(cfg, digits, seed=1)
    assert len(seq) == 5 and seq.head_sizes == [2] * 5
    for task in seq.tasks:
        assert set(task.train.labels.tolist()) == {0, 1}
        train_rows, val_rows = set(task.train.rows.tolist()), set(task.val.rows.tolist())
        assert not train_rows & val_rows
        n = len(train_rows) + len(val_rows)
        assert abs(len(val_rows) - 0.2 * n) <= 2
        originals = set(digits.y_train[task.train.rows.numpy()].tolist())
        assert originals == set(task.classes)


def test_permuted_tasks_share_images_and_differ_by_seeded_permutation(digits):
    cfg = DataConfig(benchmark="digits", scenario="permuted", num_tasks=3, permute_first=False)
    a = build_tasks(cfg, digits, seed=0)
    b = build_tasks(cfg, digits, seed=0)
    assert a.tasks[0].train.perm is None and a.tasks[1].train.perm is not None
    assert torch.equal(a.tasks[1].train.perm, b.tasks[1].train.perm)
    assert not torch.equal(a.tasks[1].train.perm, a.tasks[2].train.perm)
    assert a.tasks[1].train.images.data_ptr() == a.tasks[2].train.images.data_ptr()
    x = a.tasks[2].test.inputs(slice(0, 4))
    base = a.tasks[0].test.inputs(slice(0, 4))
    assert torch.equal(x, base[:, a.tasks[2].test.perm])
    c = build_tasks(cfg.model_copy(update={"permute_first": True}), digits, seed=0)
    assert c.tasks[0].train.perm is not None


def test_read_only_shared_arrays_are_used_without_copy(digits):
    frozen = {k: getattr(digits, k).copy() for k in ("x_train", "y_train", "x_test", "y_test")}
    for arr in frozen.values():
        arr.setflags(write=False)
    raw = RawDataset("digits", origin="shared", **frozen)
    seq = build_tasks(DataConfig(), raw, seed=0)
    assert seq.tasks[0].train.images.data_ptr() == frozen["x_train"].__array_interface__["data"][0]
