"""The generative models of the paper's §IV-C (SPEC §4.5): a conditional GAN and a VAE for 28×28 images.

Both follow the classifiers' split into a shared trunk (consolidated and pruned) and per-task parts
(the "heads"): the C-GAN's class-representation layer grows one embedding row per task and earlier
rows never change; the VAE has one latent layer (μ, log σ²) per task. The discriminator is the C-GAN's
critic only: it is never consolidated or pruned.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

IMAGE = (1, 28, 28)
PIXELS = 28 * 28


def _rows(table: torch.Tensor | nn.ParameterList, task: int | torch.Tensor, count: int) -> torch.Tensor:
    """Embedding rows for `count` samples of one task (int) or of per-sample task ids (tensor)."""
    if isinstance(task, int):
        return table[task].expand(count, -1)
    return torch.stack(list(table))[task]


class ConditionalGenerator(nn.Module):
    """MLP generator G(z, t): noise and task t's embedding row → pixels in [0, 1]."""

    def __init__(
        self, noise_dim: int = 100, embed_dim: int = 32, hidden: tuple[int, ...] = (256, 512), pixels: int = PIXELS
    ) -> None:
        super().__init__()
        self.noise_dim, self.embed_dim = noise_dim, embed_dim
        widths = [noise_dim + embed_dim, *hidden]
        self.trunk = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.trunk.append(nn.Linear(widths[-1], pixels))
        self.heads = nn.ParameterList()  # the class-representation layer: one row per task

    def add_task(self, generator: torch.Generator | None = None) -> int:
        """Append a new embedding row (earlier rows are frozen); returns the new task's index."""
        for row in self.heads:
            row.requires_grad_(False)
        device = self.trunk[0].weight.device
        row = torch.randn(self.embed_dim, generator=generator).to(device)
        self.heads.append(nn.Parameter(row))
        return len(self.heads) - 1

    def trunk_parameters(self) -> dict[str, nn.Parameter]:
        """The generator's shared parameters θ_G: what Ω, θ* and pruning cover."""
        return {f"trunk.{n}": p for n, p in self.trunk.named_parameters()}

    def forward(self, z: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """Generated images of `task` (or of per-sample task ids) as rows of pixel probabilities."""
        h = torch.cat([z, _rows(self.heads, task, len(z))], dim=1)
        for layer in self.trunk[:-1]:
            h = F.relu(layer(h))
        return torch.sigmoid(self.trunk[-1](h))


class ConditionalDiscriminator(nn.Module):
    """MLP critic D(x, t): pixels and a task embedding → the logit of "real"."""

    def __init__(
        self, num_tasks: int, embed_dim: int = 32, hidden: tuple[int, ...] = (512, 256), pixels: int = PIXELS
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_tasks, embed_dim)
        widths = [pixels + embed_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.out = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """Logits (N,) that each image is a real image of its task."""
        tasks = torch.full((len(x),), task, device=x.device) if isinstance(task, int) else task
        h = torch.cat([x, self.embedding(tasks)], dim=1)
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
        return self.out(h).squeeze(1)


class MultiLatentVAE(nn.Module):
    """Conv-Conv-FC encoder, FC-Deconv-Deconv decoder (shared trunk), one latent layer per task (heads).

    Task t's latent layer is the pair (features → μ, log σ²) and (z → the decoder's first feature map), so
    sampling z ~ N(0, I) through task t's pair draws images of task t. H and W must be multiples of 4."""

    def __init__(
        self, num_tasks: int, latent: int = 16, features: int = 256, image: tuple[int, int, int] = IMAGE
    ) -> None:
        super().__init__()
        self.latent, self.image = latent, tuple(image)
        c, h, w = image
        self.grid = (64, h // 4, w // 4)
        flat = 64 * (h // 4) * (w // 4)
        self.encoder = nn.ModuleList([nn.Conv2d(c, 32, 4, 2, 1), nn.Conv2d(32, 64, 4, 2, 1), nn.Linear(flat, features)])
        self.decoder = nn.ModuleList([nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ConvTranspose2d(32, c, 4, 2, 1)])
        self.heads = nn.ModuleList(nn.Linear(features, 2 * latent) for _ in range(num_tasks))
        self.decoder_heads = nn.ModuleList(nn.Linear(latent, flat) for _ in range(num_tasks))

    def trunk_parameters(self) -> dict[str, nn.Parameter]:
        """Every shared encoder and decoder parameter (the per-task latent layers are heads)."""
        named = {f"encoder.{n}": p for n, p in self.encoder.named_parameters()}
        named.update({f"decoder.{n}": p for n, p in self.decoder.named_parameters()})
        return named

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """Task `task`'s latent layer (both sides)."""
        return [*self.heads[task].parameters(), *self.decoder_heads[task].parameters()]

    def encode(self, x: torch.Tensor, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z | x) through task's latent layer."""
        h = x.view(len(x), *self.image)
        h = F.relu(self.encoder[1](F.relu(self.encoder[0](h))))
        h = F.relu(self.encoder[2](h.flatten(1)))
        mu, logvar = self.heads[task](h).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor, task: int) -> torch.Tensor:
        """Pixel probabilities (rows) of latent codes, through task's latent layer."""
        h = F.relu(self.decoder_heads[task](z)).view(len(z), *self.grid)
        h = F.relu(self.decoder[0](h))
        return torch.sigmoid(self.decoder[1](h)).flatten(1)

    def forward(self, x: torch.Tensor, task: int, generator: torch.Generator | None = None):
        """(reconstruction, μ, log σ²) with one reparameterised sample."""
        mu, logvar = self.encode(x, task)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        return self.decode(mu + eps * torch.exp(0.5 * logvar), task), mu, logvar

    def sample(self, count: int, task: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`count` images of `task` from the prior N(0, I)."""
        device = self.encoder[0].weight.device
        z = torch.randn(count, self.latent, generator=generator).to(device)
        return self.decode(z, task)


def elbo(model: MultiLatentVAE, x: torch.Tensor, task: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean evidence lower bound per image (nats): Bernoulli log-likelihood minus KL to N(0, I)."""
    return elbo_per_image(model, x, task, generator).mean()


def elbo_per_image(
    model: MultiLatentVAE, x: torch.Tensor, task: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The evidence lower bound of each image (nats), one reparameterised sample."""
    recon, mu, logvar = model(x, task, generator)
    log_lik = -F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), x, reduction="none").sum(dim=1)
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)
    return log_lik - kl


def pixel_entropy(images: torch.Tensor) -> torch.Tensor:
    """Σ over images and pixels of the Bernoulli entropy −x log x − (1−x) log(1−x) (SPEC §4.5's H_b)."""
    x = images.clamp(1e-7, 1 - 1e-7)
    return -(x * x.log() + (1 - x) * (1 - x).log()).sum()


class ConvGenerator(ConditionalGenerator):
    """DCGAN-style generator G(z, t) for 32×32 images: FC to 256×4×4, three stride-2 deconvolutions, sigmoid.

    Same interface as the MLP generator (`trunk`, the class rows in `heads`, `add_task`, `trunk_parameters`)."""

    def __init__(self, noise_dim: int = 100, embed_dim: int = 32, image: tuple[int, int, int] = (3, 32, 32)) -> None:
        nn.Module.__init__(self)
        self.noise_dim, self.embed_dim, self.image = noise_dim, embed_dim, tuple(image)
        side = image[1] // 8
        self.grid = (256, side, side)
        self.trunk = nn.ModuleList(
            [
                nn.Linear(noise_dim + embed_dim, 256 * side * side),
                nn.ConvTranspose2d(256, 128, 4, 2, 1),
                nn.ConvTranspose2d(128, 64, 4, 2, 1),
                nn.ConvTranspose2d(64, image[0], 4, 2, 1),
            ]
        )
        self.heads = nn.ParameterList()

    def forward(self, z: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """Generated images of `task` (or of per-sample task ids) as rows of pixel probabilities."""
        h = F.relu(self.trunk[0](torch.cat([z, _rows(self.heads, task, len(z))], dim=1)))
        h = h.view(len(z), *self.grid)
        h = F.relu(self.trunk[2](F.relu(self.trunk[1](h))))
        return torch.sigmoid(self.trunk[3](h)).flatten(1)


class ConvDiscriminator(nn.Module):
    """DCGAN-style critic D(x, t) for 32×32 images: three stride-2 convolutions, then the task embedding."""

    def __init__(self, num_tasks: int, embed_dim: int = 32, image: tuple[int, int, int] = (3, 32, 32)) -> None:
        super().__init__()
        self.image = tuple(image)
        self.embedding = nn.Embedding(num_tasks, embed_dim)
        self.convs = nn.ModuleList(
            [nn.Conv2d(image[0], 64, 4, 2, 1), nn.Conv2d(64, 128, 4, 2, 1), nn.Conv2d(128, 256, 4, 2, 1)]
        )
        side = image[1] // 8
        self.out = nn.Linear(256 * side * side + embed_dim, 1)

    def forward(self, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        """Logits (N,) that each image is a real image of its task."""
        tasks = torch.full((len(x),), task, device=x.device) if isinstance(task, int) else task
        h = x.view(len(x), *self.image)
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        return self.out(torch.cat([h.flatten(1), self.embedding(tasks)], dim=1)).squeeze(1)
