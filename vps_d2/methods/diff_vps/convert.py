"""Diff-VPS's generator checkpoint -> vps_d2 (``tools/convert_weights.py --from diff-vps``).

The format: the state dict of the public code's ``DiffVPS`` generator (its training script
saves ``model.state_dict()``, ``module.``-prefixed under DDP, as ``best_model_*.pt``; the
discriminator is a separate module and is not in it). The converted weights load into
``configs/diff_vps_pvtv2_b3_public.yaml``. Every tensor is mapped by the table below, by
name; nn.Linear weights of the per-level MLPs become 1x1 conv weights, and the SegFormer
encoders' separate ``key``/``value`` become timm's ``kv`` (key first).

| public (prefix)                                | vps_d2                                   |
|------------------------------------------------|------------------------------------------|
| encoder.segformer.encoder.* (transformers)     | backbone.image.body.* (timm pvt_v2)      |
| temporal_encoder.segformer.encoder.*           | backbone.temporal.body.*                 |
| encoder.classifier, temporal_encoder.classifier| unused (SegFormer's ADE20K classifiers)  |
| neck.inner_layer.{j} / neck.out_layer.{j}      | fpn.lateral.{j} / fpn.output.{j}         |
| embedding_table                                | mask_embed.embedding                     |
| transform.0 / .1 / .3                          | latent_fusion.norm / conv1.0 / conv2     |
| time_mlp.0.weights / .1 / .3                   | time_embed.freqs / mlp.0 / mlp.2         |
| decode_head.linear_c.{j}.proj (Linear)         | decode_head.proj.{j} (1x1 conv)          |
| decode_head.mlp_time_c.{j}.1                   | decode_head.film.{j}.proj.1              |
| decode_head.linear_fuse                        | decode_head.fuse                         |
| decode_head.batch_norm / classifier            | decode_head.predictor.0 / predictor.3    |
| decode_head.linear_clas                        | class_head.fc                            |
| decode_head.bbox_fuse                          | box_head.reduce                          |
| decode_head.linear_b_0 / linear_b_1            | box_head.mlp.layers.0 / layers.1         |
| reconstruct_decoder.linear_c.{j}.proj (Linear) | reconstruction.proj.{j} (1x1 conv)       |
| reconstruct_decoder.linear_fuse / batch_norm   | reconstruction.fuse.0 / fuse.1           |
| reconstruct_decoder.classifier                 | reconstruction.predictor                 |

The level order of the concatenations (coarsest first, SegFormer's) and of the latent
fusion's input ([H_1, z_t]) are those of the public code, so no channel is permuted.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vps_d2.checkpoint.convert import Rule, WeightConverter, register_converter
from vps_d2.modeling.backbone.convert import segformer_rules

__all__ = ["DiffVPSConverter"]

_P = r"(weight|bias)"
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def _table() -> list[Rule]:
    rules = [
        Rule(
            rf"(?:temporal_)?encoder\.classifier\.{_P}",
            ignore=True,
            reason="SegFormer's ADE20K image classifier, never used by the public model",
        ),
        Rule(rf"neck\.inner_layer\.(\d+)\.{_P}", r"fpn.lateral.\1.\2"),
        Rule(rf"neck\.out_layer\.(\d+)\.{_P}", r"fpn.output.\1.\2"),
        Rule(r"embedding_table\.weight", "mask_embed.embedding.weight"),
        Rule(rf"transform\.0\.{_BN}", r"latent_fusion.norm.\1"),
        Rule(rf"transform\.1\.{_P}", r"latent_fusion.conv1.0.\1"),
        Rule(rf"transform\.3\.{_P}", r"latent_fusion.conv2.\1"),
        Rule(r"time_mlp\.0\.weights", "time_embed.freqs"),
        Rule(rf"time_mlp\.1\.{_P}", r"time_embed.mlp.0.\1"),
        Rule(rf"time_mlp\.3\.{_P}", r"time_embed.mlp.2.\1"),
        Rule(
            rf"decode_head\.linear_c\.(\d+)\.proj\.{_P}",
            r"decode_head.proj.\1.\2",
            transform="linear_to_conv1x1",
        ),
        Rule(rf"decode_head\.mlp_time_c\.(\d+)\.1\.{_P}", r"decode_head.film.\1.proj.1.\2"),
        Rule(r"decode_head\.linear_fuse\.weight", "decode_head.fuse.weight"),
        Rule(rf"decode_head\.batch_norm\.{_BN}", r"decode_head.predictor.0.\1"),
        Rule(rf"decode_head\.classifier\.{_P}", r"decode_head.predictor.3.\1"),
        Rule(rf"decode_head\.linear_clas\.{_P}", r"class_head.fc.\1"),
        Rule(r"decode_head\.bbox_fuse\.weight", "box_head.reduce.weight"),
        Rule(rf"decode_head\.linear_b_0\.{_P}", r"box_head.mlp.layers.0.\1"),
        Rule(rf"decode_head\.linear_b_1\.{_P}", r"box_head.mlp.layers.1.\1"),
        Rule(
            rf"reconstruct_decoder\.linear_c\.(\d+)\.proj\.{_P}",
            r"reconstruction.proj.\1.\2",
            transform="linear_to_conv1x1",
        ),
        Rule(r"reconstruct_decoder\.linear_fuse\.weight", "reconstruction.fuse.0.weight"),
        Rule(rf"reconstruct_decoder\.batch_norm\.{_BN}", r"reconstruction.fuse.1.\1"),
        Rule(rf"reconstruct_decoder\.classifier\.{_P}", r"reconstruction.predictor.\1"),
    ]
    rules += segformer_rules(
        source_prefix="encoder.segformer.", target_prefix="backbone.image.body."
    )
    rules += segformer_rules(
        source_prefix="temporal_encoder.segformer.", target_prefix="backbone.temporal.body."
    )
    return rules


class DiffVPSConverter(WeightConverter):
    """Diff-VPS's public generator state dict -> DiffVPS with diff_vps_pvtv2_b3_public.yaml."""

    name = "diff-vps"
    version = 1
    description = "Diff-VPS generator checkpoints trained by the public code (best_model_*.pt)"
    config = "diff_vps_pvtv2_b3_public.yaml"
    signature = ("decode_head.linear_b_0.weight", "embedding_table.weight")

    def rules(self, state: Mapping[str, torch.Tensor]) -> list[Rule]:
        return _table()


register_converter(DiffVPSConverter())
