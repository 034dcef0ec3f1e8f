"""Keep the Tune driver's memory per finished trial small: once the study has recorded a trial, Tune keeps
only the few fields it still acts on.

Tune holds every trial's last result for the whole study, with running statistics (max, min, mean, last-5
and last-10 averages) of each numeric field, and a cached JSON of both. A trial of ours reports ~20 numbers
and several JSON strings (its task history, matrices, config), so Tune held ~130 KB per finished trial
(docs/PERFORMANCE.md). After StudyRecorder has written a finished trial's record to MLflow and Parquet,
nothing reads those fields from Tune again (`best`, `report`, `compare` read the study's tables), so
`SlimRecorded`, the last callback, cuts the trial's last result down to the objectives and the outcome.

May import ray.tune and sweeper.study; nothing reads from here but launch.
"""

from __future__ import annotations

import json
from typing import Any

from ray.tune import Callback

# what the console, `reconcile` (its ResultGrid's `Result.config` is the result's "config") and a resumed
# launch still read from a finished trial's last result, beside the objectives
KEPT = ("trial_id", "config", "task", "num_tasks", "done", "training_iteration", "diverged", "stopped", "pack_size")


def slim_result(result: dict[str, Any], objectives: list[str]) -> dict[str, Any]:
    """The fields of a finished trial's result worth keeping: objectives, outcome, a pack's slim members."""
    keep = {k: result[k] for k in (*KEPT, *objectives) if k in result}
    if isinstance(result.get("members"), str):  # a pack: each member's part slimmed alike
        keep["members"] = json.dumps([slim_result(part, objectives) for part in json.loads(result["members"])])
    return keep


class SlimRecorded(Callback):
    """Last of the study's callbacks: a finished trial, once recorded, keeps only its slim last result
    (and Tune's running statistics of only those fields). A callback that raises before this one (the
    recorder on a tracking outage) leaves the trial whole, so `reconcile` can still record it."""

    def __init__(self, objectives: list[str]) -> None:
        self.objectives = list(objectives)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        """Replace the recorded trial's last result with its slim form."""
        meta = getattr(trial, "run_metadata", None)
        if meta is None or not meta.last_result:
            return
        slim = slim_result(meta.last_result, self.objectives)
        meta.last_result = slim  # the metadata invalidates its cached JSON on assignment
        meta.metric_analysis = {k: v for k, v in meta.metric_analysis.items() if k in slim}
        meta.metric_n_steps = {k: v for k, v in meta.metric_n_steps.items() if k in slim}
