"""The report's accuracy-over-tasks curve, on hand-computed accuracy matrices."""

import pandas as pd
import pytest

from sweeper.reading.report import write_report
from sweeper.running.launch import spec_text
from sweeper.storage.results import acc_over_tasks, task_rows
from sweeper.study.spec import parse_study

# P[t][i] for two trials of 3 tasks (rows: after task t; columns: task i)
P_A = [[90.0, 10.0, 10.0], [80.0, 70.0, 10.0], [60.0, 50.0, 40.0]]
P_B = [[70.0, 10.0, 10.0], [60.0, 90.0, 10.0], [40.0, 70.0, 60.0]]


def long_form(trial_id, matrix):
    rows = []
    for t, row in enumerate(matrix, start=1):
        rows += task_rows(trial_id, t, row, [a - 1 for a in row])
    return pd.DataFrame(rows)


def test_acc_over_tasks_averages_only_the_tasks_learned_so_far():
    curve = acc_over_tasks(long_form("a", P_A)).set_index("after_task")["acc"]
    assert curve.to_dict() == {1: 90.0, 2: 75.0, 3: 50.0}
    val = acc_over_tasks(long_form("a", P_A), split="val").set_index("after_task")["acc"]
    assert val.to_dict() == {1: 89.0, 2: 74.0, 3: 49.0}


@pytest.fixture
def ablation_study(tmp_path):
    spec = parse_study(
        {
            "name": "curves",
            "base": {"data": {"benchmark": "digits", "num_tasks": 3}, "model": {"hidden": [8]}},
            "ablations": {"full": {}, "no_pruning": {"strategy.pruning": "none"}},
            "seeds": [0, 1],
            "storage": str(tmp_path),
        }
    )
    spec.study_dir.mkdir(parents=True)
    (spec.study_dir / "study.yaml").write_text(spec_text(spec))
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "ERROR"],
            "ablation": ["full", "full", "no_pruning", "no_pruning"],
            "seed": [0, 1, 0, 1],
            "val_acc": [49.0, 56.0, 49.0, None],
            "test_acc": [50.0, 57.0, 50.0, None],
            "val_bwt": [-1.0, -1.0, -1.0, None],
            "test_bwt": [-1.0, -1.0, -1.0, None],
            "error": [None, None, None, "task 2 epoch 1: training loss became nan"],
        }
    )
    trials.to_parquet(spec.study_dir / "trials.parquet")
    # the errored trial's partial matrix must not enter the curve
    tasks = pd.concat([long_form("a", P_A), long_form("b", P_B), long_form("c", P_A), long_form("d", [[0.0] * 3])])
    tasks.to_parquet(spec.study_dir / "tasks.parquet")
    return spec


def test_report_plots_accuracy_over_tasks_per_ablation_from_finished_trials(ablation_study):
    text = write_report(ablation_study).read_text()
    assert "## Accuracy as tasks are learned" in text
    # full: mean of trials a and b -> after task 3: (50 + 56.67) / 2; after task 1: (90 + 70) / 2
    assert "| full | 3 | 53.33 | 80.00 |" in text
    assert "| no_pruning | 3 | 50.00 | 90.00 |" in text
    png = ablation_study.study_dir / "report" / "acc_over_tasks.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_summary_table_orders_list_values_by_their_numbers_not_as_text():
    from sweeper.reading.report import summary_table

    frame = pd.DataFrame(
        {
            "ablation": ["full"] * 4,
            "cfg.model.hidden": ["[128, 128]", "[32, 32]", "[512, 512]", "[64, 64]"],
            "test_acc": [3.0, 1.0, 4.0, 2.0],
        }
    )
    table = summary_table(frame, "cfg.model.hidden", ["test_acc"])
    assert table["value"].tolist() == ["[32, 32]", "[64, 64]", "[128, 128]", "[512, 512]"]
    assert table["test_acc_mean"].tolist() == [1.0, 2.0, 3.0, 4.0]
