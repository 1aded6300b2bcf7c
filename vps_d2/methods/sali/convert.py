"""SALI's published checkpoint -> vps_d2 (``tools/convert_weights.py --from sali``).

The format: the state dict of the public code's ``VideoModel`` (saved with
``torch.save(model.state_dict())``; its test script loads ``Net_epoch_8_best.pth``). The
converted weights load into ``configs/sali_pvtv2_b5_public.yaml`` (PVTv2-B5, the public data
flow). Every tensor is mapped by the table below, by name; levels are numbered finest
first in vps_d2 (public: ``l1``/``nl_layer1``/``Key0``/``rfb2_1``/``RS3`` are the finest).

| public (prefix)                                   | vps_d2                              |
|---------------------------------------------------|-------------------------------------|
| backbone.feat_net.pvtv2_en.* (PVT release names)  | backbone.body.* (timm, features)    |
| backbone.feat_net.rfb{2,3,4}_1.branch0.0          | rfb.{0,1,2}.branches.0              |
| backbone.feat_net.rfb*_1.branch{k}.{j}            | rfb.*.branches.{k}.{j}              |
| backbone.feat_net.rfb*_1.conv_cat / conv_res      | rfb.*.fuse / rfb.*.shortcut         |
| (BasicConv2d) .conv / .bn                         | (ConvNormAct) .0 / .1               |
| backbone.decoder.NCD.conv_upsample1..5            | decoder.ncd.up_c_to_b, up_b1_to_a,  |
|                                                   | up_b_to_a, cat_c, cat_b_up          |
| backbone.decoder.NCD.conv_concat2/3, conv4, conv5 | decoder.ncd.cat_b, cat_a, head.0/1  |
| backbone.decoder.RS{3,4,5}                        | decoder.stages.{0,1,2}              |
| RS*.{weak,medium,strong}_gra.conv.0 / score       | stages.*.gras.{0,1,2}.conv.0/score  |
| pcd_align.offset_conv1.l{1,2,3}                   | sam.align.offset_in.{0,1,2}         |
| pcd_align.offset_conv2.l3                         | sam.align.offset_top                |
| pcd_align.offset_conv2.l{1,2} / offset_conv3.l*   | sam.align.offset_fuse.* / offset_out|
| pcd_align.dcn_pack.l*.weight/bias                 | sam.align.dcn.*.dcn.weight/bias     |
| pcd_align.dcn_pack.l*.conv_offset                 | sam.align.dcn.*.offset_mask         |
| pcd_align.feat_conv.l{1,2}                        | sam.align.feat_fuse.{0,1}           |
| nlnet.nl_layer{1,2,3}.g.0 / W / residual_conv     | sam.harmonise.{0,1,2}.g / out / fuse|
| nlnet.conv{1,2,3}.conv / .bn                      | sam.harmonise.*.proj.0 / proj.1     |
| membranch.Key{0,1,2} / Value{0,1,2}               | lim.key_proj.* / lim.value_proj.*   |

No tensor of the public model is unused.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vps_d2.checkpoint.convert import Rule, WeightConverter, register_converter
from vps_d2.modeling.backbone.convert import pvt_v2_rules

__all__ = ["SALIConverter"]

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_P = r"(weight|bias)"


def _basic(src: str, dst: str) -> list[Rule]:
    """A public BasicConv2d (conv without bias + BN) -> a ConvNormAct (0: conv, 1: BN)."""
    return [
        Rule(rf"{src}\.conv\.weight", f"{dst}.0.weight"),
        Rule(rf"{src}\.bn\.{_BN}", rf"{dst}.1.\1"),
    ]


def _table() -> list[Rule]:
    rules: list[Rule] = []
    # RFBs (one per level; public names after the PVT stage: rfb2_1 is stage 2 = res3).
    for lvl, stage in enumerate((2, 3, 4)):
        src, dst = rf"backbone\.feat_net\.rfb{stage}_1", f"rfb.{lvl}"
        rules += _basic(rf"{src}\.branch0\.0", f"{dst}.branches.0")
        for k in (1, 2, 3):
            for j in range(4):
                rules += _basic(rf"{src}\.branch{k}\.{j}", f"{dst}.branches.{k}.{j}")
        rules += _basic(rf"{src}\.conv_cat", f"{dst}.fuse")
        rules += _basic(rf"{src}\.conv_res", f"{dst}.shortcut")
    # Neighbour connection decoder.
    ncd = {
        "conv_upsample1": "up_c_to_b",
        "conv_upsample2": "up_b1_to_a",
        "conv_upsample3": "up_b_to_a",
        "conv_upsample4": "cat_c",
        "conv_upsample5": "cat_b_up",
        "conv_concat2": "cat_b",
        "conv_concat3": "cat_a",
        "conv4": "head.0",
    }
    for src, dst in ncd.items():
        rules += _basic(rf"backbone\.decoder\.NCD\.{src}", f"decoder.ncd.{dst}")
    rules.append(Rule(rf"backbone\.decoder\.NCD\.conv5\.{_P}", r"decoder.ncd.head.1.\1"))
    # Reverse stages: RS3 (finest) .. RS5; GRAs weak (1 group), medium (4), strong (32).
    for lvl, rs in enumerate((3, 4, 5)):
        for g, gra in enumerate(("weak", "medium", "strong")):
            src, dst = rf"backbone\.decoder\.RS{rs}\.{gra}_gra", f"decoder.stages.{lvl}.gras.{g}"
            rules.append(Rule(rf"{src}\.conv\.0\.{_P}", rf"{dst}.conv.0.\1"))
            rules.append(Rule(rf"{src}\.score\.{_P}", rf"{dst}.score.\1"))
    # Pyramid alignment (l1 finest .. l3 coarsest).
    for lvl in range(3):
        dst = "sam.align"
        rules.append(
            Rule(rf"pcd_align\.offset_conv1\.l{lvl + 1}\.{_P}", rf"{dst}.offset_in.{lvl}.\1")
        )
        if lvl == 2:
            rules.append(Rule(rf"pcd_align\.offset_conv2\.l3\.{_P}", rf"{dst}.offset_top.\1"))
        else:
            rules.append(
                Rule(rf"pcd_align\.offset_conv2\.l{lvl + 1}\.{_P}", rf"{dst}.offset_fuse.{lvl}.\1")
            )
            rules.append(
                Rule(rf"pcd_align\.offset_conv3\.l{lvl + 1}\.{_P}", rf"{dst}.offset_out.{lvl}.\1")
            )
            rules.append(
                Rule(rf"pcd_align\.feat_conv\.l{lvl + 1}\.{_P}", rf"{dst}.feat_fuse.{lvl}.\1")
            )
        rules.append(Rule(rf"pcd_align\.dcn_pack\.l{lvl + 1}\.{_P}", rf"{dst}.dcn.{lvl}.dcn.\1"))
        rules.append(
            Rule(
                rf"pcd_align\.dcn_pack\.l{lvl + 1}\.conv_offset\.{_P}",
                rf"{dst}.dcn.{lvl}.offset_mask.\1",
            )
        )
    # Non-local fusion and its convs, one per level.
    for lvl in range(3):
        src, dst = rf"nlnet\.nl_layer{lvl + 1}", f"sam.harmonise.{lvl}"
        rules.append(Rule(rf"{src}\.g\.0\.{_P}", rf"{dst}.g.\1"))
        rules.append(Rule(rf"{src}\.W\.{_P}", rf"{dst}.out.\1"))
        rules.append(Rule(rf"{src}\.residual_conv\.{_P}", rf"{dst}.fuse.\1"))
        rules += _basic(rf"nlnet\.conv{lvl + 1}", f"{dst}.proj")
    # LIM key/value projections.
    for lvl in range(3):
        rules.append(Rule(rf"membranch\.Key{lvl}\.{_P}", rf"lim.key_proj.{lvl}.\1"))
        rules.append(Rule(rf"membranch\.Value{lvl}\.{_P}", rf"lim.value_proj.{lvl}.\1"))
    return rules


class SALIConverter(WeightConverter):
    """SALI's public ``VideoModel`` state dict -> SALI with sali_pvtv2_b5_public.yaml."""

    name = "sali"
    version = 1
    description = "SALI's released checkpoint (Net_epoch_8_best.pth, Scatteredrain/SALI)"
    config = "sali_pvtv2_b5_public.yaml"
    signature = ("pcd_align.offset_conv1.l3.weight", "membranch.Key0.weight")

    def rules(self, state: Mapping[str, torch.Tensor]) -> list[Rule]:
        return _table() + pvt_v2_rules(
            state, source_prefix="backbone.feat_net.pvtv2_en.", target_prefix="backbone.body."
        )


register_converter(SALIConverter())
