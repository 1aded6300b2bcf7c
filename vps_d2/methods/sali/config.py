"""Config section of SALI (MODEL.SALI). Defaults follow the paper (the method's README.md)."""

from vps_d2.config import CfgNode as CN
from vps_d2.config import register_config_section, register_renamed_key

# The former list of the four deep-supervision weights: one key per loss now.
register_renamed_key(
    "MODEL.SALI.LOSS_WEIGHTS",
    "MODEL.SALI.LOSS.{GLOBAL,COARSE,MIDDLE,FINE}_WEIGHT",
    "one weight per output: LOSS_WEIGHTS [a, b, c, d] is MODEL.SALI.LOSS.GLOBAL_WEIGHT a, "
    "COARSE_WEIGHT b, MIDDLE_WEIGHT c, FINE_WEIGHT d",
)


@register_config_section
def add_sali_config(cfg: CN) -> None:
    if "SALI" in cfg.MODEL:
        return
    cfg.MODEL.SALI = CN()
    # Backbone levels used, finest first (exactly 3; strides 8/16/32 with PVTv2's
    # OUT_INDICES [1, 2, 3]). Each is reduced to CHANNELS by an RFB.
    cfg.MODEL.SALI.IN_FEATURES = ["res3", "res4", "res5"]
    # Channels of every level after the RFB (SAM, LIM output and decoder width).
    cfg.MODEL.SALI.CHANNELS = 32
    # Ablations (Table 2 of the paper). False: "w/o SAM" (no neighbour frame, no alignment).
    cfg.MODEL.SALI.USE_SAM = True
    # False: "w/o LIM" (no memory; the decoder gets the short-term features).
    cfg.MODEL.SALI.USE_LIM = True
    # False: "w/o FA" (SAM harmonises the unaligned neighbour; no deformable alignment).
    cfg.MODEL.SALI.USE_ALIGNMENT = True
    # False: "w/o MA" (memory values are stored without mask weighting).
    cfg.MODEL.SALI.USE_MASKED_ATTENTION = True
    # Data flow between SAM, LIM and the decoder: "paper" (the paper's Eq. 1-4: F_s =
    # fuse(F_t, align(F_{t-1})); key/value from F_s; F_l = [readout, value], aligned to F_s
    # with SAM.ALIGN_READOUT) or "public" (SALI's public code, which its released weights
    # were trained with: key/value from F_t; the readout and the neighbour both aligned to
    # F_t, then fused by the non-local fusion). "public" needs USE_SAM, USE_LIM and
    # USE_ALIGNMENT. See README.md, "The public code and the paper".
    cfg.MODEL.SALI.DATA_FLOW = "paper"
    # Min-max normalise each output frame's probabilities to [0, 1] (what SALI's public
    # test script does before saving); False keeps plain sigmoid probabilities.
    cfg.MODEL.SALI.TEST_MINMAX_NORM = False

    # Training triplets [memory, neighbour, current] (SALI's clip contract: INPUT.CLIP.SAMPLING
    # "triplet", INPUT.CLIP.LENGTH 3, filled in when unset; vps_d2/methods/sali/sampling.py).
    cfg.MODEL.SALI.TRIPLET = CN()
    # The memory frame is drawn from the MEMORY_RANGE frames before the neighbour/current pair.
    cfg.MODEL.SALI.TRIPLET.MEMORY_RANGE = 5
    # Neighbour = current + NEIGHBOUR_OFFSET (-1: previous frame, online, the paper;
    # +1: next frame, as SALI's public code).
    cfg.MODEL.SALI.TRIPLET.NEIGHBOUR_OFFSET = -1

    cfg.MODEL.SALI.SAM = CN()
    # Offset groups of the modulated deformable convolutions.
    cfg.MODEL.SALI.SAM.DEFORMABLE_GROUPS = 8
    # Max-pool window of the non-local keys/values, one per level (finest first); clamped
    # to the feature size (a 4x5 map with window 8 is pooled with window 4).
    cfg.MODEL.SALI.SAM.POOL_SIZES = [2, 4, 8]
    # Max-pool of the non-local keys/values in ceil mode (a last partial window is pooled
    # too). False: floor mode, as the public code (an 11x11 map with window 8 gives one
    # 8x8 window; the 3 last rows/columns are not in the keys/values).
    cfg.MODEL.SALI.SAM.POOL_CEIL_MODE = False
    # Also align the LIM output (current value + memory readout) to the short-term
    # feature with the same alignment module, so that SAM serves both the neighbour and
    # the memory readout (SALI's public code and this project's spec; the paper's text
    # decodes F_l directly: False). Needs USE_SAM, USE_LIM and USE_ALIGNMENT.
    cfg.MODEL.SALI.SAM.ALIGN_READOUT = True

    cfg.MODEL.SALI.LIM = CN()
    # Key channels (C -> 4 in the paper's code).
    cfg.MODEL.SALI.LIM.KEY_CHANNELS = 4
    # Value channels (C -> 16); the LIM output [readout, value] has 2x this, which must
    # equal CHANNELS.
    cfg.MODEL.SALI.LIM.VALUE_CHANNELS = 16
    # How masks weight stored values: "softmax_plus_one" (v * (1 + softmax over space of
    # the mask logits), the public code) or "mask" (v * mask probability).
    cfg.MODEL.SALI.LIM.MASK_WEIGHTING = "softmax_plus_one"
    # What the first frame of a video reads from the still empty memory: "self" (its own
    # keys/values, unweighted) or "zeros".
    cfg.MODEL.SALI.LIM.EMPTY_READ = "self"
    # Mask a frame written to memory at inference is weighted with (MASK_WEIGHTING), per
    # level: "level" (that level's own reverse-stage output: S3, S4, S5 for res3-res5, the
    # public code) or "final" (the final output S3 resized to every level).
    cfg.MODEL.SALI.LIM.WRITE_MASK = "level"

    cfg.MODEL.SALI.MEMORY = CN()
    # Memory capacity in frames' worth of elements (35 in the paper).
    cfg.MODEL.SALI.MEMORY.CAPACITY = 35
    # Write the current frame every this many frames (frames 0, N, 2N, ...), after reading.
    cfg.MODEL.SALI.MEMORY.WRITE_EVERY = 5
    # Memory elements kept per query position before the softmax (<= 0: all).
    cfg.MODEL.SALI.MEMORY.TOP_K = 20
    # Eviction when full: "relevance" (the paper: drop the stored frame least similar to
    # the current frame, by L2 affinity), "usage" (the public code's XMem-style per-element
    # usage pruning) or "fifo" (oldest frame).
    cfg.MODEL.SALI.MEMORY.EVICTION = "relevance"
    # Query positions per chunk of a memory read (bounds the affinity matrix; 0 = all).
    cfg.MODEL.SALI.MEMORY.QUERY_CHUNK = 1024

    # Weights of the structure losses of the deeply supervised outputs (SALICriterion,
    # logged as loss_global, loss_coarse, loss_middle, loss_fine): the global map S_g and
    # the reverse-attention stages coarse to fine (S5, S4, S3 with IN_FEATURES res3-res5;
    # the finest is the output).
    cfg.MODEL.SALI.LOSS = CN()
    cfg.MODEL.SALI.LOSS.GLOBAL_WEIGHT = 1.0
    cfg.MODEL.SALI.LOSS.COARSE_WEIGHT = 1.0
    cfg.MODEL.SALI.LOSS.MIDDLE_WEIGHT = 1.0
    cfg.MODEL.SALI.LOSS.FINE_WEIGHT = 1.0

    cfg.MODEL.SALI.DECODER = CN()
    # Groups of the three group-reversal-attention units of every reverse stage.
    cfg.MODEL.SALI.DECODER.GRA_GROUPS = [1, 4, 32]
