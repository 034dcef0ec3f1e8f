"""The CNNs of SPEC §3: VGG-9, LeNet and ResNet-18 trunks with one head per task.

Inputs arrive as flat pixel rows (permutations act on them); `InputAdapter` reshapes them to
images, repeats grey images to three channels where the architecture reads colour, and zero-pads
smaller images to the architecture's input size. Batch norm keeps running statistics per task
(`TaskBatchNorm2d`, `bn_stats: per_task`) or shared (plain `BatchNorm2d`); its affine parameters
are trunk parameters like any other. XdG gates whole channels after each ReLU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from anpyc_core.arch_shapes import ARCH_INPUT, arch_input, input_refusal  # noqa: F401 - re-exported

VGG9_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, "M"]


class InputAdapter(nn.Module):
    """Flat rows (N, C·H·W) → images (N, C', H', W'): grey repeated to colour, zero-padded to size."""

    def __init__(self, image_shape: tuple[int, int, int], target: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape, self.target = tuple(image_shape), tuple(target)
        c, h, w = image_shape
        top, left = (target[1] - h) // 2, (target[2] - w) // 2
        self.padding = (left, target[2] - w - left, top, target[1] - h - top)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """The images an architecture reads."""
        x = rows.view(rows.shape[0], *self.image_shape)
        if x.shape[1] != self.target[0]:
            x = x.expand(-1, self.target[0], -1, -1)
        if any(self.padding):
            x = F.pad(x, self.padding)
        return x


class TaskBatchNorm2d(nn.Module):
    """BatchNorm2d with one set of running statistics per task and shared affine parameters.

    `task` selects the statistics: training updates only that task's, evaluation reads them."""

    def __init__(self, channels: int, num_tasks: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(num_tasks, channels))
        self.register_buffer("running_var", torch.ones(num_tasks, channels))
        self.momentum, self.eps, self.task = momentum, eps, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch statistics in training (updating this task's running ones), the task's in evaluation."""
        mean, var = self.running_mean[self.task], self.running_var[self.task]  # views: updated in place
        return F.batch_norm(x, mean, var, self.weight, self.bias, self.training, self.momentum, self.eps)


def batch_norm(channels: int, num_tasks: int, bn_stats: str) -> nn.Module:
    """Per-task or shared batch norm (SPEC §3 `bn_stats`)."""
    return TaskBatchNorm2d(channels, num_tasks) if bn_stats == "per_task" else nn.BatchNorm2d(channels)


def vgg9_trunk(num_tasks: int, bn_stats: str) -> tuple[list[nn.Module], int]:
    """VGG-9: nine 3×3 convs (64…512, four max-pools), one batch norm after the first, global pool."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG9_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers.append(nn.Conv2d(channels, item, 3, padding=1))
        if channels == 3:
            layers.append(batch_norm(item, num_tasks, bn_stats))
        layers.append(nn.ReLU())
        channels = item
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return layers, channels


def lenet_trunk() -> tuple[list[nn.Module], int]:
    """LeNet of Table IV: two 5×5 convs (32, 64) with max-pools, FC 3136→512→256."""
    layers = [
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3136, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
    ]
    return layers, 256


def resnet18_trunk(num_tasks: int, bn_stats: str) -> nn.Module:
    """torchvision's ResNet-18 without its classifier (512 features), batch norms per `bn_stats`."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.fc = nn.Identity()
    if bn_stats == "per_task":
        _per_task_batch_norm(net, num_tasks)
    return net


def _per_task_batch_norm(module: nn.Module, num_tasks: int) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, TaskBatchNorm2d(child.num_features, num_tasks, child.momentum, child.eps))
        else:
            _per_task_batch_norm(child, num_tasks)


@torch.no_grad()
def torchvision_init(model: nn.Module) -> None:
    """Initialise as torchvision's models do: He/Kaiming normal (fan out, ReLU gain) for convolutions, N(0, 0.01)
    for linear layers, biases 0, batch norm weight 1 and bias 0 (its VGG's rule). ResNet-18's trunk is built by
    torchvision and keeps torchvision's own init; its heads keep PyTorch's, as torchvision's `fc` does."""
    resnet = getattr(model, "arch", None) == "resnet18"
    for name, layer in model.named_modules():
        if resnet and name.startswith(("trunk", "heads")):
            continue
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d | TaskBatchNorm2d) and getattr(layer, "weight", None) is not None:
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class MultiHeadCNN(nn.Module):
    """A CNN trunk shared by all tasks and one head per task (the same interface as `MultiHeadMLP`)."""

    def __init__(
        self,
        arch: str,
        image_shape: tuple[int, int, int],
        head_sizes: list[int],
        dropout: float = 0.0,
        single_head: bool = False,
        bn_stats: str = "per_task",
    ) -> None:
        super().__init__()
        num_tasks = len(head_sizes)
        self.arch = arch
        self.adapter = InputAdapter(image_shape, arch_input(arch, image_shape))
        if arch == "resnet18":
            self.trunk = nn.ModuleList([resnet18_trunk(num_tasks, bn_stats)])
            features = 512
        else:
            layers, features = vgg9_trunk(num_tasks, bn_stats) if arch == "vgg9" else lenet_trunk()
            self.trunk = nn.ModuleList(layers)
        sizes = [max(head_sizes)] if single_head else head_sizes
        self.heads = nn.ModuleList(self._head(arch, features, c) for c in sizes)
        self.dropout = dropout
        self.single_head = single_head
        self.gated = False
        self.hat_embeddings = None
        self.task_norms = [m for m in self.modules() if isinstance(m, TaskBatchNorm2d)]

    @staticmethod
    def _head(arch: str, features: int, classes: int) -> nn.Module:
        if arch == "resnet18":  # Appendix A: FC-2048, ReLU, dropout 0.5, classifier
            return nn.Sequential(nn.Linear(features, 2048), nn.ReLU(), nn.Dropout(0.5), nn.Linear(2048, classes))
        return nn.Linear(features, classes)

    def unit_widths(self) -> list[int]:
        """Channels (or units) of every trunk layer followed by a ReLU: what XdG gates."""
        widths, last = [], 0
        for layer in self.trunk:
            if isinstance(layer, nn.Conv2d | nn.Linear):
                last = layer.weight.shape[0]
            elif isinstance(layer, nn.ReLU):
                widths.append(last)
        return widths

    def set_gates(self, gates: list[torch.Tensor]) -> None:
        """Install per-task XdG gates: one (num_tasks, channels) 0/1 tensor per ReLU of the trunk."""
        for i, g in enumerate(gates):
            self.register_buffer(f"gate_{i}", g)
        self.gated = True

    def trunk_parameters(self) -> dict[str, nn.Parameter]:
        """The shared parameters θ (conv, linear and batch-norm affine) by name."""
        return {f"trunk.{n}": p for n, p in self.trunk.named_parameters()}

    def head_index(self, task: int) -> int:
        """Which head serves `task` (always 0 for the single-head model)."""
        return 0 if self.single_head else task

    def features(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Trunk output for inputs of `task` (its batch-norm statistics and XdG gates)."""
        for norm in self.task_norms:
            norm.task = task
        x = self.adapter(x)
        relu = 0
        for layer in self.trunk:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                if self.gated:
                    gate = getattr(self, f"gate_{relu}")[task]
                    x = x * (gate.view(1, -1, 1, 1) if x.dim() == 4 else gate)
                if self.dropout and self.training and x.dim() == 2:
                    x = F.dropout(x, self.dropout, training=True)
                relu += 1
        return x

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Logits of `task`'s head."""
        return self.heads[self.head_index(task)](self.features(x, task))
