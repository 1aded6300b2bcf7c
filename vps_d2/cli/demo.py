#!/usr/bin/env python
r"""Run a trained vps_d2 model on a video, a frame folder or a webcam and draw its masks.

Detectron2's demo flags (--config-file, --video-input, --input, --webcam, --output,
--confidence-threshold, --opts) plus --overlay, --gt, --save-frames, --contact-sheet,
--save-masks, --max-frames and --fps. Frames are streamed: memory does not grow with the
video's length. ``--backend onnxruntime --model-file FILE`` runs a step exported by
tools/export.py in ONNX Runtime instead of the PyTorch model of MODEL.WEIGHTS
(docs/deployment.md); ``--save-masks DIR`` writes each frame's probability map as an 8-bit
PNG named after the frame (``rint(prob * 255)``, the evaluator's rule), with either backend.

Examples::

    python tools/demo.py --config-file configs/frame_baseline_sample.yaml \
        --video-input colonoscopy.mp4 --output out/demo.mp4 \
        --opts MODEL.WEIGHTS output/frame_baseline_sample/model_final.pth
    python tools/demo.py --config-file configs/frame_baseline_sample.yaml \
        --input datasets/vps-sample/TestEasyDataset/Unseen/Frame/case6 \
        --gt datasets/vps-sample/TestEasyDataset/Unseen/GT/case6 \
        --output out/case6.mp4 --overlay contour \
        --opts MODEL.WEIGHTS output/frame_baseline_sample/model_final.pth
    python tools/demo.py --config-file configs/frame_baseline_sample.yaml \
        --input datasets/vps-sample/TestEasyDataset/Unseen/Frame/case6 \
        --backend onnxruntime --model-file out/frame_baseline.onnx --save-masks out/masks

Outputs are checked before anything is read: ``--output`` must be a video file
(``.mp4 .avi .mkv .mov .m4v .mpg .mpeg .wmv .webm``) or a folder (a path without an
extension, ending in ``/``, or an existing folder); an output that is, contains or lies
inside an input (``--video-input``, ``--input`` folders/globs/files, ``--gt``) is refused,
symlinks and relative paths resolved. Hidden temporary files of demo runs that were killed
are removed from the output folders at start.

Exit status: 0 on success, 1 on an error (the message says what and where), 2 on bad
flags, 130 when interrupted. An interrupted or failed run leaves no partial output video.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

import numpy as np


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run (torch takes seconds): one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

from vps_d2.cli import run_command
from vps_d2.config import ConfigError
from vps_d2.utils.cli_args import add_plugin_argument, plain
from vps_d2.utils.lazy import lazy_import

# torch, the model and the drawing load after the flags are parsed: --help is quick.
_io = lazy_import("vps_d2.data.io")
_defaults = lazy_import("vps_d2.engine.defaults")
_deploy = lazy_import("vps_d2.deploy")
_metrics = lazy_import("vps_d2.evaluation.metrics")
_predictor = lazy_import("vps_d2.engine.predictor")
_vps_io = lazy_import("vps_d2.io")
_file_io = lazy_import("vps_d2.utils.file_io")
_logger = lazy_import("vps_d2.utils.logger")
_plugins = lazy_import("vps_d2.utils.plugins")
_visualization = lazy_import("vps_d2.visualization")

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt

logger = logging.getLogger("vps_d2.demo")

# For the flags, without importing vps_d2.io / vps_d2.visualization (tests check they match).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm")
OVERLAY_MODES = ("mask", "contour", "heatmap")
#: --backend values.
BACKENDS = ("torch", "onnxruntime")
SHEET_TILES = 12  # frames in the contact sheet (4 columns x 3 rows)
SHEET_TILE_WIDTH = 240  # pixels per panel of a tile (two panels with --gt)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="vps_d2 video polyp segmentation demo",
        epilog="Examples:" + plain(__doc__.split("Examples::")[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    add_plugin_argument(parser)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video-input", metavar="FILE", help="a video file (mp4/avi/mkv ...)")
    src.add_argument(
        "--input",
        nargs="+",
        metavar="PATH",
        help="a frame folder, a glob pattern (quote it) or a list of images; frames are put "
        "in temporal order (SUN-SEG stems, numeric stems), not in the shell's order",
    )
    src.add_argument("--webcam", action="store_true", help="read camera 0")
    parser.add_argument(
        "--output",
        metavar="PATH",
        help=f"a video file ({' '.join(VIDEO_EXTENSIONS)}: written at the source fps and "
        "size; twice the width with --gt) or a folder for per-frame images (a path without "
        "an extension); never the input or a path inside it",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="mask threshold: pixels with probability >= this are drawn as polyp",
    )
    parser.add_argument(
        "--overlay", choices=OVERLAY_MODES, default="mask", help="how the prediction is drawn"
    )
    parser.add_argument(
        "--gt",
        metavar="DIR",
        help="folder of ground-truth masks matched to frames by stem (by frame number for a "
        "video); drawn to the right of the prediction",
    )
    parser.add_argument(
        "--save-frames",
        action="store_true",
        help="with a video --output, also write every drawn frame to <output>_frames/",
    )
    parser.add_argument(
        "--contact-sheet",
        metavar="FILE.png",
        help="grid of 12 evenly spaced drawn frames (default: <output>_contact_sheet.png, "
        "or contact_sheet.png in an output folder)",
    )
    parser.add_argument(
        "--save-masks",
        metavar="DIR",
        help="write each frame's probability map as an 8-bit PNG <DIR>/<frame name>.png",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch: the PyTorch model of MODEL.WEIGHTS; onnxruntime: the ONNX file of "
        "--model-file (tools/export.py)",
    )
    parser.add_argument(
        "--model-file",
        metavar="FILE",
        help="the exported .onnx file run by --backend onnxruntime",
    )
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of the output video (default: the source's; 30 for frame folders)",
    )
    parser.add_argument(
        "--opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="Modify config options using the command-line 'KEY VALUE' pairs",
    )
    return parser


def _is_video_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in _vps_io.VIDEO_EXTENSIONS


def _plan_outputs(args: argparse.Namespace) -> tuple[str | None, str | None, str | None]:
    """(video file, frame folder, contact sheet) absolute paths or None, from the flags only.

    Raises ValueError for an --output that is neither a video file nor a folder.
    """
    video = frames_dir = sheet = None
    if args.output:
        out = os.path.abspath(os.path.expanduser(args.output))
        ext = os.path.splitext(out)[1].lower()
        is_folder = os.path.isdir(out) or args.output.endswith(("/", os.sep)) or ext == ""
        supported = " ".join(_vps_io.VIDEO_EXTENSIONS)
        if _is_video_path(out) and not os.path.isdir(out):
            video = out
            if args.save_frames:
                frames_dir = os.path.splitext(out)[0] + "_frames"
            sheet = os.path.splitext(out)[0] + "_contact_sheet.png"
        elif is_folder:
            frames_dir = out
            sheet = os.path.join(frames_dir, "contact_sheet.png")
        elif _io.is_image_file(out):
            raise ValueError(
                f"--output {args.output!r} is an image file name: give a video file "
                f"({supported}) or a folder for per-frame images (a path without an extension)"
            )
        else:
            raise ValueError(
                f"--output {args.output!r}: {ext!r} is not a supported video extension "
                f"(supported: {supported}); a path without an extension (or ending in "
                f"'{os.sep}') is a folder of per-frame images"
            )
    if args.contact_sheet:
        sheet = os.path.abspath(os.path.expanduser(args.contact_sheet))
        if os.path.splitext(sheet)[1].lower() not in (".png", ".jpg", ".jpeg"):
            raise ValueError(f"--contact-sheet {args.contact_sheet!r} must end in .png or .jpg")
    if video is None and frames_dir is None and sheet is None and not args.save_masks:
        raise ValueError(
            "Nothing to write: give --output (a video file or a folder), --contact-sheet "
            "and/or --save-masks"
        )
    return video, frames_dir, sheet


def _refuse_overwriting_inputs(args: argparse.Namespace, video, frames_dir, sheet) -> None:
    """ValueError when an output is, contains or lies inside an input (nothing is read)."""
    items = []
    if args.video_input:
        items.append(args.video_input)
    if args.input:
        items.extend(args.input)
    if args.gt:
        items.append(args.gt)
    files, folders = _vps_io.source_locations(items)
    if video is not None:
        root = os.path.splitext(video)[0]
        # the codec fallback may write <root>.avi instead of the requested name
        for path in dict.fromkeys(
            [video] + [root + ext for _, ext in _vps_io.codec_candidates(video)]
        ):
            _vps_io.check_not_overwriting_input(
                path, is_dir=False, files=files, folders=folders, what="output video"
            )
    if frames_dir is not None:
        _vps_io.check_not_overwriting_input(
            frames_dir, is_dir=True, files=files, folders=folders, what="output frame folder"
        )
    if sheet is not None:
        _vps_io.check_not_overwriting_input(
            sheet, is_dir=False, files=files, folders=folders, what="contact sheet"
        )
    if args.save_masks:
        _vps_io.check_not_overwriting_input(
            os.path.abspath(os.path.expanduser(args.save_masks)),
            is_dir=True,
            files=files,
            folders=folders,
            what="mask folder",
        )


def _outputs(args: argparse.Namespace) -> tuple[str | None, str | None, str | None, str | None]:
    """(video file, frame folder, contact sheet, mask folder) paths, each checked writable,
    or None.

    Checks, before any input is read: the kind of --output, no output over an input, the
    locations writable (missing folders are created). Stale temporary files of killed runs
    in the output folders are removed.
    """
    video, frames_dir, sheet = _plan_outputs(args)
    _refuse_overwriting_inputs(args, video, frames_dir, sheet)
    if video is not None:
        video = _vps_io.check_output_path(video)
    if frames_dir is not None:
        frames_dir = _vps_io.check_output_path(frames_dir, is_dir=True)
        _file_io.remove_stale_temp_files(frames_dir)
    if sheet is not None:
        sheet = _vps_io.check_output_path(sheet)
        _file_io.remove_stale_temp_files(os.path.dirname(sheet))
    masks_dir = None
    if args.save_masks:
        masks_dir = _vps_io.check_output_path(
            os.path.abspath(os.path.expanduser(args.save_masks)), is_dir=True
        )
        _file_io.remove_stale_temp_files(masks_dir)
    return video, frames_dir, sheet, masks_dir


def _build_predictor(args: argparse.Namespace, cfg):
    """The --backend's predictor (VideoPredictor's API)."""
    if args.backend == "torch":
        return _predictor.VideoPredictor(cfg)
    return _deploy.OnnxRuntimePredictor(args.model_file, input_format=cfg.INPUT.FORMAT)


def run(args: argparse.Namespace) -> dict:
    """The demo proper; returns a summary dict. Raises on any error."""
    if args.max_frames is not None and args.max_frames <= 0:
        raise ValueError(f"--max-frames must be positive, got {args.max_frames}")
    if args.video_input and not os.path.isfile(args.video_input):
        raise FileNotFoundError(f"--video-input not found: {args.video_input!r}")
    if args.backend == "onnxruntime" and not args.model_file:
        raise ValueError("--backend onnxruntime needs --model-file (an .onnx from tools/export.py)")
    if args.model_file and args.backend != "onnxruntime":
        raise ValueError("--model-file is read by --backend onnxruntime only")
    if args.model_file and not os.path.isfile(args.model_file):
        raise FileNotFoundError(f"--model-file not found: {args.model_file!r}")
    video_path, frames_dir, sheet_path, masks_dir = _outputs(args)  # before reading anything
    cfg = _defaults.setup_cfg(
        argparse.Namespace(config_file=args.config_file, opts=args.opts, plugin=args.plugin)
    )
    _defaults.configure_cpu_threads(cfg, num_workers=0)  # frames are read in this process
    source = args.video_input if args.video_input else (0 if args.webcam else args.input)
    reader = _vps_io.VideoReader(
        source, format=cfg.INPUT.FORMAT, gt_dir=args.gt, max_frames=args.max_frames, fps=args.fps
    )
    try:
        predictor = _build_predictor(args, cfg)
        with_gt = args.gt is not None
        vis = _visualization.Visualizer(overlay=args.overlay, threshold=args.confidence_threshold)
        size = (reader.width * (2 if with_gt else 1), reader.height)
        logger.info(
            "Input %s: %s frames, %dx%d, %.3g fps%s",
            reader.source,
            reader.num_frames if reader.num_frames is not None else "unknown",
            reader.width,
            reader.height,
            reader.fps,
            f" (+ GT side by side, matched {reader.describe_gt_matching()})" if with_gt else "",
        )
        sheet = _visualization.ContactSheet(
            num_tiles=SHEET_TILES,
            cols=4,
            total=reader.num_frames,
            tile_width=SHEET_TILE_WIDTH * (2 if with_gt else 1),
        )
        writer = (
            _vps_io.VideoWriter(video_path, fps=reader.fps, frame_size=size) if video_path else None
        )
        t0 = time.perf_counter()
        try:
            n, n_gt = _render(
                reader, predictor, vis, writer, frames_dir, sheet, size, with_gt, masks_dir
            )
            if n == 0:
                raise ValueError(f"No frame could be read from {reader.source}")
            if with_gt and n_gt < n:
                logger.warning(
                    "--gt %s: %s of the %d frames have a mask (matched %s)%s",
                    args.gt,
                    "none" if n_gt == 0 else n_gt,
                    n,
                    reader.describe_gt_matching(),
                    ": their GT panel is empty; check that --gt is this video's mask folder"
                    if n_gt == 0
                    else "",
                )
            final_video = writer.close() if writer is not None else None
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        sheet_file = sheet.save(sheet_path) if sheet_path else None
    finally:
        reader.close()
    summary = {
        "frames": n,
        "frames_with_gt": n_gt,
        "video": final_video,
        "frames_dir": frames_dir,
        "contact_sheet": sheet_file,
        "masks_dir": masks_dir,
        "fps": reader.fps,
        "size": size,
        "latency_ms": predictor.latency.mean_ms,
        "wall_s": time.perf_counter() - t0,
    }
    logger.info("Latency: %s", predictor.latency.summary())
    for key in ("video", "frames_dir", "contact_sheet", "masks_dir"):
        if summary[key]:
            logger.info("Wrote %s: %s", key.replace("_", " "), summary[key])
    return summary


def frame_dice(prob, gt: np.ndarray, threshold: float = 0.5) -> float:
    """Dice of ``prob >= threshold`` ((h, w) in [0, 1], resized to the mask) against the
    bool mask ``gt`` (H, W); 1.0 when both are empty."""
    import cv2

    p = prob.detach().cpu().numpy() if hasattr(prob, "detach") else np.asarray(prob)
    p = p.astype(np.float32)
    if p.shape != gt.shape:
        p = cv2.resize(p, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
    pred = p >= threshold
    denom = int(pred.sum()) + int(gt.sum())
    return 1.0 if denom == 0 else 2.0 * float((pred & gt).sum()) / denom


def _render(
    reader, predictor, vis, writer, frames_dir, sheet, size, with_gt, masks_dir=None
) -> tuple[int, int]:
    """Predict, draw and write every frame; returns how many, and how many had a GT mask.
    Ctrl-C ends a webcam run."""
    import cv2
    from tqdm import tqdm

    n, n_gt, warned = 0, 0, False
    # disable=None: no bar when stderr is not a terminal (log lines never glued to one)
    bar = tqdm(total=reader.num_frames, unit="frame", desc="demo", dynamic_ncols=True, disable=None)
    with bar:
        try:
            for frame, out in predictor.run(reader):
                image = _vps_io.frame_to_bgr(frame["image"], predictor.input_format)
                gt = (
                    _vps_io.read_gt_mask(frame["gt_file_name"], *image.shape[:2])
                    if with_gt
                    else None
                )
                n_gt += int(with_gt and frame["gt_file_name"] is not None)
                drawn = vis.draw_frame(
                    image,
                    out,
                    frame_index=frame["frame_index"],
                    latency_ms=out["latency_ms"],
                    gt_mask=gt,
                    with_gt=with_gt,
                )
                if writer is not None:
                    if (drawn.shape[1], drawn.shape[0]) != size:
                        if not warned:
                            logger.warning(
                                "Frame %s is %dx%d, the video %dx%d: resizing",
                                frame["file_name"],
                                drawn.shape[1],
                                drawn.shape[0],
                                *size,
                            )
                            warned = True
                        drawn = cv2.resize(drawn, size, interpolation=cv2.INTER_AREA)
                    writer.write(drawn)
                if frames_dir is not None:
                    _vps_io.write_image(
                        os.path.join(frames_dir, frame["frame_name"] + ".jpg"), drawn
                    )
                if masks_dir is not None:
                    mask = _metrics.quantize_probability(out["prob"].float().numpy())
                    _vps_io.write_image(os.path.join(masks_dir, frame["frame_name"] + ".png"), mask)
                label = f"{reader.video_id or 'frame'} #{frame['frame_index']}"
                if gt is not None:
                    label += f"  Dice {frame_dice(out['prob'], gt, vis.threshold):.3f}"
                sheet.add(frame["frame_index"], drawn, label=label)
                n += 1
                bar.update(1)
        except KeyboardInterrupt:
            if reader.kind != "webcam":
                raise
            logger.info("Stopped by the user after %d camera frames", n)
    return n, n_gt


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    _logger.setup_logger()
    logger.info("Arguments: %s", args)
    try:
        run(args)
    except KeyboardInterrupt:
        print("Interrupted: no partial output video was kept.", file=sys.stderr)
        return 130
    except OSError as e:  # the OS's errors as "<path>: <reason>" (read-only file system, ...)
        print(
            f"Error: {_file_io.describe_os_error(e) if e.strerror is not None else e}",
            file=sys.stderr,
        )
        return 1
    except (
        ConfigError,
        _plugins.PluginError,
        ValueError,
        RuntimeError,
        KeyError,
    ) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


def console(argv=None) -> int:
    """The ``vps-demo`` command: :func:`main`, a Ctrl-C it did not catch as one line."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(console())
