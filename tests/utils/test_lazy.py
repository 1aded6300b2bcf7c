"""vps_d2.utils.lazy: the import happens at first use, and a Ctrl-C during it is raised only
once the import is over (an import interrupted midway left NumPy half-initialised and the
command died of a RecursionError instead of saying "Interrupted")."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from vps_d2.utils.lazy import lazy_import, load

_BODY = """
import os, signal
if os.environ.get("VPS_D2_TEST_LAZY_SIGINT"):
    os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode: mid-import
    for _ in range(1000):
        pass
finished = True
"""


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("vps_d2_lazy_probe")]:
        del sys.modules[name]


def _probe(module_dir, name):
    (module_dir / f"{name}.py").write_text(_BODY)
    return lazy_import(name)


def test_imports_at_first_attribute_read(module_dir):
    stand_in = _probe(module_dir, "vps_d2_lazy_probe_a")
    assert "vps_d2_lazy_probe_a" not in sys.modules
    assert stand_in.finished is True
    assert "vps_d2_lazy_probe_a" in sys.modules
    assert load(stand_in) is sys.modules["vps_d2_lazy_probe_a"]
    assert lazy_import("vps_d2_lazy_probe_a") is sys.modules["vps_d2_lazy_probe_a"]


def test_ctrl_c_during_the_import_is_raised_after_it(module_dir, monkeypatch):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.setenv("VPS_D2_TEST_LAZY_SIGINT", "1")
    stand_in = _probe(module_dir, "vps_d2_lazy_probe_b")
    with pytest.raises(KeyboardInterrupt):
        load(stand_in)
    # the import ran to its end and the module is whole; Python's handler is back
    assert sys.modules["vps_d2_lazy_probe_b"].finished is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_import_error_wins_over_a_held_ctrl_c(module_dir, monkeypatch):
    monkeypatch.setenv("VPS_D2_TEST_LAZY_SIGINT", "1")
    (module_dir / "vps_d2_lazy_probe_c.py").write_text(
        _BODY + "raise ImportError('needs X')\n"
    )
    with pytest.raises(ImportError, match="needs X"):
        load(lazy_import("vps_d2_lazy_probe_c"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_another_handler_is_left_alone(module_dir, monkeypatch):
    """A command that installed its own SIGINT handler keeps it during the import."""
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append(True))
    try:
        monkeypatch.setenv("VPS_D2_TEST_LAZY_SIGINT", "1")
        assert _probe(module_dir, "vps_d2_lazy_probe_d").finished is True
        assert seen == [True]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_no_handler_is_touched(module_dir):
    """signal.signal works in the main thread only: a worker thread just imports."""
    out = []
    stand_in = _probe(module_dir, "vps_d2_lazy_probe_e")
    t = threading.Thread(target=lambda: out.append(load(stand_in).finished))
    t.start()
    t.join()
    assert out == [True]
    assert os.environ.get("VPS_D2_TEST_LAZY_SIGINT") is None
