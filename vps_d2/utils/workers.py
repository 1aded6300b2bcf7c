"""Worker processes that end with the process that started them.

A ``multiprocessing`` worker (e.g. of a ``ProcessPoolExecutor``) busy with a long task does
not notice that its parent was killed (``kill -9``, the OOM killer): it finishes the task,
and with the ``forkserver`` start method it can then block for ever on a queue whose other
end is held by a sibling. :func:`exit_with_parent`, called in the worker (as a pool
``initializer``), starts a daemon thread that waits on ``multiprocessing.parent_process()``'s
sentinel, a pipe the parent holds open until it ends, and calls ``os._exit`` as soon as it
closes: the worker exits within milliseconds of its parent, whatever it is computing.

Why not ``prctl(PR_SET_PDEATHSIG)``: it signals when the *process that forked* the child
ends. A ``forkserver`` worker is forked by the fork server, not by the main process, and
the fork server only exits once every worker is gone (each holds its "alive" pipe), so the
signal would never come. The sentinel belongs to the process that *asked* for the worker,
for every start method (fork, spawn, forkserver) and platform.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import threading

import cv2

__all__ = ["exit_with_parent", "init_worker"]

#: Exit status of a worker whose parent died (nobody reads it; it is for ``ps``/logs).
ORPHAN_EXIT_CODE = 3


def _exit_when_ready(sentinel) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(ORPHAN_EXIT_CODE)  # no clean-up: the results could not be delivered anyway


def exit_with_parent() -> bool:
    """In a ``multiprocessing`` child: end this process as soon as its parent process ends.

    Returns False (and does nothing) when called outside a ``multiprocessing`` child.
    """
    parent = mp.parent_process()
    if parent is None:
        return False
    watcher = threading.Thread(
        target=_exit_when_ready, args=(parent.sentinel,), name="exit-with-parent", daemon=True
    )
    watcher.start()
    return True


def init_worker(cv2_threads: int | None = None) -> None:
    """A pool ``initializer``: :func:`exit_with_parent`, and ``cv2.setNumThreads`` when given."""
    if cv2_threads is not None:
        cv2.setNumThreads(int(cv2_threads))
    exit_with_parent()
