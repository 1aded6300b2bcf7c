"""Config section of ArSDM (MODEL.ARSDM). Defaults are the paper's (talk) and, where it is
silent, the public code's (DuYooho/ArSDM); README.md ("Paper vs code") lists every choice."""

from vps_d2.config import CfgNode as CN
from vps_d2.config import register_config_section


@register_config_section
def add_arsdm_config(cfg: CN) -> None:
    if "ARSDM" in cfg.MODEL:
        return
    a = cfg.MODEL.ARSDM = CN()

    a.UNET = CN()
    # Base width of the U-Net (code: 256); level l has MODEL_CHANNELS * CHANNEL_MULT[l].
    a.UNET.MODEL_CHANNELS = 256
    # One entry per resolution level, finest first (code: 1, 1, 2, 2, 4, 4 at 384 x 384:
    # five 2x downsamplings, so the input size must be a multiple of 2 ** (levels - 1)).
    a.UNET.CHANNEL_MULT = [1, 1, 2, 2, 4, 4]
    # Residual blocks per level in the encoder (the decoder has one more per level).
    a.UNET.NUM_RES_BLOCKS = 2
    # Downsampling factors (1, 2, 4, ...) at which an attention block follows each residual
    # block (code: 8, 16, 32).
    a.UNET.ATTENTION_RESOLUTIONS = [8, 16, 32]
    # Channels per attention head (code: 64; heads = channels / 64).
    a.UNET.NUM_HEAD_CHANNELS = 64
    # Groups of every GroupNorm (code: 32; every width must be a multiple).
    a.UNET.NORM_GROUPS = 32
    # Hidden channels of the SPADE-GroupNorm's shared mask convolution (code: 128).
    a.UNET.SPADE_HIDDEN = 128
    # Dropout in the residual blocks (code: 0).
    a.UNET.DROPOUT = 0.0
    # Residual blocks for down/upsampling (code: True) instead of strided conv / nearest +
    # conv.
    a.UNET.RESBLOCK_UPDOWN = True
    # Time embedding as a per-channel scale and shift after the second norm (code: True)
    # instead of an added bias.
    a.UNET.USE_SCALE_SHIFT_NORM = True
    # Gradient checkpointing of every residual and attention block (less memory, about 30%
    # more time; the code checkpoints its blocks at 384 x 384).
    a.UNET.GRADIENT_CHECKPOINTING = False

    a.DIFFUSION = CN()
    # Number of diffusion steps T (code: 1000).
    a.DIFFUSION.TIMESTEPS = 1000
    # "scaled_linear": betas = linspace(sqrt(BETA_START), sqrt(BETA_END), T) ** 2 (what the
    # code's "linear" computes, the latent-diffusion code base); "linear": linspace(BETA_START,
    # BETA_END, T) (DDPM's).
    a.DIFFUSION.BETA_SCHEDULE = "scaled_linear"
    a.DIFFUSION.BETA_START = 0.0015
    a.DIFFUSION.BETA_END = 0.0205

    a.SAMPLER = CN()
    # DDIM steps at generation (talk and code: 200) over a uniform grid of the T steps.
    a.SAMPLER.STEPS = 200
    # DDIM eta: 0 deterministic given the initial noise; 1 DDPM-like variance (the code's
    # sampling script and its refinement: 1.0). Every draw comes from the seeded generator.
    a.SAMPLER.ETA = 1.0
    # Clamp each step's x_0 estimate to [-1, 1] (and recompute the noise from it), as
    # guided diffusion's clip_denoised; the code does not (False). Generation only: the
    # refinement chain keeps every gradient.
    a.SAMPLER.CLIP_DENOISED = False
    # Generate with the EMA weights (code: its ema_scope) instead of the trained ones.
    a.SAMPLER.USE_EMA = True
    # Noise of a generated frame: "video" (the initial noise and every step's noise drawn
    # from one generator seeded by (SEED, video): consecutive masks of a video give
    # temporally consistent frames) or "frame" (seeded by (SEED, video, frame index): one
    # independent image per mask, the paper's image datasets).
    a.SAMPLER.NOISE = "video"
    # Seed of the generation noise (with the video id and, for "frame", the frame index):
    # a frame's image depends only on it, its mask and the weights.
    a.SAMPLER.SEED = 0

    a.EMA = CN()
    # EMA of the U-Net weights after every optimizer step (code: LitEma, 0.9999, with the
    # warm-up decay min(DECAY, (1 + n) / (10 + n)) after n updates).
    a.EMA.DECAY = 0.9999

    a.REFINE = CN()
    # Refinement (talk Algorithm 1): a frozen segmenter, ANY vps_d2 meta-architecture, given
    # by its config (a file, or a shipped config name) and checkpoint. "" = no refinement
    # (the adaptive stage). The segmenter is not saved in ArSDM's checkpoints.
    a.REFINE.SEGMENTER_CONFIG = ""
    a.REFINE.SEGMENTER_WEIGHTS = ""
    # KEY VALUE pairs applied to the segmenter's config (e.g. ["INPUT.SIZE_TEST", "(64, 64)"]).
    a.REFINE.SEGMENTER_OPTS = []
    # DDIM grid of the in-loop reverse process (code: 200 over the whole chain); from the
    # training step t it runs the grid's steps below t, about STEPS * t / T U-Net calls.
    a.REFINE.STEPS = 200
    # Eta of the in-loop reverse process (code: 1.0).
    a.REFINE.ETA = 1.0
    # Refine every PERIOD-th iteration (1 = every iteration, the talk's algorithm); the other
    # iterations train the diffusion loss only.
    a.REFINE.PERIOD = 1
    # Back-propagate through the last GRAD_STEPS reverse steps only (0 = all of them and the
    # one-step estimate, the talk's algorithm); earlier steps run without a graph.
    a.REFINE.GRAD_STEPS = 0
    # Recompute each reverse step in the backward pass (activation checkpointing): memory
    # of one U-Net call instead of one per step.
    a.REFINE.CHECKPOINT = True

    a.LOSS = CN()
    # Distance on the predicted noise: "l1" (code) or "l2" (talk Eq. 8's square).
    a.LOSS.TYPE = "l1"
    # Adaptive pixel weights of Eq. 7: 1 - r on polyp pixels, r on background, r = polyp
    # area / (H x W). False = uniform weights (SDM). A frame whose mask is empty or full
    # (r = 0 or 1) gets uniform weights: Eq. 7 would give it no loss at all.
    a.LOSS.ADAPTIVE = True
    # Weight of the (adaptive) diffusion loss.
    a.LOSS.DIFFUSION_WEIGHT = 1.0
    # Weight of the refinement loss (the frozen segmenter's structure loss, weighted BCE +
    # weighted IoU as PraNet's, on the generated x~_0 against the conditioning mask); used
    # when REFINE.SEGMENTER_CONFIG is set.
    a.LOSS.REFINE_WEIGHT = 1.0
