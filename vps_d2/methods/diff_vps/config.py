"""Config section of Diff-VPS (MODEL.DIFF_VPS) and its discriminator's optimizer
(SOLVER.DISCRIMINATOR). Defaults follow the paper; where the paper is silent, the public
code's design (the method's README.md lists every choice)."""

from vps_d2.config import CfgNode as CN
from vps_d2.config import register_config_section
from vps_d2.solver import add_optimizer_config


@register_config_section
def add_diff_vps_config(cfg: CN) -> None:
    if "DIFF_VPS" in cfg.MODEL:
        return
    d = cfg.MODEL.DIFF_VPS = CN()
    # Previous frames seen by the temporal encoder (delta in the paper: 4). Training clips
    # have DELTA + 1 frames, the last is the target frame (the clip contract: INPUT.CLIP.
    # SAMPLING "online", LENGTH DELTA + 1, filled in when unset; without USE_TRM any
    # length). At test time the DELTA frames before each frame are used (the first frames
    # of a video repeat frame 0, as the training clips clamped at the start).
    d.DELTA = 4
    # Backbone levels of both encoders, finest first (4 levels, strides 4..32: S_j, R_j).
    d.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Channels of the FPN outputs H_j (and of the mask latent, which is fused with H_1).
    d.FPN_CHANNELS = 64
    # FPN top-down path: "lateral" (the public code: each level adds only the upsampled
    # lateral of the level above; the paper is silent) or "cumulative" (the usual FPN: the
    # upsampled running sum).
    d.FPN_TOP_DOWN = "lateral"
    # Number of pathological classes of the classification head (vps_d2.data.CLASS_NAMES).
    d.NUM_CLASSES = 6
    # Ablations (Table 3 of the paper): #1 = all False; #2 = USE_MDM; #3 = USE_TRM;
    # #4 = USE_TRM + USE_ADVERSARIAL; the full model = all True.
    # Multi-task supervision: class and box heads and their losses.
    d.USE_MDM = True
    # Temporal reasoning module: temporal encoder on the previous frames (fused with the
    # image features) and the reconstruction decoder predicting the target frame.
    d.USE_TRM = True
    # Adversarial self-supervision of the reconstruction (discriminator + its optimizer,
    # SOLVER.DISCRIMINATOR). Needs USE_TRM.
    d.USE_ADVERSARIAL = True

    d.DIFFUSION = CN()
    # Scale of the mask latent: embedding (sigmoid * 2 - 1) * BIT_SCALE.
    d.DIFFUSION.BIT_SCALE = 0.01
    # Training times are drawn uniformly in [0, T_MAX) per sample.
    d.DIFFUSION.T_MAX = 0.999
    # DDIM steps at test time (paper and code: 3); eta = 0.
    d.DIFFUSION.SAMPLE_STEPS = 3
    # How a step's x0 prediction re-enters the next step: "threshold" (the mask
    # sigmoid(logits) > 0.5 re-embedded: what the public code meant with its argmax) or
    # "prob" (the probability-weighted mix of the two class embeddings).
    d.DIFFUSION.REEMBED = "threshold"
    # Test output: "mean" of the per-step predictions (public code) or the "last" step's.
    # Applies to the mask logits, the class logits and the box.
    d.DIFFUSION.OUTPUT = "mean"
    # Seed of the test-time noise: each frame's initial noise comes from its own generator
    # seeded from (TEST_SEED, video_id, frame_index), so a frame's output does not depend
    # on the batch, the process or what ran before.
    d.DIFFUSION.TEST_SEED = 0

    d.HEAD = CN()
    # Channels of the decode head (per-level MLP width and the fused feature F).
    d.HEAD.CHANNELS = 768
    # Hidden channels of the latent transform ([z_t, H_1] -> BN -> conv3x3 -> LeakyReLU ->
    # conv3x3 -> FPN_CHANNELS).
    d.HEAD.LATENT_HIDDEN = 256
    # Width of the log-SNR time embedding MLP.
    d.HEAD.TIME_DIM = 1024
    # Learned sinusoidal frequencies of the time embedding (input 1 + 2 x this).
    d.HEAD.TIME_FREQS = 8
    # Dropout before the mask predictor.
    d.HEAD.DROPOUT = 0.1
    # Box head: 1x1 conv to this many channels, global pooling, then an MLP with hidden
    # width BOX_HIDDEN to (cx, cy, w, h), then BOX_ACT.
    d.HEAD.BOX_CHANNELS = 64
    d.HEAD.BOX_HIDDEN = 16
    # Activation of the box output: "relu" (the public code; the paper is silent) or
    # "sigmoid" (bounded to [0, 1]). Streaming outputs are clamped to [0, 1] either way.
    d.HEAD.BOX_ACT = "relu"

    d.RECONSTRUCTION = CN()
    # Channels of the all-MLP reconstruction decoder on the temporal features R_j.
    d.RECONSTRUCTION.CHANNELS = 768

    d.DISCRIMINATOR = CN()
    # "inception_v3" (the paper: torchvision's Inception-v3, aux logits off, + Linear(1000,
    # 1) -> logit) or "small" (a 4-layer strided CNN for CPU runs; not the paper's).
    d.DISCRIMINATOR.NAME = "inception_v3"
    # Local file with torchvision's ImageNet Inception-v3 state dict ("" = random init;
    # nothing is ever downloaded). Its AuxLogits tensors are ignored.
    d.DISCRIMINATOR.WEIGHTS = ""
    # Frames are resized to this (H, W) before the discriminator (public code: 224 x 224);
    # [] keeps the training size. Inception-v3 needs at least 75 x 75.
    d.DISCRIMINATOR.INPUT_SIZE = [224, 224]
    # Inception-v3's transform_input: map ImageNet-normalised input to the [-1, 1] range
    # its torchvision ImageNet weights expect.
    d.DISCRIMINATOR.TRANSFORM_INPUT = True
    # "small" only: channels of its four stride-2 convolutions.
    d.DISCRIMINATOR.SMALL_CHANNELS = [32, 64, 128, 256]

    d.LOSS = CN()
    # Segmentation loss: "paper" (pixel-wise CE + MSE(sigmoid, mask) + soft IoU) or "code"
    # (soft Dice + BCE + MSE(sigmoid, mask), the public code).
    d.LOSS.SEG = "paper"
    # Box loss on normalised (cx, cy, w, h): "mse" (public code) or "l1_giou" (L1 + GIoU,
    # as detection models). Frames without a box are left out.
    d.LOSS.BOX = "mse"
    # Eq. 6: total = MDM_WEIGHT * L_MDM + TRM_WEIGHT * L_TRM (the public code sums them
    # unweighted: 1.0 and 1.0).
    d.LOSS.MDM_WEIGHT = 0.75
    d.LOSS.TRM_WEIGHT = 0.25
    # Eq. 3: L_MDM = SEG_WEIGHT * L_seg + CLS_WEIGHT * L_cls + BOX_WEIGHT * L_det (every
    # term of L_seg and of an "l1_giou" box loss gets the same weight).
    d.LOSS.SEG_WEIGHT = 0.5
    d.LOSS.CLS_WEIGHT = 0.05
    d.LOSS.BOX_WEIGHT = 0.2
    # Eq. 5: L_TRM = RECON_WEIGHT * MSE(frame) + ADV_WEIGHT * (-log D(fake)).
    d.LOSS.RECON_WEIGHT = 1.0
    d.LOSS.ADV_WEIGHT = 0.001
    # Eq. 4: L_D = D_WEIGHT * (-log D(real) - log(1 - D(fake))).
    d.LOSS.D_WEIGHT = 1.0

    # The discriminator's own optimizer (public code: AdamW, lr 1e-4, constant; torch's
    # AdamW default weight decay 0.01). SOLVER.MAX_ITER is shared.
    add_optimizer_config(
        cfg,
        "DISCRIMINATOR",
        OPTIMIZER="AdamW",
        BASE_LR=1e-4,
        WEIGHT_DECAY=0.01,
        WEIGHT_DECAY_NORM=0.01,
        LR_SCHEDULER_NAME="WarmupConstantLR",
        WARMUP_ITERS=0,
    )
