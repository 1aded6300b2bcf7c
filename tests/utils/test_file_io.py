"""vps_d2.utils.file_io: the one atomic-write utility."""

import errno
import json
import os
import subprocess
import sys

import pytest

from vps_d2.utils.file_io import (
    DiskFullError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    make_temp_path,
    remove_stale_temp_files,
)


def test_atomic_write_replaces_and_uses_umask_mode(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    old = os.umask(0o022)
    try:
        atomic_write_json(str(path), {"x": 1})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"x": 1}
    assert (os.stat(path).st_mode & 0o777) == 0o644
    assert os.listdir(tmp_path) == ["a.json"]  # no temporary file left


def test_exception_inside_block_keeps_old_file(tmp_path):
    path = tmp_path / "ckpt.pth"
    path.write_bytes(b"good")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(str(path)) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["ckpt.pth"]


def test_disk_full_is_named(tmp_path, monkeypatch):
    def full(_f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=f"no space left on {tmp_path}"):
        atomic_write_bytes(str(tmp_path / "m.pth"), full)
    assert os.listdir(tmp_path) == []


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    # A temp file of a process that is gone (a finished child) and one of this live process.
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(child.stdout)
    dead = tmp_path / f".model_0000009.pth.{dead_pid}.abc123.tmp"
    dead.write_bytes(b"x")
    live = make_temp_path(str(tmp_path / "model_final.pth"))
    other = tmp_path / ".hidden_but_not_ours"
    other.write_text("keep")
    said: list[str] = []
    removed = remove_stale_temp_files(str(tmp_path), report=said.append)
    assert removed == [str(dead)]
    assert os.path.exists(live) and other.exists() and not dead.exists()
    assert said == [
        f"Removed 1 stale temporary file(s) of dead processes in {tmp_path}: {[dead.name]}"
    ]
    assert remove_stale_temp_files(str(tmp_path), report=said.append) == [] and len(said) == 1
