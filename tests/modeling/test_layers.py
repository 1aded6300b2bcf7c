"""Shared layers (vps_d2/modeling/layers) against independent computations: torch reference
modules with copied weights, hand-written compositions of torch ops, NumPy formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm.layers
import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.modeling.layers import (
    MLP,
    ConvNormAct,
    CrossAttentionLayer,
    FFNLayer,
    Mlp,
    MultiHeadAttention,
    PositionEmbeddingLearned,
    PositionEmbeddingLearned2D,
    PositionEmbeddingSine,
    SelfAttentionLayer,
    TransformerEncoderLayer,
    build_activation,
)

# ------------------------------------------------------------------------------ ConvNormAct


def test_conv_norm_act_keys_init_and_output_equal_plain_sequential():
    torch.manual_seed(3)
    ref = nn.Sequential(nn.Conv2d(5, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(True))
    torch.manual_seed(3)
    m = ConvNormAct(5, 8, 3)
    assert isinstance(m, nn.Sequential)
    assert list(m.state_dict()) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    assert [type(c) for c in m] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert m[2].inplace
    x = torch.randn(2, 5, 9, 11)
    m.train(), ref.train()
    torch.testing.assert_close(m(x), ref(x))
    assert m(x).shape == (2, 8, 9, 11)


@pytest.mark.parametrize(
    "kernel,dilation,stride,size",
    [
        (1, 1, 1, (9, 11)),
        ((1, 5), 1, 1, (9, 11)),
        ((7, 1), 1, 1, (9, 11)),
        (3, 5, 1, (9, 11)),
        (3, 1, 2, (5, 6)),
    ],
)
def test_conv_norm_act_default_padding_keeps_size(kernel, dilation, stride, size):
    m = ConvNormAct(4, 6, kernel, stride=stride, dilation=dilation, act="")
    assert m(torch.randn(1, 4, 9, 11)).shape == (1, 6, *size)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    assert m[0].padding == (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)


def test_conv_norm_act_variants():
    no_act = ConvNormAct(4, 6, act="")
    assert [type(c) for c in no_act] == [nn.Conv2d, nn.BatchNorm2d]
    assert no_act[0].bias is None
    no_norm = ConvNormAct(4, 6, norm="", act="gelu")
    assert [type(c) for c in no_norm] == [nn.Conv2d, nn.GELU]
    assert list(no_norm.state_dict()) == ["0.weight", "0.bias"]  # bias defaults to True
    assert ConvNormAct(4, 6, norm="", bias=False)[0].bias is None
    assert ConvNormAct(4, 6, bias=True)[0].bias is not None
    gn = ConvNormAct(4, 8, norm="GN", num_groups=4, act="silu")
    assert isinstance(gn[1], nn.GroupNorm) and gn[1].num_groups == 4 and gn[1].num_channels == 8
    assert isinstance(gn[2], nn.SiLU)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(gn(x), F.silu(F.group_norm(gn[0](x), 4, gn[1].weight, gn[1].bias)))
    leaky = ConvNormAct(4, 6, act="leaky_relu", negative_slope=0.2, inplace=False)
    assert leaky[2].negative_slope == 0.2 and not leaky[2].inplace
    assert ConvNormAct(4, 6, groups=2)[0].groups == 2


def test_conv_norm_act_rejects_bad_names():
    with pytest.raises(ValueError, match="norm"):
        ConvNormAct(4, 6, norm="LN")
    with pytest.raises(ValueError, match="act"):
        ConvNormAct(4, 6, act="tanh")
    with pytest.raises(ValueError, match="num_groups"):
        ConvNormAct(4, 6, norm="GN", num_groups=4)
    with pytest.raises(ValueError, match="activation"):
        build_activation("swish")
    assert build_activation("") is None


# ------------------------------------------------------------------------------ attention


def _torch_mha(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    """nn.MultiheadAttention with the weights of ``ours`` copied in."""
    d, h = ours.embed_dim, ours.num_heads
    ref = nn.MultiheadAttention(
        d, h, batch_first=True, kdim=ours.kdim, vdim=ours.vdim, dtype=torch.float64
    )
    with torch.no_grad():
        if ref._qkv_same_embed_dim:
            ref.in_proj_weight.copy_(
                torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
            )
        else:
            ref.q_proj_weight.copy_(ours.q_proj.weight)
            ref.k_proj_weight.copy_(ours.k_proj.weight)
            ref.v_proj_weight.copy_(ours.v_proj.weight)
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref.eval()


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random values in every parameter (biases included, so they matter in comparisons)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def test_mha_self_attention_matches_torch():
    g = torch.Generator().manual_seed(0)
    ours = _randomise(MultiHeadAttention(16, 4).double()).eval()
    ref = _torch_mha(ours)
    x = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    want, want_w = ref(x, x, x, need_weights=True)
    torch.testing.assert_close(ours(x), want)
    out, w = ours(x, need_weights=True)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(w, want_w)  # averaged over heads, (B, Lq, Lk)
    _, w_heads = ours(x, need_weights=True, average_attn_weights=False)
    _, want_heads = ref(x, x, x, need_weights=True, average_attn_weights=False)
    assert w_heads.shape == (3, 4, 7, 7)
    torch.testing.assert_close(w_heads, want_heads)


def test_mha_cross_attention_with_key_padding_mask_matches_torch():
    g = torch.Generator().manual_seed(1)
    ours = _randomise(MultiHeadAttention(12, 3, kdim=10, vdim=6).double(), 1).eval()
    ref = _torch_mha(ours)
    q = torch.randn(2, 5, 12, generator=g, dtype=torch.float64)
    k = torch.randn(2, 9, 10, generator=g, dtype=torch.float64)
    v = torch.randn(2, 9, 6, generator=g, dtype=torch.float64)
    kpm = torch.zeros(2, 9, dtype=torch.bool)
    kpm[0, 6:] = True
    kpm[1, :2] = True
    want, want_w = ref(q, k, v, key_padding_mask=kpm)
    out, w = ours(q, k, v, key_padding_mask=kpm, need_weights=True)
    assert out.shape == (2, 5, 12)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(ours(q, k, v, key_padding_mask=kpm), want)
    torch.testing.assert_close(w, want_w)
    assert (w[0, :, 6:] == 0).all() and (w[1, :, :2] == 0).all()
    # the mask matters
    assert not torch.allclose(ours(q, k, v), want)


def test_mha_attn_bias_equals_torch_float_attn_mask():
    g = torch.Generator().manual_seed(2)
    b, h, lq, lk, d = 2, 4, 6, 8, 16
    ours = _randomise(MultiHeadAttention(d, h).double(), 2).eval()
    ref = _torch_mha(ours)
    q = torch.randn(b, lq, d, generator=g, dtype=torch.float64)
    kv = torch.randn(b, lk, d, generator=g, dtype=torch.float64)
    bias = torch.randn(b, h, lq, lk, generator=g, dtype=torch.float64)
    bias[:, :, :, 0] = float("-inf")  # -inf entries block a key
    kpm = torch.zeros(b, lk, dtype=torch.bool)
    kpm[1, -3:] = True
    # torch wants (B * H, Lq, Lk), batch-major, and a float padding mask beside a float mask
    kpm_float = torch.zeros(b, lk, dtype=torch.float64).masked_fill(kpm, float("-inf"))
    want, _ = ref(q, kv, kv, attn_mask=bias.reshape(b * h, lq, lk), key_padding_mask=kpm_float)
    torch.testing.assert_close(ours(q, kv, kv, key_padding_mask=kpm, attn_bias=bias), want)
    out_w, _ = ours(q, kv, kv, key_padding_mask=kpm, attn_bias=bias, need_weights=True)
    torch.testing.assert_close(out_w, want)
    # (Lq, Lk) and (1, 1, Lq, Lk) broadcast over batch and heads like torch's 2-D attn_mask
    shared = bias[0, 0]
    want2, _ = ref(q, kv, kv, attn_mask=shared)
    torch.testing.assert_close(ours(q, kv, kv, attn_bias=shared), want2)
    torch.testing.assert_close(ours(q, kv, kv, attn_bias=shared[None, None]), want2)


def test_mha_dropout_only_in_training_and_errors():
    m = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 6, 8)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, m(x))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="float"):
        m(x, attn_bias=torch.ones(6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_bias"):
        m(x, attn_bias=torch.zeros(3, 1, 6, 6))
    with pytest.raises(ValueError, match="key_padding_mask"):
        m(x, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        m(x, key_padding_mask=torch.zeros(2, 6))
    with pytest.raises(ValueError, match="query"):
        m(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="key"):
        m(x, torch.randn(3, 6, 8))


# ------------------------------------------------------------------------------ transformer


def _ref_attention(attn: MultiHeadAttention, q_in, k_in, v_in, kpm=None, bias=None):
    """Multi-head attention written out: projections, per-head softmax(q k^T / sqrt(d))."""
    h, d = attn.num_heads, attn.head_dim
    q = F.linear(q_in, attn.q_proj.weight, attn.q_proj.bias)
    k = F.linear(k_in, attn.k_proj.weight, attn.k_proj.bias)
    v = F.linear(v_in, attn.v_proj.weight, attn.v_proj.bias)
    b, lq = q.shape[:2]
    q, k, v = (t.reshape(b, -1, h, d) for t in (q, k, v))
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
    if bias is not None:
        s = s + bias
    if kpm is not None:
        s = s.masked_fill(kpm[:, None, None, :], float("-inf"))
    o = torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v).reshape(b, lq, h * d)
    return F.linear(o, attn.out_proj.weight, attn.out_proj.bias)


def _ln(x, norm):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


def _tokens(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("norm_first", [False, True])
def test_self_attention_layer_matches_hand_composition(norm_first):
    layer = _randomise(SelfAttentionLayer(16, 4, norm_first=norm_first).double(), 3).eval()
    x, pos = _tokens(0, 2, 7, 16), _tokens(1, 1, 7, 16)
    kpm = torch.zeros(2, 7, dtype=torch.bool)
    kpm[1, 5:] = True
    bias = _tokens(2, 2, 1, 7, 7)
    a = layer.self_attn
    if norm_first:
        y = _ln(x, layer.norm)
        want = x + _ref_attention(a, y + pos, y + pos, y, kpm, bias)  # pos on q, k only
    else:
        want = _ln(x + _ref_attention(a, x + pos, x + pos, x, kpm, bias), layer.norm)
    got = layer(x, pos=pos, key_padding_mask=kpm, attn_bias=bias)
    assert got.shape == (2, 7, 16)
    torch.testing.assert_close(got, want)
    # the positions reach the queries and keys, not the values: adding pos to values differs
    if norm_first:
        wrong = x + _ref_attention(a, y + pos, y + pos, y + pos, kpm, bias)
        assert not torch.allclose(got, wrong)


@pytest.mark.parametrize("norm_first", [False, True])
def test_cross_attention_layer_matches_hand_composition(norm_first):
    layer = _randomise(CrossAttentionLayer(12, 3, norm_first=norm_first).double(), 4).eval()
    q, mem = _tokens(0, 2, 5, 12), _tokens(1, 2, 9, 12)
    qpos, mpos = _tokens(2, 2, 5, 12), _tokens(3, 2, 9, 12)
    kpm = torch.zeros(2, 9, dtype=torch.bool)
    kpm[0, :4] = True
    a = layer.cross_attn
    if norm_first:
        y = _ln(q, layer.norm)
        want = q + _ref_attention(a, y + qpos, mem + mpos, mem, kpm)
    else:
        want = _ln(q + _ref_attention(a, q + qpos, mem + mpos, mem, kpm), layer.norm)
    got = layer(q, mem, query_pos=qpos, memory_pos=mpos, memory_key_padding_mask=kpm)
    assert got.shape == (2, 5, 12)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("norm_first,act", [(False, "relu"), (True, "gelu")])
def test_ffn_layer_matches_hand_composition(norm_first, act):
    layer = _randomise(FFNLayer(8, 20, act=act, norm_first=norm_first).double(), 5).eval()
    x = _tokens(0, 2, 3, 8)
    f = F.relu if act == "relu" else F.gelu

    def ffn(t):
        return F.linear(
            f(F.linear(t, layer.linear1.weight, layer.linear1.bias)),
            layer.linear2.weight,
            layer.linear2.bias,
        )

    want = x + ffn(_ln(x, layer.norm)) if norm_first else _ln(x + ffn(x), layer.norm)
    torch.testing.assert_close(layer(x), want)
    with pytest.raises(ValueError, match="act"):
        FFNLayer(8, 20, act="")


@pytest.mark.parametrize("norm_first,act", [(False, "relu"), (True, "gelu")])
def test_encoder_layer_matches_torch_transformer_encoder_layer(norm_first, act):
    """Without positions, DETR's encoder layer is torch's TransformerEncoderLayer."""
    ours = _randomise(
        TransformerEncoderLayer(16, 4, 40, act=act, norm_first=norm_first).double(), 6
    ).eval()
    ref = nn.TransformerEncoderLayer(
        16,
        4,
        40,
        dropout=0.0,
        activation=act,
        batch_first=True,
        norm_first=norm_first,
        dtype=torch.float64,
    ).eval()
    a = ours.self_attn.self_attn
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(
            torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        )
        ref.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        ref.self_attn.out_proj.weight.copy_(a.out_proj.weight)
        ref.self_attn.out_proj.bias.copy_(a.out_proj.bias)
        ref.norm1.load_state_dict(ours.self_attn.norm.state_dict())
        ref.linear1.load_state_dict(ours.ffn.linear1.state_dict())
        ref.linear2.load_state_dict(ours.ffn.linear2.state_dict())
        ref.norm2.load_state_dict(ours.ffn.norm.state_dict())
    x = _tokens(0, 3, 6, 16)
    kpm = torch.zeros(3, 6, dtype=torch.bool)
    kpm[2, 4:] = True
    torch.testing.assert_close(ours(x, key_padding_mask=kpm), ref(x, src_key_padding_mask=kpm))
    # with positions: q = k = x + pos, the value and the residual see x
    pos = _tokens(1, 1, 6, 16)
    sa = ours.self_attn
    if norm_first:
        y = _ln(x, sa.norm)
        mid = x + _ref_attention(a, y + pos, y + pos, y)
    else:
        mid = _ln(x + _ref_attention(a, x + pos, x + pos, x), sa.norm)
    torch.testing.assert_close(ours(x, pos=pos), ours.ffn(mid))


def test_transformer_layers_backward_and_dropout_modes():
    layer = TransformerEncoderLayer(16, 4, 32, dropout=0.3)
    x = torch.randn(2, 5, 16, requires_grad=True)
    layer.train()
    layer(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


# ------------------------------------------------------------------------------ MLP


def test_mlp_stack_matches_linear_relu_chain():
    m = MLP(6, 10, 3, num_layers=3)
    assert [(lin.in_features, lin.out_features) for lin in m.layers] == [(6, 10), (10, 10), (10, 3)]
    x = torch.randn(2, 4, 6)
    l0, l1, l2 = m.layers
    want = F.linear(
        F.relu(F.linear(F.relu(F.linear(x, l0.weight, l0.bias)), l1.weight, l1.bias)),
        l2.weight,
        l2.bias,
    )
    torch.testing.assert_close(m(x), want)
    one = MLP(6, 10, 3, num_layers=1)
    torch.testing.assert_close(one(x), F.linear(x, one.layers[0].weight, one.layers[0].bias))
    assert (m(x) < 0).any()  # no activation after the last layer
    with pytest.raises(ValueError, match="num_layers"):
        MLP(6, 10, 3, num_layers=0)
    assert Mlp is timm.layers.Mlp


# ------------------------------------------------------------------------------ positions


def _np_sine(mask: np.ndarray, f: int, temperature: float, normalize: bool, offset: float = 0.0):
    """DETR's formula pixel by pixel: (B, H, W) padding mask -> (B, 2F, H, W)."""
    b, h, w = mask.shape
    scale, eps = 2 * math.pi, 1e-6
    out = np.zeros((b, 2 * f, h, w))
    for n in range(b):
        valid = ~mask[n]
        for y in range(h):
            for x in range(w):
                py = valid[: y + 1, x].sum()  # running count of valid pixels, 1-based
                px = valid[y, : x + 1].sum()
                if normalize:
                    py = (py + offset) / (valid[:, x].sum() + eps) * scale
                    px = (px + offset) / (valid[y, :].sum() + eps) * scale
                for i in range(f):
                    freq = temperature ** (2 * (i // 2) / f)
                    trig = math.sin if i % 2 == 0 else math.cos
                    out[n, i, y, x] = trig(py / freq)
                    out[n, f + i, y, x] = trig(px / freq)
    return out


@pytest.mark.parametrize("normalize,offset", [(True, 0.0), (False, 0.0), (True, -0.5)])
def test_position_embedding_sine_matches_numpy(normalize, offset):
    f = 6
    pe = PositionEmbeddingSine(f, temperature=100, normalize=normalize, offset=offset)
    x = torch.zeros(2, 3, 4, 5)
    got = pe(x)
    assert got.shape == (2, 2 * f, 4, 5) and got.dtype == x.dtype
    no_mask = np.zeros((2, 4, 5), dtype=bool)
    np.testing.assert_allclose(got.numpy(), _np_sine(no_mask, f, 100, normalize, offset), atol=1e-5)
    masks = [no_mask.copy(), no_mask.copy()]
    masks[0][1, 3:, 3:] = True  # padded pixels, no row or column entirely padded
    masks[0][0, 2, 4] = True
    masks[1][1, 3:, :] = True  # DETR padding: bottom rows and right columns of one image
    masks[1][1, :, 4:] = True
    # (an entirely padded row/column has a 0 total: with offset != 0 its padded pixels get
    # (offset / eps)-sized arguments, meaningless and float32-sensitive, so not compared)
    for mask in masks if offset == 0 else masks[:1]:
        got_m = pe(x, torch.from_numpy(mask))
        np.testing.assert_allclose(
            got_m.numpy(), _np_sine(mask, f, 100, normalize, offset), atol=1e-5
        )
        assert not np.allclose(got_m.numpy(), got.numpy(), atol=1e-3)  # the mask matters


def test_position_embedding_sine_errors_and_dtype():
    with pytest.raises(ValueError, match="even"):
        PositionEmbeddingSine(5)
    with pytest.raises(ValueError, match="normalize"):
        PositionEmbeddingSine(4, normalize=False, scale=1.0)
    pe = PositionEmbeddingSine(4)
    with pytest.raises(ValueError, match="mask"):
        pe(torch.zeros(1, 3, 4, 5), torch.zeros(1, 4, 4, dtype=torch.bool))
    assert pe(torch.zeros(1, 3, 4, 5, dtype=torch.float64)).dtype == torch.float64


def test_position_embedding_learned_tables():
    pe = PositionEmbeddingLearned(5, 8)
    out = pe(torch.zeros(2, 3, 8))
    assert out.shape == (2, 3, 8)
    torch.testing.assert_close(out[1], pe.embed.weight[:3])
    out.sum().backward()
    assert pe.embed.weight.grad[:3].abs().sum() > 0 and (pe.embed.weight.grad[3:] == 0).all()
    with pytest.raises(ValueError, match="positions"):
        pe(torch.zeros(1, 6, 8))

    pe2 = PositionEmbeddingLearned2D(4, max_rows=6, max_cols=7)
    out2 = pe2(torch.zeros(2, 3, 5, 6))
    assert out2.shape == (2, 8, 5, 6)
    rows, cols = pe2.row_embed.weight.detach().numpy(), pe2.col_embed.weight.detach().numpy()
    want = np.zeros((8, 5, 6), dtype=np.float32)
    for y in range(5):
        for x in range(6):
            want[:4, y, x] = rows[y]
            want[4:, y, x] = cols[x]
    np.testing.assert_array_equal(out2[1].detach().numpy(), want)
    with pytest.raises(ValueError, match="exceeds"):
        pe2(torch.zeros(1, 3, 7, 6))
