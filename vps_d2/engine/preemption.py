"""SIGTERM / SIGUSR1 (cluster preemption): save a checkpoint at the current iteration, stop.

Schedulers (SLURM, Kubernetes) send SIGTERM some time before they kill a preempted job
(SLURM: ``#SBATCH --signal=B:TERM@120`` or ``USR1``). During training,
:class:`PreemptionCheckpointer` (a hook, the last one of an iteration) turns the signal into:

1. the current iteration finished (the LR schedulers stepped, the periodic checkpoint and
   evaluation hooks run), then all processes agree (an all-reduce of the signal over the
   process group, every iteration, so every rank stops at the same iteration);
2. ``model_<iteration>.pth`` saved atomically with the same contents as a periodic checkpoint
   of that iteration, and ``last_checkpoint`` pointing at it;
3. :class:`StopRequested` raised: ``tools/train_net.py`` prints one line saying how to
   resume and exits with :data:`PREEMPTED_EXIT_CODE` (75, ``EX_TEMPFAIL``: "try again").

``--resume`` then continues bit-identically to an uninterrupted run (the data stream, the
per-iteration seeds, the optimizers and schedulers are those of a periodic checkpoint).
Outside the iterations (start-up, the final evaluation) the signal stops the process at
once with the same exit status (nothing new to save). Repeated signals are harmless (a
scheduler that signals every process, plus the launcher's relay to its spawned processes).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from vps_d2.utils import comm

from .hooks import nonfinite_weights
from .train_loop import HookBase, NonFiniteLossError

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "PREEMPTION_SIGNALS",
    "PreemptionCheckpointer",
    "StopRequested",
    "Stopped",
    "stop_signals",
]

logger = logging.getLogger(__name__)

#: Exit status of a run stopped by SIGTERM / SIGUSR1 that ``--resume`` continues
#: (sysexits.h EX_TEMPFAIL); distinct from 0, 1 (error), 2 (usage) and 130 (Ctrl-C).
PREEMPTED_EXIT_CODE = 75
#: The signals a scheduler sends before it kills a job.
PREEMPTION_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)
)


@dataclass
class Stopped:
    """What a process stopped by a signal returns (picklable, through ``launch``)."""

    signal_name: str
    iteration: int | None = None  # the iteration whose checkpoint was saved
    checkpoint: str = ""

    def message(self, last_checkpoint: str = "") -> str:
        """One line: what was saved and how to continue."""
        if self.checkpoint:
            saved = f"at iteration {self.iteration}: saved {self.checkpoint}"
        else:
            kept = (
                f"the last checkpoint is {last_checkpoint}"
                if last_checkpoint
                else "no checkpoint was saved yet"
            )
            saved = f"outside a training iteration: {kept}"
        return (
            f"Stopped by {self.signal_name} {saved}; run the same command with --resume to "
            f"continue (exit status {PREEMPTED_EXIT_CODE})"
        )


class StopRequested(BaseException):
    """Raised to stop a process on SIGTERM / SIGUSR1 (a BaseException, like
    KeyboardInterrupt, so that ``except Exception`` in library code does not swallow it)."""

    def __init__(self, signum: int, iteration: int | None = None, checkpoint: str = "") -> None:
        super().__init__(signum, iteration, checkpoint)
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint

    @property
    def stopped(self) -> Stopped:
        return Stopped(signal.Signals(self.signum).name, self.iteration, self.checkpoint)


def _raise_stop(signum, frame) -> None:
    raise StopRequested(signum)


def _relay_to_children(signum, frame) -> None:
    """In the launcher of spawned processes: pass the signal on to them (they save and stop);
    without any (before they start or after they end): stop this process."""
    children = multiprocessing.active_children()
    if not children:
        raise StopRequested(signum)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)


@contextlib.contextmanager
def stop_signals(relay: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM / SIGUSR1 raise :class:`StopRequested` (``relay``: are passed
    on to the spawned child processes, when there are any). Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _relay_to_children if relay else _raise_stop
    previous = {s: signal.signal(s, handler) for s in PREEMPTION_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


class PreemptionCheckpointer(HookBase):
    """On SIGTERM / SIGUSR1: checkpoint at the end of the current iteration, then stop
    (see the module doc). Register it last, so its checkpoint holds every hook's state
    of the finished iteration."""

    def __init__(self, checkpointer, prefix: str = "model") -> None:
        self.checkpointer = checkpointer
        self.prefix = prefix
        self._received = 0
        self._last_iter = False
        self._previous: dict = {}

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame) -> None:
        if self._last_iter:  # the final evaluation: nothing left to checkpoint
            raise StopRequested(signum)
        # A repeated signal changes nothing: a scheduler may signal every process of the job
        # and the launcher relays it too; the scheduler's SIGKILL ends a process that hangs.
        self._received = self._received or signum

    def before_train(self) -> None:
        self._received, self._last_iter = 0, False
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._on_signal) for s in PREEMPTION_SIGNALS}

    def after_train(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._previous = {}

    # ------------------------------------------------------------------ step
    def _agreed_signal(self) -> int:
        """The largest signal number any process received (0: none), the same on all ranks."""
        if comm.get_world_size() == 1:
            return self._received
        fabric = getattr(self.trainer, "fabric", None)
        if fabric is not None:
            flag = torch.tensor(self._received, device=fabric.device)
            return int(fabric.all_reduce(flag, reduce_op="max"))
        flag = torch.tensor(self._received)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag)

    def after_step(self) -> None:
        it = self.trainer.iter
        signum = self._agreed_signal()
        last = it >= self.trainer.max_iter - 1
        if not signum:
            self._last_iter = last
            return
        name = signal.Signals(signum).name
        if last:  # model_final.pth was just saved: only the final evaluation is skipped
            logger.info("%s at the last iteration: model_final is saved", name)
            raise StopRequested(signum, it, self._final_checkpoint())
        bad = nonfinite_weights(self.checkpointer.model)
        if bad:
            raise NonFiniteLossError(
                f"{name} at iteration {it}, but the weights are infinite or NaN ({bad[:3]}): "
                "the checkpoint of this iteration was not saved."
            )
        basename = f"{self.prefix}_{it:07d}"
        logger.info("%s received: saving a checkpoint at iteration %d", name, it)
        self.checkpointer.save(basename, iteration=it)
        comm.synchronize()
        path = os.path.join(self.checkpointer.save_dir or "", basename + ".pth")
        logger.info(
            "Stopped by %s at iteration %d: saved %s; run the same command with --resume to "
            "continue",
            name,
            it,
            path,
        )
        raise StopRequested(signum, it, path)

    def _final_checkpoint(self) -> str:
        path = os.path.join(self.checkpointer.save_dir or "", f"{self.prefix}_final.pth")
        return path if os.path.isfile(path) else ""
