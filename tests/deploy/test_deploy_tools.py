"""vps-export (tools/export.py) and vps-demo (tools/demo.py) --backend onnxruntime /
--save-masks on a saved FrameBaseline and Diff-VPS (random init): the same 8-bit maps from
both backends, one-line errors on bad input, the torch.export format."""

from __future__ import annotations

import importlib.util
import os

import cv2
import numpy as np
import pytest
import torch
from export_check import build_random_model, synthetic_video
from train_net_runner import ROOT

from vps_d2.checkpoint import VPSCheckpointer
from vps_d2.modeling.export import (
    ExportError,
    StepStreamer,
    export_streaming_step,
    read_metadata,
)

METHODS = os.path.join(ROOT, "vps_d2", "methods")
BASELINE = os.path.join(METHODS, "frame_baseline", "configs", "frame_baseline_sample.yaml")
DIFF_VPS = os.path.join(METHODS, "diff_vps", "configs", "diff_vps_sample.yaml")


def _load_tool(name: str):
    return importlib.import_module(f"vps_d2.cli.{name}")


@pytest.fixture(scope="module")
def tools():
    return _load_tool("export"), _load_tool("demo")


def _weights(config: str, folder) -> str:
    _, model = build_random_model(config)
    VPSCheckpointer(model, str(folder)).save("model_final")
    return str(folder / "model_final.pth")


def _frame_folder(folder, n: int = 10, size=(70, 90)) -> str:
    folder.mkdir(parents=True)
    for f in synthetic_video(n, *size, seed=2):
        rgb = f["image"].permute(1, 2, 0).numpy()
        cv2.imwrite(str(folder / f"frame{f['frame_index']:03d}.png"), rgb[:, :, ::-1])
    return str(folder)


def _error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1, err
    return err[0]


SALI = os.path.join(METHODS, "sali", "configs", "sali_sample.yaml")
PGN_AEN = os.path.join(METHODS, "pgn_aen", "configs", "pgn_aen_sample.yaml")


@pytest.mark.parametrize(
    "config, num_frames",
    [
        (BASELINE, 8),
        (DIFF_VPS, 8),
        pytest.param(SALI, 8, marks=pytest.mark.slow),
        # whole clips of 3: the exported step pads a video's last, shorter clip (documented)
        pytest.param(PGN_AEN, 9, marks=pytest.mark.slow),
    ],
    ids=["frame_baseline", "diff_vps", "sali", "pgn_aen"],
)
def test_demo_onnxruntime_masks_equal_torch(tools, tmp_path, capsys, config, num_frames):
    export_tool, demo = tools
    weights = _weights(config, tmp_path / "w")
    onnx_file = str(tmp_path / "model.onnx")
    opts = ["MODEL.WEIGHTS", weights]
    assert export_tool.main(["--config-file", config, "--output", onnx_file, "--opts", *opts]) == 0
    assert "opset 18" in capsys.readouterr().out
    frames = _frame_folder(tmp_path / "frames")
    common = ["--config-file", config, "--input", frames, "--max-frames", str(num_frames)]
    torch_dir, ort_dir = tmp_path / "m_torch", tmp_path / "m_ort"
    assert demo.main([*common, "--save-masks", str(torch_dir), "--opts", *opts]) == 0
    assert (
        demo.main(
            [*common, "--save-masks", str(ort_dir), "--backend", "onnxruntime"]
            + ["--model-file", onnx_file]
        )
        == 0
    )
    names = sorted(os.listdir(torch_dir))
    want = [f"frame{i:03d}.png" for i in range(num_frames)]
    assert names == want == sorted(os.listdir(ort_dir))
    for name in names:
        a = cv2.imread(str(torch_dir / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(ort_dir / name), cv2.IMREAD_UNCHANGED)
        assert a.dtype == np.uint8 and a.shape == (70, 90) == b.shape
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, name
    assert len({cv2.imread(str(torch_dir / n), 0).tobytes() for n in names}) > 1


def test_export_errors_are_one_line(tools, tmp_path, capsys):
    export_tool, _ = tools
    out = str(tmp_path / "m.onnx")
    missing = str(tmp_path / "nope.pth")
    assert (
        export_tool.main(
            ["--config-file", BASELINE, "--output", out, "--opts", "MODEL.WEIGHTS", missing]
        )
        == 1
    )
    assert "nope.pth" in _error_line(capsys) and not os.path.exists(out)
    weights = _weights(BASELINE, tmp_path / "w")
    bad = str(tmp_path / "m.onnx.txt")
    assert (
        export_tool.main(
            ["--config-file", BASELINE, "--output", bad, "--opts", "MODEL.WEIGHTS", weights]
        )
        == 1
    )
    assert "must end in .onnx" in _error_line(capsys)
    with pytest.raises(SystemExit) as e:  # an unknown format: argparse's usage error
        export_tool.main(["--config-file", BASELINE, "--output", out, "--format", "tflite"])
    assert e.value.code == 2


def test_demo_backend_errors_are_one_line(tools, tmp_path, capsys):
    _, demo = tools
    frames = _frame_folder(tmp_path / "frames", n=2)
    common = ["--config-file", BASELINE, "--input", frames, "--save-masks", str(tmp_path / "m")]
    assert demo.main([*common, "--backend", "onnxruntime"]) == 1
    assert "needs --model-file" in _error_line(capsys)
    missing = str(tmp_path / "missing.onnx")
    assert demo.main([*common, "--backend", "onnxruntime", "--model-file", missing]) == 1
    assert "missing.onnx" in _error_line(capsys)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert demo.main([*common, "--backend", "onnxruntime", "--model-file", str(junk)]) == 1
    assert "junk.onnx" in _error_line(capsys)
    assert not os.path.exists(tmp_path / "m" / "frame000.png")


def test_torch_export_format_streams_like_eager(tmp_path):
    cfg, model = build_random_model(DIFF_VPS)
    path = str(tmp_path / "diff_vps.pt2")
    meta = export_streaming_step(model, path, "torch-export")
    assert read_metadata(path) == meta and meta["format"] == "torch-export"
    program = torch.export.load(path).module()

    def run(inputs):
        with torch.no_grad():
            outs = program(*[torch.from_numpy(inputs[n]) for n in meta["inputs"]])
        return [o.numpy() for o in outs]

    frames = synthetic_video(5, 64, 80)
    got = [o["prob"] for o in StepStreamer(run, meta).stream(frames)]
    ref = [o["prob"] for o in model.stream(frames)]
    assert max((a - b).abs().max().item() for a, b in zip(got, ref)) <= 1e-4


def test_unregistered_model_is_refused_by_name(tmp_path):
    class Unknown(torch.nn.Module):
        pass

    with pytest.raises(ExportError, match="Unknown has no exportable streaming step"):
        export_streaming_step(Unknown(), str(tmp_path / "x.onnx"))
    assert not os.listdir(tmp_path)


def test_export_command_formats_are_the_exporters():
    """The command names the formats without importing torch (quick --help); they must be
    the exporter's own."""
    from vps_d2.cli.export import FORMAT_EXTENSIONS
    from vps_d2.modeling.export import EXPORT_FORMATS

    assert tuple(FORMAT_EXTENSIONS) == tuple(EXPORT_FORMATS)
