"""The meta-architecture protocol, written down once.

Every model registered in META_ARCH_REGISTRY subclasses :class:`VideoMetaArch`:

* ``forward(batched_inputs: list[dict])``
    - training (``self.training``): each dict is a clip from the training mapper
      (``"image"`` uint8 (T, 3, H, W), ``"sem_seg"`` (T, H, W), ``"class_id"``,
      ``"boxes"`` (T, 4), ...). Returns ``dict[str, Tensor]`` of named scalar losses;
      the trainer sums them.
    - inference: each dict is a clip with ``"image"`` uint8 (T, 3, H, W) at any size and
      optional ``"height"``/``"width"`` (the original size; default: the input size).
      Returns one dict per clip: ``{"probs": float (T, height, width) in [0, 1]}`` plus
      optional ``"class_scores"`` (T, num_classes) and ``"boxes"`` (T, 4) as normalised
      (cx, cy, w, h).
* Streaming, the interface evaluation and the demo use:
    - ``reset()``: forget everything (start of a video);
    - ``step(frame) -> dict``: one test frame dict (``"image"`` uint8 (3, H, W),
      ``"height"``, ``"width"``) in, ``{"prob": (height, width)}`` (plus optional
      ``"class_scores"`` (C,), ``"box"`` (4,)) out. Online methods see only past frames;
      memory must stay bounded whatever the video's length.
    - ``stream(frames) -> Iterator[dict]``: ``reset()`` then one output per input frame, in
      order. Clip methods that need future frames override ``stream`` (buffering a bounded
      window) and set ``online = False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["VideoMetaArch"]


class VideoMetaArch(nn.Module):
    """Base class: pixel normalisation buffers, device, resizing helpers, streaming loop."""

    #: True when frame t's output depends only on frames <= t.
    online: bool = True

    def __init__(
        self,
        *,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        test_size: Sequence[int] = (352, 352),
    ) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.test_size = tuple(int(s) for s in test_size)

    @staticmethod
    def base_config(cfg) -> dict:
        """Constructor arguments shared by every meta-architecture."""
        return {
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "test_size": cfg.INPUT.SIZE_TEST,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ helpers
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8/float images (..., 3, H, W) in 0-255 -> normalised float on self.device."""
        images = images.to(self.device, non_blocking=True).float()
        return (images - self.pixel_mean) / self.pixel_std

    def prepare_test_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 at any size -> (N, 3, *test_size) normalised float."""
        x = self.normalize(images)
        if tuple(x.shape[-2:]) != self.test_size:
            x = F.interpolate(x, size=self.test_size, mode="bilinear", align_corners=False)
        return x

    @staticmethod
    def logits_to_probs(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Mask logits (N, 1, h, w) -> foreground probabilities (N, height, width), float32."""
        logits = logits.float()
        if tuple(logits.shape[-2:]) != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear",
                                   align_corners=False)  # fmt: skip
        return logits.sigmoid()[:, 0]

    # ------------------------------------------------------------------ protocol
    def forward(self, batched_inputs: list[dict]):
        if self.training:
            return self.losses(batched_inputs)
        return self.inference(batched_inputs)

    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def reset(self) -> None:
        """Clear streaming state (start of a new video)."""

    def step(self, frame: dict) -> dict:
        raise NotImplementedError

    @torch.no_grad()
    def stream(self, frames: Iterable[dict]) -> Iterator[dict]:
        """Run a whole video frame by frame; yields one output dict per frame, in order."""
        self.reset()
        for frame in frames:
            yield self.step(frame)
        self.reset()

    @torch.no_grad()
    def inference(self, batched_inputs: list[dict]) -> list[dict]:
        """Clip inference through :meth:`stream`; stacks per-frame outputs per clip."""
        results = []
        for clip in batched_inputs:
            images = clip["image"]
            if images.dim() == 3:
                images = images[None]
            h = int(clip.get("height", images.shape[-2]))
            w = int(clip.get("width", images.shape[-1]))
            frames = ({"image": im, "height": h, "width": w, "frame_index": i}
                      for i, im in enumerate(images))  # fmt: skip
            outs = list(self.stream(frames))
            result = {"probs": torch.stack([o["prob"] for o in outs])}
            if all("class_scores" in o for o in outs):
                result["class_scores"] = torch.stack([o["class_scores"] for o in outs])
            if all("box" in o for o in outs):
                result["boxes"] = torch.stack([o["box"] for o in outs])
            results.append(result)
        return results
