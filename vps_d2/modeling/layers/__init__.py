"""Shared layers: conv-norm-act, deformable conv (torchvision's, or plain ops for export),
attention, transformer sub-layers, MLPs, positional
embeddings. Shapes are stated in each class's docstring (tokens are batch-first (B, L, D))."""

from .activation import ACTIVATIONS, build_activation
from .attention import MultiHeadAttention, build_attention_mask
from .conv import NORMS, ConvNormAct
from .deform_conv import deform_conv2d, deform_conv2d_torch
from .mlp import MLP, Mlp
from .position_encoding import (
    PositionEmbeddingLearned,
    PositionEmbeddingLearned2D,
    PositionEmbeddingSine,
)
from .transformer import (
    CrossAttentionLayer,
    FFNLayer,
    SelfAttentionLayer,
    TransformerEncoderLayer,
)

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "NORMS",
    "ConvNormAct",
    "CrossAttentionLayer",
    "FFNLayer",
    "Mlp",
    "MultiHeadAttention",
    "PositionEmbeddingLearned",
    "PositionEmbeddingLearned2D",
    "PositionEmbeddingSine",
    "SelfAttentionLayer",
    "TransformerEncoderLayer",
    "build_activation",
    "build_attention_mask",
    "deform_conv2d",
    "deform_conv2d_torch",
]
