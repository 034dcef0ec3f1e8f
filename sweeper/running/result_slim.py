"""Keep the Tune driver's memory per finished trial small: once the study has recorded a trial, Tune keeps
only the few fields it still acts on.

Tune holds every trial's last result for the whole study, with running statistics (max, min, mean, last-5
and last-10 averages) of each numeric field and a cached JSON of both, and the full result of every task
checkpoint the trial reported (its checkpoint manager; the study prunes the checkpoints on the storage, not
these). A trial of ours reports ~20 numbers and several JSON strings (its task history, matrices, config)
per task. After StudyRecorder has written a finished trial's record to MLflow and Parquet, nothing reads
those fields from Tune again (`best`, `report`, `compare` read the study's tables), so `SlimRecorded`, the
last callback, cuts them down to the objectives and the outcome; and every `TRIM_EVERY` finished trials it
hands the heap's freed pages back to the OS (glibc's `malloc_trim`; elsewhere nothing). Measured in
docs/PERFORMANCE.md.

May import ray.tune and sweeper.study; nothing reads from here but launch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
from typing import Any

from ray.tune import Callback

# what the console, `reconcile` (its ResultGrid's `Result.config` is the result's "config") and a resumed
# launch still read from a finished trial's last result, beside the objectives
KEPT = ("trial_id", "config", "task", "num_tasks", "done", "training_iteration", "diverged", "stopped", "pack_size")


#: finished trials between two `malloc_trim` calls
TRIM_EVERY = 50


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, looked up once (`find_library` runs a subprocess), or None elsewhere."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def trim_heap() -> bool:
    """Return the C heap's free pages to the OS (glibc); False where there is no `malloc_trim`."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def slim_result(result: dict[str, Any], objectives: list[str]) -> dict[str, Any]:
    """The fields of a finished trial's result worth keeping: objectives, outcome, a pack's slim members."""
    keep = {k: result[k] for k in (*KEPT, *objectives) if k in result}
    if isinstance(result.get("members"), str):  # a pack: each member's part slimmed alike
        keep["members"] = json.dumps([slim_result(part, objectives) for part in json.loads(result["members"])])
    return keep


class SlimRecorded(Callback):
    """Last of the study's callbacks: a finished trial, once recorded, keeps only its slim last result, Tune's
    running statistics of only those fields, and slim results beside its task checkpoints. A callback that
    raises before this one (the recorder on a tracking outage) leaves the trial whole for `reconcile`."""

    def __init__(self, objectives: list[str]) -> None:
        self.objectives = list(objectives)
        self.finished = 0

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        """Replace the recorded trial's last result (and its checkpoints' results) with their slim form."""
        meta = getattr(trial, "run_metadata", None)
        if meta is None or not meta.last_result:
            return
        slim = slim_result(meta.last_result, self.objectives)
        meta.last_result = slim  # the metadata invalidates its cached JSON on assignment
        meta.metric_analysis = {k: v for k, v in meta.metric_analysis.items() if k in slim}
        meta.metric_n_steps = {k: v for k, v in meta.metric_n_steps.items() if k in slim}
        manager = meta.checkpoint_manager
        for saved in [*getattr(manager, "_checkpoint_results", []), getattr(manager, "latest_checkpoint_result", None)]:
            if saved is not None and isinstance(getattr(saved, "metrics", None), dict):
                saved.metrics = slim_result(saved.metrics, self.objectives)
        meta.invalidate_cache()
        self.finished += 1
        if self.finished % TRIM_EVERY == 0:
            trim_heap()
