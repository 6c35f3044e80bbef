"""GONGJI_LOG_LEVEL is read in one place (`models.settings.log_level`) by every process."""
from __future__ import annotations

import logging

import pytest

from models.settings import configure_logging, log_level


@pytest.mark.parametrize("given, level", [(None, "INFO"), ("", "INFO"), ("debug", "DEBUG"), ("WARNING", "WARNING")])
def test_the_level_is_read_in_any_case_with_info_by_default(monkeypatch, given, level):
    """Given GONGJI_LOG_LEVEL unset, empty, lower or upper case, Then the level is the upper-case name."""
    if given is None:
        monkeypatch.delenv("GONGJI_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("GONGJI_LOG_LEVEL", given)
    assert log_level() == level


def test_an_unknown_level_stops_the_process_with_its_name(monkeypatch):
    """Given GONGJI_LOG_LEVEL=VERBOSE (no such level), Then starting refuses, naming it."""
    monkeypatch.setenv("GONGJI_LOG_LEVEL", "verbose")
    with pytest.raises(RuntimeError, match="VERBOSE"):
        log_level()


def test_a_host_handler_is_kept_and_only_the_level_set(monkeypatch):
    """Given a root logger a host already gave a handler (dramatiq's worker process does),
    When logging is configured at ERROR, Then that handler stays the only one and the root level is ERROR."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    host = logging.NullHandler()
    root.handlers[:] = [host]
    try:
        monkeypatch.setenv("GONGJI_LOG_LEVEL", "error")
        assert configure_logging() == "ERROR"
        assert root.handlers == [host] and root.level == logging.ERROR
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
