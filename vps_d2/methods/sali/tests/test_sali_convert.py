"""SALI's converter on the public model's manifest, and the semantics of the modules where
the public code fixes what the paper leaves open (each written from the public code's
facts, independently of vps_d2's modules)."""

import json
import os

import pytest
import timm
import torch
import torch.nn.functional as F

from vps_d2.checkpoint.convert import CONVERTER_REGISTRY, WeightConverter
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.methods.sali.alignment import NonLocalFusion, PyramidAlignment
from vps_d2.methods.sali.decoder import NeighbourConnectionDecoder, ReverseStage
from vps_d2.methods.sali.lim import LongTermInteraction
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model
from vps_d2.modeling.backbone.convert import pvt_v2_rules

torch.set_num_threads(1)

MANIFEST = os.path.join(os.path.dirname(__file__), "data", "public_manifest.json")


def _timm_pvt_filter(state, model):
    """timm's own pvt_v2 filter, the independent reference (timm < 1.0.7 names it
    ``_checkpoint_filter_fn``)."""
    module = timm.models.pvt_v2
    fn = getattr(module, "checkpoint_filter_fn", None) or module._checkpoint_filter_fn
    return fn(state, model)


def _manifest():
    with open(MANIFEST) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def public_model():
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(get_config_file("configs/sali_pvtv2_b5_public.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    return build_model(cfg)


def test_manifest_maps_completely_and_loads_strictly(public_model):
    m = _manifest()
    gen = torch.Generator().manual_seed(0)
    state = {
        k: torch.randn(v, generator=gen) if v else torch.tensor(3) for k, v in m["tensors"].items()
    }
    assert sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked")) == (
        m["parameters"]
        + sum(v.numel() for k, v in state.items() if k.endswith(("running_mean", "running_var")))
    )
    res = CONVERTER_REGISTRY.get("sali").convert(state)
    assert res.unmapped == [] and sorted(res.ignored) == m["unused"] == []
    own = public_model.state_dict()
    assert sorted(res.state_dict) == sorted(own)
    assert all(res.state_dict[k].shape == own[k].shape for k in own)
    public_model.load_state_dict(res.state_dict, strict=True)
    assert sum(p.numel() for p in public_model.parameters()) == m["parameters"]
    # values travel unchanged (a few spot checks across the table)
    for src, dst in [
        ("pcd_align.offset_conv2.l3.weight", "sam.align.offset_top.weight"),
        ("nlnet.nl_layer3.residual_conv.weight", "sam.harmonise.2.fuse.weight"),
        ("backbone.decoder.RS5.medium_gra.conv.0.bias", "decoder.stages.2.gras.1.conv.0.bias"),
        (
            "backbone.decoder.NCD.conv_upsample5.bn.running_var",
            "decoder.ncd.cat_b_up.1.running_var",
        ),
        ("membranch.Value2.weight", "lim.value_proj.2.weight"),
        (
            "backbone.feat_net.pvtv2_en.block3.39.mlp.dwconv.dwconv.weight",
            "backbone.body.stages_2.blocks.39.mlp.dwconv.weight",
        ),
    ]:
        assert torch.equal(public_model.state_dict()[dst], state[src]), src


def test_backbone_rows_agree_with_timms_pvt_filter():
    prefix = "backbone.feat_net.pvtv2_en."
    release = {
        k[len(prefix) :]: torch.empty(0) for k in _manifest()["tensors"] if k.startswith(prefix)
    }
    model = timm.create_model("pvt_v2_b0")  # the filter does not look at the model's size
    filtered = _timm_pvt_filter(release, model)

    class Full(WeightConverter):
        name = "full"

        def rules(self, state):
            return pvt_v2_rules(state, features=False)

    assert sorted(Full().convert(release).state_dict) == sorted(filtered)


# ---------------------------------------------------------------------------- semantics
def _bn_eval(conv_bn, x):
    """conv (no bias) + BN in eval mode, by hand."""
    conv, bn = conv_bn[0], conv_bn[1]
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.5)
    return module.eval()


def test_ncd_has_no_relu_and_upsamples_with_align_corners():
    ncd = _randomise(NeighbourConnectionDecoder(4))
    g = torch.Generator().manual_seed(1)
    fa, fb, fc = (torch.randn(1, 4, s, s, generator=g) for s in (12, 6, 3))

    def up(x):  # the public code: nn.Upsample(scale_factor=2, bilinear, align_corners=True)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)

    x2_1 = _bn_eval(ncd.up_c_to_b, up(fc)) * fb
    x3_1 = _bn_eval(ncd.up_b1_to_a, up(x2_1)) * _bn_eval(ncd.up_b_to_a, up(fb)) * fa
    x2_2 = _bn_eval(ncd.cat_b, torch.cat([x2_1, _bn_eval(ncd.cat_c, up(fc))], 1))
    x3_2 = _bn_eval(ncd.cat_a, torch.cat([x3_1, _bn_eval(ncd.cat_b_up, up(x2_2))], 1))
    expected = ncd.head[1](_bn_eval(ncd.head[0], x3_2))
    with torch.no_grad():
        out = ncd(fa, fb, fc)
        assert torch.allclose(out, expected, atol=1e-5)
        assert (_bn_eval(ncd.up_c_to_b, up(fc)) < 0).any()  # a ReLU would have changed it


def test_reverse_stage_is_sinet_v2s():
    stage = _randomise(ReverseStage(8, groups=(1, 4, 8)))
    g = torch.Generator().manual_seed(2)
    x, guide = torch.randn(2, 8, 5, 5, generator=g), torch.randn(2, 1, 5, 5, generator=g)
    y = 1 - torch.sigmoid(guide)  # reversed ONCE
    xx = x
    for gra, n in zip(stage.gras, (1, 4, 8)):
        parts = []
        for chunk in torch.chunk(xx, n, dim=1):
            parts += [chunk, y]
        conv = gra.conv[0]
        xx = xx + F.relu(F.conv2d(torch.cat(parts, 1), conv.weight, conv.bias, padding=1))
        y = y + gra.score(xx)
    with torch.no_grad():
        assert torch.allclose(stage(x, guide), y + guide, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in stage.modules())


@pytest.mark.parametrize("ceil_mode, keys", [(False, 1), (True, 4)])
def test_non_local_fusion_shapes_and_formula(ceil_mode, keys):
    c = 4
    nl = _randomise(NonLocalFusion(channels=c, pool_size=8, ceil_mode=ceil_mode))
    shapes = {n: tuple(p.shape) for n, p in nl.named_parameters()}
    assert shapes["g.weight"] == (c, 2 * c, 1, 1) and shapes["out.weight"] == (2 * c, c, 1, 1)
    assert shapes["fuse.weight"] == (2 * c, 4 * c, 1, 1)
    assert shapes["proj.0.weight"] == (c, 2 * c, 3, 3) and "proj.0.bias" not in shapes
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(1, c, 11, 11, generator=g), torch.randn(1, c, 11, 11, generator=g)
    x = torch.cat([a, b], 1)
    pool = torch.nn.MaxPool2d(8, ceil_mode=ceil_mode)  # floor: one 8x8 window on 11x11
    phi = pool(x).flatten(2)
    assert phi.shape[-1] == keys
    theta = x.flatten(2).transpose(1, 2)
    gx = pool(nl.g(x)).flatten(2).transpose(1, 2)
    y = (torch.softmax(theta @ phi, -1) @ gx).transpose(1, 2).reshape(1, c, 11, 11)
    z = x + nl.out(y)
    expected = _bn_eval(nl.proj, nl.fuse(torch.cat([x, z], 1)))
    with torch.no_grad():
        assert torch.allclose(nl(a, b), expected, atol=1e-5)


def test_pyramid_alignment_uses_a_second_offset_conv_at_the_coarsest_level():
    pa = _randomise(PyramidAlignment(channels=8, num_levels=3, deformable_groups=2))
    with torch.no_grad():  # offsets of about a pixel (not all samples off the small maps)
        for dcn in pa.dcn:
            dcn.offset_mask.weight.mul_(0.05)
    g = torch.Generator().manual_seed(4)
    src = [torch.randn(1, 8, s, s, generator=g) for s in (8, 4, 2)]
    ref = [torch.randn(1, 8, s, s, generator=g) for s in (8, 4, 2)]
    with torch.no_grad():
        before = pa(src, ref)
        pa.offset_top.weight.add_(1.0)
        after = pa(src, ref)
    assert all(not torch.allclose(x, y) for x, y in zip(before, after))


def test_memory_write_weights_each_level_with_its_own_map():
    lim = LongTermInteraction(channels=8, value_channels=4, masked_attention=True)
    from vps_d2.modeling.memory import MemoryBank

    lim.banks = [MemoryBank(capacity=3, write_every=1, top_k=0) for _ in range(3)]
    vals = [torch.ones(1, 4, s, s) for s in (4, 2, 1)]
    keys = [torch.zeros(1, 2, s, s) for s in (4, 2, 1)]
    maps = [torch.randn(1, 1, s, s) for s in (4, 2, 1)]
    lim.write_banks(keys, vals, maps, 0)
    for bank, m in zip(lim.banks, maps):
        stored = bank.read(torch.zeros(1, 2, m.numel()))  # uniform read: the stored mean
        want = (torch.softmax(m.flatten(), 0) + 1).mean()
        assert torch.allclose(stored, want.expand_as(stored), atol=1e-5)


def test_public_flow_config_and_errors():
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(get_config_file("sali_sample.yaml"))
    cfg.MODEL.SALI.DATA_FLOW = "public"
    cfg.MODEL.SALI.USE_LIM = False
    with pytest.raises(ValueError, match="DATA_FLOW 'public' needs USE_SAM, USE_LIM"):
        build_model(cfg)
    cfg.MODEL.SALI.USE_LIM = True
    cfg.MODEL.SALI.DATA_FLOW = "other"
    with pytest.raises(ValueError, match="MODEL.SALI.DATA_FLOW must be one of"):
        build_model(cfg)
