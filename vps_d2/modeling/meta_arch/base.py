"""The meta-architecture protocol, written down once.

Every model registered in META_ARCH_REGISTRY subclasses :class:`VideoMetaArch`:

* ``forward(batched_inputs: list[dict])``
    - training (``self.training``): each dict is a clip from the training mapper
      (``"image"`` uint8 (T, 3, H, W), ``"sem_seg"`` (T, H, W), ``"class_id"``,
      ``"boxes"`` (T, 4), ``"box_valid"`` (T,), ...). Returns ``dict[str, Tensor]`` of
      named, weighted scalar losses (the default training step sums them).
    - inference: the dicts are CONSECUTIVE test frames of ONE video (``"image"`` uint8
      (3, H, W) at any size, ``"height"``, ``"width"``, ``"video_id"``, ``"frame_index"``,
      ...; the test loader batches ``clip_contract(cfg).test_frames_per_batch`` of them).
      Returns one dict per
      input frame, aligned with the inputs: ``{"prob": float (height, width) in [0, 1]}``
      plus optional ``"class_scores"`` (C,) softmax probabilities, ``"box"`` (4,)
      normalised (cx, cy, w, h) and ``"box_score"`` (). The model keeps its streaming
      state between calls and resets it when a new video starts (another ``video_id``, or
      ``frame_index`` 0 or not following the previous frame); frames without a
      ``video_id`` form a video of their own per call. So Detectron2's
      ``inference_on_dataset(model, loader, evaluator)`` and vps_d2's own evaluation run
      the same protocol.
* Streaming (evaluation, the demo, :class:`~vps_d2.engine.VideoPredictor`):
    - ``reset()``: forget everything (start of a video);
    - ``step(frame) -> dict``: one test frame in, its output out (online models);
    - ``process_frames(frames) -> list[dict]``: consecutive frames of the current video
      (default: ``step`` on each; clip models: :class:`~.clip.ClipVideoMetaArch`);
    - ``stream(frames) -> Iterator[dict]``: ``reset()`` then one output per input frame, in
      order, ``frames_per_call`` frames at a time; memory stays bounded whatever the
      video's length. :attr:`online` is True when frame t's output is available as soon
      as frame t was given (latency 0).
* Clips: ``clip_contract(cfg) -> ClipContract`` (classmethod, before the model exists)
  declares once what the model needs: the training clip length (exact, any, or a multiple
  of a sub-clip length) and sampler, the test frames per forward call and the output
  latency. :func:`vps_d2.modeling.resolve_clip_config` checks ``INPUT.CLIP.LENGTH`` /
  ``INPUT.CLIP.SAMPLING`` against it and fills them in when unset (the engine's setup does,
  before any process starts); methods never read ``INPUT.CLIP`` themselves.
* Task: :attr:`VideoMetaArch.task` is ``"segmentation"`` (everything above). A
  ``"generation"`` model (an image generator such as ArSDM) trains the same way but
  inverts the inference: each test frame carries its mask (``"sem_seg"`` (H, W), or a
  ``"gt_file_name"``) and its output is ``{"image": uint8 (3, height, width)}`` in
  INPUT.FORMAT, a frame generated for that mask; the streaming rules (one output per frame,
  in order, bounded state) are the same. The contract tests check each task's outputs.
* Training, beyond the default step: ``optimizer_groups()`` names the parameter groups of
  the optimizers (default ``{"main": trainable parameters}``), and :attr:`train_step` names
  the step object in ``vps_d2.engine.train_step.TRAIN_STEP_REGISTRY`` that runs one iteration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.config import ConfigError

__all__ = ["ClipContract", "VideoMetaArch"]


@dataclass(frozen=True)
class ClipContract:
    """What a meta-architecture needs from the clips (declared once, by ``clip_contract``).

    Attributes:
        train_length: frames per training clip; 0: any length (1 when INPUT.CLIP.LENGTH is
            unset). With ``train_length_multiple`` 0 it is the only length accepted.
        train_length_multiple: > 0: any multiple of this is accepted and ``train_length``
            (itself such a multiple) is only the default (PGN+AEN's K * L clips).
        train_sampler: name in CLIP_SAMPLER_REGISTRY the model trains on; "" any ("online"
            when INPUT.CLIP.SAMPLING is unset).
        test_frames_per_batch: consecutive test frames per forward call (the test loader's
            batch).
        latency: frames an output waits for after its own frame (0: online).
        reason: what the model trains on, for the messages ("trains on triplets ...").
    """

    train_length: int = 0
    train_length_multiple: int = 0
    train_sampler: str = ""
    test_frames_per_batch: int = 1
    latency: int = 0
    reason: str = ""

    def __post_init__(self) -> None:
        for name in ("train_length", "train_length_multiple", "latency"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"ClipContract.{name} must be >= 0, got {getattr(self, name)}")
        if int(self.test_frames_per_batch) < 1:
            raise ValueError(
                f"ClipContract.test_frames_per_batch must be >= 1, got {self.test_frames_per_batch}"
            )
        m = self.train_length_multiple
        if m and (not self.train_length or self.train_length % m):
            raise ValueError(
                f"ClipContract.train_length ({self.train_length}) must be a "
                f"multiple of train_length_multiple ({m})"
            )

    @property
    def online(self) -> bool:
        """True when frame t's output is given with frame t (latency 0)."""
        return self.latency == 0

    def resolve(self, length: int, sampling: str, method: str = "the model") -> tuple[int, str]:
        """(INPUT.CLIP.LENGTH, INPUT.CLIP.SAMPLING) -> the values to train with.

        0 / "" (unset) become the declared values (1 / "online" where any is accepted).
        Raises :class:`~vps_d2.config.ConfigError` (one line naming the key, its value and
        what ``method`` needs) when a set value contradicts the contract.
        """
        why = f"{method} {self.reason}" if self.reason else f"{method} needs it"
        length = int(length)
        if length < 0:
            raise ConfigError(
                f"INPUT.CLIP.LENGTH = {length}: must be >= 1, or 0 (unset) for "
                f"what {method} declares"
            )
        if length == 0:
            length = self.train_length or 1
        elif self.train_length_multiple:
            m = self.train_length_multiple
            if length % m:
                raise ConfigError(
                    f"INPUT.CLIP.LENGTH = {length} but {why}: set "
                    f"INPUT.CLIP.LENGTH a multiple of {m} (or leave it unset: "
                    f"{self.train_length})"
                )
        elif self.train_length and length != self.train_length:
            raise ConfigError(
                f"INPUT.CLIP.LENGTH = {length} but {why}: set INPUT.CLIP.LENGTH "
                f"{self.train_length} (or leave it unset)"
            )
        sampling = str(sampling)
        if not sampling:
            sampling = self.train_sampler or "online"
        elif self.train_sampler and sampling != self.train_sampler:
            raise ConfigError(
                f"INPUT.CLIP.SAMPLING = {sampling!r} but {why}: set INPUT.CLIP."
                f"SAMPLING {self.train_sampler!r} (or leave it unset)"
            )
        return length, sampling


class VideoMetaArch(nn.Module):
    """Base class: pixel normalisation buffers, device, resizing helpers, streaming loop."""

    #: True when frame t's output depends only on frames <= t and is given with frame t.
    online: bool = True
    #: "segmentation" (frames in, foreground probabilities out) or "generation" (masks in,
    #: generated frames out); see the module docstring.
    task: str = "segmentation"
    #: Name of the training step in TRAIN_STEP_REGISTRY (SOLVER.TRAIN_STEP overrides it).
    train_step: str = "DefaultTrainStep"
    #: The method sections ``MODEL.<SECTION>`` this model reads (its own). Keys set in
    #: another meta-architecture's declared section are warned about as unread
    #: (:func:`~vps_d2.modeling.meta_arch.build.warn_unread_method_keys`); () = not declared,
    #: no check.
    config_sections: tuple[str, ...] = ()

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
        self._stream_video: object = None  # (video_id, next frame index) of the stream state

    @staticmethod
    def base_config(cfg) -> dict:
        """Constructor arguments shared by every meta-architecture."""
        return {
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "test_size": cfg.INPUT.SIZE_TEST,
        }

    @classmethod
    def clip_contract(cls, cfg) -> ClipContract:
        """What the model needs from the clips (here: any training clip, 1 test frame per
        call, online). Read from the model's own keys only, never from INPUT.CLIP."""
        return ClipContract()

    @property
    def frames_per_call(self) -> int:
        """Frames :meth:`stream` hands to :meth:`process_frames` at a time (1 here)."""
        return 1

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each named optimizer; every trainable parameter in exactly one."""
        return {"main": [p for p in self.parameters() if p.requires_grad]}

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
            logits = F.interpolate(
                logits, size=(height, width), mode="bilinear", align_corners=False
            )
        return logits.sigmoid()[:, 0]

    @staticmethod
    def frame_size(frame: dict) -> tuple[int, int]:
        """The (height, width) a frame's output is given at (default: its image size)."""
        image = frame["image"]
        return int(frame.get("height", image.shape[-2])), int(frame.get("width", image.shape[-1]))

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

    def process_frames(self, frames: list[dict]) -> list[dict]:
        """Consecutive frames of the current video -> one output each (``step`` per frame)."""
        return [self.step(f) for f in frames]

    @torch.no_grad()
    def inference(self, frames: list[dict]) -> list[dict]:
        """Eval-mode forward: consecutive frames of one video -> aligned per-frame outputs.

        Resets the stream state when the frames do not continue the previous call's video.
        """
        if not frames:
            return []
        first = frames[0]
        vid, idx = first.get("video_id"), first.get("frame_index")
        if vid is None or idx is None:
            self.reset()  # a call without video identity is a video of its own
            self._stream_video = None
        else:
            if self._stream_video != (vid, int(idx)) or int(idx) == 0:
                self.reset()
            for k, f in enumerate(frames):
                if f.get("video_id") != vid or f.get("frame_index") != int(idx) + k:
                    raise ValueError(
                        f"{type(self).__name__}: a forward call takes consecutive frames of one "
                        f"video; got video {f.get('video_id')!r} frame {f.get('frame_index')} "
                        f"at position {k} after video {vid!r} frame {idx}"
                    )
            self._stream_video = (vid, int(idx) + len(frames))
        return self.process_frames(list(frames))

    @torch.no_grad()
    def stream(self, frames: Iterable[dict]) -> Iterator[dict]:
        """Run a whole video; yields one output dict per frame, in order.

        Frames are pulled lazily, :attr:`frames_per_call` at a time, so only that many wait
        for their output.
        """
        self.reset()
        self._stream_video = None
        chunk: list[dict] = []
        n = max(1, int(self.frames_per_call))
        for frame in frames:
            chunk.append(frame)
            if len(chunk) == n:
                yield from self.process_frames(chunk)
                chunk = []
        if chunk:
            yield from self.process_frames(chunk)
        self.reset()
