"""Real local Ray: a tiny grid study and a tiny Optuna study, end to end."""

import json

import duckdb
import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sweeper.reading.query import ROUNDING_REL, best_trials, rerun, rerun_verdict, study_status
from sweeper.reading.report import write_report
from sweeper.running.launch import launch, spec_text
from sweeper.study.spec import Resources, parse_study
from sweeper.tracking.recorder import TAG_ROLE

BASE = {
    "device": "cpu",
    "data": {"benchmark": "digits", "scenario": "split", "num_tasks": 2},
    "model": {"hidden": [16]},
    "strategy": {"method": "anpyc", "beta": 20, "importance_batch": 1},
    "optim": {"lr": 0.05, "batch_size": 32, "epochs": 2},
}


@pytest.fixture(scope="module")
def grid_study(ray_session, tmp_path_factory):
    storage = tmp_path_factory.mktemp("grid")
    spec = parse_study(
        {
            "name": "tiny_grid",
            "base": BASE,
            "search": {"strategy.lam": {"grid": [0.5, 8.0]}},
            "ablations": {"full": {}, "no_pruning": {"strategy.pruning": "none"}},
            "seeds": [0],
            "joint_reference": True,
            "storage": str(storage),
            "max_concurrent_trials": 2,
        }
    )
    launch(spec, spec_text(spec))
    return spec


def trial_runs(spec):
    client = mlflow.tracking.MlflowClient(spec.resolved_tracking_uri())
    exp = client.get_experiment_by_name(spec.name)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_grid_study_has_one_finished_nested_run_per_trial(grid_study):
    client, runs = trial_runs(grid_study)
    parents = [r for r in runs if r.data.tags.get(TAG_ROLE) == "parent"]
    trials = [r for r in runs if r.data.tags.get(TAG_ROLE) == "trial"]
    assert len(parents) == 1 and len(trials) == 4
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trials)
    assert {r.info.status for r in runs} == {"FINISHED"}
    run = trials[0]
    assert run.data.params["strategy.lam"] in ("0.5", "8.0") and "final_val_acc" in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert sorted(m.step for m in history) == [1, 2]
    assert run.data.tags["anpyc_source_sha"] and run.data.tags["anpyc_commit"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"acc_matrix.json", "val_acc_matrix.json", "acc_matrix.png", "run_config.json"} <= artifacts
    assert "study.yaml" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}


def test_parquet_rows_schema_and_readers(grid_study):
    folder = grid_study.study_dir
    trials = pd.read_parquet(folder / "trials.parquet")
    assert len(trials) == 4 and trials["trial_id"].is_unique
    for col in (
        "ablation",
        "seed",
        "status",
        "val_acc",
        "test_acc",
        "val_fwt",
        "seconds",
        "mlflow_run_id",
        "cfg.strategy.lam",
        "cfg.model.hidden",
        "cfg.data.benchmark",
    ):
        assert col in trials.columns
    assert set(trials["status"]) == {"FINISHED"} and trials["val_fwt"].notna().all()
    tasks = pq.read_table(folder / "tasks.parquet").to_pandas()
    assert len(tasks) == 4 * 2 * 2 * 2  # trials x after_task x eval_task x split
    assert not tasks.duplicated(["trial_id", "after_task", "eval_task", "split"]).any()
    n = duckdb.sql(f"select count(*) from '{folder / 'trials.parquet'}' where status = 'FINISHED'").fetchall()[0][0]
    assert n == 4
    # P[T] in tasks.parquet equals the final matrix row
    final = tasks[(tasks.after_task == 2) & (tasks.split == "test")].groupby("trial_id")["accuracy"].mean()
    merged = trials.set_index("trial_id")["test_acc"]
    for tid, acc in final.items():
        assert acc == pytest.approx(merged[tid])


def test_best_is_ordered_and_matches_parquet(grid_study):
    rows = best_trials(grid_study, "val_acc", "max", 10)
    assert len(rows) == 4
    values = [r["val_acc"] for r in rows]
    assert values == sorted(values, reverse=True)
    trials = pd.read_parquet(grid_study.study_dir / "trials.parquet")
    assert values[0] == pytest.approx(trials["val_acc"].max())
    assert study_status(grid_study)["parquet"] == {"FINISHED": 4}


def test_rerun_reproduces_the_recorded_trial(grid_study):
    best = best_trials(grid_study, "val_acc", "max", 1)[0]
    cfg, recorded, new = rerun(best["run_id"], grid_study.resolved_tracking_uri(), [])
    assert cfg["strategy"]["lam"] == float(best["params"]["strategy.lam"])
    # recorded in a one-thread Ray worker, rerun here: the same sequential kernels, but the thread count may
    # change a reduction's order, so the contract is "equal to rounding" (a flipped sample would miss it)
    verdict = rerun_verdict({k: recorded[k] for k in new if k in recorded}, new)
    assert verdict == "identical" or verdict.startswith("equal to rounding"), verdict
    for key in ("test_acc", "val_acc", "test_bwt", "val_forgetting"):
        assert new[key] == pytest.approx(recorded[key], rel=ROUNDING_REL), key


def test_trials_keep_first_and_last_snapshots_and_boundaries(grid_study):
    client, runs = trial_runs(grid_study)
    for run in (r for r in runs if r.data.tags.get(TAG_ROLE) == "trial"):
        kept = {a.path for a in client.list_artifacts(run.info.run_id, "snapshots")}
        assert kept == {"snapshots/snapshot_task_001.pt", "snapshots/snapshot_task_002.pt"}
        assert [m.step for m in client.get_metric_history(run.info.run_id, "state_values")] == [1, 2]
    bounds = pd.read_parquet(grid_study.study_dir / "boundaries.parquet")
    assert len(bounds) == 4 * 2 and not bounds.duplicated(["trial_id", "after_task"]).any()
    assert (bounds["model_params"] > 0).all() and (bounds["trunk_in_use"] <= bounds["model_params"]).all()
    # the pruning cascade, per round and tensor: task 1 of the `full` (greedy, β = 20) trials has rounds
    trials = pd.read_parquet(grid_study.study_dir / "trials.parquet").set_index("trial_id")["ablation"]
    full = bounds[(bounds.trial_id.map(trials) == "full") & (bounds.after_task == 1)]
    for text in full["rounds"]:
        rounds = json.loads(text)
        assert [r["round"] for r in rounds] == [1, 2] and {"freed:trunk.0.weight", "zero_omega:trunk.0.weight"} <= set(
            rounds[0]
        )
    # the penalty's stability number before task 2, for every trial (ANPyC consolidates with the penalty)
    assert bounds[bounds.after_task == 2]["stability"].notna().all()


def test_analyze_writes_the_three_section_v_figures(grid_study):
    from sweeper.reading.analysis import write_analysis

    text = write_analysis(grid_study).read_text()
    for heading in ("(paper Fig. 9)", "(paper Fig. 10)", "(paper Fig. 7a)"):
        assert heading in text
    report = grid_study.study_dir / "report"
    for png in ("fig9_importance.png", "fig10_drift.png", "fig7a_parameters.png"):
        assert (report / png).stat().st_size > 0
    # one Fig. 10 row per (ablation, layer): both ablations, one hidden layer
    assert sum(line.startswith(("| full | 1 |", "| no_pruning | 1 |")) for line in text.splitlines()) == 2


def test_joint_reference_computed_once_per_data_model_seed(grid_study):
    files = list((grid_study.study_dir / "joint").glob("*.json"))
    assert len(files) == 1
    ref = json.loads(files[0].read_text())
    assert len(ref["test"]) == 2


@pytest.mark.e2e  # a further real Ray study: the end-to-end lane
def test_optuna_study_runs_sampled_trials(ray_session, tmp_path):
    spec = parse_study(
        {
            "name": "tiny_optuna",
            "base": BASE,
            "searcher": "optuna",
            "search": {"strategy.lam": {"loguniform": [0.1, 10.0]}, "model.hidden": {"choice": [[8], [16]]}},
            "optuna": {"sampler": "tpe", "num_samples": 3, "seed": 1},
            "objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "val_forgetting", "mode": "min"}],
            "storage": str(tmp_path),
        }
    )
    launch(spec, spec_text(spec))
    trials = pd.read_parquet(spec.study_dir / "trials.parquet")
    assert len(trials) == 3 and set(trials["status"]) == {"FINISHED"}
    lams = trials["cfg.strategy.lam"].astype(float)
    assert ((lams >= 0.1) & (lams <= 10.0)).all() and lams.nunique() == 3
    _, runs = trial_runs(spec)
    assert len([r for r in runs if r.data.tags.get(TAG_ROLE) == "trial"]) == 3
    import optuna  # the Optuna study persists beside the MLflow store, for optuna-dashboard

    stored = optuna.load_study(study_name="tiny_optuna", storage=f"sqlite:///{spec.study_dir / 'optuna.db'}")
    complete = [t for t in stored.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3 and all(len(t.values) == 2 for t in complete)
    report = write_report(spec).read_text()
    assert "## Pareto front" in report and "## Parameter importances" in report
    assert "| strategy.lam |" in report and (spec.study_dir / "report" / "pareto.png").stat().st_size > 0


def test_report_plots_each_searched_parameter_per_ablation(grid_study):
    path = write_report(grid_study)
    text = path.read_text()
    assert "## Against strategy.lam" in text
    assert "| full | 0.5 | 1 |" in text and "| no_pruning | 8.0 | 1 |" in text
    for png in ("val_acc_vs_strategy_lam.png", "test_acc_vs_strategy_lam.png"):
        assert (path.parent / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e  # a further real Ray study: the end-to-end lane
def test_diverging_trial_is_a_result_recorded_once_and_ignored_by_best(ray_session, tmp_path):
    spec = parse_study(
        {
            # a penalty step 2·lr·λ·Ω far above 1 overshoots θ* further every step: NaN in task 2
            "name": "diverging",
            "base": {**BASE, "strategy": {"method": "ewc"}},
            "search": {"strategy.lam": {"grid": [1.0, 1.0e12]}},
            "ablations": {"full": {}},
            "seeds": [0],
            "storage": str(tmp_path),
            "max_failures": 2,  # a diverging trial is a result: never retried, whatever this allows
        }
    )
    grid = launch(spec, spec_text(spec))
    assert grid.num_errors == 0  # nothing raised, so nothing was retried
    diverged = [r for r in grid if r.metrics.get("diverged")]
    assert len(diverged) == 1 and diverged[0].metrics["task"] == 1  # task 1 done, task 2 diverged
    trials = pd.read_parquet(spec.study_dir / "trials.parquet").set_index("cfg.strategy.lam")
    assert (
        trials.loc[1.0e12, "status"] == "DIVERGED"
        and "task 2 epoch 1: training loss became nan" in trials.loc[1.0e12, "error"]
    )
    assert trials.loc[1.0, "status"] == "FINISHED"
    client, runs = trial_runs(spec)
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and "TrainingDiverged" in failed[0].data.tags["error"]
    rows = best_trials(spec, "val_acc", "max", 10)
    assert [r["params"]["strategy.lam"] for r in rows] == ["1.0"]


@pytest.mark.e2e  # a further real Ray study: the end-to-end lane
def test_asha_stops_trials_early_by_task(ray_session, tmp_path):
    spec = parse_study(
        {
            "name": "asha",
            "base": {**BASE, "data": {**BASE["data"], "num_tasks": 4}},
            "search": {"optim.lr": {"grid": [0.1, 0.05, 0.001, 0.0001]}},
            "ablations": {"full": {}},
            "seeds": [0],
            "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
            "storage": str(tmp_path),
            "max_concurrent_trials": 1,  # ASHA decisions depend on result order: keep it fixed
        }
    )
    launch(spec, spec_text(spec))
    trials = pd.read_parquet(spec.study_dir / "trials.parquet")
    assert len(trials) == 4
    assert (trials["status"] == "STOPPED").any() and (trials["status"] == "FINISHED").any()
    stopped = trials[trials["status"] == "STOPPED"]
    assert (stopped["tasks_done"] < 4).all() and stopped["val_acc"].isna().all()
    _, runs = trial_runs(spec)
    assert {r.info.status for r in runs} == {"FINISHED"}  # stopped early is a clean end, not a failure


def test_resume_takes_new_concurrency_and_resources_without_changing_anything(grid_study):
    faster = grid_study.model_copy(
        update={"max_concurrent_trials": 1, "resources": Resources(cpu=2), "checkpoints": "all"}
    )
    launch(faster, spec_text(faster), resume=True)  # accepted: these fields never change results
    _, runs = trial_runs(grid_study)
    assert len(runs) == 5 and {r.info.status for r in runs} == {"FINISHED"}
    assert len(pd.read_parquet(grid_study.study_dir / "trials.parquet")) == 4


def test_the_documented_duckdb_query_gives_the_best_lambda_per_ablation(grid_study):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "results_schema.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```sql\n")[1:]]
    sql = next(b for b in blocks if "best lambda per ablation" in b).replace("STUDY_DIR", str(grid_study.study_dir))
    rows = duckdb.sql(sql).fetchall()
    trials = pd.read_parquet(grid_study.study_dir / "trials.parquet")
    expected = trials.loc[trials.groupby("ablation")["val_acc"].idxmax()].sort_values("ablation")
    assert [(r[0], r[1]) for r in rows] == list(zip(expected.ablation, expected["cfg.strategy.lam"], strict=True))
    assert all(r[6] == 1 for r in rows)  # one seed per configuration in this study


def test_rerun_best_reruns_the_best_configuration_under_every_ablation(grid_study, tmp_path):
    from typer.testing import CliRunner

    from sweeper.cli import app
    from sweeper.reading.query import best_configs

    path = tmp_path / "study.yaml"
    path.write_text(spec_text(grid_study))
    out = tmp_path / "reruns"
    result = CliRunner().invoke(app, ["rerun", "--best", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = json.loads((out / "rerun_best.json").read_text())
    best = best_configs(grid_study, 1)[0]
    assert [r["ablation"] for r in table] == ["full", "no_pruning"]
    assert all(r["params"] == best["params"] and r["rerun_n"] == 1 and r["recorded_n"] == 1 for r in table)
    for r in table:  # a CPU rerun of the recorded configuration: equal to rounding (see the rerun test above)
        assert r["rerun_val_acc"] == pytest.approx(r["recorded_val_acc"], rel=ROUNDING_REL)
        assert r["rerun_test_acc"] == pytest.approx(r["recorded_test_acc"], rel=ROUNDING_REL)
        assert (out / r["ablation"] / "seed0" / "result.json").exists()
    assert "| full |" in result.output and (out / "rerun_best.md").exists()
    bad = CliRunner().invoke(app, ["rerun", "--best", str(path), "--ablations", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "--ablations: 'nope' is not an ablation of tiny_grid" in bad.output


def test_a_finished_trial_keeps_its_last_two_task_checkpoints(ray_session, tmp_path):
    """`checkpoints: latest` without Tune's own pruning (which forces a whole-study snapshot per deletion):
    the study prunes a trial once its end is in a whole snapshot; the end of the launch writes one."""
    base = {**BASE, "data": {**BASE["data"], "num_tasks": 3}, "optim": {**BASE["optim"], "epochs": 1}}
    spec = parse_study({"name": "tiny_prune", "base": base, "seeds": [0], "storage": str(tmp_path)})
    launch(spec, spec_text(spec))
    (trial_dir,) = [p for p in (tmp_path / "tiny_prune" / "tune").iterdir() if p.is_dir() and "train_trial" in p.name]
    folders = sorted(p.name for p in trial_dir.iterdir() if p.name.startswith("checkpoint_"))
    assert folders == ["checkpoint_000001", "checkpoint_000002"]  # of three: the newest two, whole
    assert all((trial_dir / f / "state.pt").stat().st_size > 0 for f in folders)
    assert sorted(pd.read_parquet(spec.study_dir / "boundaries.parquet")["after_task"]) == [1, 2, 3]
