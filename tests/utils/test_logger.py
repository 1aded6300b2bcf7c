"""vps_d2.utils.logger: console handlers follow the current sys.stdout / sys.stderr."""

import io
import logging
import sys

import pytest

from vps_d2.utils.logger import setup_logger


@pytest.fixture
def clean_root():
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        if getattr(h, "_vps_d2", False):
            root.removeHandler(h)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("name", ["stdout", "stderr"])
def test_a_closed_console_stream_is_not_kept(clean_root, monkeypatch, name):
    """A handler set up while the stream was a (test's) captured file keeps writing after that
    file was closed and replaced: no "--- Logging error ---" traceback."""
    first = io.StringIO()
    monkeypatch.setattr(sys, name, first)
    setup_logger(stream=name, fmt="%(message)s")
    logging.getLogger("vps_d2.x").info("one")
    assert first.getvalue() == "one\n"
    first.close()
    second, errors = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, name, second)
    if name == "stdout":
        monkeypatch.setattr(sys, "stderr", errors)
    logging.getLogger("vps_d2.x").info("two")
    assert second.getvalue() == "two\n"
    assert "Logging error" not in errors.getvalue()


def test_setting_up_twice_keeps_one_console_handler(clean_root, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    setup_logger(fmt="%(message)s")
    setup_logger(fmt="%(message)s")
    logging.getLogger("vps_d2.x").info("once")
    assert out.getvalue() == "once\n"


def test_unknown_stream_name_is_refused():
    with pytest.raises(ValueError, match="stdout' or 'stderr"):
        setup_logger(stream="console")
