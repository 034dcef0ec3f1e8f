"""The image size each CNN reads, and why an architecture cannot read some data: shape logic only, no
torch, so validating a config (every CLI verb does) never imports PyTorch."""

from __future__ import annotations

#: The input (channels, height, width) each architecture is built for (ResNet-18: the smallest it takes).
ARCH_INPUT = {"vgg9": (3, 32, 32), "lenet": (1, 28, 28), "resnet18": (3, 32, 32)}


def arch_input(arch: str, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The image size `arch` reads data of `image_shape` at (ResNet-18 takes larger images as they are)."""
    c, h, w = ARCH_INPUT[arch]
    if arch == "resnet18":
        return c, max(h, image_shape[1]), max(w, image_shape[2])
    return c, h, w


def input_refusal(arch: str, image_shape: tuple[int, int, int]) -> str | None:
    """Why `arch` cannot read images of `image_shape` (C, H, W), or None when it can."""
    c, h, w = arch_input(arch, image_shape)
    ic, ih, iw = image_shape
    if ic > c:
        return f"model.arch: {arch} reads {c}-channel images; this data has {ic} channels"
    if ih > h or iw > w:
        return f"model.arch: {arch} reads images up to {h}x{w}; this data is {ih}x{iw} (resnet18 takes any size)"
    return None
