"""SALI (vps_d2/methods/sali): modules, ablations, gradients, streaming memory bounds, configs."""

from __future__ import annotations

import gc
import os

import pytest
import torch
import torch.nn.functional as F

import vps_d2.methods.sali  # noqa: F401  (registers MODEL.SALI and the meta-architecture)
from vps_d2.config import ConfigError, add_vps_config, get_cfg
from vps_d2.methods.sali.alignment import (
    DeformAlignConv,
    ModulatedDeformConv2d,
    NonLocalFusion,
    PyramidAlignment,
    ShortTermAlignment,
    effective_pool_size,
)
from vps_d2.methods.sali.decoder import GroupReversalAttention, SALIDecoder
from vps_d2.methods.sali.lim import LongTermInteraction, mask_weights
from vps_d2.methods.sali.rfb import RFB
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model, resolve_clip_config

torch.set_num_threads(1)


def _cfg(**sali):
    """A tiny SALI config: SmallCNN, 16 channels, 64x64 test frames."""
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "SALI"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "SmallCNN"
    cfg.MODEL.BACKBONE.SMALL_CNN_CHANNELS = [8, 8, 16, 16]
    cfg.INPUT.SIZE_TEST = (64, 64)
    cfg.MODEL.SALI.CHANNELS = 16
    cfg.MODEL.SALI.LIM.VALUE_CHANNELS = 8
    cfg.MODEL.SALI.DECODER.GRA_GROUPS = [1, 4, 16]
    for key, value in sali.items():
        node = cfg.MODEL.SALI
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


def _model(**sali):
    torch.manual_seed(0)
    return build_model(_cfg(**sali))


def _triplets(b=2, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(b):
        sem = torch.zeros(3, h, w)
        sem[:, h // 4 : h // 2, w // 4 : w // 2] = 1
        out.append(
            {
                "image": torch.randint(0, 256, (3, 3, h, w), dtype=torch.uint8, generator=g),
                "sem_seg": sem,
            }
        )
    return out


def _frames(n, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    for t in range(n):
        yield {
            "image": torch.roll(base, shifts=t % 7, dims=2),
            "height": h,
            "width": w,
            "frame_index": t,
        }


# ---------------------------------------------------------------------------- modules
def test_rfb_shape():
    y = RFB(24, 32)(torch.randn(2, 24, 9, 11))
    assert y.shape == (2, 32, 9, 11) and (y >= 0).all()


def test_deform_conv_zero_offset_unit_mask_equals_conv2d():
    torch.manual_seed(0)
    conv = ModulatedDeformConv2d(16, 8, 3, deformable_groups=8)
    conv.bias.data.normal_()
    x = torch.randn(2, 16, 7, 9)
    offset = torch.zeros(2, 2 * 8 * 9, 7, 9)
    mask = torch.ones(2, 8 * 9, 7, 9)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert torch.allclose(conv(x, offset, mask), ref, atol=1e-5)


def test_deform_conv_integer_offset_equals_shifted_conv():
    torch.manual_seed(0)
    conv = ModulatedDeformConv2d(8, 4, 3, deformable_groups=2)
    x = torch.randn(1, 8, 6, 10)
    offset = torch.zeros(1, 2 * 2 * 9, 6, 10)
    offset[:, 1::2] = 1.0  # (dy, dx) pairs: every point samples one column to the right
    out = conv(x, offset, torch.ones(1, 2 * 9, 6, 10))
    shifted = F.pad(x[..., 1:], (0, 1))  # x[..., j + 1], zero beyond the border
    ref = F.conv2d(shifted, conv.weight, conv.bias, padding=1)
    # column 0 differs: the deformable conv reads x[..., 0] where the padded conv reads 0
    assert torch.allclose(out[..., 1:], ref[..., 1:], atol=1e-5)
    assert not torch.allclose(out, F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-3)


def test_deform_align_conv_starts_as_half_scaled_conv():
    torch.manual_seed(0)
    m = DeformAlignConv(16, 8, deformable_groups=8)
    m.dcn.bias.data.normal_()
    x, cond = torch.randn(1, 16, 5, 6), torch.randn(1, 8, 5, 6)
    plain = F.conv2d(x, m.dcn.weight, None, padding=1)
    # zero-initialised offset conv: offsets 0, mask sigmoid(0) = 0.5
    assert torch.allclose(m(x, cond), 0.5 * plain + m.dcn.bias.view(1, -1, 1, 1), atol=1e-5)


def test_pyramid_alignment_and_sam_shapes():
    shapes = [(2, 16, 16, 20), (2, 16, 8, 10), (2, 16, 4, 5)]
    src, ref = [torch.randn(s) for s in shapes], [torch.randn(s) for s in shapes]
    out = PyramidAlignment(channels=16, num_levels=3, deformable_groups=8)(src, ref)
    assert [o.shape for o in out] == [torch.Size(s) for s in shapes]
    sam = ShortTermAlignment(channels=16, num_levels=3, deformable_groups=8, pool_sizes=(2, 4, 8))
    assert [o.shape for o in sam(ref, src)] == [torch.Size(s) for s in shapes]
    with pytest.raises(ValueError, match="POOL_SIZES"):
        ShortTermAlignment(channels=16, pool_sizes=(2, 4))


def test_non_local_starts_as_identity_and_clamps_pooling():
    torch.manual_seed(0)
    nl = NonLocalFusion(channels=8, pool_size=8).eval()
    a, b = torch.randn(2, 8, 4, 5), torch.randn(2, 8, 4, 5)
    # zero-initialised output conv: the attention term is 0, z = x
    x = torch.cat([a, b], 1)
    expected = nl.proj(nl.fuse(torch.cat([x, x], 1)))
    assert torch.allclose(nl(a, b), expected, atol=1e-5)
    assert effective_pool_size(8, 4, 5) == 4 and effective_pool_size(2, 44, 44) == 2
    assert effective_pool_size(8, 1, 3) == 1
    nl.out.weight.data.normal_()  # with attention on, output still has the input's shape
    assert nl(a, b).shape == (2, 8, 4, 5)


def test_decoder_shapes_and_groups():
    feats = [torch.randn(2, 32, 16, 20), torch.randn(2, 32, 8, 10), torch.randn(2, 32, 4, 5)]
    dec = SALIDecoder(channels=32, level_names=["s3", "s4", "s5"], gra_groups=[1, 4, 32])
    out = dec(feats)
    assert list(out) == ["sg", "s5", "s4", "s3"] == dec.output_names
    assert out["sg"].shape == out["s3"].shape == (2, 1, 16, 20)
    assert out["s4"].shape == (2, 1, 8, 10) and out["s5"].shape == (2, 1, 4, 5)
    with pytest.raises(ValueError, match="GRA_GROUPS"):
        GroupReversalAttention(32, 5)


def test_mask_weights():
    logits = torch.randn(2, 1, 32, 32) * 3
    w = mask_weights(logits, (8, 8), "softmax_plus_one", is_logits=True)
    assert w.shape == (2, 1, 8, 8) and (w > 1).all() and (w <= 2).all()
    assert torch.allclose((w - 1).sum((1, 2, 3)), torch.ones(2), atol=1e-5)
    gt = torch.zeros(1, 1, 16, 16)
    gt[..., :8, :] = 1
    assert torch.equal(
        mask_weights(gt, (4, 4), "mask", is_logits=False)[0, 0, :, 0],
        torch.tensor([1.0, 1.0, 0.0, 0.0]),
    )
    p = mask_weights(logits, (32, 32), "mask", is_logits=True)
    assert torch.allclose(p, logits.sigmoid())
    with pytest.raises(ValueError, match="MASK_WEIGHTING"):
        mask_weights(logits, (8, 8), "hard", is_logits=True)


def test_lim_masked_attention_switch():
    torch.manual_seed(0)
    feats = [torch.randn(1, 16, 8, 8), torch.randn(1, 16, 4, 4), torch.randn(1, 16, 2, 2)]
    mem = [torch.randn_like(f) for f in feats]
    m1, m2 = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    m2[..., :4, :] = 0
    for ma, should_differ in [(True, True), (False, False)]:
        lim = LongTermInteraction(
            channels=16, value_channels=8, masked_attention=ma, mask_weighting="mask"
        )
        k, v = lim.encode(feats)
        mk, mv = lim.encode(mem)
        outs = []
        for mask in (m1, m2):
            mvw = lim.memory_values(mv, mask, is_logits=False)
            fl = lim.interact(k, v, [x.flatten(2) for x in mk], [x.flatten(2) for x in mvw])
            assert [f.shape[1] for f in fl] == [16, 16, 16]
            assert torch.equal(fl[0][:, 8:], v[0])  # [readout, current value]
            outs.append(fl[0])
        assert (not torch.allclose(outs[0], outs[1])) == should_differ


# ---------------------------------------------------------------------------- model
def test_model_losses_and_bad_input():
    model = _model().train()
    losses = model(_triplets())
    assert list(losses) == ["loss_global", "loss_coarse", "loss_middle", "loss_fine"]
    assert all(v.dim() == 0 and torch.isfinite(v) and v > 0 for v in losses.values())
    bad = [
        {"image": torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "sem_seg": torch.zeros(2, 64, 64)}
    ]
    with pytest.raises(ValueError, match="clip contract.*INPUT.CLIP.SAMPLING"):
        model(bad)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"IN_FEATURES": ["res3", "res4"]}, "IN_FEATURES"),
        ({"IN_FEATURES": ["res2", "res4", "res5"]}, "consecutive"),
        ({"IN_FEATURES": ["res3", "res4", "res6"]}, "not .'res6'.*IN_FEATURES"),
        ({"LIM.VALUE_CHANNELS": 4}, "VALUE_CHANNELS"),
        ({"MEMORY.EVICTION": "lru"}, "EVICTION"),
        ({"LIM.EMPTY_READ": "none"}, "EMPTY_READ"),
        ({"SAM.DEFORMABLE_GROUPS": 5}, "DEFORMABLE_GROUPS"),
        ({"MEMORY.CAPACITY": 0}, "MEMORY.CAPACITY"),
    ],
)
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises((ValueError, KeyError), match=match):
        _model(**overrides)


ABLATIONS = {
    "full": {},
    "wo_sam": {"USE_SAM": False},
    "wo_lim": {"USE_LIM": False},
    "wo_both": {"USE_SAM": False, "USE_LIM": False},
    "wo_fa": {"USE_ALIGNMENT": False},
    "wo_ma": {"USE_MASKED_ATTENTION": False},
}


def _prefixes(model):
    return {
        n.split(".")[0] if not n.startswith("sam.") else ".".join(n.split(".")[:2])
        for n, _ in model.named_parameters()
    }


def test_ablation_switches_change_the_module_set():
    sets = {name: _prefixes(_model(**o)) for name, o in ABLATIONS.items()}
    base = {"backbone", "rfb", "decoder"}
    assert sets["full"] == base | {"sam.align", "sam.harmonise", "lim"}
    assert sets["wo_sam"] == base | {"lim"}
    assert sets["wo_lim"] == base | {"sam.align", "sam.harmonise"}
    assert sets["wo_both"] == base
    assert sets["wo_fa"] == base | {"sam.harmonise", "lim"}
    assert sets["wo_ma"] == sets["full"]  # parameter-free switch...
    assert not _model(USE_MASKED_ATTENTION=False).lim.masked_attention  # ...of the LIM
    assert _model().align_readout  # SAM aligns the neighbour and the memory readout
    assert not _model(**{"SAM.ALIGN_READOUT": False}).align_readout  # the paper's text
    assert not _model(USE_ALIGNMENT=False).align_readout


# Parameters that legitimately get an exactly zero gradient on the first step: everything
# whose only path to the loss goes through a zero-initialised conv (the offset/mask conv of
# each deformable conv; the output conv of each non-local block).
def _expected_zero_grad(name: str) -> bool:
    return name.startswith(
        (
            "sam.align.offset_in.",
            "sam.align.offset_top.",
            "sam.align.offset_fuse.",
            "sam.align.offset_out.",
        )
    ) or (name.startswith("sam.harmonise.") and ".g." in name)


VARIANTS = {
    **ABLATIONS,
    "no_align_readout": {"SAM.ALIGN_READOUT": False},
    "public_flow": {"DATA_FLOW": "public"},
    # SmallCNN's res5 stage feeds nothing: frozen at construction (DDP needs every trainable
    # parameter used)
    "res2_res4": {"IN_FEATURES": ["res2", "res3", "res4"]},
}


@pytest.mark.parametrize("ablation", list(VARIANTS))
def test_every_parameter_gets_a_gradient(ablation):
    model = _model(**VARIANTS[ablation]).train()
    sum(model(_triplets()).values()).backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    res5 = {n for n, _ in model.named_parameters() if n.startswith("backbone.stages.2.")}
    assert frozen == (res5 if ablation == "res2_res4" else set())
    zero = set()
    for name, p in model.named_parameters():
        if name in frozen:
            assert p.grad is None
            continue
        assert p.grad is not None, f"{ablation}: {name} has no gradient"
        assert torch.isfinite(p.grad).all(), name
        if p.grad.abs().sum() == 0:
            zero.add(name)
    expected = {n for n, _ in model.named_parameters() if _expected_zero_grad(n)}
    assert zero == expected
    # With the zero-initialised convs perturbed, every gradient is non-zero.
    model.zero_grad()
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.endswith(
                ("offset_mask", "harmonise.0.out", "harmonise.1.out", "harmonise.2.out")
            ):
                mod.weight.normal_(0, 0.01)
    sum(model(_triplets()).values()).backward()
    for name, p in model.named_parameters():
        if name not in frozen:
            assert p.grad.abs().sum() > 0, f"{ablation}: {name} gets a zero gradient"


def test_streaming_output_read_before_write_and_cadence():
    model = _model(**{"MEMORY.WRITE_EVERY": 5}).eval()
    bank = model.banks[0]
    log = []
    read, write = bank.read, bank.write
    bank.read = lambda q: (log.append(("read", bank.stored_frames())), read(q))[1]
    bank.write = lambda k, v, t: (log.append(("write", t)), write(k, v, t))[1]
    outs = list(model.stream(_frames(12, 70, 90)))
    assert len(outs) == 12
    for o in outs:
        assert o["prob"].shape == (70, 90) and o["prob"].dtype == torch.float32
        assert 0 <= float(o["prob"].min()) and float(o["prob"].max()) <= 1
    # frame t reads frames < t (nothing at t = 0), then is written when t % 5 == 0
    expected, stored = [], []
    for t in range(12):
        if stored:
            expected.append(("read", list(stored)))
        if t % 5 == 0:
            expected.append(("write", t))
            stored.append(t)
    assert log == expected
    assert log[:3] == [("write", 0), ("read", [0]), ("read", [0])]
    assert bank.is_empty  # stream() resets at the end


def test_streaming_is_online():
    model = _model().eval()
    frames = list(_frames(8))
    a = [o["prob"] for o in model.stream(frames)]
    changed = frames[:5] + [dict(f, image=255 - f["image"]) for f in frames[5:]]
    b = [o["prob"] for o in model.stream(changed)]
    assert all(torch.equal(x, y) for x, y in zip(a[:5], b[:5]))
    assert not torch.allclose(a[5], b[5])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux) for RSS")
def test_streaming_memory_is_bounded():
    model = _model(**{"MEMORY.CAPACITY": 8, "MEMORY.WRITE_EVERY": 2}).eval()
    model.reset()
    stats = {}
    max_frames = 0
    with torch.no_grad():
        for t, frame in enumerate(_frames(500)):
            model.step(frame)
            max_frames = max(max_frames, max(b.num_frames for b in model.banks))
            if t + 1 in (50, 500):
                stats[t + 1] = (
                    [b.num_frames for b in model.banks],
                    sum(b.nbytes() for b in model.banks),
                    _live_tensors(),
                    _rss_bytes(),
                )
    assert max_frames == 8
    frames50, bytes50, tensors50, rss50 = stats[50]
    frames500, bytes500, tensors500, rss500 = stats[500]
    assert frames50 == frames500 == [8, 8, 8]
    assert bytes50 == bytes500 > 0
    assert tensors500 <= tensors50 + 2
    assert rss500 - rss50 < 40 * 2**20, f"RSS grew by {(rss500 - rss50) / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------- configs
def _load(path: str):
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(get_config_file(path))
    return resolve_clip_config(cfg)  # INPUT.CLIP.* from SALI's clip contract


def test_configs_load_and_build():
    sample = _load("sali_sample.yaml")
    assert sample.INPUT.CLIP.SAMPLING == "triplet" and sample.INPUT.CLIP.LENGTH == 3
    model = build_model(sample).train()
    losses = model(_triplets(1, *sample.INPUT.SIZE_TRAIN))
    # one loss per output, named by position whatever the levels (res2..res4 here)
    assert list(losses) == ["loss_global", "loss_coarse", "loss_middle", "loss_fine"]
    for name, timm_name in [("sali_pvtv2_b2", "pvt_v2_b2"), ("sali_pvtv2_b5", "pvt_v2_b5")]:
        cfg = _load(f"{name}.yaml")
        assert cfg.MODEL.BACKBONE.TIMM_NAME == timm_name
        assert cfg.MODEL.META_ARCHITECTURE == "SALI" and cfg.INPUT.SIZE_TRAIN == (352, 352)
        assert cfg.SOLVER.OPTIMIZER == "Adam" and cfg.SOLVER.IMS_PER_BATCH == 14
    cfg = _load("sali_pvtv2_b2.yaml")
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    model = build_model(cfg)
    shapes = model.backbone.output_shape()
    assert [(shapes[f].channels, shapes[f].stride) for f in model.in_features] == [
        (128, 8),
        (320, 16),
        (512, 32),
    ]
    with pytest.raises(ConfigError, match="MODEL.SALI.MEMORY.NOPE"):
        cfg = get_cfg()
        add_vps_config(cfg)
        cfg.merge_from_list(["MODEL.SALI.MEMORY.NOPE", "1"])


def test_deform_conv_runs_in_float32_under_cpu_autocast():
    """torchvision's CPU deform_conv2d has no bfloat16 kernel (SALI's AMP training failed on
    it): under autocast the layer computes in float32 and gives the fp32 result."""
    torch.manual_seed(0)
    conv = ModulatedDeformConv2d(8, 4, 3, deformable_groups=2)
    x = torch.randn(1, 8, 6, 10)
    offset = torch.randn(1, 2 * 2 * 9, 6, 10)
    mask = torch.rand(1, 2 * 9, 6, 10)
    ref = conv(x, offset, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x.bfloat16(), offset.bfloat16(), mask.bfloat16())
    assert out.dtype == torch.float32
    # only the bfloat16 rounding of the inputs differs
    torch.testing.assert_close(out, ref, atol=0.1, rtol=0.05)
    assert not torch.equal(out, torch.zeros_like(out))
