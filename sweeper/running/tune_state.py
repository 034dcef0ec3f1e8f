"""A last good copy of Tune's experiment state, so that a torn snapshot never loses a study.

Tune rewrites its experiment state (`tune/experiment_state-*.json` and its searcher's state file) in
place at every snapshot. A storage that fills up, or a driver killed during the write, leaves the file
truncated, and `Tuner.restore` can then neither resume nor say why. `StateBackup`, a Tune callback,
copies the state files into `tune_last_good/` whenever they read back whole (at most once per period,
so its cost per trial stays flat); `repair` puts that copy back before a resume when the newest state
is torn. A trial restored from the older copy redoes at most the tasks since then, and the results
writers are idempotent, so every trial and task is still recorded exactly once.
Imports: the storage layer, the checkpoint pruner and Ray Tune's Callback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import time
from typing import Any

from ray.tune import Callback

from sweeper.running.checkpoint_prune import CheckpointPruner
from sweeper.storage.store import StorageError, StudyStore

TUNE_DIR = "tune"
GOOD_DIR = "tune_last_good"
STATE_PREFIX = "experiment_state-"
MIN_BACKUP_PERIOD_S = 30.0


def read_back(data: bytes) -> tuple[bool, Any]:
    """Whether a Tune state file reads back whole (JSON: the experiment state; or a pickle: searchers), and
    the parsed JSON (None for a pickle), so that a reader of the state need not parse it again."""
    try:
        return True, json.loads(data)
    except (UnicodeDecodeError, ValueError):
        pass
    try:
        pickle.loads(data)  # noqa: S301 - the study's own file, written by its own driver
        return True, None
    except Exception:  # noqa: BLE001 - any failure to unpickle means: torn
        return False, None


def readable(data: bytes) -> bool:
    """Whether a Tune state file reads back whole."""
    return read_back(data)[0]


def state_files(store: StudyStore, folder: str) -> list[str]:
    """The state files of the newest Tune session in `folder` (they share its timestamp), newest state first."""
    return newest_session([n.rpartition("/")[2] for n in store.list_files(folder, recursive=False)])


def staged_files(staging: str | None) -> dict[str, bytes]:
    """The newest session's state files in Tune's driver staging folder (local, on the driver), by name; {}
    when there is none. Tune writes them there in its loop, all at once, before a background thread copies
    them into the storage one by one: read there they are always one snapshot, never two halves."""
    if not staging or not os.path.isdir(staging):
        return {}
    contents = {}
    for name in newest_session(os.listdir(staging)):
        with contextlib.suppress(OSError), open(os.path.join(staging, name), "rb") as handle:
            contents[name] = handle.read()
    return contents


def newest_session(names: list[str]) -> list[str]:
    """Of file names, the newest Tune session's state files, newest experiment state first."""
    states = sorted((n for n in names if n.startswith(STATE_PREFIX) and n.endswith(".json")), reverse=True)
    if not states:
        return []
    stamp = states[0].removeprefix(STATE_PREFIX).removesuffix(".json")
    return [states[0]] + sorted(n for n in names if stamp in n and n != states[0])


def newest_state(store: StudyStore) -> dict | None:
    """The newest experiment state Tune saved, parsed; None when there is none or it does not read back."""
    names = state_files(store, TUNE_DIR)
    if not names:
        return None
    whole, parsed = read_back(store.read_bytes(f"{TUNE_DIR}/{names[0]}"))
    return parsed if whole and isinstance(parsed, dict) else None


def saved_trial_count(store: StudyStore) -> int | None:
    """How many trials the newest experiment state holds; None when there is none or it does not read back."""
    state = newest_state(store)
    return None if state is None else len(state.get("trial_data") or [])


def saved_trial_statuses(store: StudyStore) -> list[str] | None:
    """Tune's status of every trial in the newest experiment state (a running one saved is restored as
    PENDING, so it counts as unfinished either way); None when there is none or it does not read back."""
    state = newest_state(store)
    if state is None:
        return None
    return [json.loads(trial_json).get("status", "PENDING") for trial_json, _ in state.get("trial_data") or []]


def backup(store: StudyStore, staging: str | None = None) -> dict | None:
    """Copy the newest state files into GOOD_DIR if every one of them reads back whole; the experiment
    state copied (Tune's JSON, parsed), or None if nothing was. From Tune's driver `staging` folder when
    given and filled (one snapshot for sure), else from the storage's copy."""
    contents = staged_files(staging)
    if not contents:
        names = state_files(store, TUNE_DIR)
        contents = {name: store.read_bytes(f"{TUNE_DIR}/{name}") for name in names}
    names = list(contents)
    parsed = {name: read_back(data) for name, data in contents.items()}
    if not contents or not all(whole for whole, _ in parsed.values()):
        return None  # torn or half-written just now: keep the previous good copy
    for name, data in contents.items():
        store.write_bytes(f"{GOOD_DIR}/{name}", data)
    for old in store.list_files(GOOD_DIR, recursive=False):
        if old.rpartition("/")[2] not in contents:
            store.delete(old)
    return parsed[names[0]][1]


def repair(store: StudyStore) -> str | None:
    """Before a resume: put the last good copy back if the newest state is torn; a line saying so, or None.

    StorageError if the state is torn and there is no good copy to put back."""
    names = state_files(store, TUNE_DIR)
    torn = [n for n in names if not readable(store.read_bytes(f"{TUNE_DIR}/{n}"))]
    if not torn:
        return None
    good = [n.rpartition("/")[2] for n in store.list_files(GOOD_DIR, recursive=False)]
    if not any(n.startswith(STATE_PREFIX) for n in good):
        raise StorageError(
            f"{store.uri(TUNE_DIR + '/' + torn[0])}: Tune's experiment state is torn and there is no last good copy "
            f"in {store.uri(GOOD_DIR)}; the study's results so far are kept: launch it again under a new name"
        )
    for name in torn:  # Tune reads the newest session's files: the torn ones become the good copy
        store.delete(f"{TUNE_DIR}/{name}")
    for name in good:
        store.write_bytes(f"{TUNE_DIR}/{name}", store.read_bytes(f"{GOOD_DIR}/{name}"))
    return (
        f"Tune's experiment state {', '.join(torn)} was torn (a full storage or a killed driver); "
        "resuming from its last good copy: a trial redoes at most its tasks since then"
    )


class StateBackup(Callback):
    """Tune callback: keep `tune_last_good/` up to date, at most once every `period_s` seconds; with
    `keep`, prune each finished trial to its last `keep` checkpoints once a whole copy records it finished."""

    def __init__(self, location: str, period_s: float, keep: int | None = None) -> None:
        self.location = location
        self.period_s = max(MIN_BACKUP_PERIOD_S, period_s)
        self.keep = keep
        self.pruner = CheckpointPruner(keep) if keep is not None else None
        self.last = 0.0
        self.seen_restored = False

    def __getstate__(self) -> dict:
        return {"location": self.location, "period_s": self.period_s, "keep": self.keep}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["location"], state["period_s"], state.get("keep"))

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """At a launch's first step, trials restored finished (a resume) wait for pruning too: a launch that
        ended before its next whole copy left theirs (once per launch: one listing per finished trial)."""
        if self.pruner is not None and not self.seen_restored:
            self.seen_restored = True
            for trial in trials:
                if trial.status == "TERMINATED":
                    self.pruner.finished(trial)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A finished trial waits for the next whole copy that records it finished, then is pruned."""
        if self.pruner is not None:
            self.pruner.finished(trial)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Back the state up when the period has passed (Tune has snapshotted it in between)."""
        now = time.monotonic()
        if now - self.last < self.period_s:
            return
        if self._backup(trials):  # until the first snapshot exists, try again at the next step
            self.last = now

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """A last copy at the end (or the interruption) of this launch (Tune's final snapshot is written)."""
        with contextlib.suppress(StorageError):  # stopping already: the error that stopped it is reported
            self._backup(trials)

    def _backup(self, trials: list) -> bool:
        staging = None  # where Tune's loop wrote its snapshot; it needs Ray's session (none: the storage's copy)
        with contextlib.suppress(Exception):  # noqa: BLE001 - Ray asserts when no session is up
            staging = trials[0].storage.experiment_driver_staging_path
        state = backup(StudyStore(self.location), staging if isinstance(staging, str) else None)
        if state is not None and self.pruner is not None:
            self.pruner.confirmed(state)
        return state is not None
