"""Tune's per-trial log files (progress.csv, result.json, TensorBoard events): off unless the user asks.

A study records every metric in MLflow and its Parquet tables, so Tune's three logger callbacks only
duplicate them, on the driver's per-trial path (a TensorBoard writer per trial, two files rewritten per
report) and at the end of every `fit`, where Tune reads every trial's result.json back into a pandas
frame: memory and time in proportion to the study (docs/PERFORMANCE.md, "Driver memory").
`TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0` in the environment of `launch` brings them back.
Imports: the standard library only.
"""

from __future__ import annotations

import logging
import os

ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
#: a choice the user made before the first launch in this process wins over ours
USER_CHOICE = os.environ.get(ENV)
#: Tune's logger that warns, once per `fit`, about every trial without those files
ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"


class NoMissingTrialFiles(logging.Filter):
    """Drops Tune's end-of-fit warning listing every trial without result.json/progress.csv (none is written)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that warning only."""
        return not str(record.msg).startswith("Failed to fetch metrics for")


def tune_log_files_off() -> bool:
    """Turn Tune's per-trial log files off for this process unless the user chose; whether they are off."""
    os.environ[ENV] = USER_CHOICE if USER_CHOICE is not None else "1"
    off = os.environ[ENV] == "1"
    analysis = logging.getLogger(ANALYSIS_LOGGER)
    for earlier in [f for f in analysis.filters if isinstance(f, NoMissingTrialFiles)]:  # an earlier launch's
        analysis.removeFilter(earlier)
    if off:
        analysis.addFilter(NoMissingTrialFiles())
    return off
