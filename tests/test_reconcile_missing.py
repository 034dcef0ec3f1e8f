"""The end-of-launch reconcile (sweeper/running/launch.py): it finds the trials whose end the record misses
from trials.parquet alone, and reaches MLflow (a search over every trial run of the study: memory and time
in proportion to the study) only when one is missing."""

import json
from types import SimpleNamespace

import pytest

from sweeper.running import launch
from sweeper.storage import results
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import StudyRecorder


@pytest.fixture
def spec(tmp_path):
    """A study whose trials.parquet records trial `a` and pack member `p_m0`."""
    spec = parse_study({"name": "recon", "base": {"data": {"benchmark": "digits"}}, "storage": str(tmp_path)})
    for tid in ("a", "p_m0"):
        results.write_trial(spec.store, {"trial_id": tid, "status": "FINISHED"})
    return spec


def result(tid: str, config: dict, error=None, **metrics) -> SimpleNamespace:
    """What reconcile reads of a Tune Result."""
    return SimpleNamespace(metrics={"trial_id": tid, **metrics}, config=config, error=error)


def test_missing_ends_are_the_unrecorded_trials_and_pack_members(spec):
    pack = {"pack": json.dumps([{"seed": 0}, {"seed": 1}])}
    members = json.dumps([{"val_acc": 90.0}, {"diverged": "nan"}])
    grid = [result("a", {}), result("b", {}, error=RuntimeError("x")), result("p", pack, members=members)]
    missing = StudyRecorder(spec, "").missing_ends(grid)
    assert [(one.trial_id, type(err).__name__) for one, err in missing] == [("b", "RuntimeError"), ("p_m1", "NoneType")]
    assert missing[1][0].last_result == {"diverged": "nan"}


def test_a_study_recorded_whole_never_reaches_mlflow(spec, monkeypatch):
    def no_mlflow(self, **info):
        raise AssertionError("setup() reached MLflow")

    monkeypatch.setattr(StudyRecorder, "setup", no_mlflow)
    assert launch.reconcile(spec, "", [result("a", {})]) == 0
    with pytest.raises(AssertionError, match="reached MLflow"):  # one missing trial does reach it
        launch.reconcile(spec, "", [result("a", {}), result("c", {})])
