"""Why VGG-9's first pruning round wipes task 1 (issue 28; docs/RESULTS.md, Fig. 3 on VGG-9).

Trains task 1 of `studies/fig3_vgg9_split.yaml`'s anpyc trial at the reduced scale of
`bench/vgg9_prune_probe.py` without pruning, measures the ANPyC importance Ω as the first round does,
then zeroes 10 % of the weights (no retraining) chosen three ways (lowest Ω, ties by position as the
`rank` rule does; lowest Ω, ties at random; smallest |θ|) in every tensor, in the weight tensors only,
in the biases and batch norm only, and in one tensor at a time; prints validation ACC after each, the
share of the val set predicted as class 1, and the share of Ω = 0 per tensor (what the {Ω = 0} rule frees).

    python bench/vgg9_prune_anatomy.py [--seed 0]   # about 3 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from anpyc_core.config import apply_overrides, parse_override, read_yaml, validate_config
from anpyc_core.pruning import zero_free_weights
from anpyc_core.trainer import Trainer, accuracy
from sweeper.study.spec import parse_study

ROOT = Path(__file__).resolve().parents[1]
REDUCED = ["data.num_tasks=3", "data.train_samples=500", "data.test_samples=500", "optim.epochs=3",
           "optim.batch_size=16", "strategy.importance_samples=500", "strategy.pruning=none"]


def lowest(values: dict[str, torch.Tensor], share: float, generator: torch.Generator | None) -> dict:
    """Per tensor, the `share` of entries with the lowest value (ties by position, or at random)."""
    out = {}
    for name, v in values.items():
        flat = v.reshape(-1).float()
        k = int(share * flat.numel())
        if generator is None:
            order = flat.argsort(stable=True)
        else:
            perm = torch.randperm(flat.numel(), generator=generator)
            order = perm[flat[perm].argsort(stable=True)]
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[order[:k]] = True
        out[name] = mask.reshape(v.shape)
    return out


def main() -> None:
    """One JSON line per tensor (Ω = 0 share), then one per (rule, where) with the ACC after zeroing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    seed = parser.parse_args().seed
    raw = read_yaml(ROOT / "studies" / "fig3_vgg9_split.yaml")
    raw["base"] = apply_overrides(raw["base"], dict(parse_override(s) for s in REDUCED))
    cfg = validate_config(parse_study(raw).run_config("anpyc_rank", seed, {}) | {"device": "cpu"})
    trainer = Trainer(cfg, progress=lambda line: None)
    trainer.run_task(0)
    task, model, params = trainer.tasks.tasks[0], trainer.model, trainer.strategy.params
    omega = trainer.strategy.measure(0, task, 1)
    model.eval()
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    def score(where: str, rule: str, mask: dict | None) -> None:
        model.load_state_dict(saved)
        if mask is not None:
            zero_free_weights(params, mask)
        with torch.no_grad():
            logits = model(task.val.inputs(slice(0, len(task.val))), task.index)
        row = {"rule": rule, "zeroed in": where, "val_acc": accuracy(model, task.val, task.index),
               "predicted_class_1": round(float((logits.argmax(1) == 1).float().mean()), 2)}
        print(json.dumps(row), flush=True)

    for name, o in omega.items():
        share = round(float((o == 0).float().mean()), 3)
        print(json.dumps({"tensor": name, "shape": list(o.shape), "omega_zero_share": share}))
    score("nothing", "-", None)
    rules = {
        "lowest Ω, ties by position": lowest(omega, 0.1, None),
        "lowest Ω, ties at random": lowest(omega, 0.1, torch.Generator().manual_seed(seed)),
        "smallest |θ|": lowest({n: p.detach().abs() for n, p in params.items()}, 0.1, None),
    }
    for rule, mask in rules.items():
        none = {n: torch.zeros_like(m) for n, m in mask.items()}
        score("every tensor", rule, mask)
        score("weight tensors", rule, {n: m if params[n].dim() > 1 else none[n] for n, m in mask.items()})
        score("biases and batch norm", rule, {n: m if params[n].dim() == 1 else none[n] for n, m in mask.items()})
        for name in params:
            if params[name].dim() > 1:
                score(name, rule, {n: m if n == name else none[n] for n, m in mask.items()})


if __name__ == "__main__":
    main()
