"""``VideoDefaultPredictor``: Detectron2's DefaultPredictor, one video frame per call.

Detectron2's ``DefaultPredictor(cfg)(image)`` treats every image as unrelated; a video model
(SALI's memory, PGN+AEN's clips, Diff-VPS's temporal buffer and per-frame noise) needs the
frames of one video in order. This predictor keeps the model's stream state across calls:
each call is the next frame of the current video, :meth:`~VideoDefaultPredictor.reset` (or
another ``video_id``) starts a new one, and a call that cannot be the next frame (a
``frame_index`` out of order, another frame size) is refused with a ValueError. Its outputs
equal vps_d2's :class:`~vps_d2.engine.VideoPredictor` on the same frames (tested): no
Detectron2 resize (the model resizes to INPUT.SIZE_TEST, as in vps_d2's evaluation), the
weights loaded by vps_d2's strict loader, plus "sem_seg" / "instances"
(:mod:`vps_d2.d2.modeling`).
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch
from detectron2.data import MetadataCatalog as D2MetadataCatalog

from vps_d2.checkpoint import load_model_weights
from vps_d2.modeling import clip_contract, get_meta_arch

from .modeling import build_model

__all__ = ["VideoDefaultPredictor"]

logger = logging.getLogger(__name__)

_STREAM_IDS = itertools.count()


class VideoDefaultPredictor:
    """``VideoDefaultPredictor(cfg)``; ``predictor(bgr_image)`` -> the frame's output dict.

    The interface of Detectron2's ``DefaultPredictor`` (``cfg``, ``model``, ``metadata``,
    ``input_format``; ``__call__(original_image)`` with an (H, W, 3) uint8 BGR array,
    returning one output dict on the model's device: "prob" (H, W), "sem_seg" (2, H, W),
    "instances" as TEST.D2_OUTPUTS asks, and the model's own keys), so Detectron2's
    ``VisualizationDemo`` runs with it (tools/d2_demo.py).

    Raises:
        ValueError: at construction, for a model whose output for a frame waits for later
            frames (a clip contract with latency > 0, e.g. PGN+AEN with
            MODEL.PGN_AEN.STREAM_MODE "clip"): one output per call is impossible there.
    """

    def __init__(self, cfg) -> None:
        self.cfg = cfg.clone()
        contract = clip_contract(self.cfg)
        if contract.latency > 0:
            name = get_meta_arch(self.cfg).__name__
            raise ValueError(
                f"{name} answers a frame only after {contract.latency} later frame(s) (its "
                "clip contract), but a DefaultPredictor answers each frame when called: use "
                "the model's online stream mode (PGN+AEN: MODEL.PGN_AEN.STREAM_MODE sliding) "
                "or vps_d2.engine.VideoPredictor, which streams whole videos"
            )
        self.model = build_model(self.cfg).eval()
        load_model_weights(self.model, self.cfg.MODEL.WEIGHTS)
        if len(self.cfg.DATASETS.TEST):
            self.metadata = D2MetadataCatalog.get(self.cfg.DATASETS.TEST[0])
        self.input_format = self.cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {self.input_format!r}")
        self.reset()

    def reset(self, video_id: str | None = None) -> None:
        """Start a new video (its id: ``video_id``, or a new one of this predictor's)."""
        self.video_id = video_id if video_id is not None else f"stream{next(_STREAM_IDS)}"
        self.frame_index = 0  # index the next call gets
        self._size: tuple[int, int] | None = None

    @torch.no_grad()
    def __call__(
        self,
        original_image: np.ndarray,
        *,
        video_id: str | None = None,
        frame_index: int | None = None,
    ) -> dict:
        """Predict the next frame of the current video.

        Args:
            original_image: uint8 (H, W, 3), BGR (OpenCV's order, as DefaultPredictor).
            video_id: optional; another id than the current video's starts a new video.
            frame_index: optional; must be the next index of the video (0 restarts it).
        """
        if original_image.ndim != 3 or original_image.shape[2] != 3:
            raise ValueError(
                f"VideoDefaultPredictor: expected an (H, W, 3) BGR image, got shape "
                f"{tuple(original_image.shape)}"
            )
        if video_id is not None and video_id != self.video_id:
            self.reset(video_id)
        if frame_index is not None:
            if int(frame_index) == 0:
                self.reset(self.video_id)
            elif int(frame_index) != self.frame_index:
                raise ValueError(
                    f"VideoDefaultPredictor: frame {frame_index} of video {self.video_id!r} is "
                    f"not the next frame (expected {self.frame_index}); call reset() (or pass "
                    "another video_id) to start a new video"
                )
        height, width = original_image.shape[:2]
        if self._size is not None and self._size != (height, width):
            raise ValueError(
                f"VideoDefaultPredictor: a {height}x{width} frame after {self._size[0]}x"
                f"{self._size[1]} frames of video {self.video_id!r}: frames of one video share "
                "one size; call reset() before another video"
            )
        if self.input_format == "RGB":
            original_image = original_image[:, :, ::-1]
        image = torch.as_tensor(np.ascontiguousarray(original_image.transpose(2, 0, 1)))
        frame = {
            "image": image,
            "height": height,
            "width": width,
            "video_id": self.video_id,
            "frame_index": self.frame_index,
        }
        out = self.model([frame])[0]
        self._size = (height, width)
        self.frame_index += 1
        return out
