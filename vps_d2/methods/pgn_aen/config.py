"""Config section of PGN+AEN / EUVPS (MODEL.PGN_AEN). Defaults follow the paper's text
(the method's README.md); where the paper is silent they follow the public code's facts
(../shared/reference/methods.md, section 1); where the two disagree the code's choice is the
alternative value named in the comment.
"""

from vps_d2.config import CfgNode as CN
from vps_d2.config import register_config_section

__all__ = ["add_pgn_aen_config"]


@register_config_section
def add_pgn_aen_config(cfg: CN) -> None:
    if "PGN_AEN" in cfg.MODEL:
        return
    cfg.MODEL.PGN_AEN = CN()
    # Backbone levels F_1..F_4, finest first (strides 4, 8, 16, 32 for res2..res5).
    cfg.MODEL.PGN_AEN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # L, frames of one clip (sub-clip) of the model (paper: 3). Training clips hold K
    # consecutive sub-clips (the clip contract): INPUT.CLIP.LENGTH must be a multiple K * L of
    # this (unset: K = 3, as the paper configs); the K sub-clips run in order through the clip
    # memory inside one training step.
    cfg.MODEL.PGN_AEN.CLIP_LENGTH = 3
    # Streaming at test time: "clip" (consecutive non-overlapping clips of L frames, output
    # latency <= L - 1 frames; the paper) or "sliding" (one new frame per step, the clip is
    # the last L frames, latency 0).
    cfg.MODEL.PGN_AEN.STREAM_MODE = "clip"
    # Past windows kept in the clip memory M (paper: the memory length m of Eq. 7; the public
    # code reads at most 3 earlier sub-clips). Bounded whatever the video's length.
    cfg.MODEL.PGN_AEN.MEMORY_LENGTH = 3
    # False: the PGN alone (the "CFFM" rows of Tables 1, 2 and 4): its single output map is
    # the prediction, no AEN is built.
    cfg.MODEL.PGN_AEN.USE_AEN = True
    # Table 2 "w/o CRL": False puts a linear layer in CRL's place (pooled features of each
    # scale -> one Linear to D per region token), as the paper did.
    cfg.MODEL.PGN_AEN.USE_CRL = True
    # Table 2 "w/o CSA": False uses the region-linking semantics e2 directly as e3.
    cfg.MODEL.PGN_AEN.USE_CSA = True
    # D, size of the embedding space of e2 / e3 (public code: 256).
    cfg.MODEL.PGN_AEN.EMBED_DIM = 256

    cfg.MODEL.PGN_AEN.PGN = CN()
    # Name in PGN_REGISTRY: "CFFM" (coarse-to-fine feature mining, the paper's PGN) or
    # "FuseHead" (CFFM without the mining: per-level projection + fuse + classifier).
    cfg.MODEL.PGN_AEN.PGN.NAME = "CFFM"
    # Width of the per-level projections, the fused map and the mining (CFFM: 256).
    cfg.MODEL.PGN_AEN.PGN.CHANNELS = 256
    # Dropout2d before the classifiers (CFFM: 0.1).
    cfg.MODEL.PGN_AEN.PGN.DROPOUT = 0.1

    cfg.MODEL.PGN_AEN.CFFM = CN()
    # Which frames of a clip the mining refines: "all" (every frame of the clip gets refined
    # proposals from the other frames of the clip and the memory: the paper's clip model,
    # e1 is L x q x H x W) or "last" (CFFM as published: only the last frame of the window is
    # the target; the others keep their fused features). "last" reproduces Table 4's CFFM row.
    cfg.MODEL.PGN_AEN.CFFM.TARGETS = "all"
    # Transformer blocks of cross-frame feature mining (CFFM: 2, pre-norm, no window shift).
    cfg.MODEL.PGN_AEN.CFFM.DEPTH = 2
    # Attention heads (CFFM: 8) and MLP hidden ratio (CFFM: 4, GELU).
    cfg.MODEL.PGN_AEN.CFFM.NUM_HEADS = 8
    cfg.MODEL.PGN_AEN.CFFM.MLP_RATIO = 4.0
    # Query window size w on the 1/8 map (CFFM: 7); maps are padded to a multiple of it.
    cfg.MODEL.PGN_AEN.CFFM.WINDOW_SIZE = 7
    # Width of the target's neighbour ring around each window (CFFM: 3 -> 4 x 33 = 132
    # tokens for w = 7, as the four diagonally rolled windows of the focal design).
    cfg.MODEL.PGN_AEN.CFFM.EXPAND_SIZE = 3
    # Neighbourhood (odd, in pooled windows) of the target's own pooled level: each w x w
    # window pooled to one token by a learned Linear(w*w -> 1) (CFFM: 5 -> 25 tokens).
    cfg.MODEL.PGN_AEN.CFFM.TARGET_POOL_NEIGHBOURHOOD = 5
    # Reference frames per target: the nearest in time among the other frames of the clip
    # and the memory's past frames (ties: the past first). CFFM: 3.
    cfg.MODEL.PGN_AEN.CFFM.NUM_REFERENCES = 3
    # Coarse-to-fine granularity of the references, nearest first: the k-th nearest distinct
    # temporal distance uses entry min(k, last): pooling size p (learned Linear(p*p -> 1)
    # per cell) and the odd neighbourhood (in pooled cells) around the query window.
    # CFFM: nearest 2x2 / 3x3 (9 tokens), middle 3x3 / 5x5 (25), farthest 7x7 / 7x7 (49).
    cfg.MODEL.PGN_AEN.CFFM.REF_POOL_SIZES = [2, 3, 7]
    cfg.MODEL.PGN_AEN.CFFM.REF_NEIGHBOURHOODS = [3, 5, 7]

    cfg.MODEL.PGN_AEN.CRL = CN()
    # S, region-linking semantics per scale (public code: 50; q = 4S proposals/tokens).
    cfg.MODEL.PGN_AEN.CRL.NUM_REGIONS = 50
    # Grid (h, w) each region map is adaptively average-pooled to before the region-linking
    # MLP, one per scale (finest first), so the MLP does not fix the input size. The default
    # is the maps' own size at 320x448 (strides 4-32), i.e. the paper's sizes there (no
    # pooling at the paper's input); the public code flattens the unpooled maps instead.
    cfg.MODEL.PGN_AEN.CRL.GRIDS = [[80, 112], [40, 56], [20, 28], [10, 14]]
    # Linear layers of the region-linking MLP grid area -> D -> ... -> D (public code: 3).
    cfg.MODEL.PGN_AEN.CRL.MLP_LAYERS = 3
    # Dilations of the two 3x3 region-sharing convs (public code: 1 and 2).
    cfg.MODEL.PGN_AEN.CRL.DILATIONS = [1, 2]
    # How the two region-sharing convs are arranged: "parallel" (each on half of the S maps,
    # concatenated: the public code) or "sequential" (stacked, each on all S maps). The
    # paper says "two 3x3 convolutional layers" without the arrangement.
    cfg.MODEL.PGN_AEN.CRL.SHARING = "parallel"
    # "w/o CRL" (USE_CRL False) only: grid (h, w) with h * w = NUM_REGIONS the features of a
    # scale are pooled to; each cell's feature vector is one token (the linear layer).
    cfg.MODEL.PGN_AEN.CRL.LINEAR_GRID = [5, 10]

    cfg.MODEL.PGN_AEN.CSA = CN()
    # Attention heads of every CSA layer (public code: 8).
    cfg.MODEL.PGN_AEN.CSA.NUM_HEADS = 8
    # Layers of the transformer encoder E over the clip's L x q tokens (public code: 6).
    cfg.MODEL.PGN_AEN.CSA.ENC_LAYERS = 6
    # Layers of the transformer decoder D2 (cross-attention to a frame's pixel-decoded
    # tokens, then FFN) that turns the polyp-centre queries into e_c (Eq. 6). The public
    # code has none (its decoder iterations play both roles).
    cfg.MODEL.PGN_AEN.CSA.CENTRE_LAYERS = 1
    # m, iterations of cross-attention -> self-attention -> FFN (Eq. 8; paper: 3, public
    # code: 2).
    cfg.MODEL.PGN_AEN.CSA.DEC_LAYERS = 3
    # Hidden size of every FFN (public code: 2048).
    cfg.MODEL.PGN_AEN.CSA.FFN_DIM = 2048
    # Dropout of the attention weights and FFNs (public code: 0.0).
    cfg.MODEL.PGN_AEN.CSA.DROPOUT = 0.0
    # Pre-norm transformer layers (public code: post-norm, False).
    cfg.MODEL.PGN_AEN.CSA.PRE_NORM = False
    # Pixel decoder D1: "linear" (a Linear + LayerNorm projection of the encoder tokens plus
    # the learned per-position embedding bias: the paper's D1 gives a per-position bias) or
    # "position" (the public code: only a learned key position embedding; tokens unchanged).
    cfg.MODEL.PGN_AEN.CSA.PIXEL_DECODER = "linear"
    # Table 3 "only frame-wise" / "w/o alignment": False removes the clip-wise alignment (the
    # clip memory read of Eq. 7, the queries carried between sub-clips and the
    # cross-attention layers of Eq. 8).
    cfg.MODEL.PGN_AEN.CSA.CLIP_WISE = True
    # Table 3 "only clip-wise" / "w/o alignment": False removes the self-attention layers of
    # Eq. 8 (frame-wise alignment).
    cfg.MODEL.PGN_AEN.CSA.FRAME_WISE = True
    # Tokens of the frame-wise self-attention: "clip" (all L x q queries of the clip: frames
    # aligned with their adjacent frames, the paper's text) or "frame" (one frame's q
    # queries, the public code).
    cfg.MODEL.PGN_AEN.CSA.SELF_ATTENTION_SCOPE = "clip"
    # Divide the memory read's dot products by sqrt(D) before the softmax over memory
    # entries (the public code does not scale: False).
    cfg.MODEL.PGN_AEN.CSA.MEMORY_SCALE = True

    cfg.MODEL.PGN_AEN.LOSS = CN()
    # Eq. 10: (1/L) sum over frames of alpha * BCE + beta * Dice (paper: 5 and 2).
    cfg.MODEL.PGN_AEN.LOSS.BCE_WEIGHT = 5.0
    cfg.MODEL.PGN_AEN.LOSS.DICE_WEIGHT = 2.0
    # Auxiliary loss on the PGN's own per-frame prediction (a 1-channel classifier on its
    # fused features, CFFM's per-frame loss), off by default (not in the paper).
    cfg.MODEL.PGN_AEN.LOSS.PGN_AUX = False
    # Its weight relative to the main loss (CFFM: 0.5): PGN_AUX_WEIGHT x (alpha BCE + beta Dice),
    # logged as loss_pgn_aux_bce and loss_pgn_aux_dice.
    cfg.MODEL.PGN_AEN.LOSS.PGN_AUX_WEIGHT = 0.5
