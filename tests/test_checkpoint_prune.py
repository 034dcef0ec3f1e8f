"""Pruning a finished trial's old task checkpoints (sweeper/running/checkpoint_prune.py): only once a whole
snapshot records the trial finished, so no restore can ever name a deleted checkpoint."""

import json
from types import SimpleNamespace

from pyarrow import fs as pafs
from ray.train._internal.storage import StorageContext

from sweeper.running.checkpoint_prune import CheckpointPruner, prune_trial, terminated_in
from sweeper.running.tune_state import TUNE_DIR, StateBackup
from sweeper.storage.store import StudyStore

STATE = f"{TUNE_DIR}/experiment_state-2026-12-03_10-00-00.json"


def tune_state(statuses: dict[str, str]) -> bytes:
    """An experiment state as Tune writes it: per trial a JSON string of its state and one of its metadata."""
    entries = []
    for trial_id, status in statuses.items():
        state = json.dumps({"stub": False, "trainable_name": "train_trial", "trial_id": trial_id, "status": status})
        entries.append([state, json.dumps({"num_failures": 0})])
    return json.dumps({"trial_data": entries, "runner_data": {}, "stats": {}}).encode()


def trial_with_checkpoints(root, name: str, count: int) -> SimpleNamespace:
    """A trial whose storage folder holds `count` checkpoint folders, each with its state file."""
    storage = StorageContext(storage_path=str(root), experiment_dir_name=TUNE_DIR, trial_dir_name=name)
    for i in range(count):
        folder = root / TUNE_DIR / name / f"checkpoint_{i:06d}"
        folder.mkdir(parents=True)
        (folder / "state.pt").write_bytes(b"x" * 10)
    (root / TUNE_DIR / name / "result.json").write_text("{}")
    return SimpleNamespace(trial_id=name, storage=storage)


def kept(root, name: str) -> list[str]:
    return sorted(p.name for p in (root / TUNE_DIR / name).iterdir())


def test_terminated_in_reads_each_wanted_trials_status():
    statuses = {"a_00000": "TERMINATED", "a_00001": "RUNNING", "a_00002": "TERMINATED", "a_00003": "ERROR"}
    state = json.loads(tune_state(statuses))
    assert terminated_in(state, {"a_00000", "a_00001", "a_00003"}) == {"a_00000"}
    assert terminated_in(state, set()) == set()


def test_prune_trial_keeps_the_newest_checkpoints_and_everything_else(tmp_path):
    trial = trial_with_checkpoints(tmp_path, "t0", 12)  # index 10 sorts before 9 as text: order is numeric
    assert prune_trial(pafs.LocalFileSystem(), trial.storage.trial_fs_path, keep=2) == 10
    assert kept(tmp_path, "t0") == ["checkpoint_000010", "checkpoint_000011", "result.json"]
    assert prune_trial(pafs.LocalFileSystem(), trial.storage.trial_fs_path, keep=2) == 0  # idempotent


def test_a_finished_trial_is_pruned_only_after_a_whole_snapshot_records_it_finished(tmp_path):
    store = StudyStore(str(tmp_path))
    backup = StateBackup(str(tmp_path), period_s=0.0, keep=2)
    done = trial_with_checkpoints(tmp_path, "t_done", 5)
    trial_with_checkpoints(tmp_path, "t_run", 5)  # running: never reported finished
    backup.on_trial_complete(0, [], done)
    # the newest snapshot on the storage still says RUNNING (the driver's snapshot is older than the end)
    store.write_bytes(STATE, tune_state({"t_done": "RUNNING", "t_run": "RUNNING"}))
    backup.on_experiment_end([])
    assert len(kept(tmp_path, "t_done")) == 6  # a resume from that snapshot restarts it from its checkpoint
    store.write_bytes(STATE, tune_state({"t_done": "TERMINATED", "t_run": "RUNNING"})[:-5])  # torn
    backup.on_experiment_end([])
    assert len(kept(tmp_path, "t_done")) == 6  # a torn snapshot proves nothing
    store.write_bytes(STATE, tune_state({"t_done": "TERMINATED", "t_run": "RUNNING"}))
    backup.on_experiment_end([])
    assert kept(tmp_path, "t_done") == ["checkpoint_000003", "checkpoint_000004", "result.json"]
    assert len(kept(tmp_path, "t_run")) == 6  # a running trial keeps every checkpoint until it finishes


def test_checkpoints_all_prunes_nothing_and_survives_pickling(tmp_path):
    import pickle

    store = StudyStore(str(tmp_path))
    trial = trial_with_checkpoints(tmp_path, "t0", 4)
    every = StateBackup(str(tmp_path), period_s=0.0, keep=None)
    every.on_trial_complete(0, [], trial)
    store.write_bytes(STATE, tune_state({"t0": "TERMINATED"}))
    every.on_experiment_end([])
    assert len(kept(tmp_path, "t0")) == 5
    copy = pickle.loads(pickle.dumps(StateBackup(str(tmp_path), period_s=0.0, keep=2)))  # as in tuner.pkl
    assert isinstance(copy.pruner, CheckpointPruner) and copy.pruner.keep == 2 and not copy.pruner.waiting


def test_trials_restored_finished_are_pruned_by_the_resumed_launch(tmp_path):
    """A launch killed before its next whole copy left its finished trials unpruned: the resume (which
    never reruns them, so never reports them finished) prunes them at its first whole copy."""
    store = StudyStore(str(tmp_path))
    done = trial_with_checkpoints(tmp_path, "t_done", 5)
    done.status = "TERMINATED"
    running = trial_with_checkpoints(tmp_path, "t_run", 5)
    running.status = "PENDING"
    store.write_bytes(STATE, tune_state({"t_done": "TERMINATED", "t_run": "RUNNING"}))
    resumed = StateBackup(str(tmp_path), period_s=0.0, keep=2)
    resumed.on_step_begin(0, [done, running])
    resumed.on_step_end(0, [done, running])
    assert kept(tmp_path, "t_done") == ["checkpoint_000003", "checkpoint_000004", "result.json"]
    assert len(kept(tmp_path, "t_run")) == 6
