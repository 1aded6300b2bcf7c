"""The GPU check's logic on the CPU (vps_d2.engine.gpu_check): the plan and its sizes, the
time guard, the report (tables, atomic JSON), config discovery, the synthetic training
batch, the AMP precision and pinned-memory choices it exercises on a GPU. The whole
sequence runs on the CPU in tests/tools/test_gpu_check.py."""

import json
import os

import pytest
import torch

import vps_d2.deploy  # noqa: F401  (registers the ONNX Runtime row, as vps-gpu-check does)
import vps_d2.methods  # noqa: F401  (the tool layer registers the methods; so does this test)
from vps_d2.config import ConfigError, add_vps_config, get_cfg
from vps_d2.data import build_train_loader
from vps_d2.data.build import pin_memory_from_cfg
from vps_d2.data.datasets import configure_datasets
from vps_d2.engine import gpu_check as G
from vps_d2.engine.launch import precision_from_cfg
from vps_d2.model_zoo import get_config_file, list_configs
from vps_d2.modeling import META_ARCH_REGISTRY, resolve_clip_config


def _cfg(**amp):
    cfg = add_vps_config(get_cfg())
    for k, v in amp.items():
        cfg.SOLVER.AMP[k] = v
    return cfg


# ------------------------------------------------------------------ plan
def test_gpu_plan_full_sizes_and_every_path():
    plan = G.make_plan("cuda", num_gpus=2, bf16_supported=True)
    amp = ["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION"]
    assert plan.precisions["fp16"] == [*amp, "float16"]
    assert plan.precisions["bf16"][-1] == "bfloat16"
    assert plan.ddp == "" and plan.stream_frames == G.STREAM_FRAMES == 40
    assert plan.compile_backend == "inductor" and plan.train_batch == 0  # the config's batch
    assert plan.settings == G.PAPER_SETTINGS and plan.budget_s == G.DEFAULT_BUDGET_S
    assert plan.resume_iters > plan.train_iters >= 4  # checkpoints at 1 and at the end


def test_gpu_plan_says_why_a_path_cannot_run():
    one = G.make_plan("cuda", num_gpus=1, bf16_supported=False)
    assert one.ddp == "needs 2 GPUs, 1 visible"
    assert "bfloat16" in one.precisions["bf16"] and isinstance(one.precisions["bf16"], str)
    cpu = G.make_plan("cpu", smoke=True, sample_configs=["/x/a_sample.yaml"])
    assert isinstance(cpu.precisions["fp16"], str) and isinstance(cpu.precisions["bf16"], list)
    assert cpu.ddp == "NCCL DDP needs CUDA" and cpu.compile_backend == "eager"
    assert [s.config for s in cpu.settings] == ["a_sample.yaml"]
    assert cpu.infer_frames < 10 and cpu.train_batch == 2
    with pytest.raises(ValueError, match="cuda or cpu"):
        G.make_plan("tpu")


def test_paper_settings_are_shipped_configs_at_the_papers_sizes():
    """Each paper setting builds (random init, nothing read) at the paper's resolution and
    test clip; only the configs are loaded here, not the models."""
    want = {
        "sali_pvtv2_b2.yaml": (352, 352),
        "pgn_aen_res2net50.yaml": (320, 448),
        "pgn_aen_cffm_only_res2net50.yaml": (320, 448),
        "diff_vps_pvtv2_b3.yaml": (224, 224),
        "frame_baseline_res2net50.yaml": (352, 352),
    }
    plan = G.make_plan("cpu")
    assert {s.config for s in plan.settings} == set(want)
    for s in plan.settings:
        assert s.config in list_configs() and G._setting_unavailable(s) == ""
        cfg = G._speed_cfg(plan, s)
        assert tuple(cfg.INPUT.SIZE_TEST) == want[s.config], s.config
        assert not cfg.MODEL.BACKBONE.PRETRAINED and cfg.MODEL.BACKBONE.WEIGHTS == ""
        if s.config.startswith("diff_vps"):
            assert cfg.MODEL.DIFF_VPS.DIFFUSION.SAMPLE_STEPS == 3
            assert cfg.MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS == ""
        if s.config.startswith("pgn_aen"):
            assert cfg.MODEL.PGN_AEN.CLIP_LENGTH == 3
    papers = {s.config: s.paper for s in plan.settings}
    assert papers["pgn_aen_res2net50.yaml"].startswith("39 FPS")
    assert papers["pgn_aen_cffm_only_res2net50.yaml"].startswith("45 FPS")
    assert G._setting_unavailable(G.SpeedSetting("x", "nope.yaml")) == "nope.yaml is not shipped"


def test_tool_default_budget_is_the_engines():
    """vps_d2/cli/gpu_check.py repeats DEFAULT_BUDGET_S (it imports the package only on a GPU)."""
    from train_net_runner import ROOT

    with open(os.path.join(ROOT, "vps_d2", "cli", "gpu_check.py"), encoding="utf-8") as f:
        assert f"DEFAULT_BUDGET_S = {G.DEFAULT_BUDGET_S}" in f.read()


# ------------------------------------------------------------------ time guard
def test_time_guard_skips_rows_that_do_not_fit():
    now = [100.0]
    guard = G.TimeGuard(120.0, clock=lambda: now[0])
    assert guard.reason_to_skip("train") == ""  # 12 s of 120
    now[0] += 100.0  # 20 s left
    assert guard.reason_to_skip("stream") == ""  # 8 s
    reason = guard.reason_to_skip("compile")  # 60 s
    assert reason.startswith("time budget: 20 s left of 120 s") and "~60 s" in reason
    now[0] += 50.0
    assert "0 s left" in guard.reason_to_skip("stream")


def test_exhausted_budget_marks_every_row_skipped(tmp_path):
    """No time left: every check and speed row is reported, skipped with the reason, and
    nothing runs (the train entry point is never called)."""
    calls = []
    plan = G.make_plan("cpu", smoke=True, budget_s=0.0, sample_configs=[_sample("frame_baseline")])
    report = G.run_gpu_check(
        plan,
        lambda argv: calls.append(argv) or 0,
        str(tmp_path),
        configs=[_sample("frame_baseline")],
        guard=G.TimeGuard(0.0),
    )
    assert calls == []
    names = [(r.section, r.name) for r in report.rows]
    for want in ("train fp32", "train fp16", "train bf16", "resume", "eval-only"):
        assert ("check", want) in names
    assert ("check", "stream vs CPU") in names and ("check", "ddp 2 GPUs") in names
    speed = [r for r in report.rows if r.section == "speed"]
    assert len(speed) == len(G.INFER_VARIANTS) + 2  # 4 inference ways + 2 trainings
    assert all(r.status == "skipped" and r.note for r in report.rows)
    onnx = [r for r in speed if "ONNX" in r.name][0]
    assert onnx.note.startswith("time budget")  # its runner is registered (vps_d2.deploy)
    # train fp32 / bf16, resume, eval-only, stream; 2 inference, 2 training, compile, ONNX
    assert sum("time budget" in r.note for r in report.rows) == 5 + 6
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert len(data["rows"]) == len(report.rows) and data["meta"]["device"] == "cpu"


def test_onnx_row_without_its_runner_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(G.RUNTIME_RUNNERS, "onnxruntime", (G._onnx_unavailable, None))
    plan = G.make_plan("cpu", smoke=True, sample_configs=[_sample("frame_baseline")])
    res = G._measure_inference(plan, plan.settings[0], G.INFER_VARIANTS[-1])
    assert res["status"] == "skipped" and "import vps_d2.deploy" in res["note"]


def _sample(method):
    return get_config_file(f"{method}_sample.yaml")


# ------------------------------------------------------------------ report
def test_report_tables_and_atomic_json(tmp_path):
    path = tmp_path / "r.json"
    report = G.Report(str(path), {"gpu": "X"})
    report.add(G.Row("check", "a_sample", "train fp32", "ok", "fine", 1.25))
    report.add(
        G.Row(
            "speed",
            "S",
            "inference eager fp32",
            "ok",
            "",
            2.0,
            {"fps": 40.0, "ms_per_frame": 25.0, "peak_mib": 1536.4, "paper": "39 FPS"},
        )
    )
    report.add(G.Row("speed", "S", "training fp32", "ok", "n", 1.0, {"it_s": 2.5, "batch": 4}))
    report.add(G.Row("speed", "S", "onnx", "skipped", "not available", 0.0, {"x": float("nan")}))
    assert report.check_table()[2] == "| a_sample | train fp32 | ok | 1.2 | fine |"
    lines = report.speed_table()
    assert lines[0] == "| setting | measure | result | peak MiB | paper | note |"
    assert lines[2] == "| S | inference eager fp32 | 40.0 FPS (25.00 ms/frame) | 1536 | 39 FPS |  |"
    assert lines[3] == "| S | training fp32 | 2.50 it/s (batch 4) | - | - | n |"
    assert lines[4] == "| S | onnx | skipped | - | - | not available |"
    data = json.loads(path.read_text())  # NaN written as a string: valid JSON
    assert data["meta"] == {"gpu": "X"} and data["rows"][3]["values"] == {"x": "nan"}
    assert not report.failed
    report.add(G.Row("check", "a_sample", "resume", "failed", "exit 1"))
    assert [r.name for r in report.failed] == ["resume"]
    assert not [p for p in os.listdir(tmp_path) if p != "r.json"]  # no temporary file left


# ------------------------------------------------------------------ configs and data
def test_discover_sample_configs_through_the_registry():
    found = G.discover_sample_configs()
    names = [os.path.basename(p) for p in found]
    assert names == sorted(names) and len(names) >= 4
    assert {"diff_vps_sample.yaml", "frame_baseline_sample.yaml"} <= set(names)
    archs = {G._load_cfg(p).MODEL.META_ARCHITECTURE for p in found}
    assert archs <= {n for n, _ in META_ARCH_REGISTRY}
    assert G.discover_sample_configs(["diff_vps"]) == [_sample("diff_vps")]
    assert G.discover_sample_configs(["FrameBaseline"]) == [_sample("frame_baseline")]
    with pytest.raises(KeyError, match="nope"):
        G.discover_sample_configs(["nope"])


def test_synthetic_train_batch_matches_the_mapper_layout():
    cfg = resolve_clip_config(G._load_cfg(_sample("diff_vps")))
    batch = G.synthetic_train_batch(cfg, 3)
    t, (h, w) = cfg.INPUT.CLIP.LENGTH, cfg.INPUT.SIZE_TRAIN
    assert len(batch) == 3 and t == 5
    for x in batch:
        assert x["image"].dtype == torch.uint8 and x["image"].shape == (t, 3, h, w)
        assert x["sem_seg"].shape == (t, h, w) and set(x["sem_seg"].unique().tolist()) == {0, 1}
        assert x["boxes"].shape == (t, 4) and x["box_valid"].all()
        # the box is the mask's: centre inside, size = the mask's extent
        m = x["sem_seg"][-1]
        ys, xs = torch.nonzero(m, as_tuple=True)
        cx, cy, bw, bh = x["boxes"][-1].tolist()
        assert bw == pytest.approx((xs.max() - xs.min() + 1).item() / w)
        assert bh == pytest.approx((ys.max() - ys.min() + 1).item() / h)
        assert m[int(cy * h), int(cx * w)] == 1
        # the polyp is brighter than the background
        img = x["image"][-1].float().mean(0)
        assert img[m > 0].mean() > img[m == 0].mean() + 100


# ------------------------------------------------------------------ what it exercises on a GPU
def test_amp_precision_choices():
    assert precision_from_cfg(_cfg(ENABLED=False, PRECISION="bfloat16"), "cuda") == "32-true"
    assert precision_from_cfg(_cfg(ENABLED=True), "cuda") == "16-mixed"
    assert precision_from_cfg(_cfg(ENABLED=True, PRECISION="float16"), "cuda") == "16-mixed"
    assert precision_from_cfg(_cfg(ENABLED=True, PRECISION="float16"), "cpu") == "bf16-mixed"
    assert precision_from_cfg(_cfg(ENABLED=True, PRECISION="bfloat16"), "cpu") == "bf16-mixed"
    with pytest.raises(ConfigError, match="SOLVER.AMP.PRECISION = 'fp16'"):
        precision_from_cfg(_cfg(ENABLED=True, PRECISION="fp16"), "cuda")


def test_bf16_on_a_gpu_without_it_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    with pytest.raises(ConfigError, match="Tesla V100 does not support bfloat16"):
        precision_from_cfg(_cfg(ENABLED=True, PRECISION="bfloat16"), "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision_from_cfg(_cfg(ENABLED=True, PRECISION="bfloat16"), "cuda") == "bf16-mixed"


def test_training_batches_are_pinned_only_when_training_on_cuda(monkeypatch, tiny_sample_root):
    cfg = G._load_cfg(_sample("frame_baseline"), ["DATASETS.ROOT", tiny_sample_root])
    cfg.MODEL.DEVICE = "cpu"
    configure_datasets(cfg)
    assert not pin_memory_from_cfg(cfg)
    assert build_train_loader(resolve_clip_config(cfg)).pin_memory is False
    cfg.MODEL.DEVICE = "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not pin_memory_from_cfg(cfg)  # the CPU fallback
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pin_memory_from_cfg(cfg)
    cfg.MODEL.DEVICE = "cuda:1"
    assert pin_memory_from_cfg(cfg)


# ------------------------------------------------------------------ CPU vs device outputs
def _outs(n=3, size=(20, 25), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "prob": torch.rand(size, generator=g, dtype=torch.float64),
            "box": torch.rand(4, generator=g, dtype=torch.float64),
        }
        for _ in range(n)
    ]


def test_compare_outputs_tolerance_and_isolated_flips():
    a = _outs()
    b = [{k: v + 1e-4 for k, v in o.items()} for o in a]  # float noise: passes
    ok, note, values = G.compare_outputs(a, b)
    assert ok and values["prob"]["max"] == pytest.approx(1e-4) and values["prob"]["outside"] == 0
    assert note.startswith("max |cpu - device|: box 1.0e-04, prob 1.0e-04 (tolerance 0.002")
    b[1]["prob"][3, 4] += 0.4  # one flipped pixel of 1,500 values: allowed
    ok, note, values = G.compare_outputs(a, b)
    assert ok and values["prob"]["outside"] == pytest.approx(1 / 1500)
    assert "prob 4.0e-01 (0.067% > tol)" in note
    b[2]["prob"][:2] += 0.01  # a whole region differs: a real difference
    ok, _, values = G.compare_outputs(a, b)
    assert not ok and values["prob"]["outside"] > G.STREAM_MAX_OUTSIDE
    b = [{k: v.clone() for k, v in o.items()} for o in a]
    b[0]["box"][0] = float("nan")
    assert G.compare_outputs(a, b)[:2] == (False, "frame 0: output 'box' not finite on one device")
    assert "output 'box' missing" in G.compare_outputs(a, [{"prob": o["prob"]} for o in a])[1]
    assert G.compare_outputs(a, a[:2])[1] == "3 CPU outputs but 2 device outputs"


def test_generator_frames_get_a_moving_mask():
    frames = list(G.synthetic_frames(3, 24, 40))
    assert G.frames_for_task("segmentation", frames) is frames
    masked = G.frames_for_task("generation", frames)
    masks = [f["sem_seg"] for f in masked]
    assert all(m.shape == (24, 40) and m.dtype == torch.uint8 for m in masks)
    area = int(masks[0].sum())
    assert 0.5 * 3.1416 * 6**2 < area < 1.5 * 3.1416 * 6**2  # a disc of radius 24 / 4
    assert not torch.equal(masks[0], masks[1])  # it moves
    assert torch.equal(masked[0]["image"], frames[0]["image"])
