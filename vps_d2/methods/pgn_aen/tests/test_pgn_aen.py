"""PGN+AEN (vps_d2/methods/pgn_aen): module shapes, CFFA assembly, CRL, CSA memory, the
interaction, streaming memory bounds, gradients, ablations, configs and backbones."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vps_d2.methods.pgn_aen  # noqa: F401  (registers MODEL.PGN_AEN and the meta-architecture)
from vps_d2.config import ConfigError, add_vps_config, get_cfg
from vps_d2.methods.pgn_aen.cffm import (
    CFMBlock,
    CrossFrameMining,
    LinearPool,
    gather_neighbourhoods,
    ring_indices,
    select_references,
    window_partition,
    window_reverse,
)
from vps_d2.methods.pgn_aen.crl import CrossScaleRegionLinking, LinearRegionTokens, RegionLinking
from vps_d2.methods.pgn_aen.csa import ClipMemoryRead, CrossWiseScaleAlignment, fit_slots
from vps_d2.methods.pgn_aen.interaction import semantic_interaction
from vps_d2.methods.pgn_aen.model import PGNAEN, past_frames
from vps_d2.methods.pgn_aen.pgn import CFFM, FuseHead
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model, resolve_clip_config
from vps_d2.modeling.backbone import ShapeSpec, build_backbone
from vps_d2.modeling.meta_arch import META_ARCH_REGISTRY

torch.set_num_threads(1)
SHAPES = {f"res{i + 2}": ShapeSpec(c, 2 ** (i + 2)) for i, c in enumerate([8, 16, 16, 32])}


def _set(node, key, value):
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    node[last] = value


def _cfg(**opts):
    """A tiny PGN+AEN config: SmallCNN, D 16, S 2 (q 8), 1 encoder layer, 64x80 frames."""
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "PGNAEN"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "SmallCNN"
    cfg.MODEL.BACKBONE.SMALL_CNN_CHANNELS = [8, 16, 16, 32]
    cfg.INPUT.SIZE_TEST = (64, 80)
    cfg.INPUT.CLIP.LENGTH = 9
    p = cfg.MODEL.PGN_AEN
    p.EMBED_DIM = 16
    p.PGN.CHANNELS = 16
    p.CFFM.NUM_HEADS = 2
    p.CFFM.WINDOW_SIZE = 4
    p.CFFM.EXPAND_SIZE = 1
    p.CFFM.TARGET_POOL_NEIGHBOURHOOD = 3
    p.CFFM.REF_POOL_SIZES = [1, 2, 4]
    p.CFFM.REF_NEIGHBOURHOODS = [3, 3, 3]
    p.CRL.NUM_REGIONS = 2
    p.CRL.GRIDS = [[8, 10], [4, 5], [2, 3], [2, 2]]
    p.CRL.LINEAR_GRID = [1, 2]
    p.CSA.NUM_HEADS = 2
    p.CSA.ENC_LAYERS = 1
    p.CSA.FFN_DIM = 32
    for key, value in opts.items():
        _set(cfg, key, value)
    return cfg


def _model(**opts):
    torch.manual_seed(0)
    return build_model(_cfg(**opts))


def _clips(b=2, t=9, h=64, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(b):
        sem = torch.zeros(t, h, w)
        sem[:, h // 4 : h // 2, w // 4 : w // 2] = 1
        out.append(
            {
                "image": torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=g),
                "sem_seg": sem,
            }
        )
    return out


def _frames(n, h=70, w=90, video="v", seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    return [
        {
            "image": torch.roll(base, shifts=t % 7, dims=2),
            "height": h,
            "width": w,
            "video_id": video,
            "frame_index": t,
        }
        for t in range(n)
    ]


# ---------------------------------------------------------------------------- CFFA assembly
def test_window_partition_roundtrip_and_order():
    x = torch.arange(2 * 8 * 12 * 3, dtype=torch.float32).view(2, 8, 12, 3)
    win = window_partition(x, 4)
    assert win.shape == (2 * 2 * 3, 16, 3)
    assert torch.equal(win[1], x[0, 0:4, 4:8].reshape(16, 3))  # second window: row 0, col 1
    assert torch.equal(window_reverse(win, 4, 2, 8, 12), x)


@pytest.mark.parametrize("ws,e", [(7, 3), (4, 1), (5, 0)])
def test_ring_indices_match_the_four_shifted_windows(ws, e):
    rows, cols = ring_indices(ws, e)
    assert len(rows) == ws * ws + 4 * (ws * ws - (ws - e) ** 2)  # 49 + 132 for (7, 3)
    pos = list(zip(rows.tolist(), cols.tolist()))
    centre = {(r + e, c + e) for r in range(ws) for c in range(ws)}
    assert pos[: ws * ws] == sorted(centre)
    # independently: the four diagonal shifts of the window, minus the window itself
    expected = []
    for dy, dx in ((-e, -e), (-e, e), (e, -e), (e, e)):
        shifted = [(r + e + dy, c + e + dx) for r in range(ws) for c in range(ws)]
        expected += [p for p in shifted if p not in centre] if e else []
    assert pos[ws * ws :] == expected


def test_gather_neighbourhoods_against_a_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 3, generator=g)
    ch, cw = torch.tensor([0, 2, 4]), torch.tensor([1, 5])
    k = 3
    out = gather_neighbourhoods(x, ch, cw, k)
    assert out.shape == (2 * 3 * 2, 9, 3)
    for b, (i, ci), (j, cj) in itertools.product(
        range(2), enumerate(ch.tolist()), enumerate(cw.tolist())
    ):
        win = out[b * 6 + i * 2 + j]
        for s, (dy, dx) in enumerate(itertools.product(range(-1, 2), range(-1, 2))):
            r, c = ci + dy, cj + dx
            ref = x[b, r, c] if 0 <= r < 5 and 0 <= c < 6 else torch.zeros(3)
            assert torch.equal(win[s], ref), (b, i, j, s)


def test_linear_pool_starts_as_average_pooling():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, 4, generator=g)
    pool = LinearPool(3)
    valid = torch.ones(6, 9, dtype=torch.bool)
    valid[:, 7:] = False
    y, v = pool(x, valid)
    ref = F.avg_pool2d(x.permute(0, 3, 1, 2), 3).permute(0, 2, 3, 1)
    torch.testing.assert_close(y, ref)
    assert v.tolist() == [[True, True, True], [True, True, True]]  # cell 3 holds column 6
    y2, v2 = LinearPool(4)(x, valid)  # 6x9 padded to 8x12
    assert y2.shape == (2, 2, 3, 4) and v2[:, 2].tolist() == [False, False]


def test_select_references_nearest_first_past_on_ties():
    # clip frames 0..2, past frames -1..-3; target 0 (hand-derived from the rule)
    pos = [0, 1, 2, -1, -2, -3]
    assert select_references(0, pos, 3, 3) == [(3, 0), (1, 0), (4, 1)]
    assert select_references(2, pos, 2, 3) == [(1, 0), (0, 1)]
    # CFFM's own setting: references 3, 6, 9 frames before -> finest to coarsest
    assert select_references(0, [0, -3, -6, -9], 3, 3) == [(1, 0), (2, 1), (3, 2)]
    assert select_references(0, [0, 1, 2, 3, 4, 5], 5, 3)[-1] == (5, 2)  # clamped level
    assert select_references(0, [0], 3, 3) == []


def _block(**kw):
    torch.manual_seed(0)
    args = dict(
        window_size=7,
        expand_size=3,
        target_pool_neighbourhood=5,
        ref_pool_sizes=(2, 3, 7),
        ref_neighbourhoods=(3, 5, 7),
    )
    args.update(kw)
    return CFMBlock(8, 2, **args).eval()


def test_cfm_block_keys_are_local():
    """A window's output depends on its ring, the pooled windows around it and the reference
    cells around it only: perturbing a far corner leaves window (0, 0) unchanged, perturbing
    its ring does not."""
    blk = _block()
    g = torch.Generator().manual_seed(0)
    tgt = torch.randn(1, 28, 28, 8, generator=g)
    ref = torch.randn(1, 28, 28, 8, generator=g)
    valid = torch.ones(28, 28, dtype=torch.bool)
    kick = 10 * torch.randn(8, generator=g)  # not constant over channels (LayerNorm)
    with torch.no_grad():
        base = blk(tgt, [(ref, 0)], valid)
        far_t = tgt.clone()
        far_t[0, 21:, 21:] += kick  # window (3, 3): beyond the ring and the 5x5 pooled windows
        ring_t = tgt.clone()
        ring_t[0, 8, 8] += kick  # in window (1, 1), inside the ring (width 3) of window (0, 0)
        far_r = ref.clone()
        far_r[0, 6:, 6:] += kick  # nearest level: 2x2 cells, 3x3 around cell 1 -> pixels 0..5
        near_r = ref.clone()
        near_r[0, 5, 5] += kick
        outs = {
            n: blk(t, [(r, 0)], valid)
            for n, (t, r) in {
                "far_t": (far_t, ref),
                "ring_t": (ring_t, ref),
                "far_r": (tgt, far_r),
                "near_r": (tgt, near_r),
            }.items()
        }
    w00 = (slice(None), slice(0, 7), slice(0, 7))
    assert torch.equal(outs["far_t"][w00], base[w00])
    assert torch.equal(outs["far_r"][w00], base[w00])
    assert not torch.allclose(outs["ring_t"][w00], base[w00])
    assert not torch.allclose(outs["near_r"][w00], base[w00])


def test_cfm_block_ignores_padding():
    """Keys in the padding of a map that is not a multiple of the window are masked: what
    the padding holds does not change the valid pixels' outputs."""
    blk = _block(
        window_size=4,
        expand_size=1,
        target_pool_neighbourhood=3,
        ref_pool_sizes=(2,),
        ref_neighbourhoods=(3,),
    )
    g = torch.Generator().manual_seed(1)
    tgt = torch.randn(1, 8, 8, 8, generator=g)
    ref = torch.randn(1, 8, 8, 8, generator=g)
    valid = torch.zeros(8, 8, dtype=torch.bool)
    valid[:6, :7] = True
    with torch.no_grad():
        a = blk(tgt, [(ref, 0)], valid)
        tgt2, ref2 = tgt.clone(), ref.clone()
        tgt2[:, 6:] = torch.randn(2, 8, 8, generator=g)
        ref2[:, :, 7:] = torch.randn(8, 1, 8, generator=g)
        b = blk(tgt2, [(ref2, 0)], valid)
    # ring / window keys and pooled cells made only of padding are masked; partly padded
    # pooled cells mix both, so compare windows whose keys touch no padded pixel at all
    assert torch.equal(a[0, :2, :3], b[0, :2, :3])


@pytest.mark.parametrize("h,w", [(10, 12), (13, 9)])
def test_cross_frame_mining_shapes_any_size(h, w):
    torch.manual_seed(0)
    cfm = CrossFrameMining(
        8,
        depth=2,
        num_heads=2,
        num_references=3,
        window_size=4,
        expand_size=1,
        target_pool_neighbourhood=3,
        ref_pool_sizes=[1, 2],
        ref_neighbourhoods=[3, 3],
    )
    frames = torch.randn(2, 5, 8, h, w)
    out = cfm(frames, [0, 1, 2, -1, -2], [0, 1, 2])
    assert out.shape == (2, 3, 8, h, w) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------- PGN
@pytest.mark.parametrize("size", [(64, 80), (96, 64)])
@pytest.mark.parametrize("cls", [FuseHead, CFFM])
def test_pgn_shapes(cls, size):
    torch.manual_seed(0)
    kw = dict(
        input_shape=SHAPES, in_features=list(SHAPES), channels=16, num_outputs=8, aux_head=True
    )
    if cls is CFFM:
        kw.update(
            num_heads=2,
            window_size=4,
            expand_size=1,
            target_pool_neighbourhood=3,
            ref_pool_sizes=[1, 2],
            ref_neighbourhoods=[3, 3],
        )
    pgn = cls(**kw)
    h, w = size
    feats = {
        f: torch.randn(2, 3, s.channels, h // s.stride, w // s.stride) for f, s in SHAPES.items()
    }
    past = [(-1, {"fused": torch.randn(2, 16, h // 8, w // 8)})] if cls is CFFM else []
    out = pgn(feats, past, 3)
    assert out.proposals.shape == (2, 3, 8, h // 4, w // 4)
    assert out.aux_logits.shape == (2, 3, 1, h // 4, w // 4)
    for f, s in SHAPES.items():
        assert out.stage_features[f].shape == (2, 3, 16, h // s.stride, w // s.stride)
    if cls is CFFM:
        assert out.memory["fused"].shape == (2, 3, 16, h // 8, w // 8)
        # the stage features are refined, not the plain projections
        projs, _ = pgn.project({f: x.flatten(0, 1) for f, x in feats.items()})
        assert not torch.allclose(out.stage_features["res3"].flatten(0, 1), projs[1])
        last = CFFM(**{**kw, "targets": "last"})
        assert last(feats, past, 1).memory["fused"].shape == (2, 1, 16, h // 8, w // 8)


# ---------------------------------------------------------------------------- CRL
@pytest.mark.parametrize("size", [(16, 20), (24, 12)])
def test_crl_is_size_agnostic(size):
    torch.manual_seed(0)
    crl = RegionLinking(16, 8, num_regions=4, embed_dim=12, grid=(4, 5)).eval()
    out = crl(torch.randn(3, 16, *size), torch.randn(3, 8, *size))
    assert out.shape == (3, 4, 12)


def test_crl_pools_to_the_grid_then_links():
    """At the grid size the maps go unpooled into the MLP; at twice the size, 2x2 average
    pooling first (computed independently)."""
    torch.manual_seed(0)
    crl = RegionLinking(6, 6, num_regions=4, embed_dim=5, grid=(4, 6)).eval()
    s, f = torch.randn(2, 6, 8, 12), torch.randn(2, 6, 8, 12)
    with torch.no_grad():
        maps = crl.region_maps(s, f)
        ref = crl.mlp(F.avg_pool2d(maps, 2).flatten(2))
        torch.testing.assert_close(crl(s, f), ref)
        s4, f4 = s[..., :4, :6], f[..., :4, :6]
        torch.testing.assert_close(crl(s4, f4), crl.mlp(crl.region_maps(s4, f4).flatten(2)))
        # equal widths: one 1x1 conv on F' + F
        x = crl.expand(s + f)
        a, b = x.chunk(2, 1)
        shared = torch.cat([crl.share[0](a), crl.share[1](b)], 1)
        torch.testing.assert_close(maps, crl.norm(shared))
    assert crl.share[1].dilation == (2, 2)


def test_crl_sequential_and_untied_widths():
    torch.manual_seed(0)
    crl = RegionLinking(16, 8, num_regions=3, embed_dim=4, grid=(2, 2), sharing="sequential")
    assert crl.expand_feature is not None and crl.share[0].in_channels == 3
    assert crl(torch.randn(1, 16, 5, 7), torch.randn(1, 8, 5, 7)).shape == (1, 3, 4)
    with pytest.raises(ValueError, match="SHARING"):
        RegionLinking(4, 4, sharing="diagonal")
    with pytest.raises(ValueError, match="even"):
        RegionLinking(4, 4, num_regions=3)


def test_linear_region_tokens_and_concat():
    torch.manual_seed(0)
    lin = LinearRegionTokens(16, 8, num_regions=6, embed_dim=4, grid=(2, 3))
    assert lin(torch.randn(2, 16, 9, 7), torch.randn(2, 8, 9, 7)).shape == (2, 6, 4)
    with pytest.raises(ValueError, match="LINEAR_GRID"):
        LinearRegionTokens(16, 8, num_regions=6, grid=(2, 2))
    crl = CrossScaleRegionLinking(["a", "b"], [lin, LinearRegionTokens(4, 4, 2, 4, (1, 2))])
    out = crl(
        {"a": torch.randn(2, 16, 4, 4), "b": torch.randn(2, 4, 2, 2)},
        {"a": torch.randn(2, 8, 4, 4), "b": torch.randn(2, 4, 2, 2)},
    )
    assert out.shape == (2, 8, 4) and crl.num_tokens == 8


# ---------------------------------------------------------------------------- CSA
def test_clip_memory_read_against_numpy():
    torch.manual_seed(0)
    read = ClipMemoryRead(4, scale=True)
    e_c = torch.randn(2, 3, 5, 4)
    mem = [torch.randn(2, 3, 5, 4) for _ in range(3)]
    with torch.no_grad():
        out = read(e_c, mem).numpy()
        q = read.q_proj(e_c).numpy()
        ks = [read.k_proj(m).numpy() for m in mem]
        vs = [read.v_proj(m).numpy() for m in mem]
    ref = e_c.numpy().copy()
    for b, t, i in itertools.product(range(2), range(3), range(5)):
        s = np.array([q[b, t, i] @ k[b, t, i] / 2.0 for k in ks])  # sqrt(4) = 2
        a = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        ref[b, t, i] += sum(a[m] * vs[m][b, t, i] for m in range(3))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(read(e_c, []), e_c)


def test_fit_slots():
    x = torch.arange(6.0).view(1, 3, 2)
    assert fit_slots(x, 2).tolist() == [[[0, 1], [2, 3]]]
    assert fit_slots(x[:, :2], 3).tolist() == [[[0, 1], [2, 3], [2, 3]]]


@pytest.mark.parametrize(
    "clip_wise,frame_wise,scope",
    [
        (True, True, "clip"),
        (True, True, "frame"),
        (False, True, "clip"),
        (True, False, "clip"),
        (False, False, "clip"),
    ],
)
def test_csa_shapes_memory_and_ablations(clip_wise, frame_wise, scope):
    torch.manual_seed(0)
    csa = CrossWiseScaleAlignment(
        6,
        dim=8,
        clip_length=3,
        num_heads=2,
        enc_layers=1,
        ffn_dim=16,
        clip_wise=clip_wise,
        frame_wise=frame_wise,
        self_attention_scope=scope,
    ).eval()
    assert (csa.cross_attn is not None) == clip_wise and (csa.memory_read is not None) == clip_wise
    assert (csa.self_attn is not None) == frame_wise
    e2 = torch.randn(2, 3, 6, 8)
    with torch.no_grad():
        e3, state = csa(e2)
        assert e3.shape == state.shape == (2, 3, 6, 8)
        e3m, _ = csa(e2, [state, state])
        e3short, _ = csa(e2[:, :2], [state])  # a shorter last clip
    assert e3short.shape == (2, 2, 6, 8)
    # the memory (and the carried queries) change the output only with clip-wise alignment
    assert torch.allclose(e3m, e3) != clip_wise


def test_csa_frame_scope_keeps_frames_apart_without_clip_alignment():
    """Only frame-wise alignment with a per-frame self-attention scope and no encoder: a
    frame's e3 depends on its own e2 only."""
    torch.manual_seed(0)
    csa = CrossWiseScaleAlignment(
        4,
        dim=8,
        clip_length=3,
        num_heads=2,
        enc_layers=0,
        ffn_dim=16,
        clip_wise=False,
        self_attention_scope="frame",
    ).eval()
    e2 = torch.randn(1, 3, 4, 8)
    e2b = e2.clone()
    e2b[:, 2] += 1.0
    with torch.no_grad():
        a, _ = csa(e2)
        b, _ = csa(e2b)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6) and not torch.allclose(a[:, 2], b[:, 2])
    csa.scope = "clip"
    with torch.no_grad():
        a, _ = csa(e2)
        b, _ = csa(e2b)
    assert not torch.allclose(a[:, :2], b[:, :2])


# ---------------------------------------------------------------------------- interaction
def test_interaction_equals_an_independent_einsum():
    g = torch.Generator().manual_seed(0)
    e1 = torch.randn(3, 6, 5, 7, generator=g)
    e3 = torch.randn(3, 6, 4, generator=g)
    out = semantic_interaction(e1, e3)
    ref = np.einsum("nqd,nqhw->nhw", e3.numpy(), e1.numpy())[:, None]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    e3c = torch.randn(3, 2, 6, 4, generator=g)  # two classes
    ref = np.einsum("ncqd,nqhw->nchw", e3c.numpy(), e1.numpy())
    np.testing.assert_allclose(semantic_interaction(e1, e3c).numpy(), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="agree"):
        semantic_interaction(e1, torch.randn(3, 5, 4))


# ---------------------------------------------------------------------------- the model
def test_both_names_build_the_same_class():
    assert META_ARCH_REGISTRY.get("EUVPS") is META_ARCH_REGISTRY.get("PGNAEN") is PGNAEN
    m = _model(**{"MODEL.META_ARCHITECTURE": "EUVPS"})
    clip = PGNAEN.clip_contract(_cfg())
    assert isinstance(m, PGNAEN) and (clip.test_frames_per_batch, clip.latency) == (3, 2)
    sliding = PGNAEN.clip_contract(_cfg(**{"MODEL.PGN_AEN.STREAM_MODE": "sliding"}))
    assert (sliding.test_frames_per_batch, sliding.latency) == (1, 0)
    # training clips: K sub-clips of L = 3, K = 3 when INPUT.CLIP.LENGTH is unset
    assert (clip.train_length, clip.train_length_multiple, clip.train_sampler) == (9, 3, "window")


@pytest.mark.parametrize("size", [(64, 80), (48, 96)])
def test_window_shapes_two_sizes(size):
    m = _model().eval()
    x = torch.randn(2, 3, 3, *size)
    with torch.no_grad():
        out, entry = m.window(x, [], 3)
        out2, entry2 = m.window(x, [entry], 3)
    q = 2 * 4
    assert out["logits"].shape == out2["logits"].shape == (2, 3, 1, *size)
    assert entry["num_new"] == 3 and entry["aen"].shape == (2, 3, q, 16)
    assert entry["pgn"]["fused"].shape == (2, 3, 16, size[0] // 8, size[1] // 8)
    assert not torch.allclose(out["logits"], out2["logits"])  # the memory is used


def test_past_frame_positions():
    def entry(n):
        return {"num_new": n, "pgn": {"f": torch.arange(n).view(1, n) + 10 * n}}

    # clip mode: previous clips of 3, then a clip of 3 -> past frames -1, -2, ..., -6
    got = past_frames([entry(3), entry(3)], 3, 3)
    assert [p for p, _ in got] == [-1, -2, -3, -4, -5, -6]
    assert [int(m["f"]) for _, m in got] == [32, 31, 30, 32, 31, 30]
    # sliding mode: windows of 3, 1 new frame each; the last 2 stored frames are in the window
    got = past_frames([entry(1)] * 4, 3, 1)
    assert [p for p, _ in got] == [-1, -2]
    assert past_frames([{"num_new": 3, "pgn": {}}], 3, 3) == []


def test_streaming_memory_bounded_and_read_before_write():
    m = _model().eval()
    seen = []
    window = m.window

    def spy(x, entries, num_new):
        seen.append((len(entries), len(m.memory), x.shape[1], num_new))
        return window(x, entries, num_new)

    m.window = spy
    frames = _frames(20)
    outs = m.inference(frames[:9]) + m.inference(frames[9:18]) + m.inference(frames[18:])
    assert len(outs) == 20 and outs[0]["prob"].shape == (70, 90)
    assert all(0 <= o["prob"].min() and o["prob"].max() <= 1 for o in outs)
    # 7 clips (the last of 2 frames); each reads the memory before its own entry is added
    assert [s[0] for s in seen] == [0, 1, 2, 3, 3, 3, 3]
    assert [s[2] for s in seen] == [3, 3, 3, 3, 3, 3, 2]
    assert all(r == stored for r, stored, _, _ in seen)
    assert len(m.memory) == 3
    m.inference(_frames(3, video="w"))  # a new video resets the memory first
    assert seen[-1][0] == 0 and len(m.memory) == 1


def test_sliding_mode_streams_one_window_per_frame():
    m = _model(**{"MODEL.PGN_AEN.STREAM_MODE": "sliding"}).eval()
    assert m.online
    outs = list(m.stream(iter(_frames(7))))
    assert len(outs) == 7 and outs[-1]["prob"].shape == (70, 90)


def test_every_trainable_parameter_gets_a_gradient():
    m = _model().train()
    losses = m(_clips())
    assert set(losses) == {"loss_bce", "loss_dice"}
    sum(losses.values()).backward()
    no_grad = [
        n
        for n, p in m.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert no_grad == []


def test_loss_is_eq10():
    """5 x mean BCE + 2 x mean per-frame Dice of the upsampled logits, averaged over the 3
    sub-clips (recomputed from the model's own logits with torch ops)."""
    m = _model().eval()  # eval: deterministic (dropout off), BN in inference mode
    clips = _clips(b=1)
    x = m.normalize(torch.stack([c["image"] for c in clips]))
    masks = torch.stack([c["sem_seg"] for c in clips])
    with torch.no_grad():
        losses = m.losses(clips)
        mem, bce, dice = [], 0.0, 0.0
        for k in range(3):
            out, entry = m.window(x[:, 3 * k : 3 * k + 3], mem, 3)
            mem.append(entry)
            lg, mk = out["logits"][0, :, 0], masks[0, 3 * k : 3 * k + 3]
            bce += F.binary_cross_entropy_with_logits(lg, mk) / 3
            p = lg.sigmoid()
            d = 1 - (2 * (p * mk).sum((1, 2)) + 1) / (p.sum((1, 2)) + mk.sum((1, 2)) + 1)
            dice += d.mean() / 3
    torch.testing.assert_close(losses["loss_bce"], 5 * bce)
    torch.testing.assert_close(losses["loss_dice"], 2 * dice)


ABLATIONS = {
    "pgn_alone": {"MODEL.PGN_AEN.USE_AEN": False},
    "wo_crl": {"MODEL.PGN_AEN.USE_CRL": False},
    "wo_csa": {"MODEL.PGN_AEN.USE_CSA": False},
    "wo_crl_csa": {"MODEL.PGN_AEN.USE_CRL": False, "MODEL.PGN_AEN.USE_CSA": False},
    "only_frame_wise": {"MODEL.PGN_AEN.CSA.CLIP_WISE": False},
    "only_clip_wise": {"MODEL.PGN_AEN.CSA.FRAME_WISE": False},
    "wo_alignment": {"MODEL.PGN_AEN.CSA.CLIP_WISE": False, "MODEL.PGN_AEN.CSA.FRAME_WISE": False},
    "fuse_head": {"MODEL.PGN_AEN.PGN.NAME": "FuseHead"},
    "cffm_last": {"MODEL.PGN_AEN.CFFM.TARGETS": "last"},
    "code_choices": {
        "MODEL.PGN_AEN.CSA.SELF_ATTENTION_SCOPE": "frame",
        "MODEL.PGN_AEN.CSA.PIXEL_DECODER": "position",
        "MODEL.PGN_AEN.CSA.MEMORY_SCALE": False,
        "MODEL.PGN_AEN.CSA.DEC_LAYERS": 2,
        "MODEL.PGN_AEN.CRL.SHARING": "sequential",
    },
    "aux_loss": {"MODEL.PGN_AEN.LOSS.PGN_AUX": True},
    "k1_sliding": {"INPUT.CLIP.LENGTH": 3, "MODEL.PGN_AEN.STREAM_MODE": "sliding"},
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablation_builds_and_trains_a_step(name):
    m = _model(**ABLATIONS[name]).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in m.parameters()]
    losses = m(_clips(t=_cfg(**ABLATIONS[name]).INPUT.CLIP.LENGTH))
    expected = {"loss_bce", "loss_dice"} | (
        {"loss_pgn_aux_bce", "loss_pgn_aux_dice"} if name == "aux_loss" else set()
    )
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()
    changed = sum(not torch.equal(a, p) for a, p in zip(before, m.parameters()))
    assert changed > 0.9 * len(before)
    if name == "pgn_alone":
        assert m.aen is None and m.pgn.num_outputs == 1
    if name == "wo_crl":
        assert isinstance(m.aen.crl.scales[0], LinearRegionTokens)
    m.eval()
    assert len(m.inference(_frames(4))) == 4


# ---------------------------------------------------------------------------- config errors
def test_config_errors():
    with pytest.raises(ConfigError, match="INPUT.CLIP.LENGTH = 4 .*a multiple of 3"):
        resolve_clip_config(_cfg(**{"INPUT.CLIP.LENGTH": 4}))
    with pytest.raises(ValueError, match="STREAM_MODE"):
        _model(**{"MODEL.PGN_AEN.STREAM_MODE": "online"})
    with pytest.raises(KeyError, match="PGN.NAME"):
        _model(**{"MODEL.PGN_AEN.PGN.NAME": "GenVIS"})
    with pytest.raises(ValueError, match="GRIDS"):
        _model(**{"MODEL.PGN_AEN.CRL.GRIDS": [[2, 2]]})
    with pytest.raises(ValueError, match="IN_FEATURES"):
        _model(**{"MODEL.PGN_AEN.IN_FEATURES": ["res2", "res3", "res4", "res6"]})
    with pytest.raises(ValueError, match="stride 4"):
        _model(
            **{
                "MODEL.PGN_AEN.IN_FEATURES": ["res3", "res4", "res5"],
                "MODEL.PGN_AEN.CRL.GRIDS": [[2, 2]] * 3,
            }
        )
    with pytest.raises(ValueError, match="TARGETS"):
        _model(**{"MODEL.PGN_AEN.CFFM.TARGETS": "first"})
    with pytest.raises(ValueError, match="REF_NEIGHBOURHOODS"):
        _model(**{"MODEL.PGN_AEN.CFFM.REF_NEIGHBOURHOODS": [3, 4, 5]})
    m = _model().train()
    with pytest.raises(ValueError, match="K \\* 3"):
        m(_clips(t=4))


# ---------------------------------------------------------------------------- configs, backbones
CONFIGS = sorted(os.listdir(os.path.join(os.path.dirname(__file__), "..", "configs")))


def _file_cfg(name):
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(get_config_file(name))
    return cfg


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_load_with_the_paper_settings(name):
    cfg = _file_cfg(name)
    p = cfg.MODEL.PGN_AEN
    assert cfg.MODEL.META_ARCHITECTURE == "PGNAEN" and p.CLIP_LENGTH == 3
    assert cfg.INPUT.CLIP.LENGTH % 3 == 0 and cfg.SOLVER.IMS_PER_BATCH % 2 == 0
    assert p.USE_AEN == ("cffm_only" not in name)
    if name.endswith("_sample.yaml"):
        return
    assert cfg.INPUT.SIZE_TRAIN == cfg.INPUT.SIZE_TEST == (320, 448)
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.LR_SCHEDULER_NAME) == (
        "AdamW",
        1e-4,
        0.1,
        "WarmupPolyLR",
    )
    assert s.MAX_ITER == (3000 if "cvc612" in name else 30000)
    assert (p.LOSS.BCE_WEIGHT, p.LOSS.DICE_WEIGHT, p.CSA.DEC_LAYERS) == (5.0, 2.0, 3)
    if "cvc612" in name:
        assert cfg.DATASETS.TRAIN == ("cvc612_train",)
    else:
        assert cfg.DATASETS.SUN_SEG.HOLDOUT_VAL == 0.2 and "sun_seg_val" in cfg.DATASETS.TEST
    b = cfg.MODEL.BACKBONE
    assert b.PRETRAINED and b.WEIGHTS.startswith("pretrained/")
    # the default CRL grids are the maps' own size at 320x448
    assert [list(g) for g in p.CRL.GRIDS] == [[320 // s, 448 // s] for s in (4, 8, 16, 32)]


@pytest.mark.parametrize(
    "name,widths,params",
    [
        ("pgn_aen_res2net50.yaml", [256, 512, 1024, 2048], 23.669),
        ("pgn_aen_hrnet.yaml", [48, 96, 192, 384], 65.325),
    ],
)
def test_backbones_as_the_public_code_runs_them(name, widths, params):
    """methods.md: res2net50d 23.669 M as features_only; hrnet_w48 with feature_location=''
    65.3 M, widths 48/96/192/384 (timm, random init, CPU)."""
    cfg = _file_cfg(name)
    levels = list(cfg.MODEL.PGN_AEN.IN_FEATURES)
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.WEIGHTS"):
        build_backbone(cfg, levels)  # PRETRAINED with a weights file that is not there
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    bb = build_backbone(cfg, levels)
    shapes = bb.output_shape()
    assert [shapes[f].channels for f in cfg.MODEL.PGN_AEN.IN_FEATURES] == widths
    assert [shapes[f].stride for f in cfg.MODEL.PGN_AEN.IN_FEATURES] == [4, 8, 16, 32]
    assert sum(p.numel() for p in bb.parameters()) / 1e6 == pytest.approx(params, abs=1e-3)


def test_cffm_alone_matches_table4_parameters():
    """Table 4's CFFM row: 26.49 M (Res2Net-50 + CFFM); within 5% (measured: +0.05%)."""
    cfg = _file_cfg("pgn_aen_cffm_only_res2net50.yaml")
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    cfg.MODEL.DEVICE = "cpu"
    m = build_model(cfg)
    total = sum(p.numel() for p in m.parameters()) / 1e6
    assert total == pytest.approx(26.49, rel=0.05)
    assert sum(p.numel() for p in m.pgn.parameters()) / 1e6 == pytest.approx(2.827, rel=0.05)
