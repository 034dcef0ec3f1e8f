"""The generative half's first layer (issue 13): models, the generator's importance, FID (SPEC §4.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from anpyc_core.generative.fid import frechet_distance
from anpyc_core.generative.importance import generator_importance, vae_importance
from anpyc_core.generative.models import ConditionalDiscriminator, ConditionalGenerator, MultiLatentVAE, elbo


def test_the_class_representation_layer_grows_one_row_per_task_and_old_rows_never_change():
    torch.manual_seed(0)
    gen, disc = ConditionalGenerator(noise_dim=8, embed_dim=4, hidden=(16,)), ConditionalDiscriminator(3, 4, (16,))
    seeds = torch.Generator().manual_seed(1)
    finished = []  # each row as its task ended
    for task in range(3):
        assert gen.add_task(seeds) == task and len(gen.heads) == task + 1
        start = gen.heads[task].detach().clone()
        trainable = [p for p in gen.parameters() if p.requires_grad]
        opt = torch.optim.SGD(trainable, lr=0.5, momentum=0.9)
        for _ in range(5):  # a few generator steps against the critic
            fake = gen(torch.randn(8, 8), task)
            loss = F.binary_cross_entropy_with_logits(disc(fake, task), torch.ones(8))
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert not torch.equal(gen.heads[task].detach(), start)  # the new row trains
        for old in range(task):
            assert torch.equal(gen.heads[old].detach(), finished[old])  # earlier rows never move
        finished.append(gen.heads[task].detach().clone())


@pytest.mark.parametrize("kind", ["anpyc", "mas"])
def test_generator_importance_is_nonnegative_and_zero_where_the_weight_is_zero(kind):
    torch.manual_seed(0)
    gen = ConditionalGenerator(noise_dim=8, embed_dim=4, hidden=(16,))
    gen.add_task()
    with torch.no_grad():
        for p in gen.trunk_parameters().values():
            p[torch.rand_like(p) < 0.3] = 0.0
    omega = generator_importance(gen, 0, samples=40, chunk=10, seed=3, kind=kind)
    again = generator_importance(gen, 0, samples=40, chunk=10, seed=3, kind=kind)
    for name, p in gen.trunk_parameters().items():
        assert (omega[name] >= 0).all() and torch.equal(omega[name], again[name]), name  # fixed noise
        if kind == "anpyc":
            assert (omega[name][p == 0] == 0).all(), name
    assert sum(float(o.sum()) for o in omega.values()) > 0


def test_vae_importance_covers_the_shared_encoder_and_decoder_and_the_elbo_is_a_bound():
    torch.manual_seed(0)
    vae = MultiLatentVAE(num_tasks=2, latent=4, features=32)
    x = torch.rand(20, 784)
    omega = vae_importance(vae, x, task=1, chunk=10)
    assert set(omega) == set(vae.trunk_parameters()) and all((o >= 0).all() for o in omega.values())
    assert not any(name.startswith("heads") for name in omega)  # per-task latent layers are heads
    value = elbo(vae, (x > 0.5).float(), 0, torch.Generator().manual_seed(0))
    assert torch.isfinite(value) and value < 0


def test_frechet_distance_is_zero_for_a_set_against_itself_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([2.0, 0, 0, 0, 0, 0])
    assert frechet_distance(a, shifted) == pytest.approx(4.0, rel=1e-6)  # same covariance: ‖Δμ‖²
    b = rng.normal(scale=2.0, size=(500, 6))
    assert frechet_distance(a, b) > 1.0
    with pytest.raises(ValueError, match="two N x D feature sets of one width"):
        frechet_distance(a, b[:, :3])
    assert np.isnan(frechet_distance(a[:1], b)) and np.isnan(frechet_distance(a, np.full_like(b, np.nan)))


def test_frechet_distance_equals_the_matrix_square_root_form_where_that_is_well_defined():
    from scipy import linalg

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 20)), rng.normal(size=(300, 20)) * 1.5 + 0.3
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    singular = rng.normal(size=(5, 20))  # fewer samples than dimensions: a singular covariance
    assert np.isfinite(frechet_distance(singular, b))
