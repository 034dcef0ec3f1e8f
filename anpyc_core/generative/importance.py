"""Importance of a generator's parameters (SPEC §4.5): the label-free ANPyC measure with H the pixel entropy.

The measure is §4.1's unchanged in form: for chunks b, g_b = ∂H_b/∂θ and ω_b = max(g_b·θ + ½θ²g_b², 0),
averaged over chunks; only H changes. For a C-GAN, H_b is the Bernoulli entropy of the pixels of a chunk of
generated images of task t, from noise drawn from (seed, t); for a VAE, of the reconstructions of a chunk
of task t's training inputs (through the latent means, so the pass is deterministic). MAS on a generator
uses the squared norm of the outputs instead, and |g_b|.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from anpyc_core.generative.models import ConditionalGenerator, MultiLatentVAE, pixel_entropy

Importances = dict[str, torch.Tensor]


def chunk_importance(
    params: dict[str, torch.Tensor], objectives: Iterable[torch.Tensor], kind: str = "anpyc"
) -> Importances:
    """mean_b ω_b over the chunk objectives H_b (each differentiable in `params`); `kind` anpyc or mas."""
    names, tensors = list(params), list(params.values())
    totals = [torch.zeros_like(p) for p in tensors]
    count = 0
    for objective in objectives:
        grads = torch.autograd.grad(objective, tensors, allow_unused=True)
        with torch.no_grad():
            for total, g, p in zip(totals, grads, tensors, strict=True):
                if g is None:
                    continue
                total.add_(g.abs() if kind == "mas" else (g * p + 0.5 * p.square() * g.square()).clamp_(min=0))
        count += 1
    return {n: t / max(count, 1) for n, t in zip(names, totals, strict=True)}


def generator_objectives(
    generator: ConditionalGenerator, task: int, samples: int, chunk: int, seed: int, kind: str = "anpyc"
) -> Iterable[torch.Tensor]:
    """H_b (anpyc) or mean ‖G(z)‖² (mas) of chunks of `task`'s generated images, noise fixed by (seed, task)."""
    device = generator.trunk[0].weight.device
    noise = torch.Generator().manual_seed(seed * 10_007 + task)
    for start in range(0, samples, chunk):
        z = torch.randn(min(chunk, samples - start), generator.noise_dim, generator=noise).to(device)
        images = generator(z, task)
        yield pixel_entropy(images) if kind == "anpyc" else images.square().sum(dim=1).mean()


def vae_objectives(model: MultiLatentVAE, inputs: torch.Tensor, task: int, chunk: int) -> Iterable[torch.Tensor]:
    """H_b of the reconstructions (through μ) of chunks of `task`'s inputs."""
    for start in range(0, len(inputs), chunk):
        mu, _ = model.encode(inputs[start : start + chunk], task)
        yield pixel_entropy(model.decode(mu, task))


def generator_importance(
    generator: ConditionalGenerator, task: int, samples: int, chunk: int, seed: int, kind: str = "anpyc"
) -> Importances:
    """Ω of the generator's trunk for `task` (SPEC §4.5)."""
    objectives = generator_objectives(generator, task, samples, chunk, seed, kind)
    return chunk_importance(generator.trunk_parameters(), objectives, kind)


def vae_importance(model: MultiLatentVAE, inputs: torch.Tensor, task: int, chunk: int) -> Importances:
    """Ω of the VAE's shared encoder and decoder for `task` (SPEC §4.5)."""
    return chunk_importance(model.trunk_parameters(), vae_objectives(model, inputs, task, chunk))


def disc_entropy_objectives(
    generator: ConditionalGenerator, critic, task: int, samples: int, chunk: int, seed: int
) -> Iterable[torch.Tensor]:
    """H_b = Σ binary entropy of the critic's "real" probability on chunks of generated images (`disc_entropy`)."""
    device = generator.trunk[0].weight.device
    noise = torch.Generator().manual_seed(seed * 10_007 + task)
    for start in range(0, samples, chunk):
        z = torch.randn(min(chunk, samples - start), generator.noise_dim, generator=noise).to(device)
        yield pixel_entropy(torch.sigmoid(critic(generator(z, task), task)))


def generator_fisher(generator: ConditionalGenerator, critic, task: int, samples: int, seed: int) -> Importances:
    """EWC on a generator: diagonal Fisher of log D("real" | G(z)) w.r.t. θ_G, one generated image at a time."""
    params = generator.trunk_parameters()
    device = generator.trunk[0].weight.device
    noise = torch.Generator().manual_seed(seed * 10_007 + task)
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    for _ in range(samples):
        z = torch.randn(1, generator.noise_dim, generator=noise).to(device)
        log_real = torch.nn.functional.logsigmoid(critic(generator(z, task), task)).sum()
        grads = torch.autograd.grad(log_real, list(params.values()))
        for total, g in zip(totals.values(), grads, strict=True):
            total.add_(g.square())
    return {n: t / max(samples, 1) for n, t in totals.items()}


def vae_fisher(model: MultiLatentVAE, inputs: torch.Tensor, task: int, seed: int) -> Importances:
    """EWC on a VAE: diagonal Fisher of each training image's ELBO w.r.t. the shared encoder and decoder."""
    from anpyc_core.generative.models import elbo

    params = model.trunk_parameters()
    noise = torch.Generator(device=inputs.device).manual_seed(seed * 10_007 + task)
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    for row in range(len(inputs)):
        grads = torch.autograd.grad(elbo(model, inputs[row : row + 1], task, noise), list(params.values()))
        for total, g in zip(totals.values(), grads, strict=True):
            total.add_(g.square())
    return {n: t / max(len(inputs), 1) for n, t in totals.items()}


def vae_mas_objectives(model: MultiLatentVAE, inputs: torch.Tensor, task: int, chunk: int) -> Iterable[torch.Tensor]:
    """MAS on a VAE: mean ‖reconstruction‖² of chunks of `task`'s inputs (through μ)."""
    for start in range(0, len(inputs), chunk):
        mu, _ = model.encode(inputs[start : start + chunk], task)
        yield model.decode(mu, task).square().sum(dim=1).mean()
