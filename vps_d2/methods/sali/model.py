"""SALI: Short-term Alignment and Long-term Interaction network (MICCAI 2024), online VPS.

Per frame t (each level processed separately until the decoder, C = 32 channels):

1. backbone levels (PVTv2 stages 2-4, strides 8/16/32) -> RFB -> F_t, one (B, C, H_l, W_l)
   per level;
2. MODEL.SALI.DATA_FLOW "paper" (the paper's Eq. 1-4):
   SAM: the neighbour frame's features are aligned to F_t (pyramid deformable alignment)
   and fused with F_t (non-local fusion) -> short-term F_s; LIM: F_s -> key (B, 4, H, W) /
   value (B, 16, H, W); the memory (keys/values of past frames, values weighted by their
   masks) is read with the key -> F_l = [readout, value] (B, 32, H, W), aligned to F_s by
   the same alignment module (SAM.ALIGN_READOUT; False decodes F_l directly);
   "public" (SALI's public code): key/value from F_t; F_l = [readout, value]; the readout F_l
   and the neighbour are both aligned to F_t by the one alignment module, and the non-local
   fusion fuses the two aligned maps (needs SAM, LIM and the alignment: the ablations use
   the paper's flow);
3. decoder: partial decoder -> global map S_g, reverse-attention stages -> S5, S4, S3
   (logits); the output is S3, upsampled to the network's input size, then to the frame's
   (the public test script's two steps).

Training (``losses``): each clip is a triplet [memory, neighbour, current] (the clip
contract: "triplet" clips of 3, MODEL.SALI.TRIPLET). The memory frame's short-term feature is
computed with itself as its neighbour and written with its ground-truth mask; the loss
(:class:`SALICriterion`) is the structure loss of every output on the current frame:
loss_global (S_g), loss_coarse, loss_middle, loss_fine (the reverse stages coarse to fine:
S5, S4, S3 for IN_FEATURES res3-res5), weighted by MODEL.SALI.LOSS.<NAME>_WEIGHT.

Streaming (``reset``/``step``): the neighbour is the previous frame (the frame itself at
t = 0); read before write; every MEMORY.WRITE_EVERY frames the frame is written with its own
predicted S3 logits; one :class:`~vps_d2.modeling.memory.MemoryBank` per level bounds the
memory to MEMORY.CAPACITY frames whatever the video's length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.config import configurable
from vps_d2.modeling.backbone import Backbone, build_backbone
from vps_d2.modeling.criterion import Criterion
from vps_d2.modeling.losses import structure_loss
from vps_d2.modeling.memory import EVICTION_POLICIES, MemoryBank
from vps_d2.modeling.meta_arch import META_ARCH_REGISTRY, ClipContract, VideoMetaArch

from .alignment import ShortTermAlignment
from .decoder import SALIDecoder
from .lim import MASK_WEIGHTINGS, LongTermInteraction
from .rfb import RFB

__all__ = ["DATA_FLOWS", "LOSS_NAMES", "SALI", "SALICriterion", "WRITE_MASKS"]

logger = logging.getLogger(__name__)

#: MODEL.SALI.DATA_FLOW values: the paper's Eq. 1-4, or SALI's public code (module docstring).
DATA_FLOWS = ("paper", "public")
#: MODEL.SALI.LIM.WRITE_MASK values: each level's own stage output, or the final output.
WRITE_MASKS = ("level", "final")

#: SALI's losses in output order: the global map, then the reverse stages coarse to fine.
LOSS_NAMES = ("loss_global", "loss_coarse", "loss_middle", "loss_fine")


class SALICriterion(Criterion):
    """Deep supervision: the structure loss of each output (upsampled to the mask size)
    against the current frame's mask, unweighted; weights from MODEL.SALI.LOSS.

    forward(maps: the decoder's outputs in order (global map, stages coarse to fine), each
    (B, 1, h, w); target (B, H, W)) -> {"loss_global", "loss_coarse", "loss_middle",
    "loss_fine"} (zero-weight ones skipped).
    """

    @classmethod
    def from_config(cls, cfg) -> SALICriterion:
        loss = cfg.MODEL.SALI.LOSS
        weights = (loss.GLOBAL_WEIGHT, loss.COARSE_WEIGHT, loss.MIDDLE_WEIGHT, loss.FINE_WEIGHT)
        return cls(dict(zip(LOSS_NAMES, weights)))

    def forward(
        self, maps: dict[str, torch.Tensor], target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if len(maps) != len(LOSS_NAMES):
            raise ValueError(
                f"SALICriterion: {len(LOSS_NAMES)} outputs expected (global map, "
                f"3 stages), got {list(maps)}"
            )
        size = target.shape[-2:]
        out = {}
        for name, logits in zip(LOSS_NAMES, maps.values()):
            if self.is_active(name):
                up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
                out[name] = structure_loss(up, target)
        return out


@META_ARCH_REGISTRY.register()
class SALI(VideoMetaArch):
    online = True
    config_sections = ("SALI",)

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        in_features: Sequence[str],
        channels: int = 32,
        use_sam: bool = True,
        use_lim: bool = True,
        use_alignment: bool = True,
        use_masked_attention: bool = True,
        align_readout: bool = True,
        data_flow: str = "paper",
        deformable_groups: int = 8,
        pool_sizes: Sequence[int] = (2, 4, 8),
        pool_ceil_mode: bool = False,
        write_mask: str = "level",
        key_channels: int = 4,
        value_channels: int = 16,
        mask_weighting: str = "softmax_plus_one",
        empty_read: str = "self",
        memory_capacity: int = 35,
        write_every: int = 5,
        top_k: int = 20,
        eviction: str = "relevance",
        query_chunk: int = 1024,
        gra_groups: Sequence[int] = (1, 4, 32),
        criterion: Criterion | None = None,
        test_minmax_norm: bool = False,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        test_size: Sequence[int] = (352, 352),
    ) -> None:
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std, test_size=test_size)
        shapes = backbone.output_shape()
        in_features = list(in_features)
        if len(in_features) != 3:
            raise ValueError(
                f"MODEL.SALI.IN_FEATURES needs exactly 3 levels, finest first, got {in_features}"
            )
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise KeyError(
                f"MODEL.SALI.IN_FEATURES {missing} not produced by the backbone "
                f"(it gives {list(shapes)})"
            )
        strides = [shapes[f].stride for f in in_features]
        if any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise ValueError(
                f"MODEL.SALI.IN_FEATURES {in_features} must be consecutive levels "
                f"(strides doubling), got strides {strides}"
            )
        if use_lim and 2 * value_channels != channels:
            raise ValueError(
                f"MODEL.SALI.LIM.VALUE_CHANNELS ({value_channels}) x 2 must equal "
                f"MODEL.SALI.CHANNELS ({channels})"
            )
        if empty_read not in ("self", "zeros"):
            raise ValueError(
                f"MODEL.SALI.LIM.EMPTY_READ must be 'self' or 'zeros', got {empty_read!r}"
            )
        if eviction not in EVICTION_POLICIES:
            raise ValueError(
                f"MODEL.SALI.MEMORY.EVICTION must be one of {EVICTION_POLICIES}, got {eviction!r}"
            )
        if memory_capacity < 1 or write_every < 1:
            raise ValueError(
                f"MODEL.SALI.MEMORY.CAPACITY ({memory_capacity}) and WRITE_EVERY "
                f"({write_every}) must be >= 1"
            )
        if mask_weighting not in MASK_WEIGHTINGS:
            raise ValueError(
                f"MODEL.SALI.LIM.MASK_WEIGHTING must be one of {MASK_WEIGHTINGS}, "
                f"got {mask_weighting!r}"
            )
        if data_flow not in DATA_FLOWS:
            raise ValueError(f"MODEL.SALI.DATA_FLOW must be one of {DATA_FLOWS}, got {data_flow!r}")
        if data_flow == "public" and not (use_sam and use_lim and use_alignment):
            raise ValueError(
                "MODEL.SALI.DATA_FLOW 'public' needs USE_SAM, USE_LIM and USE_ALIGNMENT (the "
                "ablations run the paper's flow: set DATA_FLOW 'paper')"
            )
        if write_mask not in WRITE_MASKS:
            raise ValueError(
                f"MODEL.SALI.LIM.WRITE_MASK must be one of {WRITE_MASKS}, got {write_mask!r}"
            )
        self.backbone = backbone
        self.in_features = in_features
        self.rfb = nn.ModuleList([RFB(shapes[f].channels, channels) for f in in_features])
        self.sam = (
            ShortTermAlignment(
                channels=channels,
                num_levels=3,
                deformable_groups=deformable_groups,
                pool_sizes=pool_sizes,
                pool_ceil_mode=pool_ceil_mode,
                use_alignment=use_alignment,
            )
            if use_sam
            else None
        )
        banks = [
            MemoryBank(
                capacity=memory_capacity,
                write_every=write_every,
                top_k=top_k,
                eviction=eviction,
                query_chunk=query_chunk,
            )
            for _ in in_features
        ]
        self.lim = (
            LongTermInteraction(
                channels=channels,
                num_levels=3,
                key_channels=key_channels,
                value_channels=value_channels,
                masked_attention=use_masked_attention,
                mask_weighting=mask_weighting,
                top_k=top_k,
                query_chunk=query_chunk,
                banks=banks,
            )
            if use_lim
            else None
        )
        self.data_flow = data_flow
        self.write_mask = write_mask
        self.align_readout = bool(
            align_readout
            and use_sam
            and use_lim
            and self.sam is not None
            and self.sam.align is not None
        )
        level_names = [
            "s" + f[len("res") :] if f.startswith("res") else "s_" + f for f in in_features
        ]
        self.decoder = SALIDecoder(
            channels=channels, level_names=level_names, gra_groups=gra_groups
        )
        self.criterion = criterion or SALICriterion(dict.fromkeys(LOSS_NAMES, 1.0))
        self.empty_read = empty_read
        self.test_minmax_norm = test_minmax_norm
        self.reset()

    @classmethod
    def from_config(cls, cfg) -> dict:
        s = cfg.MODEL.SALI
        return {
            "backbone": build_backbone(cfg, out_features=list(s.IN_FEATURES)),
            "in_features": list(s.IN_FEATURES),
            "channels": s.CHANNELS,
            "use_sam": s.USE_SAM,
            "use_lim": s.USE_LIM,
            "use_alignment": s.USE_ALIGNMENT,
            "use_masked_attention": s.USE_MASKED_ATTENTION,
            "align_readout": s.SAM.ALIGN_READOUT,
            "data_flow": s.DATA_FLOW,
            "deformable_groups": s.SAM.DEFORMABLE_GROUPS,
            "pool_sizes": list(s.SAM.POOL_SIZES),
            "pool_ceil_mode": s.SAM.POOL_CEIL_MODE,
            "write_mask": s.LIM.WRITE_MASK,
            "key_channels": s.LIM.KEY_CHANNELS,
            "value_channels": s.LIM.VALUE_CHANNELS,
            "mask_weighting": s.LIM.MASK_WEIGHTING,
            "empty_read": s.LIM.EMPTY_READ,
            "memory_capacity": s.MEMORY.CAPACITY,
            "write_every": s.MEMORY.WRITE_EVERY,
            "top_k": s.MEMORY.TOP_K,
            "eviction": s.MEMORY.EVICTION,
            "query_chunk": s.MEMORY.QUERY_CHUNK,
            "gra_groups": list(s.DECODER.GRA_GROUPS),
            "criterion": SALICriterion.from_config(cfg),
            "test_minmax_norm": s.TEST_MINMAX_NORM,
            **cls.base_config(cfg),
        }

    @classmethod
    def clip_contract(cls, cfg) -> ClipContract:
        """Triplets [memory, neighbour, current] (MODEL.SALI.TRIPLET); online, frame by frame."""
        return ClipContract(
            train_length=3,
            train_sampler="triplet",
            reason="trains on triplets [memory, neighbour, current]",
        )

    # ------------------------------------------------------------------ building blocks
    @property
    def banks(self) -> list[MemoryBank]:
        """The streaming memory banks, one per level (empty list without LIM)."""
        return self.lim.banks if self.lim is not None else []

    def extract(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised images (N, 3, H, W) -> RFB features per level (N, C, H_l, W_l)."""
        feats = self.backbone(x)
        return [rfb(feats[f]) for rfb, f in zip(self.rfb, self.in_features)]

    def short_term(
        self, cur: list[torch.Tensor], nbr: list[torch.Tensor] | None
    ) -> list[torch.Tensor]:
        """SAM (identity without it): current and neighbour levels -> F_s per level."""
        if self.sam is None:
            return cur
        return self.sam(cur, cur if nbr is None else nbr)

    def long_term_output(
        self, fs: list[torch.Tensor], fl: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Align the LIM output F_l to F_s when ALIGN_READOUT is on."""
        return self.sam.align(fl, fs) if self.align_readout else fl

    def features_to_decode(
        self,
        cur: list[torch.Tensor],
        nbr: list[torch.Tensor] | None,
        read: Callable[[list[torch.Tensor], list[torch.Tensor]], list[torch.Tensor]] | None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, list[torch.Tensor] | None]:
        """The levels the decoder gets, by MODEL.SALI.DATA_FLOW.

        Args:
            cur, nbr: RFB features of the current and the neighbour frame per level (nbr
                None: the current frame stands for it).
            read: (keys, values) -> F_l per level (the memory read), None without LIM.
        Returns:
            (levels to decode, keys, values): keys/values (B, Ck|Cv, H, W) per level are
            those the frame is written to memory with (None without LIM).
        """
        nbr = cur if nbr is None else nbr
        if self.data_flow == "public":
            keys, values = self.lim.encode(cur)
            fl = read(keys, values)
            aligned_read = self.sam.align(fl, cur)
            aligned_nbr = self.sam.align(nbr, cur)
            fused = [h(a, b) for h, a, b in zip(self.sam.harmonise, aligned_read, aligned_nbr)]
            return fused, keys, values
        fs = self.short_term(cur, nbr)
        if self.lim is None:
            return fs, None, None
        keys, values = self.lim.encode(fs)
        return self.long_term_output(fs, read(keys, values)), keys, values

    def decode(self, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Levels -> {"sg", "s5", "s4", "s3"} logits at their levels' sizes."""
        return self.decoder(feats)

    @property
    def final_output(self) -> str:
        return self.decoder.output_names[-1]

    # ------------------------------------------------------------------ training
    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        """Triplets ("image" uint8 (3, 3, H, W) = [memory, neighbour, current], "sem_seg"
        (3, H, W)) -> weighted {"loss_global", "loss_coarse", "loss_middle", "loss_fine"}:
        structure losses of the outputs, upsampled to (H, W), against the current frame's
        mask (:class:`SALICriterion`)."""
        images = torch.stack([b["image"] for b in batched_inputs])  # B, T, 3, H, W
        masks = torch.stack([b["sem_seg"] for b in batched_inputs]).to(self.device)  # B, T, H, W
        if images.dim() != 5 or images.shape[1] != 3:
            raise ValueError(
                f"SALI trains on triplets [memory, neighbour, current]: each 'image' must be "
                f"(3, 3, H, W), got {tuple(images.shape[1:])}; SALI's clip contract declares "
                "INPUT.CLIP.SAMPLING 'triplet' and INPUT.CLIP.LENGTH 3 (resolve the config with "
                "vps_d2.modeling.resolve_clip_config, as the engine's setup does)"
            )
        b = images.shape[0]
        needed = [2] + ([1] if self.sam is not None else []) + ([0] if self.lim is not None else [])
        x = self.normalize(images[:, needed].flatten(0, 1))  # B*len(needed), 3, H, W
        feats = [f.view(b, len(needed), *f.shape[1:]) for f in self.extract(x)]
        per_frame = {idx: [f[:, j] for f in feats] for j, idx in enumerate(needed)}
        cur = per_frame[2]
        read = None
        if self.lim is not None:
            mem_cur = per_frame[0]
            if self.data_flow == "public":
                mem_k, mem_v = self.lim.encode(mem_cur)
            else:
                mem_k, mem_v = self.lim.encode(self.short_term(mem_cur, None))
            mem_v = self.lim.memory_values(mem_v, masks[:, 0:1], is_logits=False)
            mk, mv = [k.flatten(2) for k in mem_k], [v.flatten(2) for v in mem_v]

            def read(keys, values):
                return self.lim.interact(keys, values, mk, mv)

        feats_out, _, _ = self.features_to_decode(cur, per_frame.get(1), read)
        maps = self.decode(feats_out)
        return self.criterion.apply_weights(self.criterion(maps, masks[:, 2]))

    # ------------------------------------------------------------------ streaming
    def reset(self) -> None:
        """Start of a video: clear the memory banks and the previous frame."""
        self._prev: list[torch.Tensor] | None = None
        self._t = 0
        if self.lim is not None:
            self.lim.reset()

    @torch.inference_mode()
    def step(self, frame: dict) -> dict:
        image = frame["image"]
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(
                f"SALI.step: frame 'image' must be (3, H, W), got {tuple(image.shape)}"
            )
        h, w = int(frame.get("height", image.shape[-2])), int(frame.get("width", image.shape[-1]))
        x = self.prepare_test_images(image[None])
        logits = self.step_logits(x)
        # Two steps, as the public test script: to the network's input size, then the frame's.
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        prob = self.logits_to_probs(logits, h, w)[0]
        if self.test_minmax_norm:
            prob = (prob - prob.min()) / (prob.max() - prob.min() + 1e-8)
        return {"prob": prob}

    @torch.inference_mode()
    def step_logits(self, x: torch.Tensor) -> torch.Tensor:
        """One streaming step on a normalised frame (1, 3, H, W) -> final logits (1, 1, h, w)."""
        cur = self.extract(x)
        nbr = self._prev
        if nbr is not None and [n.shape for n in nbr] != [c.shape for c in cur]:
            raise ValueError("SALI.step: the frame size changed within a video; call reset()")
        self._prev = cur  # only the last frame is kept
        read = None
        if self.lim is not None:

            def read(keys, values):
                return self.lim.read_banks(keys, values, self.empty_read)  # read before write

        feats_out, keys, values = self.features_to_decode(cur, nbr, read)
        maps = self.decode(feats_out)
        logits = maps[self.final_output]
        if self.lim is not None and self.banks[0].should_write(self._t):
            if self.write_mask == "level":
                # Level l (finest first) is weighted by its own stage output.
                masks = [maps[name] for name in self.decoder.level_names]
            else:
                masks = logits
            self.lim.write_banks(keys, values, masks, self._t)
        self._t += 1
        return logits
