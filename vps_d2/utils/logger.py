"""Logging set-up: console (main process) and log.txt (log.txt.rank<N> on other ranks)."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["setup_logger"]

_FMT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"


class _ConsoleHandler(logging.StreamHandler):
    """A console handler that writes to the *current* ``sys.stdout`` / ``sys.stderr``.

    A plain ``StreamHandler(sys.stdout)`` keeps the stream object it was given; when that object is
    later replaced and closed (a test's captured output, a redirected console) every following log
    call prints "--- Logging error ---" with a traceback. Looking the stream up at each record, as
    :data:`logging.lastResort` does, avoids that.
    """

    def __init__(self, stream_name: str = "stdout"):
        if stream_name not in ("stdout", "stderr"):
            raise ValueError(f"stream_name must be 'stdout' or 'stderr', got {stream_name!r}")
        self._stream_name = stream_name
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.setStream; the stream is always looked up
        pass


def setup_logger(
    output: str | None = None,
    distributed_rank: int = 0,
    *,
    fmt: str = _FMT,
    stream: str = "stdout",
) -> logging.Logger:
    """Configure the root logger; returns the "vps_d2" logger.

    Calling it again replaces the handlers an earlier call added (never anyone else's).

    Args:
        output: a folder (log.txt inside it) or a ``.txt`` / ``.log`` file; None: console only.
        distributed_rank: rank 0 logs to the console; other ranks only to ``<file>.rank<N>``.
        fmt: the record format (:mod:`logging` %-style).
        stream: "stdout" or "stderr", looked up at each record (see :class:`_ConsoleHandler`).
    """
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_vps_d2", False):
            root.removeHandler(h)
            h.close()
    formatter = logging.Formatter(fmt, datefmt="%m/%d %H:%M:%S")
    if distributed_rank == 0:
        ch = _ConsoleHandler(stream)
        ch.setFormatter(formatter)
        ch._vps_d2 = True  # type: ignore[attr-defined]
        root.addHandler(ch)
    if output:
        filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        fh = logging.FileHandler(filename, encoding="utf-8")
        fh.setFormatter(formatter)
        fh._vps_d2 = True  # type: ignore[attr-defined]
        root.addHandler(fh)
    return logging.getLogger("vps_d2")
