"""Default config: the Detectron2-compatible keys vps_d2 uses, one comment per key.

``get_cfg()`` returns a copy of ``_C``. ``add_vps_config(cfg)`` adds the video sections
(clip sampling, evaluation protocol) and every method's own section; the tools always
call both, so a YAML file may use any key defined here or in a method's ``config.py``.
Sizes are ``(height, width)``.
"""

from .config import CfgNode as CN

_C = CN()
# Config format version (Detectron2 uses 2).
_C.VERSION = 2

# ---------------------------------------------------------------------------- #
# Model
# ---------------------------------------------------------------------------- #
_C.MODEL = CN()
# Name of the meta-architecture in META_ARCH_REGISTRY (FrameBaseline, SALI, ...).
_C.MODEL.META_ARCHITECTURE = "FrameBaseline"
# Checkpoint to load before training (fine-tuning) or for --eval-only / the demo.
# A local path; "" means start from the backbone weights (or random init).
_C.MODEL.WEIGHTS = ""
# Smallest fraction (0-1) of the model's parameter values MODEL.WEIGHTS must give when
# training starts from it: below, the run stops with an error naming the checkpoint's
# method (a checkpoint of another method or config loads almost nothing and would train
# from random init without saying so). The fraction loaded is logged either way. 0 allows
# any partial load (e.g. weights of a part of the model on purpose).
_C.MODEL.WEIGHTS_MIN_LOADED = 0.5
# "cuda", "cuda:N" or "cpu". When CUDA is asked for but not available, vps_d2 runs on
# the CPU and logs a warning.
_C.MODEL.DEVICE = "cuda"
# Per-channel mean and std of the input in the 0-255 range, in INPUT.FORMAT order.
# Defaults are ImageNet's (what timm's pretrained backbones expect), in RGB order.
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
_C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]

_C.MODEL.BACKBONE = CN()
# Builder name in BACKBONE_REGISTRY: "TimmBackbone" (any timm model with
# features_only) or "SmallCNN" (a tiny CNN for tests and the sample data).
_C.MODEL.BACKBONE.NAME = "TimmBackbone"
# timm model name, e.g. res2net50_26w_4s, hrnet_w48, pvt_v2_b2 (TimmBackbone only).
_C.MODEL.BACKBONE.TIMM_NAME = "res2net50_26w_4s"
# Which timm feature levels to return (timm's out_indices). Each level is named
# "res<log2(stride)>" as in Detectron2: stride 4 -> res2, 8 -> res3, 16 -> res4, 32 -> res5.
_C.MODEL.BACKBONE.OUT_INDICES = [1, 2, 3, 4]
# Extra keyword arguments for timm.create_model, as a list of KEY VALUE pairs,
# e.g. ["feature_location", ""] for HRNet's raw branches.
_C.MODEL.BACKBONE.TIMM_KWARGS = []
# eps of every LayerNorm of the timm model (0 = the model's own, e.g. 1e-6 in timm's
# pvt_v2). Transformers' SegFormer (MiT) encoders use 1e-5: Diff-VPS's public config sets it.
_C.MODEL.BACKBONE.LAYER_NORM_EPS = 0.0
# Whether the backbone must start from pretrained (ImageNet) weights. When True,
# WEIGHTS must name a local file; vps_d2 never downloads anything.
_C.MODEL.BACKBONE.PRETRAINED = False
# Local path to the backbone's pretrained weights (a timm/torchvision state dict, or an
# official release file read through timm's checkpoint filter, e.g. the PVT authors'
# pvt_v2_b5.pth; .pth/.pt/.bin/.safetensors). Used when non-empty, whatever PRETRAINED says.
_C.MODEL.BACKBONE.WEIGHTS = ""
# Freeze the first N feature levels (0 = train everything).
_C.MODEL.BACKBONE.FREEZE_AT = 0
# Channels of the four stages of the SmallCNN test backbone (strides 4, 8, 16, 32).
_C.MODEL.BACKBONE.SMALL_CNN_CHANNELS = [16, 32, 64, 128]

# ---------------------------------------------------------------------------- #
# Input
# ---------------------------------------------------------------------------- #
_C.INPUT = CN()
# Channel order of the tensors given to the model ("RGB" or "BGR").
_C.INPUT.FORMAT = "RGB"
# Training frames are resized to this (H, W) after augmentation.
_C.INPUT.SIZE_TRAIN = (352, 352)
# Test frames are resized to this (H, W) for the network; outputs go back to the
# original frame size.
_C.INPUT.SIZE_TEST = (352, 352)
# Detectron2's test-time shortest-edge resize (its DefaultPredictor and DatasetMapper, with
# vps_d2.d2). 0 = none: vps_d2's models resize to SIZE_TEST themselves, as in vps_d2's
# evaluation. vps_d2's own loaders never resize test frames.
_C.INPUT.MIN_SIZE_TEST = 0

# Name in MAPPER_REGISTRY (vps_d2.data.mappers) of the training mapper, built as
# ``cls(cfg, is_train=True)`` (Mask2Former's idea). Methods may register their own.
_C.INPUT.DATASET_MAPPER_NAME = "VideoClipDatasetMapper"

# Augmentations, drawn once per clip and applied identically to all its frames.
_C.INPUT.AUG = CN()
# Master switch for training augmentation (resize always happens).
_C.INPUT.AUG.ENABLED = True
# Probability of a horizontal / vertical flip.
_C.INPUT.AUG.HFLIP_PROB = 0.5
_C.INPUT.AUG.VFLIP_PROB = 0.0
# Rotation angle drawn uniformly in [-ROTATION, ROTATION] degrees (0 = off), applied
# with probability ROTATION_PROB.
_C.INPUT.AUG.ROTATION = 15.0
_C.INPUT.AUG.ROTATION_PROB = 0.5
# Random scale then crop back: scale drawn in SCALE_RANGE, crop position uniform,
# applied with probability SCALE_PROB ((1.0, 1.0) = off).
_C.INPUT.AUG.SCALE_RANGE = (0.75, 1.25)
_C.INPUT.AUG.SCALE_PROB = 0.5
# Colour jitter strengths: brightness, contrast, saturation (relative, 0 = off) and
# hue (fraction of the hue circle, 0 = off).
_C.INPUT.AUG.BRIGHTNESS = 0.2
_C.INPUT.AUG.CONTRAST = 0.2
_C.INPUT.AUG.SATURATION = 0.2
_C.INPUT.AUG.HUE = 0.02

# ---------------------------------------------------------------------------- #
# Datasets
# ---------------------------------------------------------------------------- #
_C.DATASETS = CN()
# Names in DatasetCatalog used for training / testing (see vps_d2/data/datasets).
_C.DATASETS.TRAIN = ("vps_sample_train",)
_C.DATASETS.TEST = (
    "vps_sample_easy_seen",
    "vps_sample_easy_unseen",
    "vps_sample_hard_seen",
    "vps_sample_hard_unseen",
)
# Folders of synthetic datasets (written by tools/synthesize.py: SUN-SEG layout plus a
# synthetic.json manifest naming the dataset); each is registered under its manifest's
# name, which DATASETS.TRAIN can then list beside the real data. Relative folders are looked
# up under the datasets root, then the current directory.
_C.DATASETS.SYNTHETIC = ()
# Root of all datasets. "" = $VPS_DATASETS, else $DETECTRON2_DATASETS, else "datasets".
_C.DATASETS.ROOT = ""
# Model selection never uses a test split unless the config says so: a training run that
# evaluates (DATASETS.TEST not empty) and names no validation split (a name ending in
# "_val" in DATASETS.TEST) and no TEST.VPS.BEST_DATASET holds out this fraction of the
# training videos (all clips of a video together; chosen deterministically with
# HOLDOUT_SEED) as the split "holdout_val": they are not trained on, DATASETS.TEST gets
# "holdout_val" first, and model_best.pth is chosen on it (the EUVPS paper holds out 20%).
# 0 = no hold-out: then no model_best.pth is kept unless TEST.VPS.BEST_DATASET names a split
# (a test split is then used with a warning).
_C.DATASETS.HOLDOUT_VAL = 0.2
_C.DATASETS.HOLDOUT_SEED = 0
_C.DATASETS.SUN_SEG = CN()
# Fraction of SUN-SEG training videos held out as sun_seg_val (0 = none; the EUVPS
# paper uses 0.2). Clips of one video stay together. sun_seg_train then excludes them.
_C.DATASETS.SUN_SEG.HOLDOUT_VAL = 0.0
# Seed of the (deterministic) choice of held-out videos.
_C.DATASETS.SUN_SEG.HOLDOUT_SEED = 0
_C.DATASETS.CVC612 = CN()
# 0-based sequence indices (of the 29) of each CVC-612 split; defaults are the
# published 6:2:2 split in ../shared/reference/datasets.md.
_C.DATASETS.CVC612.TRAIN_SEQUENCES = [
    1,
    5,
    8,
    9,
    10,
    12,
    13,
    14,
    18,
    19,
    20,
    21,
    22,
    23,
    25,
    26,
    27,
    28,
]
_C.DATASETS.CVC612.VAL_SEQUENCES = [2, 3, 4, 11, 15, 17]
_C.DATASETS.CVC612.TEST_SEQUENCES = [0, 6, 7, 16, 24]

# ---------------------------------------------------------------------------- #
# Data loader
# ---------------------------------------------------------------------------- #
_C.DATALOADER = CN()
# Worker processes per training process (0 = load in the main process).
_C.DATALOADER.NUM_WORKERS = 2
# Worker processes that read test frames ahead of the model.
_C.DATALOADER.NUM_WORKERS_TEST = 1

# ---------------------------------------------------------------------------- #
# Solver
# ---------------------------------------------------------------------------- #
_C.SOLVER = CN()
# "SGD", "Adam" or "AdamW".
_C.SOLVER.OPTIMIZER = "AdamW"
# "WarmupPolyLR", "WarmupMultiStepLR" or "WarmupCosineLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
# Total training iterations.
_C.SOLVER.MAX_ITER = 30000
_C.SOLVER.BASE_LR = 1e-4
# Poly schedule: lr = BASE_LR * (1 - iter / MAX_ITER) ** POLY_LR_POWER, never below
# BASE_LR * POLY_LR_CONSTANT_ENDING when that is > 0 (Detectron2's DeepLab project).
_C.SOLVER.POLY_LR_POWER = 0.9
_C.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
# Cosine schedule: the lr reached at MAX_ITER (an absolute value).
_C.SOLVER.BASE_LR_END = 0.0
# SGD momentum / Nesterov; Adam(W) betas.
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.BETAS = (0.9, 0.999)
_C.SOLVER.WEIGHT_DECAY = 1e-4
# Weight decay of normalisation layers' parameters (0.0 = none, as Detectron2).
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
# Weight decay of biases; None = same as WEIGHT_DECAY.
_C.SOLVER.WEIGHT_DECAY_BIAS = None
# Learning-rate factor of biases.
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# Learning-rate factor of the backbone's parameters (module attribute "backbone").
_C.SOLVER.BACKBONE_MULTIPLIER = 1.0
# Multi-step schedule: iterations at which lr is multiplied by GAMMA.
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (20000,)
# Warmup: lr ramps from BASE_LR * WARMUP_FACTOR over WARMUP_ITERS iterations,
# "linear" or "constant".
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 0
_C.SOLVER.WARMUP_METHOD = "linear"
# Save model_XXXXXXX.pth every this many iterations (and model_final.pth at the end).
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Keep at most this many periodic checkpoints (0 = keep all).
_C.SOLVER.MAX_TO_KEEP = 0
# Clips per iteration summed over all processes.
_C.SOLVER.IMS_PER_BATCH = 8
# Stop with an error naming the iteration and loss term when a loss is NaN/Inf.
_C.SOLVER.CHECK_FINITE_LOSS = True
# Name in TRAIN_STEP_REGISTRY (vps_d2.solver.train_step) of the object that runs one
# iteration; "" = the meta-architecture's own (its ``train_step`` attribute, by default
# "DefaultTrainStep": losses summed, one backward, clipping, one optimizer step).
_C.SOLVER.TRAIN_STEP = ""

# DDP (Lightning Fabric's DDPStrategy; only used with more than one process).
_C.SOLVER.DDP = CN()
# Let DDP find parameters that got no gradient in a backward pass (needed when a step
# uses only part of the model, e.g. a discriminator step; slower).
_C.SOLVER.DDP.FIND_UNUSED_PARAMETERS = False
# DDP static graph (the set of used parameters is the same at every iteration).
_C.SOLVER.DDP.STATIC_GRAPH = False

_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# "value": clamp every gradient element to [-CLIP_VALUE, CLIP_VALUE];
# "norm": clip each parameter's gradient norm to CLIP_VALUE;
# "full_model": clip the norm of all gradients together to CLIP_VALUE.
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
# p of the p-norm for "norm" and "full_model".
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0

# Mixed precision through Lightning Fabric ("16-mixed" on CUDA, "bf16-mixed" on CPU).
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
# The autocast dtype when ENABLED: "float16" (with gradient scaling) or "bfloat16" (no
# scaling; Ampere or newer GPUs); "" = float16 on CUDA. The CPU always uses bfloat16.
_C.SOLVER.AMP.PRECISION = ""

# ---------------------------------------------------------------------------- #
# Test
# ---------------------------------------------------------------------------- #
_C.TEST = CN()
# Evaluate every this many iterations during training (0 = only at the end).
_C.TEST.EVAL_PERIOD = 0
# Evaluators run together on one pass of the model over each DATASETS.TEST split (names in
# EVALUATOR_REGISTRY, vps_d2.evaluation.build). Those whose outputs the model does not give
# (class scores, boxes) report nothing.
_C.TEST.EVALUATORS = ["VPSEvaluator", "ClassificationEvaluator", "DetectionEvaluator"]

# Outputs in Detectron2's conventions, added to "prob" by the models vps_d2.d2 registers in
# Detectron2 (detectron2.modeling.build_model, DefaultPredictor, demo/demo.py); vps_d2's
# own models and engine never read these keys.
_C.TEST.D2_OUTPUTS = CN()
# "sem_seg": (2, H, W) scores [1 - prob, prob] (background, polyp).
_C.TEST.D2_OUTPUTS.SEM_SEG = True
# "instances" (pred_boxes, scores, pred_classes, pred_masks): "auto" = from the model's own
# box and class outputs (Diff-VPS), none for a model without them; "components" = one
# instance per connected component of prob > MASK_THRESHOLD (class: the model's class
# prediction; a model without one gives no pred_classes); "none".
_C.TEST.D2_OUTPUTS.INSTANCES = "auto"
# Give the instances pred_masks (COCOEvaluator's "segm" needs them; Detectron2's
# VideoVisualizer draws boxes only for instances without masks: tools/d2_demo.py turns this
# off for videos).
_C.TEST.D2_OUTPUTS.INSTANCE_MASKS = True
# Probability threshold of pred_masks and of the connected components.
_C.TEST.D2_OUTPUTS.MASK_THRESHOLD = 0.5
# Components smaller than this many pixels are dropped ("components" mode).
_C.TEST.D2_OUTPUTS.MIN_AREA = 0
# Instances scoring below this are dropped (tools/d2_demo.py sets it from
# --confidence-threshold).
_C.TEST.D2_OUTPUTS.SCORE_THRESH = 0.0

# Directory of logs, checkpoints, metrics.json, TensorBoard events.
_C.OUTPUT_DIR = "./output"
# Random seed; < 0 picks one at random (and logs it).
_C.SEED = -1
# Fully deterministic cuDNN/torch algorithms (slower).
_C.CUDNN_BENCHMARK = False
