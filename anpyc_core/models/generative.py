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


class ConditionalGenerator(nn.Module):
    """MLP generator G(z, t): noise and task t's embedding row → pixels in [0, 1]."""

    def __init__(self, noise_dim: int = 100, embed_dim: int = 32, hidden: tuple[int, ...] = (256, 512)) -> None:
        super().__init__()
        self.noise_dim, self.embed_dim = noise_dim, embed_dim
        widths = [noise_dim + embed_dim, *hidden]
        self.trunk = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.trunk.append(nn.Linear(widths[-1], PIXELS))
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

    def forward(self, z: torch.Tensor, task: int) -> torch.Tensor:
        """Generated images of `task` as rows of pixel probabilities."""
        h = torch.cat([z, self.heads[task].expand(len(z), -1)], dim=1)
        for layer in self.trunk[:-1]:
            h = F.relu(layer(h))
        return torch.sigmoid(self.trunk[-1](h))


class ConditionalDiscriminator(nn.Module):
    """MLP critic D(x, t): pixels and a task embedding → the logit of "real"."""

    def __init__(self, num_tasks: int, embed_dim: int = 32, hidden: tuple[int, ...] = (512, 256)) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_tasks, embed_dim)
        widths = [PIXELS + embed_dim, *hidden]
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
    """Conv-Conv-FC encoder, FC-Deconv-Deconv decoder (shared trunk), one latent layer per task (heads)."""

    def __init__(self, num_tasks: int, latent: int = 16, features: int = 256) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = nn.ModuleList(
            [nn.Conv2d(1, 32, 4, 2, 1), nn.Conv2d(32, 64, 4, 2, 1), nn.Linear(64 * 7 * 7, features)]
        )
        self.decoder = nn.ModuleList(
            [nn.Linear(latent, 64 * 7 * 7), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ConvTranspose2d(32, 1, 4, 2, 1)]
        )
        self.heads = nn.ModuleList(nn.Linear(features, 2 * latent) for _ in range(num_tasks))

    def trunk_parameters(self) -> dict[str, nn.Parameter]:
        """Every shared encoder and decoder parameter (the per-task latent layers are heads)."""
        named = {f"encoder.{n}": p for n, p in self.encoder.named_parameters()}
        named.update({f"decoder.{n}": p for n, p in self.decoder.named_parameters()})
        return named

    def encode(self, x: torch.Tensor, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z | x) through task's latent layer."""
        h = x.view(len(x), *IMAGE)
        h = F.relu(self.encoder[1](F.relu(self.encoder[0](h))))
        h = F.relu(self.encoder[2](h.flatten(1)))
        mu, logvar = self.heads[task](h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities (rows) of latent codes."""
        h = F.relu(self.decoder[0](z)).view(len(z), 64, 7, 7)
        h = F.relu(self.decoder[1](h))
        return torch.sigmoid(self.decoder[2](h)).flatten(1)

    def forward(self, x: torch.Tensor, task: int, generator: torch.Generator | None = None):
        """(reconstruction, μ, log σ²) with one reparameterised sample."""
        mu, logvar = self.encode(x, task)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        return self.decode(mu + eps * torch.exp(0.5 * logvar)), mu, logvar


def elbo(model: MultiLatentVAE, x: torch.Tensor, task: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean evidence lower bound per image (nats): Bernoulli log-likelihood minus KL to N(0, I)."""
    recon, mu, logvar = model(x, task, generator)
    log_lik = -F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), x, reduction="none").sum(dim=1)
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)
    return (log_lik - kl).mean()


def pixel_entropy(images: torch.Tensor) -> torch.Tensor:
    """Σ over images and pixels of the Bernoulli entropy −x log x − (1−x) log(1−x) (SPEC §4.5's H_b)."""
    x = images.clamp(1e-7, 1 - 1e-7)
    return -(x * x.log() + (1 - x) * (1 - x).log()).sum()
