"""Packed Optuna studies and member ASHA on real local Ray (issue 11, item 3)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeper.running.launch import launch, spec_text
from sweeper.running.member_asha import MemberRungs
from sweeper.storage import results
from sweeper.study.spec import parse_study
from sweeper.study.trials import OPTUNA_DB

BASE = {
    "device": "cpu",
    "data": {"benchmark": "digits", "num_tasks": 3},
    "model": {"hidden": [32, 16]},
    "strategy": {"method": "anpyc", "beta": 20},
    "optim": {"batch_size": 32, "epochs": 1},
}


@pytest.mark.parametrize("mode", ["max", "min"])
def test_member_rungs_decide_as_rays_asha_does(mode):
    rng = random.Random(7)
    ours = MemberRungs(max_t=9, grace_period=1, reduction_factor=3, mode=mode)
    ray_asha = ASHAScheduler(time_attr="task", metric="v", mode=mode, max_t=9, grace_period=1, reduction_factor=3)
    stops = 0
    for i in range(40):
        trial = SimpleNamespace(trial_id=f"t{i}", status="RUNNING")
        ray_asha.on_trial_add(None, trial)
        for task in range(1, 9):
            value = rng.uniform(0, 100)
            expected = ray_asha.on_trial_result(None, trial, {"task": task, "v": value}) == TrialScheduler.CONTINUE
            assert ours.decide(trial.trial_id, task, value) == expected, (i, task)
            assert ours.decide(trial.trial_id, task, value) == expected  # a replayed task: the same answer
            if not expected:
                stops += 1
                break
    assert stops > 10


def packed_optuna(storage, **extra) -> dict:
    return {
        "name": "packed_optuna",
        "base": BASE,
        "searcher": "optuna",
        "optuna": {"sampler": "random", "num_samples": 7, "seed": 3},
        # a width is part of the pack signature: one batch of asked members can make two packs
        "search": {"optim.lr": {"loguniform": [1.0e-4, 0.3]}, "model.hidden": {"choice": [[32, 16], [24, 16]]}},
        "seeds": [0, 1],
        "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        "pack": {"max_members": 4},
        "max_concurrent_trials": 1,
        "storage": str(storage),
        **extra,
    }


@pytest.mark.e2e  # a further real Ray study: the end-to-end lane
def test_a_packed_optuna_study_tells_every_member_and_asha_stops_members(ray_session, tmp_path):
    spec = parse_study(packed_optuna(tmp_path))
    grid = launch(spec, spec_text(spec), verbose=False)
    assert grid.num_errors == 0
    rows = results.read_trials(spec.store).set_index("trial_id")
    assert len(rows) == 7 and len(grid) < 7  # seven configurations in fewer Tune trials
    assert all(pack.metrics.get("pack_size", 0) >= 1 for pack in grid)
    stopped = rows[rows.status == "STOPPED"]
    assert len(stopped) >= 1 and (stopped.tasks_done < 3).all()
    assert set(rows.status) <= {"FINISHED", "STOPPED"}
    tasks = spec.store.read_table(results.TASKS)
    assert not tasks.duplicated(results.TASK_KEY).any()
    done_steps = spec.store.read_table(results.BOUNDARIES).groupby("trial_id")["after_task"].max()
    assert (done_steps.loc[rows.index] == rows.tasks_done).all()  # a stopped member recorded up to its stop

    study = optuna.load_study(study_name=spec.name, storage=f"sqlite:///{spec.study_dir / OPTUNA_DB}")
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state.is_finished() for t in trials)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned) == len(stopped)
    told = sorted(round(t.value, 6) for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert told == sorted(round(v, 6) for v in rows[rows.status == "FINISHED"].val_acc)
    widths = {str(t.params["model.hidden"]) for t in trials}
    assert len(widths) == 2
