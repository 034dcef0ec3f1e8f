"""Tune's per-trial log files are off unless the user chose (sweeper/running/tune_logs.py)."""

import logging

import pytest

from sweeper.running import tune_logs


@pytest.fixture
def env(monkeypatch):
    """A clean TUNE_DISABLE_AUTO_CALLBACK_LOGGERS and no filter left on Tune's analysis logger afterwards."""
    monkeypatch.delenv(tune_logs.ENV, raising=False)
    analysis = logging.getLogger(tune_logs.ANALYSIS_LOGGER)
    before = list(analysis.filters)
    yield monkeypatch
    analysis.filters[:] = before


def test_off_by_default_and_the_missing_files_warning_is_dropped(env, caplog):
    env.setattr(tune_logs, "USER_CHOICE", None)
    assert tune_logs.tune_log_files_off() is True
    assert tune_logs.os.environ[tune_logs.ENV] == "1"
    tune_logs.tune_log_files_off()  # a second launch in the process adds no second filter
    analysis = logging.getLogger(tune_logs.ANALYSIS_LOGGER)
    assert sum(isinstance(f, tune_logs.NoMissingTrialFiles) for f in analysis.filters) == 1
    with caplog.at_level(logging.WARNING, logger=tune_logs.ANALYSIS_LOGGER):
        analysis.warning("Failed to fetch metrics for 2 trial(s):\n- a: FileNotFoundError\n- b: FileNotFoundError")
        analysis.warning("another warning of Tune's")
    assert [r.getMessage() for r in caplog.records] == ["another warning of Tune's"]


def test_the_users_choice_wins(env, caplog):
    env.setattr(tune_logs, "USER_CHOICE", None)
    tune_logs.tune_log_files_off()  # an earlier launch in this process turned them off and added the filter
    env.setattr(tune_logs, "USER_CHOICE", "0")
    assert tune_logs.tune_log_files_off() is False
    assert tune_logs.os.environ[tune_logs.ENV] == "0"
    with caplog.at_level(logging.WARNING, logger=tune_logs.ANALYSIS_LOGGER):
        logging.getLogger(tune_logs.ANALYSIS_LOGGER).warning("Failed to fetch metrics for 1 trial(s):\n- a")
    assert len(caplog.records) == 1  # the files were asked for: their absence is news
