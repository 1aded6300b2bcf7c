"""VideoPredictor: Detectron2's DefaultPredictor for videos, streaming and memory-bounded."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator

import torch

from vps_d2.checkpoint import load_model_weights
from vps_d2.config import configurable
from vps_d2.modeling import VideoMetaArch, build_model, stream_video

__all__ = ["LatencyStats", "VideoPredictor"]

logger = logging.getLogger(__name__)


class LatencyStats:
    """Running count / mean / min / max of per-frame latencies, in milliseconds (O(1) memory)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count, self.total_ms = 0, 0.0
        self.min_ms, self.max_ms, self.last_ms = math.inf, 0.0, float("nan")

    def add(self, ms: float) -> None:
        self.count += 1
        self.total_ms += ms
        self.min_ms, self.max_ms, self.last_ms = min(self.min_ms, ms), max(self.max_ms, ms), ms

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.count if self.count else float("nan")

    @property
    def fps(self) -> float:
        """Frames per second of model time (reading and drawing excluded)."""
        return 1000.0 * self.count / self.total_ms if self.total_ms > 0 else float("nan")

    def summary(self) -> str:
        if not self.count:
            return "no frame"
        return (
            f"{self.count} frames, {self.mean_ms:.1f} ms/frame mean "
            f"(min {self.min_ms:.1f}, max {self.max_ms:.1f}), {self.fps:.1f} fps model time"
        )


class VideoPredictor:
    """Run a trained model over the frames of one video, one output per frame, in order.

    ``VideoPredictor(cfg)`` builds ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.MODEL.DEVICE``,
    loads ``cfg.MODEL.WEIGHTS`` (strict; FileNotFoundError / RuntimeError with the path)
    and puts it in eval mode. ``VideoPredictor(model=m)`` wraps an already loaded model.

    Calling it on an iterable of test frame dicts (``"image"`` uint8 (3, H, W) in
    ``input_format`` order, ``"height"``, ``"width"``, ...; e.g. a
    :class:`vps_d2.io.VideoReader`) streams them through ``model.stream``:
    online models answer frame by frame through ``step``, clip models through their own
    bounded-window ``stream``. Frames are pulled lazily, so memory does not grow with the
    video's length. Each output is the model's dict (``"prob"`` float (H, W) in [0, 1],
    optional ``"class_scores"`` (C,), ``"box"`` (4,)) moved to the CPU, plus
    ``"frame_index"``, ``"latency_ms"``: the model time from the moment the frame was read
    to its output (reading of other frames excluded): for online models the step of that
    frame, for clip models also the wait for the window holding it (every frame of a
    window gets the window's time, none "0 ms"), and ``"model_ms"``: the model time spent
    producing this output (a clip model's window is charged to the output that triggered
    it). :attr:`latency` keeps running statistics of ``model_ms`` (the cost per frame).
    """

    @configurable
    def __init__(
        self, *, model: VideoMetaArch, input_format: str = "RGB", to_cpu: bool = True
    ) -> None:
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {input_format!r}")
        self.model = model.eval()
        self.input_format = input_format
        self.to_cpu = to_cpu
        self.latency = LatencyStats()

    @classmethod
    def from_config(cls, cfg) -> dict:
        model = build_model(cfg)
        load_model_weights(model, cfg.MODEL.WEIGHTS)
        return {"model": model, "input_format": cfg.INPUT.FORMAT}

    def _sync(self) -> None:
        dev = getattr(self.model, "device", torch.device("cpu"))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    @torch.no_grad()
    def run(self, frames: Iterable[dict]) -> Iterator[tuple[dict, dict]]:
        """Yield ``(frame, output)`` pairs, one per input frame, in order."""
        self.model.eval()
        self.latency.reset()
        reading = [0.0]
        # model clock: time spent outside frame reading; arrival[i]: its value when frame i
        # was read (an output's latency is the clock's advance since its frame's arrival)
        clock = [0.0]
        arrival: dict[int, float] = {}
        pulled = [0]

        def timed(it: Iterable[dict]) -> Iterator[dict]:
            it = iter(it)
            while True:
                t = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    return
                finally:
                    reading[0] += time.perf_counter() - t
                key = int(frame.get("frame_index", pulled[0]))
                arrival[key] = clock[0] + (time.perf_counter() - start - reading[0])
                pulled[0] += 1
                yield frame

        start = time.perf_counter()
        pairs = stream_video(self.model, timed(frames))
        n = 0
        while True:
            reading[0] = 0.0
            start = time.perf_counter()
            try:
                frame, out = next(pairs)
            except StopIteration:
                break
            self._sync()
            step = max(0.0, time.perf_counter() - start - reading[0])
            ms = 1000.0 * step
            self.latency.add(ms)
            out = dict(out)
            if self.to_cpu:
                out = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in out.items()}
            out["frame_index"] = int(frame.get("frame_index", n))
            since = clock[0] - arrival.pop(out["frame_index"], clock[0])
            clock[0] += step
            out["model_ms"] = ms
            out["latency_ms"] = 1000.0 * (since + step)
            n += 1
            yield frame, out
        logger.info("VideoPredictor: %s", self.latency.summary())

    def __call__(self, frames: Iterable[dict]) -> Iterator[dict]:
        """Yield one output dict per frame of ``frames``, in order (see the class doc)."""
        for _, out in self.run(frames):
            yield out
