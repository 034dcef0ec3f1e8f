"""Bytes per task checkpoint and per study, `checkpoints: latest` (two kept per trial) against `all`.

    python bench/checkpoint_bytes.py [--benchmark fashion-mnist] [--tasks 10] [--trials 45]

The checkpoint is what a trial writes at a task boundary (`Trainer.save_checkpoint`): model, the
method's continual-learning buffers (Ω, θ*, free sets, ...) and the accuracy matrices. Its size
does not depend on training, so this saves one right after the first task's set-up and after
training it briefly. Writes its table into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from docs_section import write_section  # noqa: E402

from anpyc_core.config import validate_config  # noqa: E402
from anpyc_core.trainer import Trainer  # noqa: E402


def checkpoint_bytes(method: str, benchmark: str, tasks: int, hidden: list[int]) -> int:
    """Size of the checkpoint after task 1 of a short run."""
    cfg = validate_config(
        {
            "device": "cpu",
            "data": {"benchmark": benchmark, "scenario": "permuted", "num_tasks": tasks, "train_samples": 512},
            "model": {"hidden": hidden},
            "strategy": {"method": method, "importance_samples": 256},
            "optim": {"epochs": 1, "retrain_epochs": 1},
        }
    )
    trainer = Trainer(cfg)
    runs = trainer.run()
    next(runs)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.pt"
        trainer.save_checkpoint(path)
        return path.stat().st_size


def main() -> None:
    """Measure and write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="fashion-mnist")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--trials", type=int, default=45)
    args = parser.parse_args()
    hidden = [512, 256]
    rows = []
    for method in ("anpyc", "ewc", "finetune"):
        size = checkpoint_bytes(method, args.benchmark, args.tasks, hidden)
        latest = size * args.trials * min(2, args.tasks)
        every = size * args.trials * args.tasks
        rows.append(f"| {method} | {size / 1e6:.2f} | {latest / 1e9:.2f} | {every / 1e9:.2f} |")
        print(rows[-1], flush=True)
    command = " ".join(["python", "bench/checkpoint_bytes.py", *sys.argv[1:]])
    lines = [
        "## Checkpoint volume (bench/checkpoint_bytes.py)",
        "",
        f"Command: `{command}`. Machine: 2 CPU cores, CPU only. Model: 784-512-256 MLP, permuted "
        f"{args.benchmark}, {args.tasks} tasks; a study of {args.trials} trials.",
        "",
        "| method | MB per task checkpoint | GB per study, `checkpoints: latest` (2 kept) | GB per study, `all` |",
        "|---|---|---|---|",
        *rows,
        "",
        "Snapshots (`snapshots: ends`) go to MLflow and are not counted here.",
    ]
    write_section(ROOT / "docs" / "PERFORMANCE.md", "checkpoint_bytes", lines, "Performance")


if __name__ == "__main__":
    main()
