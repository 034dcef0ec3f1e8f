"""Per-epoch time of our trainer against a minimal hand-written PyTorch loop, in one run.

    python bench/trainer_speed.py [--benchmark fashion-mnist] [--repeats 5]

Both train the same 784-512-256 model shape on the same task tensors with plain SGD, batch 256.
The bare loop gets a pre-permuted contiguous tensor and an `nn.Sequential`; ours goes through
the task view (row + pixel gather), the strategy hooks and the loss check. Epochs alternate
between the two and the median of each is reported. Also reported: the ANPyC importance pass
(one backward per 100-sample chunk over the whole task) in units of one training epoch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from docs_section import write_section  # noqa: E402
from timing import alternate  # noqa: E402
from torch import nn
from torch.nn import functional as F

from anpyc_core import importance as imp
from anpyc_core.config import validate_config
from anpyc_core.data import build_tasks, load_raw
from anpyc_core.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def bare_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, bs: int, gen) -> None:
    """The reference: the shortest correct minibatch SGD epoch."""
    order = torch.randperm(len(x), generator=gen)
    for start in range(0, len(x), bs):
        idx = order[start : start + bs]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    """Measure and write docs/PERFORMANCE.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="fashion-mnist")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    args = ap.parse_args()
    cfg = validate_config(
        {
            "device": "cpu",
            "data": {"benchmark": args.benchmark, "scenario": "permuted", "num_tasks": 2},
            "model": {"hidden": [512, 256]},
            "strategy": {"method": "finetune"},
            "optim": {"lr": 0.01, "batch_size": 256},
        }
    )
    tasks = build_tasks(cfg.data, load_raw(args.benchmark), cfg.seed)
    trainer = Trainer(cfg, tasks=tasks)
    trainer.shuffle = torch.Generator().manual_seed(0)
    split = tasks.tasks[0].train
    ours_opt = torch.optim.SGD(trainer.strategy.trainable(0), lr=0.01)

    x, y = split.inputs().contiguous(), split.labels.clone()
    torch.manual_seed(0)
    widths = [x.shape[1], 512, 256]
    bare = nn.Sequential(
        nn.Linear(widths[0], widths[1]),
        nn.ReLU(),
        nn.Linear(widths[1], widths[2]),
        nn.ReLU(),
        nn.Linear(widths[2], 10),
    )
    bare_opt = torch.optim.SGD(bare.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)

    trainer.model.train()
    ours, ref = alternate(
        lambda rep: trainer._epoch(0, split, ours_opt, rep),
        lambda: bare_epoch(bare, x, y, bare_opt, 256, gen),
        args.repeats,
    )

    trainer.model.eval()
    passes = []  # (what, layer-wise seconds, generic seconds, max relative difference)
    measures = [
        ("ANPyC, whole task (chunks of 100)", imp.anpyc_importance, (0, 100)),
        ("ANPyC, first 10000 samples", imp.anpyc_importance, (0, 100, 10000)),
        ("EWC empirical Fisher, whole task", imp.ewc_importance, (0, 100, None, "empirical")),
    ]
    for what, fn, extra in measures:
        t0 = time.perf_counter()
        fast = fn(trainer.model, split, *extra)
        t1 = time.perf_counter()
        generic_linear = imp.linear_trunk
        imp.linear_trunk = lambda model: False  # the generic path: autograd per chunk, torch.func per sample
        try:
            slow = fn(trainer.model, split, *extra)
        finally:
            imp.linear_trunk = generic_linear
        t2 = time.perf_counter()
        diff = max(float((fast[n] - slow[n]).abs().max() / slow[n].abs().max().clamp(min=1e-12)) for n in fast)
        passes.append((what, t1 - t0, t2 - t1, diff))
        print(f"{what}: {t1 - t0:.3f} s layer-wise, {t2 - t1:.3f} s generic, max rel diff {diff:.1e}", flush=True)

    report = [
        "## Trainer speed against a bare PyTorch loop (bench/trainer_speed.py)",
        "",
        f"Command: `python bench/trainer_speed.py --benchmark {args.benchmark} --repeats {args.repeats}`",
        f"Machine: {torch.get_num_threads()} CPU threads, torch {torch.__version__}, CPU only.",
        f"Task: permuted {args.benchmark} task 1, {len(split)} training samples, 784-512-256, SGD, batch 256.",
        "",
        "| what | seconds | ratio |",
        "|---|---|---|",
        f"| bare loop, one epoch (median of {args.repeats}) | {ref:.3f} | 1.00 |",
        f"| anpyc-sweep finetune, one epoch (median of {args.repeats}) | {ours:.3f} | {ours / ref:.2f} |",
        "",
        "Target: finetune at most 1.10x the bare loop.",
        "",
        "Importance passes on the same task and model, each in training epochs of the finetune row: the",
        "layer-wise passes of a Linear trunk (chunk gradients by batched matmul; the Fisher as (δ²)ᵀ(a²))",
        "against the generic ones (one autograd backward per chunk; torch.func per-sample gradients).",
        "",
        "| importance pass | layer-wise s | epochs | generic s | epochs | speed-up | max relative difference |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {what} | {fast:.3f} | {fast / ours:.2f} | {slow:.3f} | {slow / ours:.2f} "
            f"| {slow / fast:.1f}x | {diff:.1e} |"
            for what, fast, slow, diff in passes
        ],
        "",
        "Targets (issue 11): EWC at most 2 epochs, ANPyC whole task at most 0.5 epochs.",
    ]
    section = write_section(args.out, "trainer_speed", report, "Performance")
    print(section)


if __name__ == "__main__":
    main()
