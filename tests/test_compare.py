"""`compare`: each ablation against the reference with a 95 % interval over seeds (issue 26, item 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.reading.compare import compare
from sweeper.storage import results
from sweeper.study.spec import parse_study
from tests.test_cli_study_commands import write_study

REFERENCE = [80.0, 82.0, 79.0, 81.0, 83.0]
ACCURACIES = ("val_acc", "test_acc", "val_bwt", "test_bwt")


def study_with(tmp_path, groups: dict[str, list], lam=(0.5,)):
    """A recorded study: per ablation, per λ, one test_acc (None: diverged) per seed 0..4; val_acc = test_acc
    plus the λ, so the larger λ is each ablation's chosen configuration."""
    ablations = {name: {} for name in groups}
    path, raw = write_study(
        tmp_path, name="cmp", ablations=ablations, seeds=[0, 1, 2, 3, 4], search={"strategy.lam": {"grid": list(lam)}}
    )
    spec = parse_study(raw)
    spec.store.write_text("study.yaml", yaml.safe_dump(raw))
    for name, values in groups.items():
        for lam_value in lam:
            for seed, value in enumerate(values):
                tid = f"{name}_{lam_value}_{seed}"
                row = {"trial_id": tid, "ablation": name, "seed": seed, "cfg.strategy.lam": lam_value}
                if value is None:
                    row.update(status="DIVERGED", test_acc=None, val_acc=None)
                else:
                    shift = 0.0 if lam_value == max(lam) else -5.0  # the other λ: worse on test and validation
                    row.update(status="FINISHED", test_acc=value + shift, val_acc=value + shift + lam_value)
                results.write_trial(spec.store, row)
    return path, spec


def test_verdicts_follow_the_paired_interval_and_diverged_runs_are_counted(tmp_path):
    better = [v + 2 + d for v, d in zip(REFERENCE, [0.1, -0.2, 0.3, 0.0, -0.1], strict=True)]
    same = [v + d for v, d in zip(REFERENCE, [1.0, -1.0, 0.5, -0.5, 0.2], strict=True)]
    worse = [v - 3 for v in REFERENCE]
    hot = [*REFERENCE[:4], None]
    _, spec = study_with(tmp_path, {"full": REFERENCE, "b": better, "c": same, "d": worse, "hot": hot}, lam=(0.5, 2.0))
    rows = {r.group: r for r in compare(spec)}
    assert set(rows) == {"b", "c", "d", "hot"} and all(r.reference == "full" and r.paired for r in rows.values())
    assert [rows[g].verdict for g in "bcd"] == ["better", "no difference at this n", "worse"]
    assert rows["b"].config == "strategy.lam=2.0"  # the configuration chosen on validation
    diffs = np.array(better) - np.array(REFERENCE)  # the interval, computed independently
    half = stats.t.ppf(0.975, 4) * diffs.std(ddof=1) / math.sqrt(5)
    assert rows["b"].mean == pytest.approx(diffs.mean(), abs=1e-12)
    assert (rows["b"].low, rows["b"].high) == pytest.approx((diffs.mean() - half, diffs.mean() + half), abs=1e-9)
    assert rows["hot"].diverged == 1 and rows["hot"].n == 4 and rows["hot"].verdict == "no difference at this n"


def test_a_configuration_where_a_seed_diverged_is_chosen_only_when_every_one_did(tmp_path):
    better = [v + 2 for v in REFERENCE]
    _, spec = study_with(tmp_path, {"full": REFERENCE, "b": better, "all_lost": [*REFERENCE[:4], None]}, lam=(0.5, 2.0))
    frame = results.read_trials(spec.store)
    row = frame[frame.trial_id == "b_2.0_4"].iloc[0].to_dict()  # b's best λ on validation loses seed 4
    results.write_trial(spec.store, {**row, "status": "DIVERGED", "test_acc": None, "val_acc": None})
    rows = {r.group: r for r in compare(spec)}
    assert (rows["b"].config, rows["b"].n, rows["b"].diverged) == ("strategy.lam=0.5", 5, 0)
    assert rows["b"].mean == pytest.approx(2.0 - 5.0)  # λ = 0.5 sits 5 points lower on every seed
    assert (rows["all_lost"].config, rows["all_lost"].diverged) == ("strategy.lam=2.0", 1)  # no stable choice


def test_an_axis_of_the_experiment_is_compared_at_each_value_not_chosen_on_validation(tmp_path):
    search = {"data.num_tasks": {"grid": [2, 5]}}
    _, raw = write_study(tmp_path, name="axis", ablations={"full": {}, "b": {}}, seeds=[0, 1, 2], search=search)
    spec = parse_study(raw)
    spec.store.write_text("study.yaml", yaml.safe_dump(raw))
    # b beats full at 2 tasks (and has the best validation of all there), loses by 10 at 5 tasks
    values = {("full", 2): 80.0, ("b", 2): 82.0, ("full", 5): 70.0, ("b", 5): 60.0}
    for (name, tasks), value in values.items():
        for seed in range(3):
            row = {"trial_id": f"{name}_{tasks}_{seed}", "ablation": name, "seed": seed, "cfg.data.num_tasks": tasks}
            score = value + 0.1 * seed * (tasks == 5)
            results.write_trial(spec.store, row | {"status": "FINISHED", "test_acc": score, "val_acc": score})
    rows = compare(spec)
    assert [(r.group, r.reference, r.config) for r in rows] == [
        ("b @ data.num_tasks=2", "full", "data.num_tasks=2"),
        ("b @ data.num_tasks=5", "full", "data.num_tasks=5"),
    ]
    assert [r.mean for r in rows] == pytest.approx([2.0, -10.0]) and rows[1].verdict == "worse"


def test_groups_without_shared_seeds_are_compared_unpaired(tmp_path):
    _, spec = study_with(tmp_path, {"full": REFERENCE, "other": [v + 10 for v in REFERENCE]})
    frame = results.read_trials(spec.store)
    for tid in frame[(frame.ablation == "other")].trial_id:  # move "other" to seeds the reference lacks
        row = frame[frame.trial_id == tid].iloc[0].to_dict()
        results.write_trial(spec.store, {**row, "seed": int(row["seed"]) + 10})
    (row,) = compare(spec, metric="test_acc")
    welch = stats.ttest_ind([v + 10 for v in REFERENCE], REFERENCE, equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert not row.paired and row.verdict == "better"
    assert (row.low, row.high) == pytest.approx((low, high), abs=1e-9)


def test_the_cli_prints_the_table_writes_the_figure_and_refuses_bad_options(tmp_path):
    path, spec = study_with(tmp_path, {"full": REFERENCE, "b": [v + 2 for v in REFERENCE]})
    runner = CliRunner()
    done = runner.invoke(app, ["compare", str(path), "--reference", "full"])  # the file lists ablations sorted
    assert done.exit_code == 0, done.output
    assert "| b | strategy.lam=0.5 | 5 | yes | +2.00 |" in done.output and "| better |" in done.output
    assert (spec.study_dir / "report" / "compare_ablation_test_acc.png").stat().st_size > 0
    bad_by = runner.invoke(app, ["compare", str(path), "--by", "seed"])
    assert bad_by.exit_code == 2 and "--by 'seed': allowed values are ablation, method" in bad_by.output
    bad_metric = runner.invoke(app, ["compare", str(path), "--metric", "test_fid_mean"])
    assert bad_metric.exit_code == 2 and "--metric test_fid_mean: study cmp records" in bad_metric.output
    bad_ref = runner.invoke(app, ["compare", str(path), "--reference", "nope"])
    assert bad_ref.exit_code == 2 and "--reference nope: not an ablation of study cmp" in bad_ref.output


def test_the_default_reference_is_the_first_group_that_finished_on_the_most_seeds(tmp_path):
    lossy = [REFERENCE[0], None, None, None, None]  # first in the study's order, 4 of 5 seeds diverged
    _, spec = study_with(tmp_path, {"a_lossy": lossy, "full": REFERENCE, "g": [v + 2 for v in REFERENCE]})
    assert list(spec.ablations)[0] == "a_lossy"
    rows = {r.group: r for r in compare(spec)}
    assert {r.reference for r in rows.values()} == {"full"}
    assert rows["g"].paired and rows["g"].n == 5 and rows["g"].verdict == "better"
    assert rows["a_lossy"].diverged == 4 and rows["a_lossy"].n == 1
    named = {r.group: r for r in compare(spec, reference="a_lossy")}  # a named reference is kept as named
    assert named["full"].reference == "a_lossy" and not named["full"].paired


def test_the_report_compares_on_the_objectives_test_metric_lower_fid_is_better(tmp_path):
    """table3_cgan selects on val_fid_first5: its report compared sample accuracy. It now compares
    test_fid_first5, where a lower FID is `better`, and says the difference is in FID's own units."""
    from sweeper.reading import report

    objectives = [{"metric": "val_fid_first5", "mode": "min"}]
    ablations = {"anpyc": {}, "ewc": {}}
    seeds = [0, 1, 2, 3, 4]
    _, raw = write_study(tmp_path, name="gan", ablations=ablations, seeds=seeds, search={}, objectives=objectives)
    spec = parse_study(raw)
    spec.store.write_text("study.yaml", yaml.safe_dump(raw))
    for name, shift in (("anpyc", 0.0), ("ewc", -100.0)):  # EWC's FID 100 lower on every seed
        for seed, value in enumerate([600.0, 640.0, 610.0, 650.0, 620.0]):
            fid = value + shift + seed  # differences not all equal: a finite interval
            row = {"trial_id": f"{name}{seed}", "ablation": name, "seed": seed, "status": "FINISHED"}
            results.write_trial(
                spec.store,
                {**row, "val_fid_first5": fid, "test_fid_first5": fid + (seed % 2), **dict.fromkeys(ACCURACIES, 10.0)},
            )
    report.write_report(spec)
    text = (spec.study_dir / "report" / "report.md").read_text()
    assert "on `test_fid_first5`: mean difference (its own units)" in text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("| ewc |")][:1]
    assert "| -100.00 |" in line and line.endswith("| better |")
    assert (spec.study_dir / "report" / "compare_ablation_test_fid_first5.png").stat().st_size > 0
