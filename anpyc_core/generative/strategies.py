"""Strategies of the generative runs (SPEC §4.5): the regularised one with a generator's Ω, and the plain one.

The regularised strategy is `Regularised` itself (penalty, pruning rounds, free sets, accumulation); only
`measure` changes, to the generator's label-free importance. The critic of a C-GAN is a submodule of the
strategy, so one `state_dict` checkpoints generator, critic and every continual-learning tensor, but it
is never in Ω, θ* or a free set.
"""

from __future__ import annotations

import torch
from torch import nn

from anpyc_core import importance as imp
from anpyc_core.config import RunConfig
from anpyc_core.data.tasks import Task
from anpyc_core.generative import importance as gi
from anpyc_core.generative.models import ConditionalGenerator
from anpyc_core.strategies.base import Strategy
from anpyc_core.strategies.regularised import Regularised, _derive

DEFAULT_IMPORTANCE_SAMPLES = 1000
FISHER_SAMPLES = 200  # EWC's per-image Fisher passes (one backward each)


def generative_counts(strategy: Strategy, tasks_seen: int) -> dict[str, int]:
    """Model parameters serving `tasks_seen` tasks (trunk and their per-task layers), stored state, trunk in use."""
    model = strategy.model
    seen = max(1, tasks_seen)
    trunk = sum(p.numel() for p in model.trunk_parameters().values())
    if isinstance(model, ConditionalGenerator):
        per_task = sum(row.numel() for row in list(model.heads)[:seen])
    else:
        per_task = sum(p.numel() for t in range(min(seen, len(model.heads))) for p in model.task_parameters(t))
    critic = set(map(id, strategy.critic.buffers())) if strategy.critic is not None else set()
    state = sum(b.numel() for b in strategy.buffers() if id(b) not in critic)
    return {"model_params": trunk + per_task, "state_values": state, "trunk_in_use": trunk - strategy.free_count()}


class WithCritic:
    """Mixin of the generative strategies: holds the C-GAN's critic (None for a VAE) and counts a generator."""

    def __init__(self, cfg: RunConfig, model: nn.Module, num_tasks: int, critic: nn.Module | None) -> None:
        super().__init__(cfg, model, num_tasks)
        self.critic = critic

    def parameter_counts(self, tasks_seen: int) -> dict[str, int]:
        """See `generative_counts`."""
        return generative_counts(self, tasks_seen)


class GenerativePlain(WithCritic, Strategy):
    """sgd, dgr and joint on a generator: no importance, no penalty, no pruning."""


class GenerativeRegularised(WithCritic, Regularised):
    """ANPyC, EWC and MAS on a generator: `Regularised` with the generator's importance (SPEC §4.5)."""

    def measure(self, task: int, data: Task, round_index: int) -> dict[str, torch.Tensor]:
        """Ω^t of the generator's trunk on its current weights (eval mode; fixed noise from the seed)."""
        s, g = self.s, self.cfg.generative
        samples = s.importance_samples or DEFAULT_IMPORTANCE_SAMPLES
        kind, chunk, seed = s.importance, s.importance_batch, self.cfg.seed
        if kind == "magnitude":
            return imp.magnitude_importance(self.params)
        if kind == "random":
            return imp.random_importance(self.params, torch.Generator().manual_seed(_derive(seed, task, round_index)))
        was_training = self.model.training
        self.model.eval()
        try:
            if isinstance(self.model, ConditionalGenerator):
                if kind == "ewc":
                    return gi.generator_fisher(self.model, self.critic, task, min(samples, FISHER_SAMPLES), seed)
                if kind == "anpyc" and g.gen_importance == "disc_entropy":
                    objectives = gi.disc_entropy_objectives(self.model, self.critic, task, samples, chunk, seed)
                    return gi.chunk_importance(self.params, objectives)
                return gi.generator_importance(self.model, task, samples, chunk, seed, kind)
            inputs = data.train.inputs()[:samples]
            if kind == "ewc":
                return gi.vae_fisher(self.model, inputs[:FISHER_SAMPLES], task, seed)
            if kind == "mas":
                return gi.chunk_importance(self.params, gi.vae_mas_objectives(self.model, inputs, task, chunk), "mas")
            return gi.vae_importance(self.model, inputs, task, chunk)
        finally:
            self.model.train(was_training)


def build_generative_strategy(cfg: RunConfig, model: nn.Module, num_tasks: int, critic: nn.Module | None) -> Strategy:
    """The strategy of a generative run's method."""
    if cfg.strategy.regularised:
        return GenerativeRegularised(cfg, model, num_tasks, critic)
    return GenerativePlain(cfg, model, num_tasks, critic)
