"""The conversion core (vps_d2/checkpoint/convert.py), the backbone tables and loader, and
tools/convert_weights.py on small models (the methods' converters are tested in their
folders, on the public models' manifests)."""

import os
import re
import subprocess
import sys

import pytest
import timm
import torch
from train_net_runner import ROOT

from vps_d2.checkpoint import CheckpointError, load_model_weights
from vps_d2.checkpoint.convert import (
    CONVERTER_REGISTRY,
    ConversionError,
    Rule,
    WeightConverter,
    detect_source,
    read_state_dict,
    save_converted,
    unwrap_state_dict,
)
from vps_d2.modeling.backbone import TimmBackbone
from vps_d2.modeling.backbone.convert import pvt_v2_rules
from vps_d2.modeling.backbone.timm_backbone import set_layer_norm_eps

torch.set_num_threads(1)


class _Toy(WeightConverter):
    name = "toy-test"
    signature = ("a.w",)

    def rules(self, state):
        return [
            Rule(r"a\.(w|b)", r"x.\1"),
            Rule(r"k\.w", "kv.w", part=(0, 2)),
            Rule(r"v\.w", "kv.w", part=(1, 2)),
            Rule(r"lin\.w", "conv.w", transform="linear_to_conv1x1"),
            Rule(r"head\..*", ignore=True, reason="classifier"),
        ]


def _timm_pvt_filter(state, model):
    """timm's own pvt_v2 filter, the independent reference (timm < 1.0.7 names it
    ``_checkpoint_filter_fn``)."""
    module = timm.models.pvt_v2
    fn = getattr(module, "checkpoint_filter_fn", None) or module._checkpoint_filter_fn
    return fn(state, model)


def test_unwrap_wrappers_and_ddp_prefix():
    sd = {"a.w": torch.ones(2), "a.b": torch.zeros(2)}
    ddp = {f"module.{k}": v for k, v in sd.items()}
    for wrapped in (sd, ddp, {"state_dict": ddp}, {"model": sd, "epoch": 3}, {"net": ddp}):
        assert sorted(unwrap_state_dict(wrapped)) == ["a.b", "a.w"]
    with pytest.raises(ConversionError, match="no tensors"):
        unwrap_state_dict({"epoch": 3})


def test_read_state_dict_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_state_dict(str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="bad.pth"):
        read_state_dict(str(bad))


def test_table_maps_parts_transforms_and_reports():
    k, v, lin = torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 6)
    state = {"a.w": torch.ones(1), "k.w": k, "v.w": v, "lin.w": lin, "head.w": torch.ones(1)}
    state["extra.w"] = torch.ones(1)
    res = _Toy().convert(state)
    assert torch.equal(res.state_dict["kv.w"], torch.cat([k, v]))  # key first
    assert res.state_dict["conv.w"].shape == (5, 6, 1, 1)
    assert torch.equal(res.state_dict["conv.w"][:, :, 0, 0], lin)
    assert res.unmapped == ["extra.w"] and res.ignored == {"head.w": "classifier"}
    assert res.sources["kv.w"] == ["k.w", "v.w"]
    with pytest.raises(ConversionError, match=r"part\(s\) \[1\] are missing"):
        _Toy().convert({"k.w": k})


def test_ambiguous_table_is_an_error():
    class Ambiguous(_Toy):
        def rules(self, state):
            return [Rule(r"a\..*", "x"), Rule(r"a\.w", "y")]

    with pytest.raises(ConversionError, match="matches 2 rules"):
        Ambiguous().convert({"a.w": torch.ones(1)})


def test_detect_source_names_the_converter():
    assert (
        detect_source({"pcd_align.offset_conv1.l3.weight": 0, "membranch.Key0.weight": 0}).name
        == "sali"
    )
    assert detect_source({"x": 0}) is None
    assert {"sali", "diff-vps", "pvt_v2", "res2net", "hrnet"} <= {n for n, _ in CONVERTER_REGISTRY}


def _release_names(state):
    """timm pvt_v2 (full model) names -> the PVT authors' release names (written here from
    the release's module layout, independently of the tables under test)."""
    out = {}
    for key, val in state.items():
        k = key
        k = re.sub(r"^patch_embed\.", "patch_embed1.", k)
        k = re.sub(r"^stages\.(\d)\.downsample\.", lambda m: f"patch_embed{int(m[1]) + 1}.", k)
        k = re.sub(r"^stages\.(\d)\.blocks\.", lambda m: f"block{int(m[1]) + 1}.", k)
        k = re.sub(r"^stages\.(\d)\.norm\.", lambda m: f"norm{int(m[1]) + 1}.", k)
        k = k.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        out[k] = val
    return out


def test_pvt_v2_table_agrees_with_timms_checkpoint_filter():
    model = timm.create_model("pvt_v2_b0")
    release = _release_names(model.state_dict())
    filtered = _timm_pvt_filter(release, model)
    res = CONVERTER_REGISTRY.get("pvt_v2").convert(release)
    assert not res.unmapped and sorted(res.ignored) == ["head.bias", "head.weight"]
    assert sorted(res.state_dict) == sorted(k for k in filtered if not k.startswith("head."))
    assert all(torch.equal(res.state_dict[k], filtered[k]) for k in res.state_dict)
    # features=True gives the names of timm's features_only model (TimmBackbone.body)
    body = timm.create_model("pvt_v2_b0", features_only=True).state_dict()
    rules = pvt_v2_rules(release, features=True)

    class F(WeightConverter):
        name = "f"

        def rules(self, state):
            return rules

    assert sorted(F().convert(release).state_dict) == sorted(body)


@pytest.mark.parametrize(
    "name, timm_name, head",
    [("res2net", "res2net50d", ["fc.bias", "fc.weight"]), ("hrnet", "hrnet_w18_small", [])],
)
def test_res2net_hrnet_tables_cover_the_release_names(name, timm_name, head):
    # timm's res2net/hrnet names are the releases' (timm ported those files unchanged)
    state = timm.create_model(timm_name).state_dict()
    conv = CONVERTER_REGISTRY.get(name)
    assert conv.matches(state)
    res = conv.convert(state)
    assert not res.unmapped and sorted(res.state_dict) == sorted(state)
    assert all(torch.equal(res.state_dict[k], v) for k, v in state.items())
    assert all(k in res.state_dict for k in head)


def test_backbone_loader_reads_a_release_file(tmp_path):
    torch.manual_seed(0)
    src = timm.create_model("pvt_v2_b0")
    path = tmp_path / "pvt_v2_b0.pth"
    torch.save({"state_dict": _release_names(src.state_dict())}, path)
    bb = TimmBackbone(model_name="pvt_v2_b0", out_indices=(0, 1, 2, 3), weights=str(path))
    ref = src.state_dict()
    for k, v in bb.body.state_dict().items():
        assert torch.equal(v, ref[k.replace("stages_", "stages.", 1)]), k


def test_layer_norm_eps():
    bb = timm.create_model("pvt_v2_b0", features_only=True)
    n = set_layer_norm_eps(bb, 1e-5)
    eps = {m.eps for m in bb.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert n > 0 and eps == {1e-5}


def test_model_weights_on_unconverted_checkpoint_names_the_converter(tmp_path):
    from vps_d2.config import add_vps_config, get_cfg
    from vps_d2.model_zoo import get_config_file
    from vps_d2.modeling import build_model

    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(get_config_file("frame_baseline_sample.yaml"))
    model = build_model(cfg)
    sali = tmp_path / "Net_epoch_8_best.pth"
    torch.save(
        {
            "module.pcd_align.offset_conv1.l3.weight": torch.zeros(1),
            "module.membranch.Key0.weight": torch.zeros(1),
        },
        sali,
    )
    with pytest.raises(CheckpointError, match=r"--from sali .*sali_pvtv2_b5_public\.yaml") as e:
        load_model_weights(model, str(sali))
    assert "\n" not in str(e.value)
    pvt = tmp_path / "pvt_v2_b5.pth"
    torch.save(
        {"patch_embed1.proj.weight": torch.zeros(1), "block1.0.attn.q.weight": torch.zeros(1)}, pvt
    )
    with pytest.raises(CheckpointError, match="MODEL.BACKBONE.WEIGHTS"):
        load_model_weights(model, str(pvt))
    # a converted file (with its metadata) of the model's own weights loads
    out = tmp_path / "converted.pth"
    save_converted(str(out), model.state_dict(), {"converter": "x"})
    load_model_weights(model, str(out))
    assert torch.load(out, weights_only=False)["conversion"] == {"converter": "x"}


def _tool(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "convert_weights.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def test_tool_converts_a_backbone_file_and_lists_problems(tmp_path):
    torch.manual_seed(0)
    src = timm.create_model("pvt_v2_b0")
    release = _release_names(src.state_dict())
    inp, out = tmp_path / "in.pth", tmp_path / "out.pth"
    torch.save({f"module.{k}": v for k, v in release.items()}, inp)
    r = _tool("--from", "pvt_v2", "--input", str(inp), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "MODEL.BACKBONE.WEIGHTS" in r.stdout and "unused: head.weight" in r.stdout
    data = torch.load(out, weights_only=False)
    assert data["conversion"]["converter"] == "pvt_v2"
    assert set(data["model"]) == {k for k in src.state_dict() if not k.startswith("head.")}
    # the written file is a MODEL.BACKBONE.WEIGHTS file
    TimmBackbone(model_name="pvt_v2_b0", out_indices=(0, 1, 2, 3), weights=str(out))
    # an unknown tensor: listed, nothing written unless --allow-partial
    release["block1.0.attn.extra.weight"] = torch.ones(1)
    torch.save(release, inp)
    out2 = tmp_path / "out2.pth"
    r = _tool("--from", "pvt_v2", "--input", str(inp), "--output", str(out2))
    assert r.returncode == 1 and "block1.0.attn.extra.weight" in r.stderr
    assert not out2.exists()
    r = _tool("--from", "pvt_v2", "--input", str(inp), "--output", str(out2), "--allow-partial")
    assert r.returncode == 0 and out2.exists()
    assert torch.load(out2, weights_only=False)["conversion"]["partial"] is True
    # wrong format: one line naming what it looks like
    r = _tool("--from", "res2net", "--input", str(inp), "--output", str(tmp_path / "o3.pth"))
    assert r.returncode == 2 and "--from pvt_v2" in r.stderr
    # never overwrites without --force
    r = _tool("--from", "pvt_v2", "--input", str(inp), "--output", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
