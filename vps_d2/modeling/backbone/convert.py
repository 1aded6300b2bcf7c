"""Backbone weight files: conversion tables and the remapping the backbone loader applies.

* :func:`pvt_v2_rules` -- the PVT authors' release names (``patch_embed1``, ``block1.0``,
  ``attn.q``/``attn.kv``, ``mlp.dwconv.dwconv``, ``norm1``; the names timm's
  ``pvt_v2.checkpoint_filter_fn`` maps) -> timm's ``pvt_v2``;
* :func:`segformer_rules` -- Hugging Face transformers' SegFormer (MiT) encoder names
  (``patch_embeddings.0``, ``block.0.0.attention.self.query`` / ``key`` / ``value``,
  ``mlp.dense1``, ``layer_norm.0``) -> timm's ``pvt_v2`` (key and value concatenated into
  timm's ``kv``, key first);
* converters ``--from pvt_v2`` / ``res2net`` / ``hrnet`` (``tools/convert_weights.py``): an
  official backbone file -> a state dict in timm's names (a file for MODEL.BACKBONE.WEIGHTS);
* :func:`remap_backbone_state` -- what :func:`~.timm_backbone.load_backbone_weights` applies
  to a backbone file: timm's own checkpoint filter of the model family (e.g.
  ``timm.models.pvt_v2.checkpoint_filter_fn``), then timm's feature-extractor names
  (``features_only`` flattens ``stages.0`` into ``stages_0``).

Target names: ``features=True`` gives the names of a ``features_only`` timm model (what
:class:`~.timm_backbone.TimmBackbone` holds as ``body``), ``False`` those of the full model.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping

import timm
import torch

from vps_d2.checkpoint.convert import Rule, WeightConverter, register_converter

__all__ = [
    "HRNetConverter",
    "PVTv2Converter",
    "Res2NetConverter",
    "pvt_v2_rules",
    "remap_backbone_state",
    "segformer_rules",
    "timm_filter",
]

logger = logging.getLogger(__name__)

_P = r"(weight|bias)"


def _esc(prefix: str) -> str:
    return prefix.replace(".", r"\.")


def _stage(i: int, features: bool) -> str:
    return f"stages_{i}" if features else f"stages.{i}"


def pvt_v2_rules(
    state: Mapping[str, torch.Tensor] | None = None,
    *,
    source_prefix: str = "",
    target_prefix: str = "",
    features: bool = True,
) -> list[Rule]:
    """Table: PVT release names (under ``source_prefix``) -> timm pvt_v2 (``target_prefix``).

    Stage i (1..4) of the release is timm's stage i - 1; ``patch_embed1`` is timm's stem
    ``patch_embed``, ``patch_embed{2,3,4}`` the stages' ``downsample``. The classification
    ``head`` is declared unused.
    """
    s, t = _esc(source_prefix), target_prefix
    rules = [
        Rule(rf"{s}patch_embed1\.(proj|norm)\.{_P}", rf"{t}patch_embed.\1.\2"),
        Rule(rf"{s}head\.{_P}", ignore=True, reason="ImageNet classifier (unused)"),
    ]
    for i in range(1, 4):
        rules.append(
            Rule(
                rf"{s}patch_embed{i + 1}\.(proj|norm)\.{_P}",
                rf"{t}{_stage(i, features)}.downsample.\1.\2",
            )
        )
    for i in range(4):
        st = _stage(i, features)
        rules.append(Rule(rf"{s}norm{i + 1}\.{_P}", rf"{t}{st}.norm.\1"))
        block = rf"{s}block{i + 1}\.(\d+)"
        for src, dst in (
            ("norm1", "norm1"),
            ("norm2", "norm2"),
            ("attn.q", "attn.q"),
            ("attn.kv", "attn.kv"),
            ("attn.sr", "attn.sr"),
            ("attn.norm", "attn.norm"),
            ("attn.proj", "attn.proj"),
            ("mlp.fc1", "mlp.fc1"),
            ("mlp.dwconv.dwconv", "mlp.dwconv"),
            ("mlp.fc2", "mlp.fc2"),
        ):
            rules.append(Rule(rf"{block}\.{_esc(src)}\.{_P}", rf"{t}{st}.blocks.\1.{dst}.\2"))
    return rules


def segformer_rules(
    *, source_prefix: str = "", target_prefix: str = "", features: bool = True
) -> list[Rule]:
    """Table: transformers' SegFormer encoder (``<source_prefix>encoder.*``, e.g.
    ``segformer.``) -> timm pvt_v2 (``target_prefix``). ``key`` and ``value`` become the two
    halves of timm's ``attn.kv`` (key first); ``<source_prefix>`` without ``encoder.`` is
    where SegformerForImageClassification's ``classifier`` is not: declare it separately."""
    s, t = _esc(source_prefix) + r"encoder\.", target_prefix
    rules = [Rule(rf"{s}patch_embeddings\.0\.(proj)\.{_P}", rf"{t}patch_embed.\1.\2")]
    rules.append(Rule(rf"{s}patch_embeddings\.0\.layer_norm\.{_P}", rf"{t}patch_embed.norm.\1"))
    for i in range(4):
        st = _stage(i, features)
        if i:
            rules.append(
                Rule(rf"{s}patch_embeddings\.{i}\.proj\.{_P}", rf"{t}{st}.downsample.proj.\1")
            )
            rules.append(
                Rule(rf"{s}patch_embeddings\.{i}\.layer_norm\.{_P}", rf"{t}{st}.downsample.norm.\1")
            )
        rules.append(Rule(rf"{s}layer_norm\.{i}\.{_P}", rf"{t}{st}.norm.\1"))
        block = rf"{s}block\.{i}\.(\d+)"
        for src, dst in (
            ("layer_norm_1", "norm1"),
            ("layer_norm_2", "norm2"),
            ("attention.self.query", "attn.q"),
            ("attention.self.sr", "attn.sr"),
            ("attention.self.layer_norm", "attn.norm"),
            ("attention.output.dense", "attn.proj"),
            ("mlp.dense1", "mlp.fc1"),
            ("mlp.dwconv.dwconv", "mlp.dwconv"),
            ("mlp.dense2", "mlp.fc2"),
        ):
            rules.append(Rule(rf"{block}\.{_esc(src)}\.{_P}", rf"{t}{st}.blocks.\1.{dst}.\2"))
        kv = rf"{t}{st}.blocks.\1.attn.kv.\2"
        rules.append(Rule(rf"{block}\.attention\.self\.key\.{_P}", kv, part=(0, 2)))
        rules.append(Rule(rf"{block}\.attention\.self\.value\.{_P}", kv, part=(1, 2)))
    return rules


# ------------------------------------------------------------------ backbone file converters
class PVTv2Converter(WeightConverter):
    """The PVT authors' release files (pvt_v2_b0..b5.pth) -> timm's pvt_v2 names."""

    name = "pvt_v2"
    version = 1
    description = "PVTv2 release files of the PVT authors (pvt_v2_b2.pth, pvt_v2_b5.pth)"
    target = "backbone"
    signature = ("patch_embed1.proj.weight", "block1.0.attn.q.weight")

    def rules(self, state):
        return pvt_v2_rules(state, features=False)


class Res2NetConverter(WeightConverter):
    """Res2Net release files (res2net50_v1b_26w_4s, Gao et al.) -> timm's res2net50d names.

    The names are timm's already (timm ported these files): the table lists the module
    families (stem conv1 or the v1b deep stem conv1.0-6, bn1; layer1-4 with conv1/bn1,
    convs/bns, conv3/bn3, downsample) and keeps the ImageNet classifier ``fc`` (timm's full
    model has it; the features_only backbone leaves it out when loading)."""

    name = "res2net"
    version = 1
    description = "Res2Net-50 v1b release files (timm res2net50d)"
    target = "backbone"
    signature = ("layer1.0.convs.0.weight", "layer1.0.bns.0.weight")

    def rules(self, state):
        t = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
        block = r"layer\d+\.\d+\.(?:conv1|bn1|conv3|bn3|convs\.\d+|bns\.\d+|downsample\.\d+)"
        return [
            Rule(rf"(conv1\.\d+|bn1)\.{t}", r"\1.\2"),  # stem (deep in v1b: conv1.0-6)
            Rule(rf"({block})\.{t}", r"\1.\2"),
            Rule(rf"fc\.{_P}", r"fc.\1"),
        ]


class HRNetConverter(WeightConverter):
    """HRNet release files (HRNet-Image-Classification, hrnetv2_w48_imagenet_pretrained.pth)
    -> timm's hrnet names (the same module families: stem conv1/bn1/conv2/bn2, layer1,
    transition1-3, stage2-4, incre_modules, downsamp_modules, final_layer, classifier).
    A features_only backbone (MODEL.BACKBONE.TIMM_KWARGS feature_location '') uses the stem
    to stage4 only; the loader then leaves the rest out."""

    name = "hrnet"
    version = 1
    description = "HRNet-W48 release files (timm hrnet_w48)"
    target = "backbone"
    signature = ("transition1.0.0.weight", "stage2.0.branches.0.0.conv1.weight")

    def rules(self, state):
        families = (
            r"conv1|bn1|conv2|bn2|layer1|transition\d|stage\d|incre_modules|downsamp_modules|"
            r"final_layer|classifier"
        )
        return [Rule(rf"((?:{families})(?:\.\w+)*)", r"\1")]


for _conv in (PVTv2Converter(), Res2NetConverter(), HRNetConverter()):
    register_converter(_conv)


# ------------------------------------------------------------------ loader remapping
def timm_filter(model_name: str, state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """timm's own ``checkpoint_filter_fn`` of ``model_name``'s family applied to ``state``
    (the original releases' names -> timm's); unchanged when the family has none."""
    try:
        module = importlib.import_module(timm.models.model_entrypoint(model_name).__module__)
    except (RuntimeError, KeyError, ImportError):
        return state
    # timm < 1.0.7 names it with a leading underscore (pvt_v2 in 1.0.3)
    fn = getattr(module, "checkpoint_filter_fn", None) or getattr(
        module, "_checkpoint_filter_fn", None
    )
    if fn is None:
        return state
    try:
        return dict(fn(state, model))
    except Exception as e:  # noqa: BLE001 - a filter that cannot handle the file: keep it as is
        logger.debug("timm checkpoint filter of %s not applied: %s", model_name, e)
        return state


def remap_backbone_state(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], model_name: str, model
) -> dict[str, torch.Tensor]:
    """A backbone file's tensors -> the names of the features model ``own``: timm's filter
    (:func:`timm_filter`), then for every name not in ``own`` the feature extractor's
    flattened name (``stages.0.x`` -> ``stages_0.x``) when that one is. Names that still
    match nothing are kept (the loader reports them)."""
    state = dict(state)
    if model_name:
        state = timm_filter(model_name, state, model)
    out = {}
    for k, v in state.items():
        if k not in own and "." in k:
            flat = k.replace(".", "_", 1)
            if flat in own:
                k = flat
        out[k] = v
    return out
