"""Per-epoch time of our trainer on the CNNs against a bare PyTorch loop over the same model, in one run.

    python bench/cnn_speed.py [--benchmark fashion-mnist] [--repeats 3] [--lenet-samples 10000] [--vgg-samples 2000]

For each of LeNet (28×28×1) and VGG-9 (32×32×3, grey images padded and repeated): the bare loop
trains a copy of the same model on pre-gathered contiguous input rows with plain SGD; ours runs
`Trainer._epoch` (task view gathers, strategy hooks, loss check) on the task split. Epochs alternate
between the two after one warm-up each; medians are reported, with the ratio.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from docs_section import write_section  # noqa: E402
from timing import alternate  # noqa: E402
from torch.nn import functional as F

from anpyc_core.config import validate_config
from anpyc_core.data import build_tasks, load_raw
from anpyc_core.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def bare_epoch(model, x: torch.Tensor, y: torch.Tensor, opt, bs: int, gen) -> None:
    """The reference: the shortest correct minibatch SGD epoch over the same model."""
    order = torch.randperm(len(x), generator=gen)
    for start in range(0, len(x), bs):
        idx = order[start : start + bs]
        loss = F.cross_entropy(model(x[idx], 0), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def measure(arch: str, benchmark: str, samples: int, repeats: int, raw) -> tuple[int, float, float]:
    """(training samples, our median epoch seconds, the bare loop's) for `arch`."""
    cfg = validate_config(
        {
            "device": "cpu",
            "data": {
                "benchmark": benchmark,
                "scenario": "permuted",
                "permute_first": False,
                "num_tasks": 2,
                "train_samples": samples,
            },
            "model": {"arch": arch},
            "strategy": {"method": "finetune"},
            "optim": {"lr": 0.01, "momentum": 0.9, "batch_size": 64},
        }
    )
    tasks = build_tasks(cfg.data, raw, cfg.seed)
    trainer = Trainer(cfg, tasks=tasks)
    trainer.shuffle = torch.Generator().manual_seed(0)
    split = tasks.tasks[0].train
    ours_opt = torch.optim.SGD(trainer.strategy.trainable(0), lr=0.01, momentum=0.9)
    bare = copy.deepcopy(trainer.model)
    bare_opt = torch.optim.SGD([*bare.trunk.parameters(), *bare.heads[0].parameters()], lr=0.01, momentum=0.9)
    x, y = split.inputs().contiguous(), split.labels.clone()
    gen = torch.Generator().manual_seed(0)
    trainer.model.train()
    bare.train()
    ours, ref = alternate(
        lambda rep: trainer._epoch(0, split, ours_opt, rep),
        lambda: bare_epoch(bare, x, y, bare_opt, 64, gen),
        repeats,
        arch,
    )
    return len(split), ours, ref


def main() -> None:
    """Measure and write the cnn_speed section of docs/PERFORMANCE.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="fashion-mnist")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lenet-samples", type=int, default=10000)
    ap.add_argument("--vgg-samples", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    args = ap.parse_args()
    raw = load_raw(args.benchmark)
    rows = []
    for arch, samples in (("lenet", args.lenet_samples), ("vgg9", args.vgg_samples)):
        n, ours, ref = measure(arch, args.benchmark, samples, args.repeats, raw)
        rows.append(f"| {arch} | {n} | {ref:.2f} | {ours:.2f} | {ours / ref:.2f} |")
    report = [
        "## CNN epochs against a bare PyTorch loop (bench/cnn_speed.py)",
        "",
        f"Command: `python bench/cnn_speed.py --benchmark {args.benchmark} --repeats {args.repeats} "
        f"--lenet-samples {args.lenet_samples} --vgg-samples {args.vgg_samples}`",
        f"Machine: {torch.get_num_threads()} CPU threads, torch {torch.__version__}, CPU only. Batch 64, SGD with "
        "momentum, median of the repeats after one warm-up epoch each; the same model in both loops.",
        "",
        "| model | training samples | bare loop s/epoch | anpyc-sweep s/epoch | ratio |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Target (issue 12): at most 1.10x the bare loop.",
    ]
    print(write_section(args.out, "cnn_speed", report, "Performance"))


if __name__ == "__main__":
    main()
