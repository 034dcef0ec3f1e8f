"""CelebA and anime-face folders (issue 13): tiny files in the real layouts, the two-domain VAE sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anpyc_core.config import ConfigError, validate_config
from anpyc_core.data import DataError, load_raw


def write_celeba(root: Path, count: int = 12, partition: bool = True) -> None:
    """`count` 178×218 JPEG faces (a bright centre square on a dark frame) and, optionally, the split file."""
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    lines = []
    for i in range(count):
        image = np.zeros((218, 178, 3), dtype=np.uint8)
        image[39:179, 19:159] = 40 + 15 * i  # the central 140×140 crop: uniform
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(image).save(folder / name, quality=95)
        lines.append(f"{name} {2 if i >= count - 3 else i % 2}")
    if partition:
        (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


def write_anime(root: Path, count: int = 10) -> None:
    """`count` 64×48 PNG faces directly in an `images/` folder, plus one broken file."""
    folder = root / "images"
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((48, 64, 3), 10 * i, dtype=np.uint8)).save(folder / f"face_{i:03d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")


def test_celeba_follows_its_partition_file_and_crops_the_centre(tmp_path):
    write_celeba(tmp_path)
    raw = load_raw("celeba", str(tmp_path))
    assert raw.image_shape == (3, 32, 32) and raw.x_train.shape == (9, 3 * 32 * 32) and len(raw.x_test) == 3
    assert set(raw.y_train) == {0} and "list_eval_partition.txt" in raw.origin
    first = raw.x_train[0].reshape(3, 32, 32)
    assert np.allclose(first, 40 / 255, atol=2 / 255)  # the dark frame is cropped away


def test_anime_faces_hold_out_every_tenth_image_and_skip_broken_files(tmp_path):
    write_anime(tmp_path / "anime")
    raw = load_raw("anime", str(tmp_path / "anime"))
    assert len(raw.x_train) == 9 and len(raw.x_test) == 1 and "1 unreadable file(s) skipped" in raw.origin


def test_a_folder_of_unreadable_images_is_one_line(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"anime needs at least 2 readable images \(0 of 3 files read\)"):
        load_raw("anime", str(tmp_path))


def test_one_domain_benchmarks_only_go_into_a_generative_sequence():
    with pytest.raises(ConfigError, match="celeba is one domain of faces; use it in a data.sequence"):
        validate_config({"data": {"benchmark": "celeba"}})
    with pytest.raises(ConfigError, match="data.sequence: celeba has one class; only model.arch vae or cgan"):
        validate_config({"data": {"sequence": ["celeba", "anime"]}})


def test_the_vae_learns_celeba_then_anime_faces_with_a_feature_classifier_over_both(tmp_path, monkeypatch):
    from anpyc_core.generative.trainer import GenerativeTrainer

    write_celeba(tmp_path / "celeba_root")
    write_anime(tmp_path / "anime_root")
    monkeypatch.setenv("ANPYC_CACHE", str(tmp_path / "cache"))
    cfg = validate_config(
        {
            "device": "cpu",
            "data": {"sequence": ["celeba", "anime"]},
            "model": {"arch": "vae"},
            "strategy": {"method": "anpyc", "beta": 10, "importance_batch": 4},
            "optim": {"optimizer": "adam", "lr": 0.001, "batch_size": 4, "epochs": 1},
            "generative": {"latent": 4, "eval_samples": 10, "feature_epochs": 1},
        }
    )
    monkeypatch.setenv("ANPYC_DATA_DIR", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "celeba").symlink_to(tmp_path / "celeba_root")
    (tmp_path / "env" / "anime").symlink_to(tmp_path / "anime_root")
    trainer = GenerativeTrainer(cfg)
    assert trainer.class_offset == {"celeba": 0, "anime": 1}  # the classifier tells the two domains apart
    assert trainer.features["classes"] == 2 and trainer.features["benchmark"] == "celeba+anime"
    records = list(trainer.run())
    assert [r.task for r in records] == [1, 2] and all(np.isfinite(records[-1].extra_rows["elbo"]))
