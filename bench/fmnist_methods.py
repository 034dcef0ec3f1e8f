"""Permuted Fashion-MNIST: every method, λ chosen per method on validation, into RESULTS.md.

    python bench/fmnist_methods.py --tasks 5 10 --seed 0

Each run's result.json is cached under bench/results/fmnist_methods/<run id>.json, so an
interrupted benchmark resumes where it stopped. Selection uses validation ACC only; the test
numbers of the selected configuration are reported beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from docs_section import write_section  # noqa: E402

from anpyc_core.config import validate_config
from anpyc_core.data import build_tasks, load_raw
from anpyc_core.trainer import Trainer, TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "results" / "fmnist_methods"

#: (method, field swept, grid). The grids span about two decades around each method's usual scale.
METHODS = [
    ("finetune", None, [None]),
    ("sgd", None, [None]),
    ("sgd_f", None, [None]),
    ("ewc", "strategy.lam", [10.0, 100.0, 1000.0]),
    ("si", "strategy.lam", [0.1, 1.0, 10.0]),
    ("mas", "strategy.lam", [0.1, 1.0, 10.0]),
    ("lwf", "strategy.lwf_alpha", [0.5, 1.0, 2.0]),
    ("anpyc", "strategy.lam", [0.5, 4.0, 32.0]),
    ("hat", "strategy.hat_c", [0.25, 0.75]),
]


def base_config(num_tasks: int, seed: int, epochs: int, importance_samples: int) -> dict:
    """The shared protocol: permuted Fashion-MNIST, 784-512-256, plain SGD."""
    return {
        "seed": seed,
        "device": "auto",
        "data": {"benchmark": "fashion-mnist", "scenario": "permuted", "num_tasks": num_tasks},
        "model": {"hidden": [512, 256]},
        "strategy": {"importance_samples": importance_samples},
        "optim": {
            "optimizer": "sgd",
            "lr": 0.1,
            "batch_size": 256,
            "epochs": epochs,
            "retrain_epochs": 1,
        },
    }


def run_cached(raw_cfg: dict, tasks_cache: dict, raw, joint_ref: dict | None) -> dict:
    """Run one config (or load its cached result)."""
    cfg = validate_config(raw_cfg)
    path = CACHE / f"{cfg.run_id()}.json"
    if path.exists():
        return json.loads(path.read_text())
    key = (cfg.data.num_tasks, cfg.seed)
    if key not in tasks_cache:
        tasks_cache[key] = build_tasks(cfg.data, raw, cfg.seed)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, tasks=tasks_cache[key], joint_reference=joint_ref)
    try:
        for record in trainer.run():
            print(
                f"    {cfg.strategy.method} task {record.task}/{record.num_tasks} {record.seconds:.1f}s",
                flush=True,
            )
        result = trainer.result().to_dict()
    except TrainingDiverged as err:  # recorded, and never selected
        print(f"    diverged: {err}", flush=True)
        result = {"diverged": str(err), "config": cfg.model_dump(mode="json")}
    result["wall_seconds"] = time.perf_counter() - t0
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def set_field(raw: dict, dotted: str, value) -> dict:
    """Copy of `raw` with one dotted field set."""
    out = json.loads(json.dumps(raw))
    section, key = dotted.split(".")
    out.setdefault(section, {})[key] = value
    return out


def main() -> None:
    """Run the grid and write the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--importance-samples", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "RESULTS.md")
    args = ap.parse_args()
    raw = load_raw("fashion-mnist")
    tables = []
    for num_tasks in args.tasks:
        base = base_config(num_tasks, args.seed, args.epochs, args.importance_samples)
        tasks_cache: dict = {}
        print(f"== {num_tasks} tasks: joint reference", flush=True)
        joint = run_cached(set_field(base, "strategy.method", "joint"), tasks_cache, raw, None)
        ref = {"test": joint["acc_matrix"][-1], "val": joint["val_acc_matrix"][-1]}
        rows = [("joint", None, None, joint, [])]
        for method, field, grid in METHODS:
            cfg = set_field(base, "strategy.method", method)
            candidates = []
            for value in grid:
                trial = cfg if field is None else set_field(cfg, field, value)
                print(f"== {num_tasks} tasks: {method} {field or ''}={value}", flush=True)
                candidates.append((value, run_cached(trial, tasks_cache, raw, ref)))
            usable = [c for c in candidates if "diverged" not in c[1]]
            diverged = [v for v, r in candidates if "diverged" in r]
            value, best = max(usable, key=lambda c: c[1]["val_metrics"]["acc"])
            rows.append((method, field, value, best, diverged))
        tables.append((num_tasks, rows))
    write_markdown(args, tables)


def fmt(v) -> str:
    """A metric cell."""
    return "null" if v is None else f"{v:.2f}"


def write_markdown(args, tables) -> None:
    """Replace the fmnist_methods section of RESULTS.md."""
    lines = [
        "## Permuted Fashion-MNIST, every method (bench/fmnist_methods.py)",
        "",
        f"Command: `python bench/fmnist_methods.py --tasks {' '.join(map(str, args.tasks))} "
        f"--seed {args.seed} --epochs {args.epochs} --importance-samples {args.importance_samples}`",
        "",
        f"Protocol: permuted Fashion-MNIST (task 1 permuted too), 784-512-256 MLP, multi-head "
        f"(sgd: single head), plain SGD lr 0.1, batch 256, {args.epochs} epochs per task; ANPyC "
        f"β=50, decay 0.8, 10 %-steps, 1 retraining epoch per round; importance on the first "
        f"{args.importance_samples} training samples of each task. Seed {args.seed}, one run per "
        "cell. λ (LwF: α) chosen per method by **validation** ACC; the table shows **test** "
        "metrics of that choice. FWT against the joint run of the same seed. 'diverged' lists grid "
        "values whose loss became NaN (penalty step 2·lr·λ·Ω > 1); they are never selected.",
        "",
    ]
    for num_tasks, rows in tables:
        lines += [
            f"### {num_tasks} tasks",
            "",
            "| method | chosen | val ACC | ACC | BWT | FWT | forgetting | LA | seconds | diverged |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, field, value, r, diverged in rows:
            m = r["metrics"]
            chosen = "-" if field is None else f"{field.split('.')[1]}={value:g}"
            lines.append(
                f"| {method} | {chosen} | {fmt(r['val_metrics']['acc'])} | {fmt(m['acc'])} | "
                f"{fmt(m['bwt'])} | {fmt(m['fwt'])} | {fmt(m['forgetting'])} | {fmt(m['la'])} | "
                f"{r['seconds']:.0f} | {', '.join(f'{d:g}' for d in diverged) or '-'} |"
            )
        lines.append("")
    write_section(args.out, "fmnist_methods", lines, "Results")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
