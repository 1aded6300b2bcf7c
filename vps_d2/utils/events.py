"""Training metrics: EventStorage and writers (metrics.json, TensorBoard, log lines)."""

from __future__ import annotations

import datetime
import json
import logging
import statistics
from collections import defaultdict, deque
from typing import Any

from .file_io import atomic_write_json

__all__ = [
    "CommonMetricPrinter",
    "EventStorage",
    "EventWriter",
    "JSONWriter",
    "TensorboardWriter",
    "get_event_storage",
]

_CURRENT_STORAGE: list[EventStorage] = []


def get_event_storage() -> EventStorage:
    if not _CURRENT_STORAGE:
        raise RuntimeError("get_event_storage() must be called inside `with EventStorage(...)`")
    return _CURRENT_STORAGE[-1]


class EventStorage:
    """Scalars per iteration; keeps a bounded history per name (``window`` values)."""

    def __init__(self, start_iter: int = 0, window: int = 200) -> None:
        self.iter = start_iter
        self._history: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
        self._latest: dict[str, tuple[float, int]] = {}
        self._smoothing: dict[str, bool] = {}

    def put_scalar(self, name: str, value: float, smoothing_hint: bool = True) -> None:
        value = float(value)
        self._history[name].append((value, self.iter))
        self._latest[name] = (value, self.iter)
        self._smoothing.setdefault(name, smoothing_hint)

    def put_scalars(self, *, smoothing_hint: bool = True, **kwargs: float) -> None:
        for k, v in kwargs.items():
            self.put_scalar(k, v, smoothing_hint=smoothing_hint)

    def latest(self) -> dict[str, tuple[float, int]]:
        return dict(self._latest)

    def median(self, name: str, window: int = 20) -> float:
        values = [v for v, _ in list(self._history[name])[-window:]]
        return statistics.median(values) if values else float("nan")

    def latest_with_smoothing(self, window: int = 20) -> dict[str, tuple[float, int]]:
        """Latest value of each scalar, the median of the last ``window`` when smoothed."""
        return {
            k: ((self.median(k, window) if self._smoothing[k] else v), it)
            for k, (v, it) in self._latest.items()
        }

    def step(self) -> None:
        self.iter += 1

    def __enter__(self) -> EventStorage:
        _CURRENT_STORAGE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert _CURRENT_STORAGE[-1] is self
        _CURRENT_STORAGE.pop()


class EventWriter:
    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _new_scalars(window: int, written: dict[str, int]) -> dict[int, dict[str, float]]:
    """``{iteration: {name: value}}`` of the scalars put since ``written[name]`` (the last
    iteration written of each name), which is updated. Per name, so that scalars put at an
    iteration already written (the final evaluation, after the last step's write) are not
    lost."""
    by_iter: dict[int, dict[str, float]] = defaultdict(dict)
    for k, (v, it) in get_event_storage().latest_with_smoothing(window).items():
        if it > written.get(k, -1):
            by_iter[it][k] = v
            written[k] = it
    return by_iter


class JSONWriter(EventWriter):
    """Append one JSON line per write and iteration to ``metrics.json`` (the scalars new since
    the last write; the final evaluation's too)."""

    def __init__(self, path: str, window: int = 20) -> None:
        self._path = path
        self._window = window
        self._written: dict[str, int] = {}

    def write(self) -> None:
        by_iter = _new_scalars(self._window, self._written)
        if not by_iter:
            return
        with open(self._path, "a", encoding="utf-8") as f:
            for it in sorted(by_iter):
                f.write(json.dumps({"iteration": it, **by_iter[it]}, sort_keys=True) + "\n")
            f.flush()


class TensorboardWriter(EventWriter):
    """Write the latest scalars to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: str, window: int = 20) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir)
        self._window = window
        self._written: dict[str, int] = {}

    def write(self) -> None:
        for it, scalars in sorted(_new_scalars(self._window, self._written).items()):
            for k, v in scalars.items():
                self._writer.add_scalar(k, v, it)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class CommonMetricPrinter(EventWriter):
    """Log ``eta, iter, losses, lr, time`` lines (they land in log.txt)."""

    def __init__(self, max_iter: int, window: int = 20) -> None:
        self.logger = logging.getLogger(__name__)
        self._max_iter = max_iter
        self._window = window

    def write(self) -> None:
        storage = get_event_storage()
        it = storage.iter
        latest = storage.latest()
        if not latest:
            return
        eta = ""
        if "time" in latest:
            sec = storage.median("time", self._window) * (self._max_iter - it - 1)
            eta = f"eta: {datetime.timedelta(seconds=int(max(sec, 0)))}  "
        losses = "  ".join(
            f"{k}: {storage.median(k, self._window):.4g}"
            for k in sorted(latest)
            if k.startswith("loss") or k == "total_loss"
        )
        lr = f"lr: {latest['lr'][0]:.5g}  " if "lr" in latest else ""
        t = f"time: {storage.median('time', self._window):.4f}  " if "time" in latest else ""
        self.logger.info("%siter: %d  %s  %s%s", eta, it, losses, t, lr)


def dump_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON atomically (:mod:`vps_d2.utils.file_io`)."""
    atomic_write_json(path, obj, sort_keys=True)
