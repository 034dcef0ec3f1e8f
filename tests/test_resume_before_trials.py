"""Signals in a launch's first seconds (found on Slurm: a time limit hit while the study was starting).
A USR1 while the callbacks set up (MLflow's first connection takes seconds) stops the study at its task
boundaries, not as an interrupt; a launch stopped before Tune created any trial resumes as a fresh start
(it used to crash on trials restored with empty configs)."""

import json
import os
import signal

import pytest

from sweeper.running import launch as launch_module
from sweeper.running.drain import DRAIN, last_launch_drained
from sweeper.running.launch import launch, spec_text
from sweeper.running.tune_state import TUNE_DIR, saved_trial_count, state_files
from sweeper.storage import results
from sweeper.study.spec import parse_study
from sweeper.tracking import recorder as recorder_module
from sweeper.tracking.recorder import StudyRecorder

STUDY = {
    "name": "early",
    "base": {
        "device": "cpu",
        "data": {"benchmark": "digits", "scenario": "permuted", "num_tasks": 2},
        "model": {"hidden": [16]},
        "strategy": {"method": "finetune"},
        "optim": {"epochs": 1, "batch_size": 64},
    },
    "search": {"optim.lr": {"grid": [0.05, 0.1, 0.2]}},
    "seeds": [0],
    "max_concurrent_trials": 2,
}


class InterruptAtSetup(launch_module.DrainOnSignal):
    """Sends this process SIGINT while Tune sets its callbacks up: after Tune installed its Ctrl-C handler,
    before its first step, so the launch ends with a saved state that holds no trial."""

    def setup(self, **info):
        super().setup(**info)
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.e2e
def test_a_launch_stopped_before_any_trial_resumes_from_scratch(tmp_path, ray_session, monkeypatch):
    spec = parse_study({**STUDY, "storage": str(tmp_path / "out")})
    with monkeypatch.context() as patch:
        patch.setattr(launch_module, "DrainOnSignal", InterruptAtSetup)
        launch(spec, spec_text(spec), verbose=False)
    assert saved_trial_count(spec.store) == 0  # the state this test is about: Tune saved, no trial in it
    assert results.read_trials(spec.store).empty

    launch(spec, spec_text(spec), resume=True, verbose=False)

    trials = results.read_trials(spec.store)
    assert sorted(trials["trial_id"]) == sorted(set(trials["trial_id"])) and len(trials) == 3
    assert set(trials["status"]) == {"FINISHED"}
    tasks = results.read_tasks(spec.store)
    assert not tasks.duplicated(["trial_id", "after_task", "eval_task", "split"]).any()
    assert set(tasks.groupby("trial_id")["after_task"].max()) == {2}
    newest = json.loads(spec.store.read_bytes(f"{TUNE_DIR}/{state_files(spec.store, TUNE_DIR)[0]}"))
    assert len(newest["trial_data"]) == 3


class SignalledDuringSetup(StudyRecorder):
    """The study's recorder, with a SIGUSR1 (a Slurm time limit) arriving while it first connects to MLflow."""

    signalled = False

    def setup(self, **info):
        if not SignalledDuringSetup.signalled:
            SignalledDuringSetup.signalled = True
            os.kill(os.getpid(), signal.SIGUSR1)
        super().setup(**info)


@pytest.mark.e2e
def test_usr1_while_the_study_sets_up_stops_it_at_task_boundaries(tmp_path, ray_session, monkeypatch):
    spec = parse_study({**STUDY, "name": "usr1early", "storage": str(tmp_path / "out")})
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(recorder_module, "StudyRecorder", SignalledDuringSetup)  # launch imports it from there
            launch(spec, spec_text(spec), verbose=False)
        assert last_launch_drained()  # drained (Tune's own handler would have interrupted the run instead)
        assert not DRAIN.is_set()  # and the next launch in this process starts undrained
        assert results.read_trials(spec.store).empty  # no trial started after the signal
    finally:
        signal.signal(signal.SIGUSR1, previous)
    launch(spec, spec_text(spec), resume=True, verbose=False)
    trials = results.read_trials(spec.store)
    assert len(trials) == 3 and trials["trial_id"].is_unique and set(trials["status"]) == {"FINISHED"}
