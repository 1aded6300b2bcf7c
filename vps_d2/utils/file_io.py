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
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

try:
    import fcntl
except ImportError:  # not POSIX: DirectoryLock cannot lock (it says so)
    fcntl = None

__all__ = [
    "DirectoryLock",
    "DiskFullError",
    "LockedError",
    "OutputPathError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "commit_temp_file",
    "default_file_mode",
    "describe_os_error",
    "make_temp_path",
    "pid_alive",
    "prepare_output_dir",
    "prepare_output_file",
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


#: Below this many free bytes, a failed write is reported as a full disk (libraries such as
#: torch.save turn ENOSPC into their own RuntimeError, without the errno).
DISK_FULL_MARGIN = 64 * 2**20


def _raise_if_disk_full(e: BaseException, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and isinstance(e, Exception):
        with contextlib.suppress(OSError):
            full = shutil.disk_usage(folder).free < DISK_FULL_MARGIN
    if full:
        raise DiskFullError(
            errno.ENOSPC, f"no space left on {folder} while writing {os.path.basename(path)}"
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
    except BaseException as e:
        _remove_quietly(tmp)
        _raise_if_disk_full(e, path)
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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (any owner)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(
    folder: str, recursive: bool = False, report: Callable[[str], None] | None = None
) -> list[str]:
    """Delete the temporary files of :func:`make_temp_path` whose writer process is gone.

    Returns the removed paths. Files of live processes (another run writing now) are kept.
    When something was removed, one line saying so goes to ``report`` (default: this
    module's logger; the engine's preflight, which runs before logging is set up, keeps it
    for the log).
    """
    removed: list[str] = []
    if not os.path.isdir(folder):
        return removed
    walker = os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    for root, _, files in walker:
        for name in files:
            m = _TEMP_RE.match(name)
            path = os.path.join(root, name)
            if m is None or not os.path.isfile(path) or pid_alive(int(m.group("pid"))):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    if removed:
        (report or logger.info)(
            f"Removed {len(removed)} stale temporary file(s) of dead processes in {folder}: "
            f"{[os.path.basename(p) for p in removed[:5]]}"
        )
    return removed


class LockedError(RuntimeError):
    """The folder is locked by another live process (the message names it)."""


class DirectoryLock:
    """An exclusive lock on a folder (``<folder>/.vps_d2.lock``), for one run at a time.

    ``fcntl.flock`` on the lock file: the kernel releases it when the holder exits, however
    it exits (kill -9 included), so a lock left by a dead process never blocks a new run.
    The file records the holder (pid, host, command) for the error message.
    """

    FILENAME = ".vps_d2.lock"

    def __init__(self, folder: str, what: str = "OUTPUT_DIR") -> None:
        self.folder = folder
        self.what = what
        self.path = os.path.join(folder, self.FILENAME)
        self._fd: int | None = None

    def acquire(self, description: str = "") -> None:
        """Take the lock or raise :class:`LockedError` naming the run that holds it."""
        if fcntl is None:
            logger.warning("No fcntl on this platform: %s %s is not locked", self.what, self.folder)
            return
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"{self.what} {self.folder} is in use by another run ({holder}); wait for it to "
                f"finish or use another {self.what}"
            ) from None
        os.ftruncate(fd, 0)
        info = f"pid {os.getpid()} on {socket.gethostname()}"
        if description:
            info += f": {description}"
        os.pwrite(fd, info.encode("utf-8"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------------------- output paths
class OutputPathError(OSError):
    """An output path that cannot be prepared. ``str(e)`` is one line naming the path and
    the operating system's reason (``e.errno`` / ``e.filename`` are those of the cause)."""

    def __init__(self, message: str, cause: OSError | None = None) -> None:
        super().__init__(getattr(cause, "errno", None), message, getattr(cause, "filename", None))
        self.message = message

    def __str__(self) -> str:
        return self.message


def describe_os_error(e: OSError, path: str | None = None) -> str:
    """``"<path>: <the OS's reason>"`` for ``e`` (one line; no ``[Errno N]``)."""
    if isinstance(e, OutputPathError):
        return str(e)
    reason = e.strerror or (str(e.args[-1]) if e.args else type(e).__name__)
    where = path or e.filename or ""
    other = f" -> {e.filename2}" if getattr(e, "filename2", None) else ""
    return f"{where}{other}: {reason}" if where else reason


def _file_above(path: str) -> str | None:
    """The nearest existing non-folder at ``path`` or above it (what blocks a makedirs)."""
    p = os.path.abspath(path)
    while True:
        if os.path.lexists(p) and not os.path.isdir(p):
            return p
        parent = os.path.dirname(p)
        if parent == p:
            return None
        p = parent


def prepare_output_dir(path: str, what: str = "output folder") -> str:
    """Create the folder ``path`` (and its parents) and check it can be written; returns it.

    The one helper every tool uses for the folders it writes (OUTPUT_DIR, evaluation and
    demo outputs, sample datasets), so any ``OSError`` becomes one
    :class:`OutputPathError` line naming ``what``, the path and the OS's reason: a file in
    the way, permissions, a read-only file system (``EROFS``), a full disk, a quota, a
    name too long, ...
    """
    if not path:
        raise OutputPathError(f"{what}: empty path")
    blocker = _file_above(path)
    if blocker is not None:
        relation = (
            "exists and is"
            if blocker == os.path.abspath(path)
            else f"cannot be created: {blocker} is"
        )
        raise OutputPathError(f"{what} {path} {relation} a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{what} {path} cannot be created: {describe_os_error(e)}", e) from e
    if not os.access(path, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_fs(path) else "permission denied"
        raise OutputPathError(f"{what} {path} is not writable ({reason})")
    return path


def _read_only_fs(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def prepare_output_file(path: str, what: str = "output file") -> str:
    """Absolute ``path`` of a file to write, its folder prepared (:func:`prepare_output_dir`);
    a folder at ``path`` is an :class:`OutputPathError` too. Nothing is written at ``path``."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        raise OutputPathError(f"{what} {path} is a folder; give a file name")
    prepare_output_dir(os.path.dirname(path), f"{what} {path}: its folder")
    return path
