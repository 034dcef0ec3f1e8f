"""The `anpyc-sweep` command line.

Exit codes: 0 success, 1 runtime error (missing data, diverged training, unreachable store),
2 usage error (bad config or arguments). Every error is one line on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import typer

from anpyc_core.config import ConfigError, load_config

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="ANPyC and its rivals: train one run locally, or sweep studies on Ray Tune.",
    pretty_exceptions_enable=False,
)


class UsageError(Exception):
    """Bad input from the user (exit code 2)."""


def fail(message: str, code: int) -> None:
    """Print a one-line error and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON via a temp file and rename, so a crash never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, allow_nan=True)
    os.replace(tmp, path)


def format_table(result: dict) -> str:
    """The accuracy matrix and metrics as a fixed-width text table."""
    P = result["acc_matrix"]
    T = len(P[0])
    lines = ["test accuracy (%): row = after task j, column = task i"]
    lines.append("after  " + " ".join(f"{f'T{i + 1}':>7}" for i in range(T)))
    for j, row in enumerate(P):
        lines.append(f"{('init' if j == 0 else f'T{j}'):>5}  " + " ".join(f"{v:7.2f}" for v in row))
    lines.append("")
    lines.append(f"{'metric':<12}{'test':>10}{'val':>10}")
    for key in result["metrics"]:
        cells = []
        for block in ("metrics", "val_metrics"):
            v = result[block][key]
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


@app.callback()
def _root() -> None:
    """ANPyC and its rivals: train one run locally, or sweep studies on Ray Tune."""


@app.command()
def train(
    config: Path = typer.Argument(None, help="Run config YAML (omit for the embedded defaults)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a field: key.path=value (repeatable)."
    ),
    out: Path = typer.Option(None, "--out", help="Output folder (default: runs/<run id>)."),
    joint: Path = typer.Option(None, "--joint", help="A joint run's result.json, for FWT."),
    checkpoint_dir: Path = typer.Option(
        None, "--checkpoint-dir", help="Save state at every task boundary."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from --checkpoint-dir's checkpoint."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch progress."),
) -> None:
    """Run one task sequence locally (no Ray) and write result.json."""
    from anpyc_core.data import DataError
    from anpyc_core.trainer import Trainer, TrainingDiverged

    try:
        cfg = load_config(config, set_)
        reference = load_joint_reference(joint, cfg) if joint else None
        if resume and checkpoint_dir is None:
            raise UsageError("--resume needs --checkpoint-dir")
    except (ConfigError, UsageError) as err:
        fail(str(err), 2)
    out = out or Path("runs") / cfg.run_id()

    def progress(msg: str) -> None:
        if not quiet or not msg.startswith("  "):
            typer.echo(msg, err=True)

    try:
        trainer = Trainer(cfg, progress=progress, joint_reference=reference)
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
    except ConfigError as err:
        fail(str(err), 2)
    except (DataError, TrainingDiverged, ValueError) as err:
        fail(str(err), 1)
    write_json_atomic(out / "result.json", result)
    typer.echo(format_table(result))
    typer.echo(f"wrote {out / 'result.json'}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
