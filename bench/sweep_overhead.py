"""Sweeper overhead and dataset sharing, measured in one run.

    python bench/sweep_overhead.py

1. Overhead: 8 trials of one fixed config (permuted Fashion-MNIST, finetune, ~10 s each) on
   2 CPUs, 2 at a time. Reports study wall time against (sum of trial training times) / 2.
2. Memory: total PSS of all Ray worker processes, sampled every 0.2 s, with 1 trial running and
   with 2 trials running at once. PSS counts a shared page once across processes, so if each
   trial held its own copy of the dataset, 2 trials would add a whole dataset's worth.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import ray
from docs_section import write_section  # noqa: E402

from sweeper.running.launch import launch, loopback_only, spec_text
from sweeper.study.spec import parse_study

ROOT = Path(__file__).resolve().parents[1]


def study(
    name: str, storage: str, seeds: list[int], concurrent: int, epochs: int, checkpoints="latest", snapshots="none"
) -> dict:
    """A fixed-config study: one trial per seed (no Section V snapshots unless asked: their probe
    importance pass is work the study asked for, measured in its own row)."""
    return {
        "checkpoints": checkpoints,
        "snapshots": snapshots,
        "name": name,
        "base": {
            "device": "cpu",
            "data": {"benchmark": "fashion-mnist", "scenario": "permuted", "num_tasks": 5},
            "model": {"hidden": [256, 256]},
            "strategy": {"method": "finetune"},
            "optim": {"lr": 0.1, "batch_size": 256, "epochs": epochs},
        },
        "ablations": {"fixed": {}},
        "seeds": seeds,
        "max_concurrent_trials": concurrent,
        "resources": {"cpu": 1},
        "storage": storage,
    }


def ray_worker_pss_mb() -> float:
    """Sum of PSS (MB) over Ray worker processes (their cmdline starts with 'ray::')."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if not fh.read().startswith(b"ray::"):
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class PeakSampler:
    """Background sampler of `ray_worker_pss_mb` keeping the peak."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, ray_worker_pss_mb())
            time.sleep(0.2)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def smaps(keys=("Private_Clean", "Private_Dirty", "Shared_Dirty")) -> dict[str, int]:
    """This process's memory by kind (MB) from /proc/self/smaps_rollup."""
    out = dict.fromkeys(keys, 0)
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in out:
                out[key] = int(line.split()[1]) // 1024
    return out


@ray.remote(num_cpus=1)
def _dataset_probe(raw) -> tuple[dict, dict]:
    """Memory of a worker before and after building 5 permuted tasks and touching every image."""
    from anpyc_core.config import DataConfig
    from anpyc_core.data import build_tasks

    before = smaps()
    seq = build_tasks(DataConfig(benchmark="fashion-mnist", scenario="permuted", num_tasks=5), raw, 0)
    total = sum(float(t.train.inputs(slice(0, len(t.train))).sum()) for t in seq.tasks)
    assert total > 0
    return before, smaps()


def run(spec_dict: dict) -> tuple[float, pd.DataFrame, float]:
    """Launch a study; return wall seconds, its trials table and the peak worker PSS."""
    spec = parse_study(spec_dict)
    with PeakSampler() as sampler:
        t0 = time.perf_counter()
        launch(spec, spec_text(spec))
        wall = time.perf_counter() - t0
    return wall, pd.read_parquet(spec.study_dir / "trials.parquet"), sampler.peak


def main() -> None:
    """Measure and write docs/PERFORMANCE.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    args = ap.parse_args()
    loopback_only()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as storage:
        wall1, one, peak1 = run(study("one_at_a_time", storage, [100], 1, args.epochs))
        wall8, eight, peak2 = run(study("eight_trials", storage, list(range(8)), 2, args.epochs))
        wall_all, eight_all, _ = run(study("eight_all", storage, list(range(8)), 2, args.epochs, "all"))
        wall_snap, eight_snap, _ = run(study("eight_snap", storage, list(range(8)), 2, args.epochs, snapshots="ends"))
        from anpyc_core.data import load_raw

        before, after = ray.get(_dataset_probe.remote(ray.put(load_raw("fashion-mnist"))))
    private = lambda m: m["Private_Clean"] + m["Private_Dirty"]  # noqa: E731
    ideal = eight["seconds"].sum() / 2
    dataset_mb = (70000 * 784 * 4) / 2**20
    lines = [
        "## Sweeper overhead and dataset sharing (bench/sweep_overhead.py)",
        "",
        f"Command: `python bench/sweep_overhead.py --epochs {args.epochs}`. Machine: 2 CPU cores, local Ray "
        "(`num_cpus=2`), 1 CPU per trial, MLflow on SQLite, Parquet results; CPU only.",
        f"Trial: permuted Fashion-MNIST, 5 tasks, finetune, 784-256-256, {args.epochs} epochs per task; "
        f"mean trial training time {eight['seconds'].mean():.1f} s.",
        "",
        "| what | value |",
        "|---|---|",
        f"| 8 trials, 2 at a time: study wall time | {wall8:.1f} s |",
        f"| sum of trial training times / 2 | {ideal:.1f} s |",
        f"| ratio (target at most 1.3) | {wall8 / ideal:.2f} |",
        f"| same 8 trials with `checkpoints: all` (none deleted): wall time, ratio | {wall_all:.1f} s, "
        f"{wall_all / (eight_all['seconds'].sum() / 2):.2f} |",
        f"| same 8 trials with `snapshots: ends` (a task-1 probe importance pass after tasks 1 and 5): wall time, "
        f"ratio | {wall_snap:.1f} s, {wall_snap / (eight_snap['seconds'].sum() / 2):.2f} |",
        f"| 1 trial alone: study wall time / its training time | {wall1:.1f} s / {one['seconds'].iloc[0]:.1f} s |",
        f"| peak PSS of Ray workers, 1 trial running | {peak1:.0f} MB |",
        f"| peak PSS of Ray workers, 2 trials running | {peak2:.0f} MB |",
        f"| ratio 2 trials / 1 trial | {peak2 / peak1:.2f} |",
        f"| the dataset as float32 (60k train + 10k test images) | {dataset_mb:.0f} MB |",
        f"| one worker after building 5 permuted tasks and touching every image: private memory added "
        f"| {private(after) - private(before)} MB |",
        f"| same: shared (object-store) memory added | {after['Shared_Dirty'] - before['Shared_Dirty']} MB |",
        "",
        "The wall time includes starting trial workers, MLflow and Parquet writes and a checkpoint at every "
        "task boundary (the main rows keep the last two per trial, the default `checkpoints: latest`, "
        "and take no snapshots). If each trial held a private copy of the dataset, the second trial would add at "
        f"least {dataset_mb:.0f} MB on top of its own model and runtime.",
    ]
    section = write_section(args.out, "sweep_overhead", lines, "Performance")
    print(section)


if __name__ == "__main__":
    main()
