"""Diff-VPS's converter on the public generator's manifest, and the semantics of the modules
where the public code fixes what the paper leaves open (written from the public code's
facts, independently of vps_d2's modules)."""

import json
import os
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork

from vps_d2.checkpoint.convert import CONVERTER_REGISTRY
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.methods.diff_vps.encoders import PriorFPN
from vps_d2.methods.diff_vps.heads import BoxHead, LatentFusion
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model

torch.set_num_threads(1)

MANIFEST = os.path.join(os.path.dirname(__file__), "data", "public_manifest.json")


def _manifest():
    with open(MANIFEST) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def public_model():
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(get_config_file("configs/diff_vps_pvtv2_b3_public.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    return build_model(cfg)


def test_manifest_maps_completely_and_loads_strictly(public_model):
    m = _manifest()
    gen = torch.Generator().manual_seed(0)
    state = {
        k: torch.randn(v, generator=gen) if v else torch.tensor(3) for k, v in m["tensors"].items()
    }
    res = CONVERTER_REGISTRY.get("diff-vps").convert(state)
    assert res.unmapped == [] and sorted(res.ignored) == sorted(m["unused"])
    own = public_model.state_dict()
    assert sorted(res.state_dict) == sorted(own)
    assert all(res.state_dict[k].shape == own[k].shape for k in own)
    public_model.load_state_dict(res.state_dict, strict=True)
    unused = sum(state[k].numel() for k in m["unused"])
    assert sum(p.numel() for p in public_model.parameters()) == m["parameters"] - unused
    sd = public_model.state_dict()
    enc = "encoder.segformer.encoder.block.2.17.attention.self."
    kv = sd["backbone.image.body.stages_2.blocks.17.attn.kv.weight"]
    assert torch.equal(kv, torch.cat([state[enc + "key.weight"], state[enc + "value.weight"]]))
    proj = sd["decode_head.proj.3.weight"]
    assert proj.shape == (768, 64, 1, 1)
    assert torch.equal(proj[:, :, 0, 0], state["decode_head.linear_c.3.proj.weight"])
    assert torch.equal(
        sd["backbone.temporal.body.stages_3.norm.weight"],
        state["temporal_encoder.segformer.encoder.layer_norm.3.weight"],
    )
    assert all(
        m.eps == 1e-5 for m in public_model.backbone.modules() if isinstance(m, torch.nn.LayerNorm)
    )


def test_fpn_top_down_per_level_formula():
    torch.manual_seed(0)
    chans = [3, 5, 6, 7]
    fpn = PriorFPN(chans, 4, top_down="lateral").eval()
    feats = [torch.randn(2, c, s, s) for c, s in zip(chans, (16, 8, 4, 2))]
    lat = [conv(f) for conv, f in zip(fpn.lateral, feats)]
    up = [F.interpolate(lat[j + 1], size=lat[j].shape[-2:], mode="nearest") for j in range(3)]
    want = [fpn.output[j](lat[j] + up[j]) for j in range(3)] + [fpn.output[3](lat[3])]
    with torch.no_grad():
        got = fpn(feats)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want))
    # "cumulative" is the usual FPN: torchvision's with the same weights
    cum = PriorFPN(chans, 4, top_down="cumulative").eval()
    cum.load_state_dict(fpn.state_dict())
    tv = FeaturePyramidNetwork(chans, 4).eval()
    for j in range(4):
        tv.inner_blocks[j][0].load_state_dict(fpn.lateral[j].state_dict())
        tv.layer_blocks[j][0].load_state_dict(fpn.output[j].state_dict())
    with torch.no_grad():
        ref = list(tv(OrderedDict((str(i), f) for i, f in enumerate(feats))).values())
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(cum(feats), ref))
        assert not torch.allclose(cum(feats)[0], got[0])
    with pytest.raises(ValueError, match="FPN_TOP_DOWN"):
        PriorFPN(chans, 4, top_down="other")


def test_box_head_relu_and_level_order():
    torch.manual_seed(0)
    head = BoxHead([2, 3, 4], channels=5, hidden=6, act="relu").eval()
    levels = [torch.randn(2, c, s, s) for c, s in zip((2, 3, 4), (8, 4, 2))]
    cat = torch.cat(
        [F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False) for x in levels[::-1]],
        1,
    )  # coarsest first, as SegFormer's heads
    pooled = F.conv2d(cat, head.reduce.weight).mean((2, 3))
    l0, l1 = head.mlp.layers
    want = F.relu(l1(F.relu(l0(pooled))))
    with torch.no_grad():
        assert torch.allclose(head(levels), want, atol=1e-6)
    assert head.reduce.bias is None
    with pytest.raises(ValueError, match="BOX_ACT"):
        BoxHead([2], act="tanh")


def test_latent_fusion_takes_h1_first():
    torch.manual_seed(0)
    lf = LatentFusion(3, 3, hidden=4).eval()
    h1, z = torch.randn(1, 3, 5, 5), torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        want = lf.conv2(lf.conv1(lf.norm(torch.cat([h1, z], 1))))
        assert torch.allclose(lf(z, h1), want)
