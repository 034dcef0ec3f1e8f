"""Opt-in regression guard: fixed digits configurations must keep their metrics within a band.

    ANPYC_REGRESSION=1 .venv/bin/pytest tests/test_regression_guard.py        # check
    ANPYC_REGRESSION=record .venv/bin/pytest tests/test_regression_guard.py   # rewrite expected.csv

The band is ±TOLERANCE points around the recorded value: CPU runs differ across machines only by the
rounding of their kernels, far inside the band, so any move beyond it is a behaviour change to explain.
"""

import csv
import os
import pathlib

import pytest
import yaml

from anpyc_core.config import apply_overrides, validate_config
from anpyc_core.runner import run_config

HERE = pathlib.Path(__file__).parent / "regression"
MODE = os.environ.get("ANPYC_REGRESSION", "")
METRICS = ("acc", "bwt", "forgetting", "la")
TOLERANCE = 1.5

pytestmark = pytest.mark.skipif(MODE not in ("1", "record"), reason="opt-in: set ANPYC_REGRESSION=1")
SPEC = yaml.safe_load((HERE / "configs.yaml").read_text())


def measure(name: str) -> dict[str, float]:
    raw = apply_overrides(SPEC["common"], {})
    for section, fields in SPEC["runs"][name].items():
        raw.setdefault(section, {}).update(fields)
    return run_config(validate_config(raw)).metrics


def expected() -> dict[tuple[str, str], tuple[float, float]]:
    with open(HERE / "expected.csv") as fh:
        return {(r["run"], r["metric"]): (float(r["low"]), float(r["high"])) for r in csv.DictReader(fh)}


def test_record_or_check_every_configuration():
    measured = {name: measure(name) for name in SPEC["runs"]}
    if MODE == "record":
        with open(HERE / "expected.csv", "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["run", "metric", "value", "low", "high"])
            for name, metrics in measured.items():
                for m in METRICS:
                    v = metrics[m]
                    out.writerow([name, m, f"{v:.3f}", f"{v - TOLERANCE:.3f}", f"{v + TOLERANCE:.3f}"])
        return
    bands = expected()
    outside = [
        f"{name}.{m}={metrics[m]:.2f} not in [{bands[name, m][0]:.2f}, {bands[name, m][1]:.2f}]"
        for name, metrics in measured.items()
        for m in METRICS
        if not bands[name, m][0] <= metrics[m] <= bands[name, m][1]
    ]
    assert outside == []
