"""Packed trials against one trial per process, measured in one run on one machine (issue 11, item 5).

    python bench/packed_throughput.py                        # CPU defaults (capped tasks, K up to 16)
    python bench/packed_throughput.py --device cuda --ks 1 4 16 64 --train-samples 0

One study slice: permuted Fashion-MNIST, 5 tasks, 784-512-256, one epoch per task and per
pruning round; ANPyC with greedy pruning, and finetune. Members differ in seed and λ. For each
method it measures, on the same machine in one run:

- `Ray Tune, one trial per process`: a real grid study of `--tune-trials` trials through the
  sweeper as today (MLflow, Parquet, checkpoints), `--tune-concurrent` trials at a time;
- `sequential, one process`: `--seq-trials` trials one after another with the sequential `Trainer`;
- `packed K`: one `PackedTrainer` of K members, for every K in `--ks`.

Trials per hour = trials / wall seconds × 3600. On CUDA it also reports peak device memory per
member. Results go to docs/PERFORMANCE.md between the `packed_throughput` markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from docs_section import write_section  # noqa: E402

from anpyc_core.config import validate_config
from anpyc_core.packing import PackedTrainer
from anpyc_core.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "finetune": {"method": "finetune"},
    "anpyc": {"method": "anpyc", "pruning": "greedy", "beta": 50.0, "lam": 1.0},
}


def base_config(method: str, args) -> dict:
    """The fixed slice of the study (everything a pack shares)."""
    data = {"benchmark": "fashion-mnist", "scenario": "permuted", "num_tasks": args.tasks}
    if args.train_samples:
        data["train_samples"] = args.train_samples
    return {
        "device": args.device,
        "data": data,
        "model": {"hidden": [512, 256]},
        "strategy": dict(METHODS[method]),
        "optim": {"lr": 0.05, "batch_size": 256, "epochs": args.epochs, "retrain_epochs": args.epochs},
    }


def member(method: str, k: int, args):
    """Member k: its own seed and λ."""
    raw = base_config(method, args)
    raw["seed"] = k
    if method == "anpyc":
        raw["strategy"]["lam"] = [0.25, 0.5, 1.0, 2.0][k % 4]
    return validate_config(raw)


def sync(device: str) -> None:
    """Wait for queued device work before reading the clock."""
    if device == "cuda":
        torch.cuda.synchronize()


def time_sequential(method: str, n: int, args) -> float:
    """Wall seconds of n trials run one after another in this process."""
    start = time.perf_counter()
    for k in range(n):
        trainer = Trainer(member(method, k, args))
        for _ in trainer.run():
            pass
    sync(args.device)
    return time.perf_counter() - start


def time_packed(method: str, k: int, args) -> tuple[float, float | None]:
    """Wall seconds of one pack of k members, and peak device MB per member on CUDA."""
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    pack = PackedTrainer([member(method, i, args) for i in range(k)])
    for _ in pack.run():
        pass
    sync(args.device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 / k if args.device == "cuda" else None
    return seconds, peak


def time_tune(method: str, args) -> float:
    """Wall seconds of a real grid study of --tune-trials trials (one per process) through the sweeper."""
    import ray

    from sweeper.running.launch import launch, loopback_only, spec_text
    from sweeper.study.spec import parse_study

    base = base_config(method, args)
    with tempfile.TemporaryDirectory() as storage:
        spec = parse_study(
            {
                "name": f"bench_{method}",
                "base": base,
                "ablations": {"fixed": {}},
                "seeds": list(range(args.tune_trials)),
                "max_concurrent_trials": args.tune_concurrent,
                "resources": {"cpu": max(1, os.cpu_count() // args.tune_concurrent), "gpu": args.tune_gpu},
                "snapshots": "none",
                "storage": storage,
            }
        )
        if not ray.is_initialized():
            loopback_only()
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        launch(spec, spec_text(spec))
        return time.perf_counter() - start


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or the platform's name)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-samples", type=int, default=10000, help="per task; 0 = the whole task")
    parser.add_argument("--seq-trials", type=int, default=4)
    parser.add_argument("--tune-trials", type=int, default=4)
    parser.add_argument("--tune-concurrent", type=int, default=2)
    parser.add_argument("--tune-gpu", type=float, default=0.0, help="GPU per Tune trial (e.g. 0.25 to share one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    rows = []  # (method, what, trials, seconds, peak MB per member)
    for method in args.methods:
        seconds = time_tune(method, args)
        rows.append((method, "Ray Tune, one trial per process", args.tune_trials, seconds, None))
        print(f"{method}: tune {args.tune_trials} trials in {seconds:.1f} s", flush=True)
        seconds = time_sequential(method, args.seq_trials, args)
        rows.append((method, "sequential Trainer, one process", args.seq_trials, seconds, None))
        print(f"{method}: sequential {args.seq_trials} trials in {seconds:.1f} s", flush=True)
        for k in args.ks:
            seconds, peak = time_packed(method, k, args)
            rows.append((method, f"packed, K = {k}", k, seconds, peak))
            print(f"{method}: pack of {k} in {seconds:.1f} s", flush=True)
    machine = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    samples = f"{args.train_samples} training samples per task" if args.train_samples else "whole tasks"
    report = [
        "## Packed trials against one trial per process (bench/packed_throughput.py)",
        "",
        f"Command: `{' '.join(['python bench/packed_throughput.py', *os.sys.argv[1:]])}`  ",
        f"Machine: {os.cpu_count()} CPU cores ({threads} torch threads), device {args.device} ({machine}).  ",
        f"Slice: permuted Fashion-MNIST, {args.tasks} tasks ({samples}), 784-512-256, {args.epochs} epoch(s) per task "
        "and per pruning round, batch 256; members differ in seed (and λ for ANPyC, greedy pruning β = 50).",
        "",
        "| method | how | trials | wall s | trials/hour | vs Ray Tune | peak device MB/member |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        tune_rate = next(n / s for m, w, n, s, _ in rows if m == method and w.startswith("Ray Tune")) * 3600
        for m, what, n, seconds, peak in rows:
            if m != method:
                continue
            rate = n / seconds * 3600
            mem = f"{peak:.0f}" if peak is not None else "n/a (CPU)"
            report.append(f"| {m} | {what} | {n} | {seconds:.1f} | {rate:.0f} | {rate / tune_rate:.2f}x | {mem} |")
    section = write_section(args.out, "packed_throughput", report, "Performance")
    print(section)


if __name__ == "__main__":
    main()
