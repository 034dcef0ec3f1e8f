"""Verbs that run on this machine without Ray: `train` (one run) and `compress` (Table IV)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from anpyc_core.config import ConfigError, load_config
from sweeper.cli.common import (
    UsageError,
    app,
    check_writable_dir,
    fail,
    write_json_atomic,
)


def format_table(result: dict) -> str:
    """The accuracy matrix and metrics as a fixed-width text table."""
    P = result["acc_matrix"]
    T = len(P[0])
    extra = result.get("extra_matrices") or {}
    what = "accuracy of generated images" if extra else "test accuracy"
    lines = [f"{what} (%): row = after task j, column = task i"]
    lines.append("after  " + " ".join(f"{f'T{i + 1}':>7}" for i in range(T)))
    for j, row in enumerate(P):
        lines.append(f"{('init' if j == 0 else f'T{j}'):>5}  " + " ".join(f"{v:7.2f}" for v in row))
    for name in ("fid", "elbo"):
        if name in extra:
            lines.append(
                f"{name.upper():>5}  " + " ".join(f"{v:7.2f}" for v in extra[name][-1]) + "  (after the last task)"
            )
    if extra:
        lines.append(f"FID features: {result['fingerprint'].get('features')}")
    lines.append("")
    lines.append(f"{'metric':<12}{'test':>10}{'val':>10}")
    for key in result["metrics"]:
        cells = []
        for block in ("metrics", "val_metrics"):
            v = result[block].get(key)
            cells.append(f"{'null':>10}" if v is None else f"{v:10.2f}")
        lines.append(f"{key:<12}" + "".join(cells))
    lines.append(f"{'seconds':<12}{result['seconds']:10.1f}")
    return "\n".join(lines)


def load_joint_reference(path: Path, cfg) -> dict:
    """Test/val accuracies m_i of a `joint` result.json, checked against this run's protocol."""
    from anpyc_core import __version__
    from anpyc_core.metrics import fingerprint

    try:
        ref = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"--joint {path}: cannot read a result.json ({err})") from None
    if ref.get("config", {}).get("strategy", {}).get("method") != "joint":
        raise UsageError(f"--joint {path}: not a result of method 'joint'")
    mine, theirs = fingerprint(cfg, __version__), ref.get("fingerprint", {})
    keys = [k for k in mine if k not in ("hash", "version", "importance_batch")]
    diff = [k for k in keys if mine[k] != theirs.get(k)]
    if diff or ref["config"]["seed"] != cfg.seed:
        what = ", ".join(diff) or "seed"
        raise UsageError(f"--joint {path}: protocol differs from this run in {what}")
    return {"test": ref["acc_matrix"][-1], "val": ref["val_acc_matrix"][-1]}


@app.command()
def train(
    config: Path = typer.Argument(None, help="Run config YAML (omit for the embedded defaults)."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: key.path=value (repeatable)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: runs/<run id>)."),
    joint: Path = typer.Option(None, "--joint", help="A joint run's result.json, for FWT."),
    checkpoint_dir: Path = typer.Option(None, "--checkpoint-dir", help="Save state at every task boundary."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --checkpoint-dir's checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch progress."),
) -> None:
    """Run one task sequence locally (no Ray) and write result.json."""
    from anpyc_core.data import DataError
    from anpyc_core.errors import TrainingDiverged
    from anpyc_core.models import ModelInitError
    from anpyc_core.runner import make_trainer

    try:
        cfg = load_config(config, set_)
        reference = load_joint_reference(joint, cfg) if joint else None
        if resume and checkpoint_dir is None:
            raise UsageError("--resume needs --checkpoint-dir")
        out = out or Path("runs") / cfg.run_id()
        check_writable_dir(out, "--out")  # before training: a result that cannot be written is lost
        if checkpoint_dir is not None:
            check_writable_dir(checkpoint_dir, "--checkpoint-dir")
    except (ConfigError, UsageError) as err:
        fail(str(err), 2)

    def progress(msg: str) -> None:
        if not quiet or not msg.startswith("  "):
            typer.echo(msg, err=True)

    try:
        trainer = make_trainer(cfg, progress=progress, joint_reference=reference)
        ckpt = checkpoint_dir / "checkpoint.pt" if checkpoint_dir else None
        if resume and ckpt.exists():
            trainer.load_checkpoint(ckpt)
            typer.echo(f"resumed at task {trainer.next_task + 1} from {ckpt}", err=True)
        typer.echo(
            f"run {cfg.run_id()}: {cfg.strategy.method} on "
            f"{cfg.data.scenario} {cfg.data.benchmark}, "
            f"{len(trainer.tasks)} tasks, device {trainer.device}",
            err=True,
        )
        for _ in trainer.run():
            if ckpt:
                trainer.save_checkpoint(ckpt)
        result = trainer.result().to_dict()
        if hasattr(trainer, "save_samples"):  # generative runs: one row of samples per task
            grid = trainer.save_samples(out / "samples.png")
            typer.echo(f"wrote {grid}", err=True)
    except (ConfigError, ModelInitError) as err:  # model.init: a missing, foreign or misshapen file
        fail(str(err), 2)
    except (DataError, TrainingDiverged, ValueError) as err:
        fail(str(err), 1)
    write_json_atomic(out / "result.json", result)
    typer.echo(format_table(result))
    typer.echo(f"wrote {out / 'result.json'}")


@app.command()
def compress(
    config: Path = typer.Argument(..., help="Run config YAML (its first task is trained and compressed)."),
    importance: list[str] = typer.Option(["anpyc"], "--importance", help="Measure(s): anpyc, magnitude, mas, random."),
    schedule: str = typer.Option("0.8,0.7,0.5,0.4,0.1", "--schedule", help="Fractions of the rest pruned per step."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: key.path=value (repeatable)."),
    out: Path = typer.Option(Path("compress_out"), "--out", help="Folder for compression.{json,md,png}."),
) -> None:
    """Table IV: train, then prune the lowest-importance fraction of what remains and retrain, step by step."""
    from anpyc_core.compress import MEASURES
    from anpyc_core.compress import compress as run_compress
    from anpyc_core.data import DataError
    from sweeper.reading.compress_report import figure, table

    try:
        cfg = load_config(config, set_)
        bad = [m for m in importance if m not in MEASURES]
        if bad:
            raise UsageError(f"--importance: {bad[0]!r} is not a measure; allowed: {', '.join(MEASURES)}")
        try:
            fractions = tuple(float(v) for v in schedule.split(","))
        except ValueError:
            raise UsageError(f"--schedule: {schedule!r} is not a comma-separated list of fractions") from None
        if not fractions or not all(0 < f < 1 for f in fractions):
            raise UsageError(f"--schedule: every fraction must lie in (0, 1) (got {schedule})")
        check_writable_dir(out, "--out")
    except (ConfigError, UsageError) as err:
        fail(str(err), 2)
    results = []
    try:
        for measure in importance:
            typer.echo(f"compressing with {measure} importance", err=True)
            result = run_compress(cfg, measure, fractions, progress=lambda msg: typer.echo(f"  {msg}", err=True))
            results.append(result.to_dict())
    except (DataError, ValueError) as err:
        fail(str(err), 1)
    text = "\n\n".join(table(r) for r in results)
    write_json_atomic(out / "compression.json", {"results": results})
    (out / "compression.md").write_text(text + "\n")
    figure(results, out / "compression.png")
    typer.echo(text)
    typer.echo(f"wrote {out / 'compression.json'}, compression.md and compression.png")
