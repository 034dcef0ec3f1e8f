"""Section V analyses: the statistics on hand-computed values, and what snapshots and counts hold."""

import numpy as np
import pytest
import torch
import yaml

from sweeper.reading.analysis import (
    analysed_trials,
    drift,
    frechet_1d,
    importance_stats,
    kurtosis,
    min_max,
    skewness,
    weighted_change,
)
from sweeper.storage import results
from sweeper.study.spec import parse_study
from tests.test_cli_study_commands import write_study


def test_min_max_scales_to_unit_interval_and_handles_constants():
    assert min_max(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert min_max(np.array([5.0, 5.0])).tolist() == [0.0, 0.0]


def test_skewness_and_kurtosis_by_hand():
    x = np.array([0.0, 0.0, 0.0, 1.0])  # mean 1/4, central moments m2 = 3/16, m3 = 3/32, m4 = 21/256
    assert skewness(x) == pytest.approx((3 / 32) / (3 / 16) ** 1.5)
    assert kurtosis(x) == pytest.approx((21 / 256) / (3 / 16) ** 2 - 3)
    assert skewness(np.array([-1.0, 0.0, 1.0])) == 0.0
    assert kurtosis(np.array([-1.0, 1.0])) == pytest.approx(-2.0)  # two-point distribution
    assert skewness(np.ones(4)) == 0.0 and kurtosis(np.ones(4)) == 0.0


def test_frechet_of_shifted_and_scaled_samples():
    a = np.array([-1.0, 1.0])  # mean 0, std 1
    assert frechet_1d(a, a) == 0.0
    assert frechet_1d(a, a + 3.0) == pytest.approx(3.0)
    assert frechet_1d(a, 2 * a + 4) == pytest.approx(np.hypot(4.0, 1.0))


def test_weighted_change_weights_by_importance():
    first, last = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 4.0])
    assert weighted_change(first, last, np.array([1.0, 0.0, 0.0])) == 1.0
    assert weighted_change(first, last, np.array([1.0, 1.0, 2.0])) == pytest.approx((1 + 2 + 8) / 4)
    assert weighted_change(first, last, np.zeros(3)) == pytest.approx(7 / 3)  # no importance: plain mean


def test_drift_and_importance_stats_read_snapshot_layers():
    w1 = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    snap = lambda w: {  # noqa: E731
        "params": {"trunk.0.weight": w, "trunk.0.bias": torch.zeros(2)},
        "probe_importance": {"trunk.0.weight": torch.ones(2, 2), "trunk.0.bias": torch.ones(2)},
        "importance": {"trunk.0.weight": torch.tensor([[0.0, 0.0], [0.0, 4.0]]), "trunk.0.bias": torch.zeros(2)},
    }
    rows = drift(snap(w1), snap(w1 + 1.0))
    assert rows == [{"layer": 1, "frechet": pytest.approx(1.0), "weighted_change": pytest.approx(1.0)}]  # bias skipped
    stats = importance_stats(snap(w1))
    values = np.array([0, 0, 0, 1.0, 0, 0])  # min-max of [0,0,0,4,0,0]
    assert stats == {"kurtosis": pytest.approx(kurtosis(values)), "skewness": pytest.approx(skewness(values))}


def _trunk_size(model):
    return sum(p.numel() for p in model.trunk.parameters())


def test_parameter_counts_grow_by_one_head_per_task(make_trainer):
    trainer = make_trainer(strategy__method="finetune")
    model = trainer.model
    head = sum(p.numel() for p in model.heads[0].parameters())
    counts = [r.counts for r in trainer.run()]
    assert [c["model_params"] for c in counts] == [_trunk_size(model) + k * head for k in (1, 2, 3)]
    assert all(c["state_values"] == 0 and c["trunk_in_use"] == _trunk_size(model) for c in counts)


def test_parameter_counts_of_anpyc_count_state_and_free_weights(make_trainer):
    trainer = make_trainer()
    trunk = _trunk_size(trainer.model)
    records = list(trainer.run())
    # Ω, θ* and the free set cover the trunk once each; has_free is one more value
    assert all(r.counts["state_values"] == 3 * trunk + 1 for r in records)
    free = trainer.strategy.free_count()
    assert 0 < free < trunk
    assert records[-1].counts["trunk_in_use"] == trunk - free
    assert records[0].counts["trunk_in_use"] < trunk  # task 1 was pruned


def test_snapshot_holds_trunk_importance_and_probe_without_changing_the_run(make_trainer):
    plain = make_trainer()
    for _ in plain.run():
        pass
    probed = make_trainer()
    snaps = []
    for _ in probed.run():
        snaps.append(probed.snapshot())
    assert probed.result().acc_matrix == plain.result().acc_matrix  # taking snapshots changes nothing
    last = snaps[-1]
    assert [s["task"] for s in snaps] == [1, 2, 3]
    for name, p in probed.model.trunk_parameters().items():
        assert torch.equal(last["params"][name], p.detach())
        assert torch.equal(last["importance"][name], probed.strategy.omega[name])
        assert (last["probe_importance"][name] >= 0).all()
    assert last["counts"] == probed.strategy.parameter_counts(3)


def test_snapshot_of_a_frozen_trunk_still_measures_the_probe(make_trainer):
    trainer = make_trainer(strategy__method="sgd_f")
    for _ in trainer.run():
        pass
    snap = trainer.snapshot()
    assert "importance" not in snap
    assert sum(float(t.sum()) for t in snap["probe_importance"].values()) > 0
    assert not any(p.requires_grad for p in trainer.model.trunk.parameters())  # left as it was


@pytest.mark.parametrize(
    ("mode", "kept"), [("ends", [1, 5]), ("all", [1, 2, 3, 4, 5]), ("none", [])], ids=["ends", "all", "none"]
)
def test_which_task_boundaries_keep_a_snapshot(mode, kept):
    from sweeper.running.trainable import wants_snapshot

    assert [t for t in range(1, 6) if wants_snapshot(mode, t, 5)] == kept


def test_the_cascade_table_reads_each_round_and_draws_freed_against_nominal(tmp_path):
    import json
    from types import SimpleNamespace

    import pandas as pd

    from sweeper.reading.cascade import cascade_section, cascade_table
    from sweeper.storage import fragments, results
    from sweeper.storage.store import StudyStore

    store = StudyStore(str(tmp_path / "study"))
    rounds = [
        {"task": 1, "round": k, "percent": 10.0 * k, "freed:trunk.0.weight": f, "zero_omega:trunk.0.weight": z}
        for k, f, z in ((1, 0.3, 0.25), (2, 0.6, 0.55))
    ]
    fragments.append(
        store,
        results.BOUNDARIES_TABLE,
        [{"trial_id": "t1", "after_task": 1, "rounds": json.dumps(rounds)}, {"trial_id": "t1", "after_task": 2}],
    )
    spec = SimpleNamespace(store=store)
    done = pd.DataFrame({"trial_id": ["t1"], "ablation": ["free"]})
    table = cascade_table(spec, done)
    expected = [[1, 10, 30, 25], [2, 20, 60, 55]]
    np.testing.assert_allclose(table[["round", "percent", "freed", "zero_omega"]].values, expected, rtol=1e-12)
    lines = cascade_section(spec, done, tmp_path)
    assert (tmp_path / "cascade.png").stat().st_size > 0
    assert "| free | trunk.0.weight | 20 | 60.0 ± 0.0 | 55.0 ± 0.0 |" in lines


def test_a_trial_that_diverged_later_counts_for_task_one_and_not_for_the_last_task(tmp_path):
    _, raw = write_study(tmp_path, name="sec5", ablations={"anpyc": {}}, seeds=[0, 1, 2, 3])
    spec = parse_study(raw)
    spec.store.write_text("study.yaml", yaml.safe_dump(raw))
    rows = [("FINISHED", "r0"), ("DIVERGED", "r1"), ("ERROR", "r2"), ("DIVERGED", None)]  # None: never reached MLflow
    for seed, (status, run_id) in enumerate(rows):
        results.write_trial(
            spec.store,
            {"trial_id": f"t{seed}", "ablation": "anpyc", "seed": seed, "status": status, "mlflow_run_id": run_id},
        )
    done, task_one = analysed_trials(spec)
    assert list(done["trial_id"]) == ["t0"]  # Fig. 10 and 7a read the last task: finished trials only
    assert sorted(task_one["trial_id"]) == ["t0", "t1"]  # Fig. 9: also the trial that diverged after task 1
