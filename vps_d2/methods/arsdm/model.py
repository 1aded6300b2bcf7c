"""ArSDM (MICCAI 2023): mask-conditioned colonoscopy frame synthesis with a semantic diffusion
model, the adaptive loss and refinement through a frozen segmenter.

A generator, not a segmenter (``task = "generation"``, see
:class:`~vps_d2.modeling.meta_arch.base.VideoMetaArch`):

* training (``forward(clips, refine=...)``): every frame of the clips is a sample; x_0 the
  frame in [-1, 1], the mask one-hot (2 channels); t ~ U{0..T-1}, x_t = q(x_t | x_0);
  ``loss_diffusion`` the adaptive distance of the U-Net's noise prediction (talk Eq. 7-8);
  with ``refine`` (talk Algorithm 1; one t for the whole batch then), the one-step estimate
  x~_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps_theta(x_t), the DDIM chain from t down to x~_0
  (with the graph), and ``loss_refine`` the frozen segmenter's structure loss of x~_0
  against the mask; gradients reach the U-Net, never the segmenter;
* EMA of the U-Net's weights (``unet_ema``, in the checkpoint) updated by
  :class:`~vps_d2.methods.arsdm.train_step.ArSDMTrainStep` after every optimizer step;
* inference (``model(frames)`` / ``stream`` / ``step``): each frame carries its mask
  (``"sem_seg"`` (H, W), or its ``"gt_file_name"``); the output is ``{"image": uint8 (3,
  height, width) in INPUT.FORMAT}``: DDIM from noise seeded by (SAMPLER.SEED, video) (or
  also by the frame index, SAMPLER.NOISE "frame"), with the EMA weights. A frame's image
  depends only on its seed, its mask and the weights (not on the batch or the process).
"""

from __future__ import annotations

import copy
import hashlib
import logging

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

from vps_d2.config import configurable
from vps_d2.data.io import read_mask
from vps_d2.modeling.meta_arch import META_ARCH_REGISTRY, VideoMetaArch
from vps_d2.modeling.meta_arch.build import resolve_device

from .criterion import ArSDMCriterion
from .diffusion import GaussianDiffusion
from .segmenter import FrozenSegmenter, build_frozen_segmenter
from .unet import SemanticUNet

__all__ = ["NOISE_MODES", "ArSDM", "frame_seed", "mask_to_cond"]

logger = logging.getLogger(__name__)

NOISE_MODES = ("video", "frame")


def frame_seed(seed: int, video_id: str, frame_index: int | None = None) -> int:
    """A 63-bit seed from (seed, video, frame index or None), stable across processes and
    Python versions (SHA-256, not ``hash``)."""
    key = f"{int(seed)}|{video_id}" + ("" if frame_index is None else f"|{int(frame_index)}")
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little") >> 1


def mask_to_cond(masks: torch.Tensor) -> torch.Tensor:
    """Masks (N, H, W), foreground > 0.5 -> one-hot (N, 2, H, W) float (background, polyp)."""
    fg = (masks > 0.5).float()[:, None]
    return torch.cat([1 - fg, fg], dim=1)


def build_unet(cfg) -> SemanticUNet:
    u = cfg.MODEL.ARSDM.UNET
    return SemanticUNet(
        model_channels=u.MODEL_CHANNELS,
        channel_mult=list(u.CHANNEL_MULT),
        num_res_blocks=u.NUM_RES_BLOCKS,
        attention_resolutions=list(u.ATTENTION_RESOLUTIONS),
        num_head_channels=u.NUM_HEAD_CHANNELS,
        spade_hidden=u.SPADE_HIDDEN,
        groups=u.NORM_GROUPS,
        dropout=u.DROPOUT,
        resblock_updown=u.RESBLOCK_UPDOWN,
        scale_shift=u.USE_SCALE_SHIFT_NORM,
        gradient_checkpointing=u.GRADIENT_CHECKPOINTING,
    )


@META_ARCH_REGISTRY.register()
class ArSDM(VideoMetaArch):
    online = True
    config_sections = ("ARSDM",)
    task = "generation"
    train_step = "ArSDMTrainStep"

    @configurable
    def __init__(
        self,
        *,
        unet: SemanticUNet,
        diffusion: GaussianDiffusion,
        criterion: ArSDMCriterion,
        segmenter: FrozenSegmenter | None = None,
        ema_decay: float = 0.9999,
        sampler_steps: int = 200,
        sampler_eta: float = 1.0,
        sample_with_ema: bool = True,
        clip_denoised: bool = False,
        noise_mode: str = "video",
        seed: int = 0,
        refine_steps: int = 200,
        refine_eta: float = 1.0,
        refine_period: int = 1,
        refine_grad_steps: int = 0,
        refine_checkpoint: bool = True,
        image_format: str = "RGB",
        test_size=(384, 384),
    ) -> None:
        # The generator works on [-1, 1] images: (x - 127.5) / 127.5 per channel.
        super().__init__(pixel_mean=[127.5] * 3, pixel_std=[127.5] * 3, test_size=test_size)
        if noise_mode not in NOISE_MODES:
            raise ValueError(
                f"MODEL.ARSDM.SAMPLER.NOISE must be one of {NOISE_MODES}, got {noise_mode!r}"
            )
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"MODEL.ARSDM.EMA.DECAY must be in [0, 1), got {ema_decay}")
        if int(refine_period) < 1:
            raise ValueError(f"MODEL.ARSDM.REFINE.PERIOD must be >= 1, got {refine_period}")
        self.unet = unet
        self.unet_ema = copy.deepcopy(unet).requires_grad_(False).eval()
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.diffusion = diffusion
        self.criterion = criterion
        self._segmenter = segmenter  # not a submodule: never trained, saved or DDP-wrapped
        self.ema_decay = float(ema_decay)
        self.sampler_steps = int(sampler_steps)
        self.sampler_eta = float(sampler_eta)
        self.sample_with_ema = bool(sample_with_ema)
        self.clip_denoised = bool(clip_denoised)
        self.noise_mode = noise_mode
        self.seed = int(seed)
        self.refine_steps = int(refine_steps)
        self.refine_eta = float(refine_eta)
        self.refine_period = int(refine_period)
        self.refine_grad_steps = int(refine_grad_steps)
        self.refine_checkpoint = bool(refine_checkpoint)
        self.image_format = image_format
        diffusion.ddim_timesteps(self.sampler_steps)  # range checks, with the key's name
        diffusion.ddim_timesteps(self.refine_steps)

    @classmethod
    def from_config(cls, cfg) -> dict:
        a = cfg.MODEL.ARSDM
        refine = bool(a.REFINE.SEGMENTER_CONFIG) and a.LOSS.REFINE_WEIGHT != 0
        segmenter = None
        if refine:
            segmenter = build_frozen_segmenter(
                a.REFINE.SEGMENTER_CONFIG,
                a.REFINE.SEGMENTER_WEIGHTS,
                a.REFINE.SEGMENTER_OPTS,
                device=str(resolve_device(cfg.MODEL.DEVICE)),
            )
        return {
            "unet": build_unet(cfg),
            "diffusion": GaussianDiffusion.from_config(cfg),
            "criterion": ArSDMCriterion.from_config(cfg, refine=refine),
            "segmenter": segmenter,
            "ema_decay": a.EMA.DECAY,
            "sampler_steps": a.SAMPLER.STEPS,
            "sampler_eta": a.SAMPLER.ETA,
            "sample_with_ema": a.SAMPLER.USE_EMA,
            "clip_denoised": a.SAMPLER.CLIP_DENOISED,
            "noise_mode": a.SAMPLER.NOISE,
            "seed": a.SAMPLER.SEED,
            "refine_steps": a.REFINE.STEPS,
            "refine_eta": a.REFINE.ETA,
            "refine_period": a.REFINE.PERIOD,
            "refine_grad_steps": a.REFINE.GRAD_STEPS,
            "refine_checkpoint": a.REFINE.CHECKPOINT,
            "image_format": cfg.INPUT.FORMAT,
            "test_size": cfg.INPUT.SIZE_TEST,
        }

    # ------------------------------------------------------------------ module plumbing
    @property
    def segmenter(self) -> FrozenSegmenter | None:
        """The frozen refinement segmenter (None in the adaptive stage)."""
        return self._segmenter

    @property
    def refines(self) -> bool:
        return self._segmenter is not None

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self._segmenter is not None:  # follow .to(device) / dtype changes
            self._segmenter.apply(fn)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.unet_ema.eval()
        return self

    @torch.no_grad()
    def update_ema(self) -> None:
        """unet_ema <- decay * unet_ema + (1 - decay) * unet, decay = min(DECAY, (1 + n) /
        (10 + n)) at the n-th update (the code's LitEma)."""
        self.ema_updates += 1
        n = float(self.ema_updates)
        decay = min(self.ema_decay, (1 + n) / (10 + n))
        for e, p in zip(self.unet_ema.parameters(), self.unet.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1.0 - decay)
        for e, b in zip(self.unet_ema.buffers(), self.unet.buffers()):
            e.copy_(b)

    # ------------------------------------------------------------------ training
    def forward(self, batched_inputs: list[dict], refine: bool = False):
        if self.training:
            return self.losses(batched_inputs, refine=refine)
        return self.inference(batched_inputs)

    def losses(self, batched_inputs: list[dict], refine: bool = False) -> dict[str, torch.Tensor]:
        """Clips (image uint8 (T, 3, H, W), sem_seg (T, H, W)) -> weighted losses."""
        images = torch.cat([b["image"] for b in batched_inputs])  # N, 3, H, W
        masks = torch.cat([b["sem_seg"] for b in batched_inputs]).to(self.device).float()
        x0 = self.normalize(images)
        cond = mask_to_cond(masks)
        n, T = x0.shape[0], self.diffusion.num_timesteps
        refine = bool(refine) and self.refines
        if refine:  # one t for the batch: one reverse chain (Algorithm 1)
            t = torch.randint(0, T, (1,), device=self.device).expand(n)
        else:
            t = torch.randint(0, T, (n,), device=self.device)
        noise = torch.randn_like(x0)
        eps_hat = self.unet(self.diffusion.q_sample(x0, t, noise), t, cond)
        probs = None
        if refine:
            x0_tilde = self.refine_sample(x0, t, eps_hat, cond)
            probs = self._segmenter.frame_probs((x0_tilde.float() + 1) * 127.5)
        return self.criterion.apply_weights(self.criterion(eps_hat, noise, masks, probs))

    def refine_sample(
        self, x0: torch.Tensor, t: torch.Tensor, eps_hat: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """Algorithm 1, lines 1-4: x~_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps_hat, then DDIM
        (REFINE.STEPS grid, REFINE.ETA) from t down to x~_0 with the trained U-Net, keeping
        the graph (of the last REFINE.GRAD_STEPS steps when > 0). t (N,) all equal."""
        x_t = self.diffusion.q_sample(x0, t, eps_hat)
        t0 = int(t[0])
        grid = [s for s in self.diffusion.ddim_timesteps(self.refine_steps) if s < t0]
        timesteps = [t0] + grid[::-1]

        def eps_fn(x, tt):
            if self.refine_checkpoint and torch.is_grad_enabled():
                return torch.utils.checkpoint.checkpoint(
                    self.unet, x, tt, cond, use_reentrant=False
                )
            return self.unet(x, tt, cond)

        return self.diffusion.reverse(
            eps_fn,
            x_t,
            timesteps,
            self.refine_eta,
            eps_first=eps_hat,
            grad_steps=self.refine_grad_steps,
        )

    # ------------------------------------------------------------------ generation
    def _frame_mask(self, frame: dict) -> torch.Tensor:
        if frame.get("sem_seg") is not None:
            m = torch.as_tensor(frame["sem_seg"])
        elif frame.get("gt_file_name"):
            m = torch.from_numpy(read_mask(frame["gt_file_name"]))
        else:
            raise KeyError(
                "ArSDM generates a frame from its mask: give each frame a 'sem_seg' (H, W) "
                "mask or a 'gt_file_name'"
            )
        return m.float().reshape(m.shape[-2:])

    def _generators(self, frames: list[dict]) -> list[torch.Generator]:
        gens = []
        for f in frames:
            vid = str(f.get("video_id", ""))
            idx = f.get("frame_index", 0) if self.noise_mode == "frame" else None
            gens.append(torch.Generator().manual_seed(frame_seed(self.seed, vid, idx)))
        return gens

    @torch.no_grad()
    def generate(
        self, masks: torch.Tensor, generators: list[torch.Generator], use_ema: bool | None = None
    ) -> torch.Tensor:
        """Masks (N, H, W) at the generation size -> images (N, 3, H, W) in [-1, 1]; the
        initial noise and the step noises of sample i come from ``generators[i]`` (drawn on
        the CPU, so the result does not depend on the device's random stream)."""
        use_ema = self.sample_with_ema if use_ema is None else use_ema
        unet = self.unet_ema if use_ema else self.unet
        cond = mask_to_cond(masks.to(self.device))
        shape = (3, *masks.shape[-2:])

        def draw(_shape=None) -> torch.Tensor:
            return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(
                self.device
            )

        x_T = draw()
        x0 = self.diffusion.ddim_sample(
            lambda x, t: unet(x, t, cond),
            x_T,
            self.sampler_steps,
            self.sampler_eta,
            draw,
            clip=self.clip_denoised,
        )
        return x0.clamp(-1, 1)

    def process_frames(self, frames: list[dict]) -> list[dict]:
        """Frames with masks -> ``[{"image": uint8 (3, height, width)}]``, one per frame,
        generated at INPUT.SIZE_TEST and resized (bilinear) to each frame's size."""
        if not frames:
            return []
        size = self.test_size
        masks = torch.stack(
            [
                F.interpolate(self._frame_mask(f)[None, None], size=size, mode="nearest")[0, 0]
                for f in frames
            ]
        )
        images = self.generate(masks, self._generators(frames))
        out = []
        for f, img in zip(frames, images):
            h, w = (int(f["height"]), int(f["width"])) if "height" in f else masks.shape[-2:]
            if (h, w) != tuple(img.shape[-2:]):
                img = F.interpolate(img[None], size=(h, w), mode="bilinear", align_corners=False)
                img = img[0].clamp(-1, 1)
            out.append({"image": ((img + 1) * 127.5).round().to(torch.uint8).cpu()})
        return out

    def step(self, frame: dict) -> dict:
        return self.process_frames([frame])[0]
