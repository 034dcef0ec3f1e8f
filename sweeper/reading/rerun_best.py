"""`anpyc-sweep rerun --best STUDY`: the study's best configuration and each of its ablations, rerun
locally without Ray, against what the study recorded (mean ± std over seeds)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from anpyc_core.config import ConfigError, validate_config
from anpyc_core.errors import TrainingDiverged
from anpyc_core.runner import run_config
from sweeper.reading.query import QueryError, best_configs
from sweeper.study.spec import StudySpec

METRICS = ("val_acc", "test_acc", "test_bwt")


def _mean_std(values: list[float]) -> tuple[float | None, float | None, int]:
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


def rerun_best(
    spec: StudySpec,
    ablations: list[str] | None,
    seeds: list[int] | None,
    out: Path,
    progress: Callable[[str], None] = print,
) -> list[dict]:
    """Rerun the best configuration (by the first objective's seed mean) under each chosen ablation and
    seed; write every result.json and the comparison table under `out`; return the table's rows."""
    configs = best_configs(spec)
    if not configs:
        raise QueryError(f"study {spec.name}: no finished trials to take a best configuration from")
    best = configs[0]
    names = list(spec.ablations) if not ablations or ablations == ["all"] else ablations
    unknown = [n for n in names if n not in spec.ablations]
    if unknown:
        raise ConfigError(
            f"--ablations: {unknown[0]!r} is not an ablation of {spec.name}; allowed: {list(spec.ablations)}"
        )
    seeds = seeds or spec.seeds
    recorded = {c["ablation"]: c for c in configs if c["params"] == best["params"]}
    out.mkdir(parents=True, exist_ok=True)
    runs = [(a, s) for a in names for s in seeds]
    values: dict[str, dict[str, list[float]]] = {a: {m: [] for m in METRICS} for a in names}
    diverged: dict[str, int] = dict.fromkeys(names, 0)
    for i, (ablation, seed) in enumerate(runs, 1):
        cfg = validate_config(spec.run_config(ablation, seed, best["params"]))
        progress(f"[{i}/{len(runs)}] {ablation} seed {seed} {best['params']} ...")
        try:
            result = run_config(cfg)
        except TrainingDiverged as err:
            diverged[ablation] += 1
            progress(f"[{i}/{len(runs)}] {ablation} seed {seed}: diverged ({err})")
            continue
        folder = out / ablation / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
        row = {
            **{f"val_{k}": v for k, v in result.val_metrics.items()},
            **{f"test_{k}": v for k, v in result.metrics.items()},
        }
        for m in METRICS:
            if row.get(m) is not None:
                values[ablation][m].append(float(row[m]))
        progress(
            f"[{i}/{len(runs)}] {ablation} seed {seed}: val_acc {row['val_acc']:.2f}, test_acc {row['test_acc']:.2f}"
        )
    table = []
    for ablation in names:
        rec = recorded.get(ablation)
        entry = {"ablation": ablation, "params": best["params"], "diverged": diverged[ablation]}
        for m in METRICS:
            mean, std, n = _mean_std(values[ablation][m])
            entry[f"rerun_{m}"], entry[f"rerun_{m}_std"], entry["rerun_n"] = mean, std, n
            entry[f"recorded_{m}"] = rec.get(m) if rec else None
            entry[f"recorded_{m}_std"] = rec.get(f"{m}_std") if rec else None
        entry["recorded_n"] = rec["n"] if rec else 0
        table.append(entry)
    (out / "rerun_best.json").write_text(json.dumps(table, indent=2))
    (out / "rerun_best.md").write_text(format_table(spec, table))
    return table


def _cell(mean, std) -> str:
    return "-" if mean is None else f"{mean:.2f} ± {std or 0.0:.2f}"


def format_table(spec: StudySpec, table: list[dict]) -> str:
    """Markdown: per ablation, recorded vs rerun mean ± std (n) of validation and test accuracy."""
    params = table[0]["params"] if table else {}
    lines = [
        f"# {spec.name}: best configuration {params} rerun locally",
        "",
        "| ablation | recorded val ACC | rerun val ACC | recorded test ACC | rerun test ACC "
        "| n recorded | n rerun | diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['ablation']} | {_cell(r['recorded_val_acc'], r['recorded_val_acc_std'])} "
            f"| {_cell(r['rerun_val_acc'], r['rerun_val_acc_std'])} "
            f"| {_cell(r['recorded_test_acc'], r['recorded_test_acc_std'])} "
            f"| {_cell(r['rerun_test_acc'], r['rerun_test_acc_std'])} "
            f"| {r['recorded_n']} | {r['rerun_n']} | {r['diverged']} |"
        )
    return "\n".join(lines) + "\n"
