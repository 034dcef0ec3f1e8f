"""One exit-code contract for every verb (issue 24, item 2): 0 done, 1 runtime failure, 2 usage or
configuration error (130, interrupted: `tests/test_sigint.py`). Each verb gets one input of each class
that applies to it, and every failure is one line on stderr."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.running.study_lock import StudyLock
from sweeper.storage import results
from sweeper.study.spec import parse_study
from sweeper.tracking.recorder import TAG_ROLE, TAG_STUDY, TAG_TRIAL, study_experiment, tracking_client
from tests.conftest import TINY

RUN_ID = "0123456789abcdef0123456789abcdef"


def study_file(tmp_path, name: str, **extra) -> tuple:
    raw = {
        "name": name,
        "base": {**TINY, "data": {**TINY["data"], "num_tasks": 2}},
        "search": {"strategy.lam": {"grid": [0.5, 2.0]}},
        "seeds": [0, 1],
        "storage": str(tmp_path / "out"),
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def recorded(tmp_path, name: str = "done") -> tuple:
    """A study that ran: study.yaml, trial rows and finished MLflow runs, as a launch leaves them."""
    path, raw = study_file(tmp_path, name)
    spec = parse_study(raw)
    spec.store.write_text("study.yaml", yaml.safe_dump(raw))
    client = tracking_client(spec.resolved_tracking_uri())
    exp = study_experiment(client, spec)
    for i, (lam, seed) in enumerate([(0.5, 0), (0.5, 1), (2.0, 0), (2.0, 1)]):
        tid = f"t{i}"
        tags = {TAG_STUDY: name, TAG_ROLE: "trial", TAG_TRIAL: tid, "ablation": "full", "seed": str(seed)}
        run = client.create_run(exp, tags=tags)
        client.log_param(run.info.run_id, "strategy.lam", str(lam))
        for metric, value in (("val_acc", 80.0 + i), ("test_acc", 79.0 + i), ("val_bwt", -1.0), ("test_bwt", -2.0)):
            client.log_metric(run.info.run_id, f"final_{metric}", value)
        client.set_terminated(run.info.run_id, "FINISHED")
        row = {"trial_id": tid, "study": name, "ablation": "full", "seed": seed, "status": "FINISHED", "error": None}
        row.update({"mlflow_run_id": run.info.run_id, "tasks_done": 2, "seconds": 1.0, "cfg.strategy.lam": lam})
        row.update({"val_acc": 80.0 + i, "test_acc": 79.0 + i, "val_bwt": -1.0, "test_bwt": -2.0})
        results.write_trial(spec.store, row)
        for after in (1, 2):
            rows = results.task_rows(tid, after, [90.0] * 2, [89.0] * 2)
            results.write_task(spec.store, rows, {"trial_id": tid, "after_task": after})
    return path, spec


def corrupt_tracking(tmp_path) -> tuple:
    path, spec = recorded(tmp_path, "broken")
    (spec.study_dir / "mlflow.db").write_bytes(b"this is not a database" * 100)
    return path, spec


def busy(tmp_path) -> tuple:
    path, spec = recorded(tmp_path, "busy")
    return path, spec


# verb, class, arguments (STUDY: the study file the setup returns, TMP: the test's folder), setup
CASES = [
    ("train", 0, ["train", "--set", "optim.epochs=1", "--set", "model.hidden=[8]", "--out", "TMP/run", "-q"], None),
    ("train", 2, ["train", "--set", "strategy.lam=ten"], None),
    ("train", 2, ["train", "--set", "model.init=TMP/missing.pt"], None),
    ("validate", 0, ["validate", "STUDY"], "fresh"),
    ("validate", 2, ["validate", "TMP/nothing.yaml"], None),
    ("launch", 0, ["launch", "STUDY", "--dry-run"], "fresh"),
    ("launch", 2, ["launch", "STUDY", "--dry-run", "--set", "strategy.lam=ten"], "fresh"),
    ("launch", 1, ["launch", "STUDY", "--address", "127.0.0.1:1"], "fresh"),
    ("list", 0, ["list", "--storage", "TMP/out"], "recorded"),
    ("list", 2, ["list", "--storage", "TMP/nowhere"], None),
    ("status", 0, ["status", "STUDY"], "recorded"),
    ("status", 2, ["status", "STUDY"], "fresh"),
    ("status", 1, ["status", "STUDY"], "corrupt"),
    ("best", 0, ["best", "STUDY"], "recorded"),
    ("best", 2, ["best", "STUDY", "--metric", "val_fid_first5"], "recorded"),
    ("best", 2, ["best", "STUDY", "--metric", ""], "recorded"),
    ("best", 1, ["best", "STUDY"], "corrupt"),
    ("rerun", 2, ["rerun", "not-a-run-id", "--study", "STUDY"], "recorded"),
    ("rerun", 2, ["rerun", RUN_ID, "--study", "STUDY", "--dry-run"], "recorded"),
    ("rerun", 1, ["rerun", RUN_ID, "--study", "STUDY", "--dry-run"], "corrupt"),
    ("report", 0, ["report", "STUDY"], "recorded"),
    ("report", 2, ["report", "STUDY"], "fresh"),
    ("analyze", 2, ["analyze", "STUDY"], "fresh"),
    ("compact", 0, ["compact", "STUDY"], "recorded"),
    ("compact", 2, ["compact", "STUDY"], "fresh"),
    ("compact", 1, ["compact", "STUDY"], "busy"),
    ("compress", 2, ["compress", "STUDY_RUN", "--schedule", "0.5,2"], None),
    ("ui", 2, ["ui", "STUDY"], "fresh"),
    ("slurm submit", 0, ["slurm", "submit", "STUDY", "--dry-run"], "fresh"),
    ("slurm submit", 2, ["slurm", "submit", "STUDY", "--time", "90"], "fresh"),
    ("slurm submit", 2, ["slurm", "submit", "STUDY"], "noslurm"),
    ("slurm status", 2, ["slurm", "status", "STUDY"], "noslurm"),
    ("slurm cancel", 2, ["slurm", "cancel", "STUDY"], "noslurm"),
]


CASE_IDS = [f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize(("verb", "code", "args", "setup"), CASES, ids=CASE_IDS)
def test_every_verb_answers_by_the_exit_code_contract(tmp_path, monkeypatch, verb, code, args, setup):
    monkeypatch.chdir(tmp_path)
    study = None
    if setup == "fresh":
        study, _ = study_file(tmp_path, "fresh")
    elif setup in ("recorded", "busy"):
        study, _ = recorded(tmp_path)
    elif setup == "corrupt":
        study, _ = corrupt_tracking(tmp_path)
    elif setup == "noslurm":  # a laptop: no Slurm command on PATH
        study, _ = study_file(tmp_path, "fresh")
        monkeypatch.setenv("PATH", str(tmp_path))
    run_config = tmp_path / "run.yaml"
    run_config.write_text(yaml.safe_dump(TINY))
    argv = [
        a.replace("STUDY_RUN", str(run_config)).replace("STUDY", str(study)).replace("TMP", str(tmp_path)) for a in args
    ]
    if setup == "busy":
        with StudyLock(parse_study(yaml.safe_load(study.read_text()))):
            proc = CliRunner().invoke(app, argv)
    else:
        proc = CliRunner().invoke(app, argv)
    assert proc.exit_code == code, (argv, proc.output)
    if code:
        errors = [line for line in proc.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in proc.output, proc.output


def test_rerun_of_a_run_whose_config_artifact_is_gone_is_one_line_exit_1(tmp_path):
    study, spec = recorded(tmp_path)  # runs as a launch records them, but without their artifacts
    client = tracking_client(spec.resolved_tracking_uri())
    run_id = client.search_runs([study_experiment(client, spec)], f"tags.{TAG_ROLE} = 'trial'")[0].info.run_id
    proc = CliRunner().invoke(app, ["rerun", run_id, "--study", str(study), "--dry-run"])
    assert proc.exit_code == 1, proc.output
    lines = proc.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: run {run_id}: its run_config.json artifact"), lines
