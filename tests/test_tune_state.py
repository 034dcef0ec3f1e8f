"""The last good copy of Tune's experiment state (sweeper/tune_state.py): kept only while whole, put back
over a torn snapshot before a resume, and a torn state without a copy is one line, not a traceback."""

import json
import pickle
from types import SimpleNamespace

import pytest

from sweeper.running.tune_state import GOOD_DIR, TUNE_DIR, StateBackup, backup, repair
from sweeper.storage.store import StorageError, StudyStore

STAMP = "2026-12-02_18-10-18"
STATE = f"experiment_state-{STAMP}.json"
SEARCH = f"basic-variant-state-{STAMP}.json"


def write_state(store: StudyStore, trials: int) -> tuple[bytes, bytes]:
    state = json.dumps({"trial_data": [f"trial {i}" for i in range(trials)]}).encode()
    search = pickle.dumps({"_iterators": list(range(trials))})
    store.write_bytes(f"{TUNE_DIR}/{STATE}", state)
    store.write_bytes(f"{TUNE_DIR}/{SEARCH}", search)
    return state, search


def test_backup_keeps_the_state_only_while_it_reads_back_whole(tmp_path):
    store = StudyStore(str(tmp_path))
    assert backup(store) is None  # no snapshot yet: nothing to copy
    state, search = write_state(store, 3)
    assert backup(store) == json.loads(state)  # the state it copied, parsed once (the pruner reads it)
    assert store.read_bytes(f"{GOOD_DIR}/{STATE}") == state and store.read_bytes(f"{GOOD_DIR}/{SEARCH}") == search
    store.write_bytes(f"{TUNE_DIR}/{STATE}", state[: len(state) // 2])  # torn, as by a full disk
    assert backup(store) is None
    assert store.read_bytes(f"{GOOD_DIR}/{STATE}") == state  # the good copy is not overwritten by the torn one


def test_repair_puts_the_good_copy_back_over_a_torn_state(tmp_path):
    store = StudyStore(str(tmp_path))
    state, search = write_state(store, 3)
    backup(store)
    write_state(store, 5)  # a later snapshot ...
    store.write_bytes(f"{TUNE_DIR}/{STATE}", b'{"trial_data": ["tri')  # ... torn mid-write
    said = repair(store)
    assert said is not None and STATE in said and "last good copy" in said
    assert store.read_bytes(f"{TUNE_DIR}/{STATE}") == state and store.read_bytes(f"{TUNE_DIR}/{SEARCH}") == search
    assert repair(store) is None  # whole again: nothing to do


def test_a_torn_state_without_a_copy_is_one_line_naming_the_file(tmp_path):
    store = StudyStore(str(tmp_path))
    write_state(store, 2)
    store.write_bytes(f"{TUNE_DIR}/{SEARCH}", b"\x80\x05\x95")  # a torn pickle
    with pytest.raises(StorageError, match=f"{TUNE_DIR}/{SEARCH}: Tune's experiment state is torn") as err:
        repair(store)
    assert "\n" not in str(err.value)


def test_the_copy_is_taken_from_tunes_staging_folder_where_a_snapshot_is_always_whole(tmp_path):
    store = StudyStore(str(tmp_path / "study"))
    state, _ = write_state(store, 2)  # the storage's copy: the background sync has copied the state ...
    staging = tmp_path / "driver_artifacts"  # ... while Tune's loop wrote a newer snapshot here, both files
    staging.mkdir()
    newer_state = json.dumps({"trial_data": [f"trial {i}" for i in range(6)]}).encode()
    newer_search = pickle.dumps({"_iterators": list(range(6))})
    (staging / STATE).write_bytes(newer_state)
    (staging / SEARCH).write_bytes(newer_search)
    store.write_bytes(f"{TUNE_DIR}/{SEARCH}", newer_search)  # the storage holds one file of each snapshot
    trials = [SimpleNamespace(storage=SimpleNamespace(experiment_driver_staging_path=str(staging)))]
    assert StateBackup(store.uri(""), period_s=0.0)._backup(trials)
    assert store.read_bytes(f"{GOOD_DIR}/{STATE}") == newer_state  # one snapshot, not the storage's mix
    assert store.read_bytes(f"{GOOD_DIR}/{SEARCH}") == newer_search
    assert backup(store) == json.loads(state)  # without a staging folder: the storage's copy, as before
