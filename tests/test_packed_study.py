"""A packed grid study on real local Ray: one Tune trial per pack, one record per member (issue 11, item 3)."""

from __future__ import annotations

import mlflow
import pytest

from anpyc_core.config import ConfigError
from sweeper.reading.query import rerun
from sweeper.running.launch import launch, spec_text
from sweeper.storage import results
from sweeper.study.packs import pack_groups
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE

BASE = {
    "device": "cpu",
    "data": {"benchmark": "digits", "num_tasks": 2},
    "model": {"hidden": [32, 16]},
    "strategy": {"method": "anpyc", "beta": 20},
    "optim": {"lr": 0.1, "batch_size": 32, "epochs": 2},
}


def study(storage, **extra) -> dict:
    return {
        "name": "packed",
        "base": BASE,
        "search": {"strategy.lam": {"grid": [0.5, 2.0]}},
        # `hot` shares full's pack signature (lr is a member field) and diverges on purpose
        "ablations": {"full": {}, "hot": {"optim.lr": 1.0e6}, "no_pruning": {"strategy.pruning": "none"}},
        "seeds": [0, 1],
        "pack": {"max_members": 8},
        "storage": str(storage),
        "max_concurrent_trials": 2,
        **extra,
    }


@pytest.fixture(scope="module")
def packed_study(ray_session, tmp_path_factory):
    spec = parse_study(study(tmp_path_factory.mktemp("packed")))
    grid = launch(spec, spec_text(spec))
    return spec, grid


def test_trials_are_grouped_by_signature_into_packs(tmp_path):
    spec = parse_study(study(tmp_path))
    groups = pack_groups(spec)
    assert [len(g) for g in groups] == [8, 4]
    assert [{m["ablation"] for m in g} for g in groups] == [{"full", "hot"}, {"no_pruning"}]
    smaller = parse_study(study(tmp_path, pack={"max_members": 3}))
    assert [len(g) for g in pack_groups(smaller)] == [3, 3, 2, 3, 1]


def test_packing_refuses_what_it_cannot_run_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="pack.max_members"):
        parse_study(study(tmp_path, pack={"max_members": 0}))


@pytest.mark.e2e  # a further real Ray study: the end-to-end lane
def test_one_tune_trial_per_pack_and_one_record_per_member(packed_study):
    spec, grid = packed_study
    assert len(grid) == 2 and grid.num_errors == 0
    rows = results.read_trials(spec.store)
    assert len(rows) == 12 and rows["trial_id"].is_unique
    by_status = rows.groupby("ablation")["status"].agg(set).to_dict()
    assert by_status == {"full": {"FINISHED"}, "no_pruning": {"FINISHED"}, "hot": {"DIVERGED"}}
    assert rows[rows.ablation == "hot"]["error"].str.contains("training loss became").all()
    finished = rows[rows.status == "FINISHED"]
    tasks = spec.store.read_table(results.TASKS)
    assert not tasks.duplicated(results.TASK_KEY).any()
    boundaries = spec.store.read_table(results.BOUNDARIES)
    per_member = boundaries[boundaries.trial_id.isin(finished.trial_id)].groupby("trial_id")["after_task"]
    assert len(per_member) == 8 and set(per_member.apply(sorted).map(tuple)) == {(1, 2)}  # each task once


@pytest.mark.e2e  # a further real Ray study: the end-to-end lane
def test_members_have_their_own_nested_runs_and_rerun_sequentially_to_the_same_numbers(packed_study):
    spec, _ = packed_study
    uri = spec.resolved_tracking_uri()
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name(spec.name)
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=100) if r.data.tags.get(TAG_ROLE) == "trial"]
    assert len(runs) == 12
    assert {r.info.status for r in runs if r.data.tags["ablation"] == "hot"} == {"FAILED"}
    member = next(r for r in runs if r.data.tags["ablation"] == "full" and r.data.tags["seed"] == "1")
    assert len(client.get_metric_history(member.info.run_id, "val_acc")) == 2
    _, recorded, new = rerun(member.info.run_id, uri, [])
    for key in ("val_acc", "test_acc", "test_bwt"):
        assert abs(recorded[key] - new[key]) <= 0.5, key


def test_auto_pack_size_fits_the_budget_keeps_slots_busy_and_is_kept_for_a_resume(tmp_path, digits):
    from anpyc_core.config import validate_config
    from anpyc_core.packing.memory import PACK_OVERHEAD, member_bytes
    from sweeper.running.launch import shape_configs
    from sweeper.study.packs import AUTO_FRACTION, PACK_SIZE_FILE, resolve_pack_size

    raw = study(tmp_path, pack={"max_members": "auto"}, max_concurrent_trials=1)
    spec = parse_study(raw)
    one = member_bytes(validate_config(shape_configs(spec)[0]), digits.num_features, 1797)
    budget = int((PACK_OVERHEAD + 5 * one) / AUTO_FRACTION) + 1
    line = resolve_pack_size(spec, shape_configs(spec), {"digits": digits}, probe=lambda cpu, gpu: budget)
    assert spec.pack.max_members == 5 and "auto -> 5 members" in line
    assert [len(g) for g in pack_groups(spec)] == [5, 3, 4]  # 8 of one signature, 4 of the other
    assert spec.store.exists(PACK_SIZE_FILE)
    again = parse_study(raw)  # a resume on a machine with another budget packs as the launch did
    resolve_pack_size(again, shape_configs(again), {"digits": digits}, probe=lambda cpu, gpu: 100 * budget)
    assert again.pack.max_members == 5
    busy = parse_study({**study(tmp_path / "b", pack={"max_members": "auto"}), "max_concurrent_trials": 4})
    resolve_pack_size(busy, shape_configs(busy), {"digits": digits}, probe=lambda cpu, gpu: 100 * budget)
    assert busy.pack.max_members == 3  # 12 configurations over 4 slots: bigger packs would idle a slot
    for bad in (0, 1025, "lots", 2.5):
        with pytest.raises(ConfigError, match=r"pack.max_members: allowed: an integer in 1..1024, or auto"):
            parse_study(study(tmp_path, pack={"max_members": bad}))
