"""Does pruning the batch-norm parameters make VGG-9's first pruning round collapse? (docs/RESULTS.md, Fig. 3
on VGG-9.) Task 1 of `studies/fig3_vgg9_split.yaml`'s anpyc_rank trial at the reduced scale of
`bench/paper_results.py`, once as the study runs it and once with the batch-norm scale and shift (trunk.1)
kept out of every free set; prints validation ACC after task 1, the pruning flags and the loss per epoch.

    python bench/vgg9_prune_probe.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from anpyc_core.config import apply_overrides, parse_override, read_yaml, validate_config
from anpyc_core.strategies import regularised
from anpyc_core.trainer import Trainer
from sweeper.study.spec import parse_study

ROOT = Path(__file__).resolve().parents[1]
REDUCED = ["data.num_tasks=3", "data.train_samples=500", "data.test_samples=500", "optim.epochs=3",
           "optim.batch_size=16", "strategy.importance_samples=500"]
BATCH_NORM = "trunk.1."


def task_one(seed: int, keep_batch_norm: bool) -> dict:
    """Train task 1 of the anpyc_rank trial; with `keep_batch_norm`, its affine parameters are never freed."""
    raw = read_yaml(ROOT / "studies" / "fig3_vgg9_split.yaml")
    raw["base"] = apply_overrides(raw["base"], dict(parse_override(s) for s in REDUCED))
    cfg = validate_config(parse_study(raw).run_config("anpyc_rank", seed, {}) | {"device": "cpu"})
    original = regularised.greedy_free_set

    def without_batch_norm(*args, **kwargs):
        masks = original(*args, **kwargs)
        return {n: torch.zeros_like(m) if n.startswith(BATCH_NORM) else m for n, m in masks.items()}

    regularised.greedy_free_set = without_batch_norm if keep_batch_norm else original
    lines: list[str] = []
    try:
        trainer = Trainer(cfg, progress=lines.append)
        start = time.perf_counter()
        trainer.run_task(0)
    finally:
        regularised.greedy_free_set = original
    return {
        "batch_norm_prunable": not keep_batch_norm,
        "val_acc_after_task_1": trainer.val_acc_matrix[-1][0],
        "prune_flags": trainer.prune_flags,
        "epoch_losses": [ln.split("loss ")[1].split()[0] for ln in lines if " epoch " in ln and "loss " in ln],
        "seconds": round(time.perf_counter() - start),
    }


def main() -> None:
    """Both variants, one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    seed = parser.parse_args().seed
    for keep in (False, True):
        print(json.dumps(task_one(seed, keep)), flush=True)


if __name__ == "__main__":
    main()
