"""`best` ranks configurations by the mean over seeds, keeps numbers numeric, and gives the Pareto set
of a multi-objective study (issue 14, item 3). The MLflow store and trials.parquet are filled as the
recorder fills them (`best` ranks from trials.parquet, `best --per-trial` asks MLflow)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.running.launch import spec_text
from sweeper.storage import results
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE, TAG_STUDY, TAG_TRIAL, study_experiment, tracking_client


def recorded_study(tmp_path, trials, objectives=None):
    """A study whose MLflow store holds finished trial runs: (ablation, λ, seed, {metric: value})."""
    raw = {
        "name": "ranked",
        "search": {"strategy.lam": {"grid": [0.5, 32.0]}},
        "ablations": {"full": {}, "no_pruning": {"strategy.pruning": "none"}},
        "seeds": [0, 1],
        "storage": str(tmp_path / "out"),
    }
    if objectives:
        search = {"strategy.lam": {"choice": [0.5, 32.0]}}
        raw.update({"searcher": "optuna", "objectives": objectives, "search": search})
    spec = parse_study(raw)
    spec.study_dir.mkdir(parents=True)
    spec.store.write_text("study.yaml", spec_text(spec))
    client = tracking_client(spec.resolved_tracking_uri())
    exp = study_experiment(client, spec)
    for i, (ablation, lam, seed, metrics) in enumerate(trials):
        tags = {TAG_STUDY: spec.name, TAG_ROLE: "trial", TAG_TRIAL: f"t{i}", "ablation": ablation, "seed": str(seed)}
        run = client.create_run(exp, tags=tags)
        client.log_param(run.info.run_id, "strategy.lam", str(lam))
        for k, v in metrics.items():
            client.log_metric(run.info.run_id, f"final_{k}", v)
        client.set_terminated(run.info.run_id, "FINISHED")
        row = {"trial_id": f"t{i}", "study": spec.name, "ablation": ablation, "seed": seed, "status": "FINISHED"}
        row |= {"mlflow_run_id": run.info.run_id, "prune_flags": 0, "cfg.strategy.lam": float(lam), **metrics}
        results.write_trial(spec.store, row)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_best_ranks_configurations_by_seed_mean_not_single_trials(tmp_path):
    path = recorded_study(
        tmp_path,
        [
            ("no_pruning", 32.0, 0, {"val_acc": 90.0, "test_acc": 89.0}),  # the best single trial ...
            ("no_pruning", 32.0, 1, {"val_acc": 50.0, "test_acc": 49.0}),  # ... of the worst configuration
            ("full", 0.5, 0, {"val_acc": 80.0, "test_acc": 79.0}),
            ("full", 0.5, 1, {"val_acc": 78.0, "test_acc": 77.0}),
        ],
    )
    proc = CliRunner().invoke(app, ["best", str(path), "--json"])
    assert proc.exit_code == 0, proc.output
    rows = json.loads(proc.output)
    assert [(r["ablation"], r["params"]["strategy.lam"]) for r in rows] == [("full", 0.5), ("no_pruning", 32.0)]
    top = rows[0]
    assert top["n"] == 2 and top["seeds"] == [0, 1] and top["val_acc"] == pytest.approx(79.0)
    assert top["val_acc_std"] == pytest.approx(2**0.5) and isinstance(top["params"]["strategy.lam"], float)
    per_trial = json.loads(CliRunner().invoke(app, ["best", str(path), "--json", "--per-trial"]).output)
    assert per_trial[0]["ablation"] == "no_pruning" and per_trial[0]["val_acc"] == 90.0
    table = CliRunner().invoke(app, ["best", str(path)]).output
    assert "ranked by mean val_acc over seeds" in table and "79.00 ± 1.41" in table


def test_a_configuration_that_lost_a_seed_ranks_after_every_one_that_lost_none(tmp_path):
    path = recorded_study(
        tmp_path,
        [
            ("full", 32.0, 0, {"val_acc": 95.0, "test_acc": 94.0}),  # the best mean of its survivors ...
            ("full", 0.5, 0, {"val_acc": 80.0, "test_acc": 79.0}),
            ("full", 0.5, 1, {"val_acc": 78.0, "test_acc": 77.0}),
        ],
    )
    spec = parse_study(yaml.safe_load(path.read_text()))
    lost = {"trial_id": "t9", "study": spec.name, "ablation": "full", "seed": 1, "status": "DIVERGED"}
    results.write_trial(spec.store, lost | {"cfg.strategy.lam": 32.0, "prune_flags": 0})  # ... whose seed 1 diverged
    rows = json.loads(CliRunner().invoke(app, ["best", str(path), "--json"]).output)
    assert [(r["params"]["strategy.lam"], r["diverged"], r["n"]) for r in rows] == [(0.5, 0, 2), (32.0, 1, 1)]
    table = CliRunner().invoke(app, ["best", str(path)]).output.splitlines()
    assert "[1 diverged, ranked last]" in table[-1] and "[" not in table[-2]


def test_best_of_a_multi_objective_study_is_its_pareto_set(tmp_path):
    objectives = [{"metric": "val_acc", "mode": "max"}, {"metric": "val_forgetting", "mode": "min"}]
    path = recorded_study(
        tmp_path,
        [
            ("full", 0.5, 0, {"val_acc": 80.0, "val_forgetting": 10.0, "test_acc": 79.0}),
            ("full", 32.0, 0, {"val_acc": 70.0, "val_forgetting": 2.0, "test_acc": 69.0}),
            ("no_pruning", 0.5, 0, {"val_acc": 60.0, "val_forgetting": 12.0, "test_acc": 59.0}),  # dominated
        ],
        objectives,
    )
    rows = json.loads(CliRunner().invoke(app, ["best", str(path), "--json"]).output)
    assert [(r["ablation"], r["params"]["strategy.lam"]) for r in rows] == [("full", 0.5), ("full", 32.0)]
    assert "Pareto set" in CliRunner().invoke(app, ["best", str(path)]).output
