"""Clip models: one streaming helper for models that consume bounded windows of frames.

A :class:`ClipVideoMetaArch` implements one method, :meth:`~ClipVideoMetaArch.forward_clip`,
on a window of at most ``clip_length`` (L) consecutive normalised frames; this base class
does the rest of the streaming protocol of :mod:`.base`:

* ``stream_mode="clip"``: a video is cut into consecutive, non-overlapping clips of L
  frames (the last one may be shorter). The test loader gives the model one clip per call
  (its clip contract's ``test_frames_per_batch`` = L), so the output of a frame waits for at
  most L - 1 later frames
  (latency <= L - 1; :attr:`online` is False).
* ``stream_mode="sliding"``: one new frame per call; the window is the last L frames (at
  the start of a video the first frame is repeated to fill it), and only the new frame's
  output is kept (latency 0; :attr:`online` is True).

Memory of past windows: :class:`WindowMemory` keeps at most ``memory_length`` entries of
whatever the model stores per window (oldest dropped first), so memory stays bounded
whatever the video's length. ``forward_clip`` reads ``memory.entries`` first, then
appends its own entry (read before write). The frame buffer of the sliding mode holds at
most L normalised frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .base import ClipContract, VideoMetaArch

__all__ = ["STREAM_MODES", "ClipVideoMetaArch", "WindowMemory"]

STREAM_MODES = ("clip", "sliding")


class WindowMemory:
    """At most ``maxlen`` entries of past windows, oldest first (``maxlen`` 0: none kept)."""

    def __init__(self, maxlen: int) -> None:
        if int(maxlen) < 0:
            raise ValueError(f"WindowMemory: maxlen must be >= 0, got {maxlen}")
        self.maxlen = int(maxlen)
        self._entries: deque = deque(maxlen=self.maxlen) if self.maxlen > 0 else deque(maxlen=0)

    @property
    def entries(self) -> list[Any]:
        """The stored entries, oldest first."""
        return list(self._entries)

    def append(self, entry: Any) -> None:
        """Store one window's entry (the oldest is dropped beyond ``maxlen``)."""
        self._entries.append(entry)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def nbytes(self) -> int:
        """Bytes of the tensors held (nested lists, tuples and dicts are walked)."""

        def size(x: Any) -> int:
            if torch.is_tensor(x):
                return x.numel() * x.element_size()
            if isinstance(x, dict):
                return sum(size(v) for v in x.values())
            if isinstance(x, (list, tuple)):
                return sum(size(v) for v in x)
            return 0

        return sum(size(e) for e in self._entries)


class ClipVideoMetaArch(VideoMetaArch):
    """Base class of models that see windows of ``clip_length`` frames (see module doc).

    Subclasses implement :meth:`forward_clip` and ``clip_contract(cfg)`` (returning
    :meth:`stream_contract` of their clip length and stream mode, plus their training needs),
    and pass ``clip_length``, ``stream_mode`` and ``memory_length`` to ``__init__``.
    """

    online = False

    def __init__(
        self,
        *,
        clip_length: int,
        stream_mode: str = "clip",
        memory_length: int = 0,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        test_size: Sequence[int] = (352, 352),
    ) -> None:
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std, test_size=test_size)
        if int(clip_length) < 1:
            raise ValueError(f"clip length must be >= 1, got {clip_length}")
        if stream_mode not in STREAM_MODES:
            raise ValueError(f"stream mode must be one of {STREAM_MODES}, got {stream_mode!r}")
        self.clip_length = int(clip_length)
        self.stream_mode = stream_mode
        self.online = stream_mode == "sliding"
        self.memory = WindowMemory(memory_length)
        self._window: deque[torch.Tensor] = deque(maxlen=self.clip_length)

    # ------------------------------------------------------------------ to implement
    @classmethod
    def clip_contract(cls, cfg) -> ClipContract:
        """``cls.stream_contract(clip_length, stream_mode, ...)`` from the model's own keys."""
        raise NotImplementedError(f"{cls.__name__} must implement clip_contract(cfg)")

    @staticmethod
    def stream_contract(clip_length: int, stream_mode: str, **training) -> ClipContract:
        """The contract of a model streaming windows of ``clip_length`` frames in
        ``stream_mode``: "clip" takes L test frames per call (latency L - 1), "sliding" one
        (latency 0). ``training``: the training fields of :class:`ClipContract`."""
        if stream_mode not in STREAM_MODES:
            raise ValueError(f"stream mode must be one of {STREAM_MODES}, got {stream_mode!r}")
        length = int(clip_length)
        if length < 1:
            raise ValueError(f"clip length must be >= 1, got {clip_length}")
        per_call = length if stream_mode == "clip" else 1
        return ClipContract(test_frames_per_batch=per_call, latency=per_call - 1, **training)

    def forward_clip(self, images: torch.Tensor, memory: WindowMemory, num_new: int) -> dict:
        """One window -> outputs for all its frames.

        Args:
            images: normalised float (T, 3, *test_size), T <= clip_length consecutive frames.
            memory: entries of past windows; read them, then ``memory.append`` this
                window's entry.
            num_new: how many of the T frames are new (T in "clip" mode, 1 in "sliding").

        Returns:
            ``{"logits": (T, 1, h, w)}`` and optionally ``"class_logits"`` (T, C),
            ``"boxes"`` (T, 4) normalised (cx, cy, w, h) in [0, 1], ``"box_scores"`` (T,).
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ streaming
    @property
    def frames_per_call(self) -> int:
        return self.clip_length if self.stream_mode == "clip" else 1

    def reset(self) -> None:
        self.memory.clear()
        self._window.clear()

    @torch.no_grad()
    def process_frames(self, frames: list[dict]) -> list[dict]:
        if not frames:
            return []
        images = torch.stack([f["image"] for f in frames])  # T, 3, H, W
        x = self.prepare_test_images(images)  # T, 3, h, w
        outputs: list[dict] = []
        if self.stream_mode == "clip":
            for start in range(0, len(frames), self.clip_length):
                part = x[start : start + self.clip_length]
                out = self.forward_clip(part, self.memory, num_new=len(part))
                outputs.extend(
                    self._to_frame_outputs(out, frames[start : start + len(part)], range(len(part)))
                )
            return outputs
        for k, frame in enumerate(frames):
            self._window.append(x[k])
            window = list(self._window)
            window = [window[0]] * (self.clip_length - len(window)) + window
            out = self.forward_clip(torch.stack(window), self.memory, num_new=1)
            outputs.extend(self._to_frame_outputs(out, [frame], [self.clip_length - 1]))
        return outputs

    def _to_frame_outputs(self, out: dict, frames: list[dict], rows) -> list[dict]:
        """Window outputs -> per-frame output dicts at each frame's original size."""
        logits = out["logits"]
        results = []
        for frame, r in zip(frames, rows):
            h, w = self.frame_size(frame)
            res = {"prob": self.logits_to_probs(logits[r : r + 1], h, w)[0]}
            if out.get("class_logits") is not None:
                res["class_scores"] = F.softmax(out["class_logits"][r].float(), dim=-1)
            if out.get("boxes") is not None:
                res["box"] = out["boxes"][r].float()
                scores = out.get("box_scores")
                if scores is not None:
                    res["box_score"] = scores[r].float()
            results.append(res)
        return results
