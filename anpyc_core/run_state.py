"""What every trainer shares (the classifier `Trainer`, the `GenerativeTrainer`, the packed trainer): the
records a run yields (`TaskRecord`, `RunResult`), task-boundary checkpoint files, the stopping rule, and
the device and seed helpers. Imports torch, config and metrics-free parts of the package only."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from anpyc_core import __version__
from anpyc_core.config import ConfigError, RunConfig
from anpyc_core.errors import TrainingDiverged

__all__ = [
    "CHECKPOINT_FORMAT", "CheckpointFiles", "Patience", "Progress", "RunResult", "TaskRecord", "TrainingDiverged",
    "check_checkpoint", "derive_seed", "resolve_device", "save_atomically",
]

CHECKPOINT_FORMAT = 1
Progress = Callable[[str], None]


@dataclass
class TaskRecord:
    """What is known after finishing a task: its accuracy rows and timing."""

    task: int  # 1-based number of tasks finished
    num_tasks: int
    acc_row: list[float]
    val_acc_row: list[float]
    seconds: float
    loss: float
    penalty: float
    counts: dict[str, int] = field(default_factory=dict)  # Strategy.parameter_counts
    stability: float | None = None  # lr·2λ·max Ω at the task's start (penalty methods; see schedule.py)
    rounds: list[dict] = field(default_factory=list)  # per pruning round: freed and Ω = 0 fractions per tensor
    #: generative runs: further per-task rows beside the accuracy (fid, val_fid, elbo)
    extra_rows: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class RunResult:
    """The outcome of a whole task sequence (what `result.json` holds)."""

    config: dict
    run_id: str
    fingerprint: dict
    metrics: dict
    val_metrics: dict
    acc_matrix: list[list[float]]
    val_acc_matrix: list[list[float]]
    seconds: float
    task_seconds: list[float]
    version: str = __version__
    joint_reference: dict | None = field(default=None)
    #: generative runs: FID (and ELBO) matrices shaped like acc_matrix
    extra_matrices: dict[str, list[list[float]]] | None = field(default=None)
    #: one line per pruning round that cost more validation accuracy than allowed (see `RoundGuard`)
    prune_flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def derive_seed(seed: int, task: int) -> int:
    """The torch seed of `task` (task −1 = model initialisation)."""
    return (seed * 1_000_003 + (task + 1) * 7_919) % (2**63)


class Patience:
    """The paper's stopping rule: True once the loss has not decreased for `patience` epochs (None: never)."""

    def __init__(self, patience: int | None) -> None:
        self.patience, self.best, self.stale = patience, float("inf"), 0

    def exhausted(self, loss: float) -> bool:
        """Count one epoch's loss; True when the phase should end."""
        if self.patience is None:
            return False
        if loss < self.best:
            self.best, self.stale = loss, 0
        else:
            self.stale += 1
        return self.stale >= self.patience


def check_checkpoint(state: dict, cfg: RunConfig) -> None:
    """ValueError unless `state` is a checkpoint of this format written by a run of `cfg`."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT}")
    if state["run_id"] != cfg.run_id():
        raise ValueError(f"checkpoint belongs to run {state['run_id']}, this config is run {cfg.run_id()}")


class CheckpointFiles:
    """Task-boundary checkpoints of a trainer with `cfg`, `strategy`, `next_task`, the accuracy matrices and
    `task_seconds`; a trainer adds its own entries through `extra_state` and `restore_extra`."""

    def checkpoint_state(self) -> dict:
        """Everything needed to resume at this task boundary."""
        return {
            "format": CHECKPOINT_FORMAT,
            "run_id": self.cfg.run_id(),
            "next_task": self.next_task,
            "acc_matrix": self.acc_matrix,
            "val_acc_matrix": self.val_acc_matrix,
            "task_seconds": self.task_seconds,
            "prune_flags": list(getattr(self, "prune_flags", [])),
            "strategy": self.strategy.state_dict(),
            **self.extra_state(),
        }

    def extra_state(self) -> dict:
        """The trainer's own checkpoint entries (none by default)."""
        return {}

    def restore_extra(self, state: dict) -> None:
        """Prepare for and restore the trainer's own entries; called before the strategy's state loads."""

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore a `checkpoint_state()`; it must come from the same config."""
        check_checkpoint(state, self.cfg)
        self.restore_extra(state)
        self.strategy.load_state_dict(state["strategy"])
        self.next_task = state["next_task"]
        self.acc_matrix = [list(r) for r in state["acc_matrix"]]
        self.val_acc_matrix = [list(r) for r in state["val_acc_matrix"]]
        self.task_seconds = list(state["task_seconds"])
        self.prune_flags = list(state.get("prune_flags", []))  # checkpoints from before the guard have none

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (temp file + rename): never a torn file."""
        return save_atomically(self.checkpoint_state(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from a file written by `save_checkpoint`."""
        self.load_checkpoint_state(torch.load(path, map_location=self.device, weights_only=True))


def save_atomically(state: dict, path: str | Path) -> Path:
    """`torch.save` to a temp file beside `path`, then rename: readers never see a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
