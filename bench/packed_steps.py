"""Vectorised per-step work of a pack against the same work member by member (issue 11), in one run.

    python bench/packed_steps.py                       # CPU defaults
    python bench/packed_steps.py --device cuda --ks 4 16 64 256

A pack's step has, beside the batched forward/backward and SGD, per-member work: gathering each
member's minibatch (its rows and, on permuted tasks, its pixel permutation) and the regularised
strategy's gradient hook (penalty 2λΩ(θ−θ*) and the round's free-weight masks). `PackedTrainer`
does both for all members at once; `vectorised=False` does them member by member, with the same
numbers (tests/test_packed.py). This times one ANPyC training epoch of task 2 (penalty on) on
permuted Fashion-MNIST both ways, for each pack size K and trunk width, best of `--repeats`.
Results go to docs/PERFORMANCE.md between the `packed_steps` markers.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from docs_section import write_section  # noqa: E402
from packed_throughput import cpu_name  # noqa: E402

from anpyc_core.config import validate_config
from anpyc_core.packing import PackedTrainer

ROOT = Path(__file__).resolve().parents[1]


def member(k: int, hidden: list[int], args) -> object:
    """Member k: its own seed and λ; everything else shared."""
    return validate_config(
        {
            "seed": k,
            "device": args.device,
            "data": {
                "benchmark": "fashion-mnist",
                "scenario": "permuted",
                "num_tasks": 2,
                "train_samples": args.train_samples,
            },
            "model": {"hidden": hidden},
            "strategy": {
                "method": "anpyc",
                "lam": [0.25, 0.5, 1.0, 2.0][k % 4],
                "beta": 50.0,
                "importance_samples": 500,
            },
            "optim": {"lr": 0.05, "batch_size": 256, "epochs": 1, "retrain_epochs": 1},
        }
    )


def epoch_seconds(k: int, hidden: list[int], vectorised: bool, args) -> float:
    """Best wall seconds of one task-2 training epoch of a pack of k members (after one untimed epoch)."""
    pack = PackedTrainer([member(i, hidden, args) for i in range(k)], vectorised=vectorised)
    pack.run_task(0)
    live = pack.live()
    pack.task, pack.initial_phase, pack.last_loss = 1, True, dict.fromkeys(live, 0.0)
    pack._begin_task(1, live)
    opt = pack._optimizer(1)
    for i in live:
        pack.members[i].strategy.before_task(1)
    counters, best = dict.fromkeys(live, 0), float("inf")
    pack._fit(1, live, 1, opt, counters)  # warm-up, untimed
    for _ in range(args.repeats):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        pack._fit(1, live, 1, opt, counters)
        if args.device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Measure and write docs/PERFORMANCE.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--widths", nargs="+", default=["64,32", "512,256"])
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    args = ap.parse_args()
    machine = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    report = [
        "## Vectorised pack steps against member-by-member ones (bench/packed_steps.py)",
        "",
        f"Command: `{' '.join(['python bench/packed_steps.py', *os.sys.argv[1:]])}`  ",
        f"Machine: {os.cpu_count()} CPU cores ({torch.get_num_threads()} torch threads), device {args.device} "
        f"({machine}).  ",
        f"One ANPyC training epoch of task 2 (penalty on), permuted Fashion-MNIST, {args.train_samples} training "
        f"samples, batch 256, best of {args.repeats}; members differ in seed and λ. Member by member: each "
        "member's minibatch gathered and its penalty hook run on its own; vectorised: both for the pack at once "
        "(the same numbers, tested).",
        "",
        "| trunk | K | member by member s | vectorised s | speed-up |",
        "|---|---|---|---|---|",
    ]
    for width in args.widths:
        hidden = [int(h) for h in width.split(",")]
        for k in args.ks:
            slow = epoch_seconds(k, hidden, False, args)
            fast = epoch_seconds(k, hidden, True, args)
            line = f"| 784-{'-'.join(map(str, hidden))} | {k} | {slow:.3f} | {fast:.3f} | {slow / fast:.2f}x |"
            report.append(line)
            print(line, flush=True)
    print(write_section(args.out, "packed_steps", report, "Performance"))


if __name__ == "__main__":
    main()
