"""Choose and run the trainer a config needs; the one place that knows both trainers (their callers import
this module, neither trainer does)."""

from __future__ import annotations

from anpyc_core.config import RunConfig
from anpyc_core.generative.trainer import GenerativeTrainer
from anpyc_core.run_state import Progress, RunResult
from anpyc_core.trainer import Trainer


def make_trainer(cfg: RunConfig, **kwargs):
    """The trainer a config needs: `Trainer` for classifiers, `GenerativeTrainer` for model.arch cgan or vae."""
    if cfg.generative_run:
        return GenerativeTrainer(cfg, **kwargs)
    kwargs.pop("features", None)
    return Trainer(cfg, **kwargs)


def run_config(cfg: RunConfig, progress: Progress | None = None, **kwargs) -> RunResult:
    """Run a whole sequence for `cfg` and return its result."""
    trainer = make_trainer(cfg, progress=progress, **kwargs)
    for _ in trainer.run():
        pass
    return trainer.result()
