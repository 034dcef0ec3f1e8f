"""Input that used to be accepted and produce nonsense is refused in one line (issue 14, item 1)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from anpyc_core.config import ConfigError, load_config, validate_config
from sweeper.study.spec import load_study, parse_study
from tests.conftest import TINY


@pytest.mark.parametrize(
    ("field", "value"),
    [("strategy.lam", float("inf")), ("strategy.beta", float("nan")), ("optim.lr", float("inf"))],
)
def test_float_fields_reject_inf_and_nan(field, value):
    section, name = field.split(".")
    with pytest.raises(ConfigError, match=f"{field}: Input should be a finite number"):
        validate_config({section: {name: value}})


def test_study_floats_reject_inf():
    with pytest.raises(ConfigError, match="resources.cpu: Input should be a finite number"):
        parse_study({"name": "x", "resources": {"cpu": float("inf")}})


def test_epochs_must_be_at_least_one():
    with pytest.raises(ConfigError, match="optim.epochs: Input should be greater than or equal to 1"):
        validate_config({"optim": {"epochs": 0}})


def test_duplicate_yaml_keys_are_an_error_naming_key_and_line(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text("strategy:\n  lam: 1\n  lam: 2\n")
    with pytest.raises(ConfigError, match=r"run.yaml: duplicate key 'lam' at line 3"):
        load_config(run)
    study = tmp_path / "study.yaml"
    study.write_text("name: a\nseeds: [0]\nname: b\n")
    with pytest.raises(ConfigError, match=r"study.yaml: duplicate key 'name' at line 3"):
        load_study(study)


def test_a_study_selecting_by_validation_refuses_val_fraction_zero():
    with pytest.raises(ConfigError, match="data.val_fraction: 0 leaves no validation split.*val_acc"):
        parse_study({"name": "x", "base": {"data": {"val_fraction": 0.0}}})
    with pytest.raises(ConfigError, match="ablation 'novalidation'"):
        parse_study({"name": "x", "ablations": {"full": {}, "novalidation": {"data.val_fraction": 0}}})


def test_train_checks_its_output_folder_before_training(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "optim": {**TINY.get("optim", {}), "epochs": 50}}))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "train", str(path), "--out", "/proc/anpyc-out"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --out /proc/anpyc-out: cannot write there (")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and time.monotonic() - start < 30  # refused before any epoch
