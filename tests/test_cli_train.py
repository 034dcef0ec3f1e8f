"""`anpyc-sweep train`: result.json, exit codes, and nothing written on bad input."""

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import TINY


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sweeper.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def tiny_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_train_writes_result_json_with_every_field(tiny_yaml, tmp_path):
    out = tmp_path / "out"
    proc = cli("train", str(tiny_yaml), "--out", str(out), "--set", "strategy.lam=2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    for key in (
        "config",
        "fingerprint",
        "metrics",
        "val_metrics",
        "acc_matrix",
        "val_acc_matrix",
        "seconds",
        "task_seconds",
        "run_id",
    ):
        assert key in result
    assert result["config"]["strategy"]["lam"] == 2.0
    assert "task 3/3" in proc.stderr and "epoch" in proc.stderr
    assert "acc" in proc.stdout and "T3" in proc.stdout


def test_joint_reference_and_checkpoint_resume(tiny_yaml, tmp_path):
    joint = tmp_path / "joint"
    assert cli("train", str(tiny_yaml), "--set", "strategy.method=joint", "--out", str(joint), "-q").returncode == 0
    ck = tmp_path / "ck"
    proc = cli(
        "train",
        str(tiny_yaml),
        "--joint",
        str(joint / "result.json"),
        "--checkpoint-dir",
        str(ck),
        "--out",
        str(tmp_path / "a"),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    first = json.loads((tmp_path / "a" / "result.json").read_text())
    assert first["metrics"]["fwt"] is not None and (ck / "checkpoint.pt").exists()
    proc = cli(
        "train",
        str(tiny_yaml),
        "--joint",
        str(joint / "result.json"),
        "--checkpoint-dir",
        str(ck),
        "--resume",
        "--out",
        str(tmp_path / "b"),
        "-q",
    )
    assert "resumed at task 4" in proc.stderr
    again = json.loads((tmp_path / "b" / "result.json").read_text())
    assert again["acc_matrix"] == first["acc_matrix"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "strategy.lam=-1"], "strategy.lam"),
        (["--set", "data.classes_per_task=3"], "data.classes_per_task"),
        (["--set", "strategy.pruning=magic"], "strategy.pruning"),
        (["--set", "nonsense"], "expected KEY=VALUE"),
        (["--resume"], "--resume needs --checkpoint-dir"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_yaml, tmp_path, args, needle):
    proc = cli("train", str(tiny_yaml), *args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "runs").exists()


def test_wrong_joint_reference_is_refused(tiny_yaml, tmp_path):
    other = tmp_path / "other"
    assert cli("train", str(tiny_yaml), "--set", "strategy.method=finetune", "--out", str(other), "-q").returncode == 0
    proc = cli("train", str(tiny_yaml), "--joint", str(other / "result.json"))
    assert proc.returncode == 2 and "not a result of method 'joint'" in proc.stderr


def test_missing_dataset_is_a_runtime_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ANPYC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ANPYC_CACHE_DIR", str(tmp_path / "cache"))
    proc = cli(
        "train",
        "--set",
        "data.benchmark=mnist",
        "--set",
        "data.download=false",
        "--set",
        "data.data_dir=" + str(tmp_path / "x"),
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "no IDX files found" in proc.stderr
    assert not (tmp_path / "runs").exists()
