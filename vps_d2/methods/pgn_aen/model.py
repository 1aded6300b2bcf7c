"""PGN+AEN ("EUVPS", AAAI 2024): an embedding-unleashing clip model for video polyp segmentation.

One window of T <= L consecutive frames (the method's README.md):

1. backbone levels F = {F_1..F_4} (strides 4-32) of every frame;
2. PGN (CFFM by default): proposals e1 (T, q, H/4, W/4) and refined stage features F', every
   frame mining the other frames of the window and the memory's past frames;
3. AEN: CRL(F', F) -> e2 (T, q, D); CSA(e2, clip memory) -> e3 (T, q, D);
4. parameter-free interaction P = sigmoid(sum_q (sum_d e3) * e1), at stride 4, upsampled to
   the input size.

The window then stores its entry in the clip memory (read before write): the PGN's part
(CFFM: the fused 1/8 maps of the new frames) and the CSA's output state. The memory keeps
MEMORY_LENGTH windows (:class:`~vps_d2.modeling.meta_arch.WindowMemory`), so it is bounded
whatever the video's length. Streaming (clip or sliding windows, per-video reset, resizing to
each frame's size) is :class:`~vps_d2.modeling.meta_arch.ClipVideoMetaArch`'s.

Training (``losses``): each training clip holds K * L consecutive frames (the clip contract:
INPUT.CLIP.LENGTH a multiple K * L, by default K = 3, "window" sampling); its K sub-clips run
in order through a fresh clip memory, as a video is processed at test time, so the memory
read, the carried queries and the mining of past frames are trained. The loss is Eq. 10 on
every frame of every sub-clip, averaged over the K sub-clips. ``MODEL.PGN_AEN.USE_AEN False``
is the PGN alone (its single output map is the prediction).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.config import configurable
from vps_d2.modeling.backbone import Backbone, build_backbone
from vps_d2.modeling.meta_arch import (
    META_ARCH_REGISTRY,
    STREAM_MODES,
    ClipContract,
    ClipVideoMetaArch,
    WindowMemory,
)

from .aen import AEN, build_aen
from .criterion import PGNAENCriterion
from .pgn import build_pgn

__all__ = ["PGNAEN", "past_frames"]

logger = logging.getLogger(__name__)

#: Sub-clips per training clip when INPUT.CLIP.LENGTH is unset (the paper configs' 9 = 3 x 3:
#: the third sub-clip reads two past ones, so the clip memory's softmax is trained).
DEFAULT_TRAIN_SUBCLIPS = 3


def past_frames(entries: Sequence[Mapping], length: int, num_new: int) -> list[tuple[int, dict]]:
    """The memory's stored frames with their temporal position relative to the window.

    The window's frames are at positions 0..length-1, its new frames the last ``num_new``.
    Each entry stores ``entry["pgn"]``: {name: (B, n_e, ...)} for its ``n_e =
    entry["num_new"]`` new frames; the newest entry's frames end right before this window's
    first new frame, the older ones before them. Frames already inside the window (position
    >= 0, the sliding mode's overlap) are left out.

    Returns:
        ``[(position < 0, {name: (B, ...)})]``, newest first.
    """
    out = []
    end = length - num_new  # exclusive end position of the newest entry's new frames
    for entry in reversed(list(entries)):
        n = int(entry["num_new"])
        mem = entry.get("pgn") or {}
        if mem:
            for j in range(n - 1, -1, -1):
                pos = end - n + j
                if pos < 0:
                    out.append((pos, {k: v[:, j] for k, v in mem.items()}))
        end -= n
    return out


@META_ARCH_REGISTRY.register()
class PGNAEN(ClipVideoMetaArch):
    """PGN + AEN meta-architecture (``EUVPS``: a deprecated alias of the name)."""

    config_sections = ("PGN_AEN",)

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        pgn: nn.Module,
        aen: AEN | None,
        criterion: PGNAENCriterion,
        in_features: Sequence[str],
        clip_length: int = 3,
        stream_mode: str = "clip",
        memory_length: int = 3,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        test_size: Sequence[int] = (320, 448),
    ) -> None:
        super().__init__(
            clip_length=clip_length,
            stream_mode=stream_mode,
            memory_length=memory_length,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            test_size=test_size,
        )
        expected = aen.num_tokens if aen is not None else 1
        if pgn.num_outputs != expected:
            raise ValueError(
                f"PGN+AEN: the PGN gives {pgn.num_outputs} proposal maps per frame, "
                f"the AEN needs q = {expected}"
            )
        if aen is not None and aen.csa is not None and aen.csa.clip_length < clip_length:
            raise ValueError(
                f"PGN+AEN: the CSA was built for clips of {aen.csa.clip_length} "
                f"frames, the model uses {clip_length}"
            )
        self.backbone = backbone
        self.pgn = pgn
        self.aen = aen
        self.criterion = criterion
        self.in_features = list(in_features)
        self._warned_k = False

    @classmethod
    def clip_contract(cls, cfg) -> ClipContract:
        """K consecutive sub-clips of L = MODEL.PGN_AEN.CLIP_LENGTH per training clip ("window"
        sampling, K = 3 by default); test calls and latency from L and STREAM_MODE."""
        p = cfg.MODEL.PGN_AEN
        length = int(p.CLIP_LENGTH)
        if length < 1:
            raise ValueError(f"MODEL.PGN_AEN.CLIP_LENGTH must be >= 1, got {length}")
        if p.STREAM_MODE not in STREAM_MODES:
            raise ValueError(
                f"MODEL.PGN_AEN.STREAM_MODE must be one of {STREAM_MODES}, got {p.STREAM_MODE!r}"
            )
        return cls.stream_contract(
            length,
            p.STREAM_MODE,
            train_length=DEFAULT_TRAIN_SUBCLIPS * length,
            train_length_multiple=length,
            train_sampler="window",
            reason=f"trains on K consecutive sub-clips of MODEL.PGN_AEN.CLIP_LENGTH {length}",
        )

    @classmethod
    def from_config(cls, cfg) -> dict:
        p = cfg.MODEL.PGN_AEN
        length, mode = int(p.CLIP_LENGTH), p.STREAM_MODE
        if length < 1:
            raise ValueError(f"MODEL.PGN_AEN.CLIP_LENGTH must be >= 1, got {length}")
        if mode not in STREAM_MODES:
            raise ValueError(
                f"MODEL.PGN_AEN.STREAM_MODE must be one of {STREAM_MODES}, got {mode!r}"
            )
        if p.MEMORY_LENGTH < 0:
            raise ValueError(f"MODEL.PGN_AEN.MEMORY_LENGTH must be >= 0, got {p.MEMORY_LENGTH}")
        backbone = build_backbone(cfg, list(p.IN_FEATURES))
        shapes = backbone.output_shape()
        num_tokens = p.CRL.NUM_REGIONS * len(p.IN_FEATURES)
        pgn = build_pgn(
            cfg, shapes, num_outputs=num_tokens if p.USE_AEN else 1, aux_head=bool(p.LOSS.PGN_AUX)
        )
        aen = build_aen(cfg, pgn.stage_channels, shapes, length) if p.USE_AEN else None
        return {
            "backbone": backbone,
            "pgn": pgn,
            "aen": aen,
            "criterion": PGNAENCriterion(cfg),
            "in_features": list(p.IN_FEATURES),
            "clip_length": length,
            "stream_mode": mode,
            "memory_length": p.MEMORY_LENGTH,
            **cls.base_config(cfg),
        }

    # ------------------------------------------------------------------ one window
    def window(
        self, x: torch.Tensor, entries: Sequence[Mapping], num_new: int
    ) -> tuple[dict[str, torch.Tensor | None], dict]:
        """One window of B clips through the model.

        Args:
            x: normalised images (B, T, 3, H, W), T <= clip_length consecutive frames.
            entries: the memory's entries (oldest first), read only.
            num_new: how many of the T frames are new.
        Returns:
            ({"logits": (B, T, 1, H, W), "aux_logits": (B, T, 1, H, W) or None}, this
            window's memory entry).
        """
        b, t = x.shape[:2]
        feats = self.backbone(x.flatten(0, 1))
        feats = {f: feats[f].unflatten(0, (b, t)) for f in self.in_features}
        out = self.pgn(feats, past_frames(entries, t, num_new), num_new)
        state = None
        if self.aen is not None:
            states = [e["aen"] for e in entries if e.get("aen") is not None]
            logits, state = self.aen(out.stage_features, feats, out.proposals, states)
        else:
            logits = out.proposals
        size = x.shape[-2:]
        result = {
            "logits": self._upsample(logits, size),
            "aux_logits": None if out.aux_logits is None else self._upsample(out.aux_logits, size),
        }
        return result, {"num_new": int(num_new), "pgn": out.memory, "aen": state}

    @staticmethod
    def _upsample(logits: torch.Tensor, size) -> torch.Tensor:
        """(B, T, 1, h, w) stride-4 logits -> (B, T, 1, H, W)."""
        y = F.interpolate(logits.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
        return y.unflatten(0, logits.shape[:2])

    def forward_clip(self, images: torch.Tensor, memory: WindowMemory, num_new: int) -> dict:
        out, entry = self.window(images[None], memory.entries, num_new)
        memory.append(entry)
        return {"logits": out["logits"][0]}

    # ------------------------------------------------------------------ training
    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        """Training clips ("image" uint8 (K*L, 3, H, W), "sem_seg" (K*L, H, W)) -> weighted
        {"loss_bce", "loss_dice"[, "loss_pgn_aux_bce", "loss_pgn_aux_dice"]}, averaged over the K
        sub-clips, which run in order through a fresh clip memory."""
        images = torch.stack([b["image"] for b in batched_inputs])  # B, K*L, 3, H, W
        masks = torch.stack([b["sem_seg"] for b in batched_inputs]).to(self.device)  # B, K*L, H, W
        length = self.clip_length
        if images.dim() != 5 or images.shape[1] % length:
            raise ValueError(
                f"PGN+AEN trains on clips of K * {length} frames (its clip contract: "
                f"INPUT.CLIP.LENGTH a multiple of MODEL.PGN_AEN.CLIP_LENGTH); got "
                f"'image' of shape {tuple(images.shape[1:])}"
            )
        x = self.normalize(images)
        k = images.shape[1] // length
        csa = self.aen.csa if self.aen is not None else None
        if k < 3 and csa is not None and getattr(csa, "clip_wise", True) and not self._warned_k:
            self._warned_k = True
            logger.warning(
                "training clips of %d frames = %d sub-clip(s) of %d: the clip memory's softmax "
                "over entries is only trained when a sub-clip reads >= 2 past ones (K >= 3); "
                "with K = 1 its parameters get no gradient (DDP then needs "
                "SOLVER.DDP.FIND_UNUSED_PARAMETERS True)",
                images.shape[1],
                k,
                length,
            )
        memory = WindowMemory(self.memory.maxlen)
        totals: dict[str, torch.Tensor] = {}
        for i in range(k):
            sl = slice(i * length, (i + 1) * length)
            out, entry = self.window(x[:, sl], memory.entries, length)
            memory.append(entry)
            aux = out["aux_logits"]
            losses = self.criterion(
                out["logits"].flatten(0, 1),
                masks[:, sl].flatten(0, 1),
                None if aux is None else aux.flatten(0, 1),
            )
            for name, v in losses.items():
                totals[name] = totals[name] + v if name in totals else v
        return self.criterion.apply_weights({n: v / k for n, v in totals.items()})


# The paper's name (EUVPS), the method's former second registry name.
META_ARCH_REGISTRY.register_alias("EUVPS", "PGNAEN")
