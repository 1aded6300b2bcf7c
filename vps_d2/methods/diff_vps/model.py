"""Diff-VPS (MICCAI 2024): multi-task conditional diffusion with adversarial temporal reasoning.

Per target frame I_t with its previous frames I_{t-delta}..I_{t-1} (delta = 4):

1. image encoder on I_t -> S_j; temporal encoder (separate weights) on each previous frame,
   averaged over time -> R_j (strides 4..32);
2. H_j = FPN(S_j + R_j) (64 channels);
3. the mask latent z_0 (the 1/4 mask embedded, bit scale 0.01) is noised at a random time
   t (continuous cosine log-SNR schedule) -> z_t, fused with H_1 (latent transform);
4. the denoising head, conditioned on the log-SNR (time embedding + FiLM), predicts the x0
   mask logits, the class logits (6) and the box (cx, cy, w, h);
5. TRM: a reconstruction decoder on R_j predicts the (normalised) target frame, judged by a
   discriminator (Inception-v3) trained adversarially with its own optimizer.

Training: clips of delta + 1 frames (the clip contract: "online" clips of DELTA + 1), the last
is the target.
The step (:class:`~.train_step.DiffVPSTrainStep`) calls ``forward`` with a mode:
``"generator"`` -> {"losses", "real", "fake"}; ``"discriminator"`` -> {"loss_d"};
``"adversarial"`` -> the generator's losses + "loss_adv".

Streaming (``reset``/``step``, online, latency 0): each frame's temporal-encoder features are
computed once and kept for the next delta frames (a bounded buffer; at the start of a video
frame 0 stands for the missing previous frames); DDIM sampling from per-frame seeded noise.
Output per frame: "prob" (H, W), "class_scores" (6,) softmax, "box" (4,) normalised
(cx, cy, w, h), "box_score" (the largest mask probability of the frame).
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.config import configurable
from vps_d2.modeling.backbone import build_backbone
from vps_d2.modeling.meta_arch import META_ARCH_REGISTRY, ClipContract, VideoMetaArch

from .criterion import AdversarialCriterion, DiffVPSCriterion, build_weight_dict, split_weight_dict
from .diffusion import (
    REEMBED_MODES,
    DDIMSampler,
    MaskLatentEmbedding,
    cosine_log_snr,
    noise_from_generators,
    q_sample,
)
from .discriminator import build_discriminator
from .encoders import DualEncoder, PriorFPN, fuse
from .heads import BoxHead, ClassHead, DecodeHead, LatentFusion, LogSNREmbedding
from .reconstruction import ReconstructionDecoder

__all__ = ["DiffVPS", "FORWARD_MODES"]

logger = logging.getLogger(__name__)

FORWARD_MODES = ("generator", "discriminator", "adversarial")


def frame_seed(seed: int, video_id: str, frame_index: int) -> int:
    """The test-time noise seed of one frame: a function of (seed, video_id, frame_index)."""
    h = zlib.crc32(str(video_id).encode("utf-8"))
    return (int(seed) * 1_000_003 + h * 65_537 + int(frame_index)) % (2**63 - 1)


@META_ARCH_REGISTRY.register()
class DiffVPS(VideoMetaArch):
    online = True
    config_sections = ("DIFF_VPS",)
    train_step = "DiffVPSTrainStep"

    @configurable
    def __init__(
        self,
        *,
        backbone: DualEncoder,
        fpn: PriorFPN,
        mask_embed: MaskLatentEmbedding,
        latent_fusion: LatentFusion,
        time_embed: LogSNREmbedding,
        decode_head: DecodeHead,
        class_head: ClassHead | None = None,
        box_head: BoxHead | None = None,
        reconstruction: ReconstructionDecoder | None = None,
        discriminator: nn.Module | None = None,
        criterion: DiffVPSCriterion,
        adversarial_criterion: AdversarialCriterion | None = None,
        sampler: DDIMSampler,
        delta: int = 4,
        t_max: float = 0.999,
        reembed: str = "threshold",
        test_seed: int = 0,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        test_size: Sequence[int] = (224, 224),
    ) -> None:
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std, test_size=test_size)
        if delta < 1:
            raise ValueError(f"MODEL.DIFF_VPS.DELTA must be >= 1, got {delta}")
        if not 0 < t_max <= 1:
            raise ValueError(f"MODEL.DIFF_VPS.DIFFUSION.T_MAX must be in (0, 1], got {t_max}")
        if reembed not in REEMBED_MODES:
            raise ValueError(
                f"MODEL.DIFF_VPS.DIFFUSION.REEMBED must be one of {REEMBED_MODES}, got {reembed!r}"
            )
        if reconstruction is not None and backbone.temporal is None:
            raise ValueError("Diff-VPS: the reconstruction decoder needs the temporal encoder")
        if discriminator is not None and reconstruction is None:
            raise ValueError(
                "MODEL.DIFF_VPS.USE_ADVERSARIAL needs USE_TRM (the discriminator "
                "judges the reconstruction)"
            )
        if (discriminator is None) != (adversarial_criterion is None):
            raise ValueError(
                "Diff-VPS: a discriminator needs an adversarial criterion and vice versa"
            )
        self.backbone = backbone
        self.fpn = fpn
        self.mask_embed = mask_embed
        self.latent_fusion = latent_fusion
        self.time_embed = time_embed
        self.decode_head = decode_head
        self.class_head = class_head
        self.box_head = box_head
        self.reconstruction = reconstruction
        self.discriminator = discriminator
        self.criterion = criterion
        self.adversarial_criterion = adversarial_criterion
        self.sampler = sampler
        self.delta = int(delta)
        self.t_max = float(t_max)
        self.reembed = reembed
        self.test_seed = int(test_seed)
        self.reset()

    @classmethod
    def clip_contract(cls, cfg) -> ClipContract:
        """Training clips of MODEL.DIFF_VPS.DELTA previous frames then the target ("online");
        without USE_TRM (only the target is used) any length, DELTA + 1 by default. Online."""
        delta = int(cfg.MODEL.DIFF_VPS.DELTA)
        if delta < 1:
            raise ValueError(f"MODEL.DIFF_VPS.DELTA must be >= 1, got {delta}")
        if not cfg.MODEL.DIFF_VPS.USE_TRM:
            return ClipContract(train_length=delta + 1, train_length_multiple=1)
        return ClipContract(
            train_length=delta + 1,
            train_sampler="online",
            reason=f"trains on the {delta} previous frames then the target "
            f"(MODEL.DIFF_VPS.DELTA {delta})",
        )

    @classmethod
    def from_config(cls, cfg) -> dict:
        d = cfg.MODEL.DIFF_VPS
        in_features = list(d.IN_FEATURES)
        if not in_features:
            raise ValueError("MODEL.DIFF_VPS.IN_FEATURES is empty")
        if d.USE_ADVERSARIAL and not d.USE_TRM:
            raise ValueError(
                "MODEL.DIFF_VPS.USE_ADVERSARIAL needs USE_TRM (the discriminator "
                "judges the reconstruction)"
            )
        image = build_backbone(cfg, out_features=in_features)
        temporal = build_backbone(cfg, out_features=in_features) if d.USE_TRM else None
        encoder = DualEncoder(image, temporal, in_features)
        c, hd = d.FPN_CHANNELS, d.HEAD
        levels = [c] * len(in_features)
        gen_weights, adv_weights = split_weight_dict(
            build_weight_dict(
                d.LOSS, use_mdm=d.USE_MDM, use_trm=d.USE_TRM, use_adversarial=d.USE_ADVERSARIAL
            )
        )
        dsc = d.DISCRIMINATOR
        return {
            "backbone": encoder,
            "fpn": PriorFPN(encoder.channels, c, d.FPN_TOP_DOWN),
            "mask_embed": MaskLatentEmbedding(c, d.DIFFUSION.BIT_SCALE),
            "latent_fusion": LatentFusion(c, c, hd.LATENT_HIDDEN),
            "time_embed": LogSNREmbedding(hd.TIME_FREQS, hd.TIME_DIM),
            "decode_head": DecodeHead(levels, hd.CHANNELS, hd.TIME_DIM, hd.DROPOUT),
            "class_head": ClassHead(hd.CHANNELS, d.NUM_CLASSES) if d.USE_MDM else None,
            "box_head": (
                BoxHead(levels, hd.BOX_CHANNELS, hd.BOX_HIDDEN, hd.BOX_ACT) if d.USE_MDM else None
            ),
            "reconstruction": (
                ReconstructionDecoder(encoder.channels, d.RECONSTRUCTION.CHANNELS)
                if d.USE_TRM
                else None
            ),
            "discriminator": (
                build_discriminator(
                    dsc.NAME,
                    weights=dsc.WEIGHTS,
                    input_size=dsc.INPUT_SIZE,
                    transform_input=dsc.TRANSFORM_INPUT,
                    small_channels=dsc.SMALL_CHANNELS,
                )
                if d.USE_ADVERSARIAL
                else None
            ),
            "criterion": DiffVPSCriterion(gen_weights, seg_loss=d.LOSS.SEG, box_loss=d.LOSS.BOX),
            "adversarial_criterion": AdversarialCriterion(adv_weights) if adv_weights else None,
            "sampler": DDIMSampler(d.DIFFUSION.SAMPLE_STEPS, d.DIFFUSION.OUTPUT),
            "delta": d.DELTA,
            "t_max": d.DIFFUSION.T_MAX,
            "reembed": d.DIFFUSION.REEMBED,
            "test_seed": d.DIFFUSION.TEST_SEED,
            **cls.base_config(cfg),
        }

    # ------------------------------------------------------------------ parts
    @property
    def use_trm(self) -> bool:
        return self.backbone.temporal is not None

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """ "main": every trainable parameter but the discriminator's; "discriminator": its."""
        if self.discriminator is None:
            return super().optimizer_groups()
        d_ids = {id(p) for p in self.discriminator.parameters()}
        return {
            "main": [p for p in self.parameters() if p.requires_grad and id(p) not in d_ids],
            "discriminator": [p for p in self.discriminator.parameters() if p.requires_grad],
        }

    def priors(
        self, target: torch.Tensor, temporal: list[torch.Tensor] | None
    ) -> list[torch.Tensor]:
        """Normalised target frames (B, 3, H, W) + R_j (or None) -> H_j (B, C, H/s_j, W/s_j)."""
        return self.fpn(fuse(self.backbone.image_features(target), temporal))

    def denoise(
        self, z: torch.Tensor, priors: list[torch.Tensor], log_snr: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """f_theta(z_t, H, t): z (B, C, h_1, w_1), H_j, log_snr (B,) -> {"mask_logits"
        (B, 1, h_1, w_1) x0 logits, "class_logits" (B, K), "box" (B, 4)} (the heads built)."""
        temb = self.time_embed(log_snr)
        levels = [self.latent_fusion(z, priors[0])] + list(priors[1:])
        f, mask_logits = self.decode_head(levels, temb)
        out = {"mask_logits": mask_logits}
        if self.class_head is not None:
            out["class_logits"] = self.class_head(f)
        if self.box_head is not None:
            out["box"] = self.box_head(levels)
        return out

    # ------------------------------------------------------------------ training
    def forward(self, batched_inputs, mode: str | None = None):
        """``mode`` None: training losses / inference (the base protocol); otherwise one of
        :data:`FORWARD_MODES` (the training step's forwards, see the module docstring)."""
        if mode is None:
            return super().forward(batched_inputs)
        if mode == "generator":
            return self.generator_forward(batched_inputs)
        if mode == "discriminator":
            return self.discriminator_forward(batched_inputs["real"], batched_inputs["fake"])
        if mode == "adversarial":
            return self.adversarial_forward(batched_inputs["fake"], batched_inputs["losses"])
        raise ValueError(
            f"DiffVPS.forward: unknown mode {mode!r}; expected None or one of {FORWARD_MODES}"
        )

    def _clip_targets(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        images = torch.stack([b["image"] for b in batched_inputs])  # B, T, 3, H, W
        if images.dim() == 4:
            images = images[:, None]
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(
                f"Diff-VPS trains on clips: each 'image' must be (T, 3, H, W), got "
                f"{tuple(images.shape[1:])}"
            )
        t = images.shape[1]
        if self.use_trm and t != self.delta + 1:
            raise ValueError(
                f"Diff-VPS trains on clips of MODEL.DIFF_VPS.DELTA + 1 = {self.delta + 1} frames "
                f"(the previous {self.delta}, then the target), got {t}: its clip contract "
                "declares "
                f"INPUT.CLIP.SAMPLING 'online' and INPUT.CLIP.LENGTH {self.delta + 1} (resolve the "
                f"config with vps_d2.modeling.resolve_clip_config, as the engine's setup does)"
            )
        b = images.shape[0]
        masks = torch.stack([x["sem_seg"] for x in batched_inputs]).to(self.device)
        masks = masks if masks.dim() == 3 else masks[:, -1]  # B, H, W
        class_ids = torch.tensor(
            [int(x.get("class_id", -1)) for x in batched_inputs], device=self.device
        )
        if all("boxes" in x for x in batched_inputs):
            boxes = torch.stack([x["boxes"] for x in batched_inputs]).to(self.device)
            valid = torch.stack([torch.as_tensor(x["box_valid"]) for x in batched_inputs])
            boxes, valid = boxes.view(b, -1, 4)[:, -1], valid.view(b, -1)[:, -1].to(self.device)
        else:
            boxes = torch.zeros(b, 4, device=self.device)
            valid = torch.zeros(b, dtype=torch.bool, device=self.device)
        return {
            "images": images,
            "masks": masks.float(),
            "class_ids": class_ids,
            "boxes": boxes.float(),
            "box_valid": valid.bool(),
        }

    def generator_forward(self, batched_inputs: list[dict]) -> dict:
        """Training clips -> {"losses": weighted L_MDM + MSE of L_TRM, "real": normalised
        target frames (B, 3, H, W), "fake": reconstructions (B, 3, H, W) or None}."""
        tg = self._clip_targets(batched_inputs)
        x = self.normalize(tg["images"])  # B, T, 3, H, W
        target = x[:, -1]
        size = target.shape[-2:]
        temporal = self.backbone.temporal_features(x[:, :-1]) if self.use_trm else None
        priors = self.priors(target, temporal)
        masks = tg["masks"]
        if masks.shape[-2:] != size:
            raise ValueError(
                f"Diff-VPS: masks {tuple(masks.shape[-2:])} and frames {tuple(size)} differ in size"
            )
        mask_q = F.interpolate(masks[:, None], size=priors[0].shape[-2:], mode="nearest")[:, 0]
        z0 = self.mask_embed(mask_q)
        b = z0.shape[0]
        log_snr = cosine_log_snr(torch.rand(b, device=z0.device) * self.t_max)
        z_t = q_sample(z0, log_snr, torch.randn_like(z0))
        out = self.denoise(z_t, priors, log_snr)
        mask_logits = F.interpolate(
            out["mask_logits"], size=size, mode="bilinear", align_corners=False
        )
        fake = self.reconstruction(temporal, size) if self.reconstruction is not None else None
        losses = self.criterion.apply_weights(
            self.criterion(
                mask_logits=mask_logits,
                masks=masks,
                class_logits=out.get("class_logits"),
                class_ids=tg["class_ids"],
                boxes=out.get("box"),
                box_targets=tg["boxes"],
                box_valid=tg["box_valid"],
                reconstruction=fake,
                frames=target if fake is not None else None,
            )
        )
        return {"losses": losses, "real": target, "fake": fake}

    def discriminator_forward(self, real: torch.Tensor, fake: torch.Tensor) -> dict:
        """Real and (detached) fake frames (B, 3, H, W) -> {"loss_d"} (weighted)."""
        if self.discriminator is None:
            raise RuntimeError("DiffVPS: no discriminator (MODEL.DIFF_VPS.USE_ADVERSARIAL False)")
        crit = self.adversarial_criterion
        return crit.discriminator_losses(self.discriminator(real), self.discriminator(fake))

    def adversarial_forward(self, fake: torch.Tensor, losses: dict) -> dict:
        """Reconstructions (B, 3, H, W) WITH their graph + the generator's losses -> the
        losses + {"loss_adv"}: -log D(fake) through the current discriminator, whose
        gradient reaches the reconstruction decoder and the temporal encoder."""
        if self.discriminator is None:
            raise RuntimeError("DiffVPS: no discriminator (MODEL.DIFF_VPS.USE_ADVERSARIAL False)")
        adv = self.adversarial_criterion.generator_losses(self.discriminator(fake))
        return {**losses, **adv}

    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        """All the generator's weighted losses (the adversarial term with the current D)."""
        out = self.generator_forward(batched_inputs)
        if self.discriminator is None:
            return out["losses"]
        return self.adversarial_forward(out["fake"], out["losses"])

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(
        self,
        target: torch.Tensor,
        temporal: list[torch.Tensor] | None,
        generators: Sequence[torch.Generator],
    ) -> dict[str, torch.Tensor]:
        """DDIM sampling for normalised target frames (B, 3, H, W), their R_j (or None) and
        one generator per sample -> {"mask_logits" (B, 1, H, W), "class_logits" (B, K),
        "box" (B, 4)} (reduced over steps by DIFFUSION.OUTPUT) and "latents"."""
        if len(generators) != target.shape[0]:
            raise ValueError(
                f"DiffVPS.predict: {len(generators)} generators for {target.shape[0]} frames"
            )
        priors = self.priors(target, temporal)
        h1 = priors[0]
        noise = noise_from_generators(
            (self.mask_embed.embedding.embedding_dim, *h1.shape[-2:]), generators, h1.device
        )
        return self.sample_from_noise(target, priors, noise)

    def sample_from_noise(
        self, target: torch.Tensor, priors: list[torch.Tensor], noise: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """DDIM sampling from given initial noise (B, C, h_1, w_1) with the priors H_j of the
        normalised target frames (B, 3, H, W) -> :meth:`predict`'s dict (the exported
        streaming step takes the noise as an input: :mod:`.export`)."""

        def predict_x0(z: torch.Tensor, log_snr: torch.Tensor) -> dict:
            out = self.denoise(z, priors, log_snr)
            out["x0"] = self.mask_embed.reembed(out["mask_logits"], self.reembed)
            return out

        res = self.sampler.sample(predict_x0, noise)
        res["mask_logits"] = F.interpolate(
            res["mask_logits"], size=target.shape[-2:], mode="bilinear", align_corners=False
        )
        return res

    @torch.no_grad()
    def predict_clips(
        self, clips: torch.Tensor, generators: Sequence[torch.Generator]
    ) -> dict[str, torch.Tensor]:
        """Normalised clips (B, delta + 1, 3, H, W), the target last -> :meth:`predict`."""
        temporal = self.backbone.temporal_features(clips[:, :-1]) if self.use_trm else None
        return self.predict(clips[:, -1], temporal, generators)

    def frame_generator(self, video_id: str, frame_index: int) -> torch.Generator:
        """The generator of one frame's initial noise (seeded by :func:`frame_seed`): a CPU
        generator whatever the model's device, so a frame's noise, and its output, are the
        same on the CPU and on a GPU."""
        g = torch.Generator()
        g.manual_seed(frame_seed(self.test_seed, video_id, frame_index))
        return g

    def reset(self) -> None:
        """Start of a video: forget the previous frames' temporal features."""
        self._buffer: deque = deque(maxlen=self.delta)
        self._t = 0

    @torch.inference_mode()
    def step(self, frame: dict) -> dict:
        image = frame["image"]
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(
                f"DiffVPS.step: frame 'image' must be (3, H, W), got {tuple(image.shape)}"
            )
        h, w = self.frame_size(frame)
        x = self.prepare_test_images(image[None])
        temporal = feats = None
        if self.use_trm:
            feats = self.backbone.frame_features(x)
            if not self._buffer:  # first frame: it stands for the missing previous frames
                self._buffer.extend([feats] * self.delta)
            elif [f.shape for f in self._buffer[-1]] != [f.shape for f in feats]:
                raise ValueError(
                    "DiffVPS.step: the frame size changed within a video; call reset()"
                )
            temporal = self.backbone.aggregate(list(self._buffer))
        index = int(frame.get("frame_index", self._t))
        gen = self.frame_generator(str(frame.get("video_id", "")), index)
        out = self.predict(x, temporal, [gen])
        if feats is not None:
            self._buffer.append(feats)
        self._t += 1
        prob = self.logits_to_probs(out["mask_logits"], h, w)[0]
        result = {"prob": prob}
        if "class_logits" in out:
            result["class_scores"] = out["class_logits"][0].float().softmax(-1)
        if "box" in out:
            result["box"] = out["box"][0].float().clamp(0, 1)
            result["box_score"] = prob.max()
        return result
