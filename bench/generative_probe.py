"""Probe a consolidation setting on a few one-class C-GAN tasks, and the share of Ω that is exactly 0.

    python bench/generative_probe.py omega                      # Ω zero shares of a trained generator
    python bench/generative_probe.py run ewc 1e7 [JSON]          # 3 tasks; JSON: more strategy fields,
                                                                 # plus "tasks" and "retrain" (epochs)

Fashion-MNIST (`apt-get install dataset-fashion-mnist`), 2,000 images per class, 10 epochs, Adam 2e-4.
Prints FID per learned task, generated-sample accuracy and the trunk in use after every task
(docs/method.md, "What we measured about the methods on a generator").
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from anpyc_core.config import validate_config
from anpyc_core.generative import importance as gi
from anpyc_core.runner import make_trainer


def config(method: str, lam: float, tasks: int, retrain: int, extra: dict):
    """The probe's run config."""
    strategy = {"method": method, **extra}
    if method not in ("sgd", "dgr", "joint"):
        strategy["lam"] = lam
    return validate_config(
        {
            "device": "cpu",
            "model": {"arch": "cgan"},
            "data": {"benchmark": "fashion-mnist", "classes_per_task": 1, "train_samples": 2000, "num_tasks": tasks},
            "strategy": strategy,
            "optim": {"optimizer": "adam", "lr": 0.0002, "epochs": 10, "batch_size": 64, "retrain_epochs": retrain},
            "generative": {"eval_samples": 500},
        }
    )


def probe_run(method: str, lam: float, extra: dict) -> None:
    """Train a few tasks and print what each boundary shows."""
    tasks, retrain = int(extra.pop("tasks", 3)), int(extra.pop("retrain", 1))
    start = time.time()
    trainer = make_trainer(config(method, lam, tasks, retrain, extra))
    for record in trainer.run():
        fid = [round(x, 1) for x in record.extra_rows["fid"]]
        in_use = record.counts["trunk_in_use"]
        print(f"{method} λ={lam:g} after task {record.task}: FID {fid} acc {record.acc_row} trunk in use {in_use}")
    print(f"{time.time() - start:.0f} s")


def probe_omega() -> None:
    """Share of exactly-zero Ω, and quantiles, for ANPyC, MAS and EWC on a generator trained on one class."""
    trainer = make_trainer(config("sgd", 0.0, 2, 1, {}))
    trainer.run_task(0)
    gen = trainer.model.eval()
    for p in gen.parameters():
        p.requires_grad_(True)
    measures = {
        "anpyc": gi.generator_importance(gen, 0, 1000, 100, 0),
        "mas": gi.generator_importance(gen, 0, 1000, 100, 0, "mas"),
        "ewc": gi.generator_fisher(gen, trainer.critic, 0, 200, 0),
    }
    for kind, omega in measures.items():
        values = torch.cat([o.flatten() for o in omega.values()]).numpy()
        quantiles = np.quantile(values, [0.5, 0.9, 0.99, 1.0])
        print(f"{kind}: Ω = 0 for {100 * (values == 0).mean():.2f} %; median, 90, 99 %, max: {quantiles}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["omega"]:
        probe_omega()
    else:
        probe_run(sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})
