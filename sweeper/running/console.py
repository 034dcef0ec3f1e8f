"""The quiet console of `launch`: one status line instead of Tune's per-trial tables and tracebacks.

    study quickstart: 7/18 done (1 diverged, 0 failed), 2 running, 9 pending · best mean val_acc 97.31 (n=2) · ETA 0:41

The best mean ranks as `best` does: a configuration that lost a seed to divergence comes after every one that
lost none (a lone surviving seed does not lead the line). Unlike `best`, a failed trial does not count as lost
here: `--resume` runs failed trials again, so while a study runs a failure is not final.

On a terminal the line is rewritten in place; otherwise a line is printed whenever a trial ends, once its
slot has been given to the next pending trial (so the line never reads one running short between two
trials), or after OWED_S seconds if none starts.
A failed trial gets one line with its reason and where the full traceback is. `launch --verbose`
brings back Ray Tune's own output instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from ray.tune import Callback

from sweeper.study.spec import StudySpec
from sweeper.tracking.recorder import error_reason, members_of

#: Loggers whose INFO/WARNING lines (tensorboard hints, snapshot warnings, trial tracebacks) the quiet console hides.
QUIET_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air")
BEST_EVERY_S = 1.0  # the status line's best mean is recomputed at most this often
OWED_S = 2.0  # off a terminal, a trial's end waits at most this long for the next trial to take its slot


def quiet_ray_logging() -> None:
    """Only Ray's errors that stop the study reach the console; trial failures are reported by `ProgressLine`.

    Tune's newer console engine ignores `verbose=0` (it prints its configuration box and a
    tensorboard hint), so the classic reporter is selected, which honours it."""
    import mlflow  # noqa: F401 - imported first: it sets its own loggers' levels on import

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # the recorder reports store errors


class ProgressLine(Callback):
    """Counts trials (pack members count one each) and prints the study's status line."""

    def __init__(self, spec: StudySpec, total: int, prior=None, stream=None) -> None:
        self.spec = spec
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.running: set[str] = set()
        self.finished: dict[str, float | None] = {}  # trial id -> first objective (None: no value)
        self.groups: dict[str, list[float]] = {}  # configuration -> [sum, n] of its finished objectives
        self.lost: dict[str, int] = {}  # configuration -> its diverged seeds (such a configuration ranks last)
        self._best: tuple[float, int, int] | None = None
        self._best_at = -1.0
        self.diverged = self.failed = 0
        self.metric = spec.objectives[0].metric
        self.maximise = spec.objectives[0].mode == "max"
        self._last = ""
        self._owed_at: float | None = None  # off a terminal: when a trial ended whose line is not printed yet
        if prior is not None and len(prior):  # a resumed study: what its earlier launches recorded
            for row in prior.to_dict("records"):
                value = row.get(self.metric)
                ok = row.get("status") == "FINISHED" and isinstance(value, int | float)
                point = {k: row.get(f"cfg.{k}") for k in spec.search}
                config = json.dumps([row.get("ablation"), point], default=str)
                self._finish(row["trial_id"], float(value) if ok else None, config)
                if row.get("status") == "DIVERGED":
                    self.diverged += 1
                    self.lost[config] = self.lost.get(config, 0) + 1
                self.failed += row.get("status") == "ERROR"

    def __getstate__(self) -> dict:
        return {"spec": self.spec.model_dump(mode="json"), "total": self.total}  # counts restart per launch

    def __setstate__(self, state: dict) -> None:
        self.__init__(StudySpec.model_validate(state["spec"]), state["total"])

    # ------------------------------------------------------------- events
    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        """A trial (or pack) started."""
        for one in members_of(trial):
            self.running.add(one.trial_id)
        self._show(force=self._owed_at is not None)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Off a terminal: print the line a trial's end owes once no trial took its slot within OWED_S."""
        if self._owed_at is not None and time.monotonic() - self._owed_at >= OWED_S:
            self._show(force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        """A trial (or every member of a pack) ended: count it, keep its objective."""
        for one in members_of(trial, trial.last_result or {}):
            result = one.last_result or {}
            self.running.discard(one.trial_id)
            config = json.dumps([one.config.get("ablation"), one.config.get("point")], default=str)
            if "diverged" in result:
                self.diverged += 1
                if self.finished.get(one.trial_id) is None:  # counted once, as `_finish` counts it
                    self.lost[config] = self.lost.get(config, 0) + 1
                self._finish(one.trial_id, None, None)
                continue
            value = result.get(self.metric)
            self._finish(one.trial_id, float(value) if isinstance(value, int | float) else None, config)
        if self.tty or self.pending() == 0:
            self._show(force=True)
        else:  # the next trial is about to take the slot: its start prints the line
            self._owed_at = self._owed_at or time.monotonic()

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        """A trial failed for good: one line with the reason and where its traceback is."""
        members = members_of(trial, trial.last_result or {})
        for one in members:
            self.running.discard(one.trial_id)
            self._finish(one.trial_id, None, None)
        self.failed += len(members)
        where = getattr(trial, "error_file", None) or getattr(trial, "local_path", None) or "the study folder"
        if "pack" in trial.config:
            cfg = f"pack of {len(members)}"
        else:
            cfg = f"{trial.config.get('ablation')} {trial.config.get('point', {})}"
        self._print(f"trial {trial.trial_id} ({cfg}) failed: {error_reason(trial)} (traceback: {where})")
        self._show(force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """End the in-place line."""
        self._show(force=True)
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()

    # ------------------------------------------------------------- output
    def status(self) -> str:
        """The status line."""
        done = len(self.finished)
        parts = [
            f"study {self.spec.name}: {done}/{self.total} done ({self.diverged} diverged, {self.failed} failed), "
            f"{len(self.running)} running, {self.pending()} pending"
        ]
        best = self.best_mean()
        if best is not None:
            lost = f", {best[2]} diverged" if best[2] else ""  # only when every configuration lost a seed
            parts.append(f"best mean {self.metric} {best[0]:.2f} (n={best[1]}{lost})")
        elapsed = time.monotonic() - self.start
        if 0 < done < self.total:
            eta = elapsed / done * (self.total - done)
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return " · ".join(parts)

    def pending(self) -> int:
        """Trials neither finished nor running."""
        return max(0, self.total - len(self.finished) - len(self.running))

    def _finish(self, tid: str, value: float | None, config: str | None) -> None:
        """Count a finished trial once; its objective joins its configuration's running sum once (a trial
        that failed in an earlier launch and finishes after `--resume` counts with its value)."""
        if self.finished.get(tid) is not None:
            return
        self.finished[tid] = value
        if value is not None and value == value and config is not None:
            group = self.groups.setdefault(config, [0.0, 0])
            group[0] += value
            group[1] += 1

    def best_mean(self) -> tuple[float, int, int] | None:
        """The best configuration's mean over its finished seeds so far, n, and its diverged seeds: as `best`
        ranks them, a configuration that lost a seed to divergence comes after every one that lost none
        (recomputed at most once a second: a status line must not cost more per trial as the study grows)."""
        now = time.monotonic()
        if now - self._best_at >= BEST_EVERY_S:
            sign = 1.0 if self.maximise else -1.0
            means = [
                (self.lost.get(config, 0) > 0, -sign * total / n, total / n, n, self.lost.get(config, 0))
                for config, (total, n) in self.groups.items()
            ]
            self._best, self._best_at = (min(means)[2:] if means else None), now
        return self._best

    def _show(self, force: bool = False) -> None:
        line = self.status()
        if line == self._last and not force:
            return
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif force and line != self._last:
            self.stream.write(line + "\n")
            self.stream.flush()
        if force:
            self._owed_at = None
        self._last = line

    def _print(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last = ""
