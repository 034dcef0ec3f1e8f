"""Stopping a study at its trials' task boundaries: SIGUSR1 to the driver (a Slurm time limit, a preemption).

On the signal no trial starts any more; every running trial goes on to the end of its current task,
reports it with its checkpoint, and is paused there. Once none runs, the launch ends as an interrupted
one does (Tune saves its state) and `--resume` continues each paused trial from that boundary: no task
is redone and none is lost. A second SIGUSR1 interrupts at once, as Ctrl-C does (the trials then redo
the task they were in). Tune itself treats SIGUSR1 as Ctrl-C; `DrainOnSignal` takes the signal over once
Tune has installed its handler, and keeps Tune's to end the run with.
Imports: Ray Tune's scheduler and callback interfaces only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

#: set by SIGUSR1: the running launch stops at its trials' task boundaries
DRAIN = threading.Event()


class _Shared:
    """What the signal handler, the callback and the CLI share within this process."""

    #: Tune's own interrupt (what Ctrl-C does), kept when `DrainOnSignal` takes SIGUSR1 over
    tune_interrupt: Callable | None = None
    #: whether the last launch in this process ended by stopping at task boundaries
    last_drained: bool = False


_SHARED = _Shared()


def last_launch_drained() -> bool:
    """Whether the last launch in this process stopped at its trials' task boundaries (SIGUSR1)."""
    return _SHARED.last_drained


def request_drain(signum: int | None = None, frame: Any = None) -> None:
    """The SIGUSR1 handler: the first asks for a stop at task boundaries, a second for a stop now."""
    if DRAIN.is_set() and _SHARED.tune_interrupt is not None:
        print("SIGUSR1 again: stopping now; running trials redo their current task on --resume", file=sys.stderr)
        _SHARED.tune_interrupt(signum, frame)
        return
    DRAIN.set()
    print(
        "SIGUSR1: no new trials; running trials stop at the end of their current task (send it again to stop now)",
        file=sys.stderr,
        flush=True,
    )


def end_run() -> None:
    """End the running launch as Ctrl-C does: Tune saves its state and returns."""
    if _SHARED.tune_interrupt is not None:
        _SHARED.tune_interrupt(signal.SIGUSR1, None)
    else:  # Tune set no handler of its own (not the main thread): its SIGINT handling is all there is
        os.kill(os.getpid(), signal.SIGINT)


def goes_on(result: dict) -> bool:
    """Whether the trial that reported `result` has tasks left (a final or diverged report ends it anyway)."""
    if "diverged" in result:
        return False
    if "members" in result:  # a pack: over when every member has ended
        parts = json.loads(result["members"])
        if all("diverged" in p or "stopped" in p for p in parts):
            return False
    return int(result.get("task", 0)) < int(result.get("num_tasks", sys.maxsize))


class DrainScheduler(TrialScheduler):
    """Tune's scheduler (FIFO or the study's ASHA) that also pauses trials at task boundaries on DRAIN."""

    _supports_buffered_results = False  # one report per step: the pause comes at the first boundary

    def __init__(self, inner: TrialScheduler | None = None) -> None:
        self.inner = inner or FIFOScheduler()
        self.running_at_drain: set[str] | None = None
        self.ended = False

    @property
    def metric(self):
        """The inner scheduler's metric."""
        return self.inner.metric

    @property
    def mode(self):
        """The inner scheduler's mode."""
        return self.inner.mode

    def set_search_properties(self, metric, mode, **spec) -> bool:
        """Passed to the inner scheduler."""
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        """Passed to the inner scheduler."""
        self.inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        """Passed to the inner scheduler."""
        self.inner.on_trial_error(tune_controller, trial)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        """Passed to the inner scheduler."""
        self.inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        """Passed to the inner scheduler."""
        self.inner.on_trial_remove(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        """The inner scheduler's decision, but PAUSE (at this task boundary) for a trial with tasks left on DRAIN."""
        decision = self.inner.on_trial_result(tune_controller, trial, result)
        if DRAIN.is_set() and decision == TrialScheduler.CONTINUE and goes_on(result):
            return TrialScheduler.PAUSE
        return decision

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """The inner scheduler's choice; on DRAIN none, trials started since are paused, and once none runs
        the launch ends (Tune saves its state; the paused trials resume from their boundaries)."""
        if not DRAIN.is_set():
            return self.inner.choose_trial_to_run(tune_controller)
        running = [t for t in tune_controller.get_trials() if t.status == Trial.RUNNING]
        if self.running_at_drain is None:
            self.running_at_drain = {t.trial_id for t in running}
        for trial in running:
            if trial.trial_id not in self.running_at_drain:  # started after the signal: nothing done yet
                tune_controller.pause_trial(trial, should_checkpoint=False)
        if not any(t.trial_id in self.running_at_drain for t in running) and not self.ended:
            self.ended = True
            end_run()
        return None

    def debug_string(self) -> str:
        """The inner scheduler's."""
        return self.inner.debug_string()

    def save(self, checkpoint_path: str) -> None:
        """Passed to the inner scheduler."""
        self.inner.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Passed to the inner scheduler."""
        self.inner.restore(checkpoint_path)

    def __getstate__(self) -> dict:
        return {"inner": self.inner}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["inner"])


def with_drain(scheduler: TrialScheduler | None) -> DrainScheduler:
    """`scheduler` (None: FIFO) able to stop at task boundaries; one already able is returned as it is."""
    return scheduler if isinstance(scheduler, DrainScheduler) else DrainScheduler(scheduler)


class DrainOnSignal(Callback):
    """Takes SIGUSR1 over from Tune once Tune has set its handlers (`setup` runs after that)."""

    def setup(self, **info: Any) -> None:
        """Keep Tune's SIGUSR1 handler (its interrupt) and answer SIGUSR1 with `request_drain`."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals are the main thread's: Tune then has no handler to replace either
        previous = signal.getsignal(signal.SIGUSR1)
        if callable(previous) and previous is not request_drain:
            _SHARED.tune_interrupt = previous
        signal.signal(signal.SIGUSR1, request_drain)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """The stop asked for is done: a next launch in this process starts undrained."""
        _SHARED.last_drained = DRAIN.is_set()
        DRAIN.clear()
