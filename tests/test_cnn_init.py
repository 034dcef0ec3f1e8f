"""CNNs that train from scratch (issue 28, item 1): torchvision-style initialisation is the CNN default, and
VGG-9 with the default optimiser learns a task where PyTorch's plain init stays at chance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from anpyc_core.config import validate_config
from anpyc_core.data import build_tasks, load_raw
from anpyc_core.data.sources import RawDataset
from anpyc_core.models import build_model
from anpyc_core.trainer import Trainer


def digits_32x32() -> RawDataset:
    """scikit-learn's digits scaled 4x (nearest) to 32x32 colour images: tiny data with a CNN's input size."""
    d = load_raw("digits")

    def up(x: np.ndarray) -> np.ndarray:
        img = x.reshape(-1, 8, 8).repeat(4, axis=1).repeat(4, axis=2)
        return np.repeat(img[:, None], 3, axis=1).reshape(len(x), -1).astype(np.float32)

    x_train, x_test = up(d.x_train), up(d.x_test)
    return RawDataset("cifar10", x_train, d.y_train, x_test, d.y_test, "digits scaled to 32x32", (3, 32, 32))


def config(init: str | None = None, arch: str = "vgg9", epochs: int = 3):
    model = {"arch": arch} if init is None else {"arch": arch, "init": init}
    return validate_config(
        {
            "seed": 0,
            "device": "cpu",
            "data": {"benchmark": "cifar10", "num_tasks": 2, "train_samples": 120, "test_samples": 60},
            "model": model,
            "strategy": {"method": "finetune"},
            "optim": {"lr": 0.05, "batch_size": 16, "epochs": epochs},
        }
    )


def test_the_cnn_default_is_torchvision_style_and_the_mlp_keeps_pytorchs():
    assert config().model.init == "torchvision" and config(arch="resnet18").model.init == "torchvision"
    assert validate_config({"device": "cpu"}).model.init == "default"
    assert config("default").model.init == "default"  # a config saved before `auto` keeps its meaning


def test_torchvision_init_keeps_the_input_signal_through_vgg9():
    """VGG-9 has one batch norm (after its first conv): under PyTorch's plain init (weights of variance
    1/(3 fan_in), biases up to 1/sqrt(fan_in)) each later conv shrinks the input-dependent part of the signal
    while the biases stay, so the features barely depend on the image; Kaiming's ReLU gain keeps it. Measured
    on uniform random images: the features' spread across images is 1.2e-5 against 4.2e-3 (350x)."""
    x = torch.rand(64, 3 * 32 * 32)
    spread = {}
    for init in ("default", "torchvision"):
        torch.manual_seed(0)
        model = build_model(config(init), (3, 32, 32), [2, 2]).eval()
        with torch.no_grad():
            spread[init] = float(model.features(x, 0).std(dim=0).mean())
    assert spread["torchvision"] > 100 * spread["default"], spread


@pytest.mark.slow
def test_vgg9_learns_a_task_with_the_default_optimiser_where_pytorchs_init_stays_at_chance():
    """Task 1 (digits 0 and 1, 108 training images, 12 epochs of SGD): judged on its 60 test images, not the
    12 validation ones (one image there is 8.3 points, and the kernels of another CPU move a few images).
    Plain init: the loss never leaves ln 2 (constant outputs: 50 % on the balanced test set; seeds 0-2 all
    0.693 at 12 epochs). Kaiming: 6 epochs were too few to be safe from the kernels' summation order (90 %
    on an AMD AVX-512 machine, 50 % on an Intel one with the same seed; seeds 0-3 there: 50, 100, 97, 53 %);
    at 12 epochs seeds 0-4 all reach 100 % on that Intel machine (training loss 0.001-0.25), so the run
    leaves chance with room to spare rather than by a few steps. The bar is 75 %, which a model at chance
    reaches on 60 images with probability 0.0001 (binomial), so the test fails only when VGG-9 does not learn."""
    raw = {"cifar10": digits_32x32()}
    accuracy, loss = {}, {}
    for init in ("default", "torchvision"):
        cfg = config(init, epochs=12)
        record = Trainer(cfg, tasks=build_tasks(cfg.data, raw, cfg.seed)).run_task(0)
        accuracy[init], loss[init] = record.acc_row[0], record.loss
    assert abs(loss["default"] - math.log(2)) < 0.01 and accuracy["default"] <= 60, (loss, accuracy)
    assert accuracy["torchvision"] >= 75 and loss["torchvision"] < math.log(2) - 0.1, (loss, accuracy)
