"""Atomic files: everything a user keeps is written to a temporary file and renamed.

One utility for checkpoints, ``last_checkpoint``, JSON/CSV results, prediction PNGs and
videos. A file is written to a hidden temporary file in the *same* folder (so the rename
cannot cross file systems), flushed and fsync'ed, given the permissions a plain ``open()``
would give (``0o666 & ~umask``; ``mkstemp`` creates ``0o600``), then renamed over its
target with :func:`os.replace`. A process killed at any moment leaves either the old file
or the new one, never a truncated one; what it may leave is a hidden temporary file whose
name carries the writer's process id (``.<name>.<pid>.<random>.tmp``), which
:func:`remove_stale_temp_files` deletes once that process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = [
    "DiskFullError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "commit_temp_file",
    "default_file_mode",
    "make_temp_path",
    "remove_stale_temp_files",
]

logger = logging.getLogger(__name__)

_TEMP_RE = re.compile(r"^\.(?P<base>.+)\.(?P<pid>\d+)\.[^.]+\.(?P<tag>tmp|partial|probe)(\.\w+)?$")


class DiskFullError(OSError):
    """No space left on the device while writing a file (the message names the folder)."""


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def make_temp_path(path: str, tag: str = "tmp", keep_ext: bool = False) -> str:
    """Create (empty) and return a hidden temporary file next to ``path``.

    Name: ``.<basename>.<pid>.<random>.<tag>`` (plus ``path``'s extension when ``keep_ext``,
    for writers such as OpenCV's that pick the container from the extension).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    ext = os.path.splitext(base)[1] if keep_ext else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=f".{tag}{ext}", dir=folder)
    os.close(fd)
    return tmp


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _raise_if_disk_full(e: OSError, path: str) -> None:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        folder = os.path.dirname(os.path.abspath(path))
        raise DiskFullError(
            e.errno, f"no space left on {folder} while writing {os.path.basename(path)}"
        ) from e


def commit_temp_file(tmp: str, path: str) -> None:
    """fsync ``tmp``, give it the default file mode and rename it to ``path``."""
    _fsync_path(tmp)
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """``with atomic_write(path) as f: ...`` writes ``path`` atomically (see module doc).

    On an exception inside the block the temporary file is removed and ``path`` is left
    as it was. A full disk raises :class:`DiskFullError` naming the folder.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    tmp = make_temp_path(path)
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        _raise_if_disk_full(e, path)
        raise
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes | Callable[[IO[bytes]], Any]) -> None:
    """Write ``data`` (bytes, or a function called with the open binary file) atomically."""
    with atomic_write(path, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data)


def atomic_write_json(path: str, obj: Any, **json_kwargs: Any) -> None:
    """Write ``obj`` as JSON (indent 2 unless given) atomically, with a final newline."""
    json_kwargs.setdefault("indent", 2)
    text = json.dumps(obj, **json_kwargs) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(folder: str, recursive: bool = False) -> list[str]:
    """Delete the temporary files of :func:`make_temp_path` whose writer process is gone.

    Returns the removed paths. Files of live processes (another run writing now) are kept.
    """
    removed: list[str] = []
    if not os.path.isdir(folder):
        return removed
    walker = os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    for root, _, files in walker:
        for name in files:
            m = _TEMP_RE.match(name)
            if m is None or _pid_alive(int(m.group("pid"))):
                continue
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    if removed:
        logger.info("Removed %d stale temporary file(s) of dead processes in %s: %s",
                    len(removed), folder, [os.path.basename(p) for p in removed[:5]])  # fmt: skip
    return removed
