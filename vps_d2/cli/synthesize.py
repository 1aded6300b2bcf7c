#!/usr/bin/env python
"""Write a synthetic dataset with a trained generator (ArSDM) and measure it.

  python tools/synthesize.py --config-file configs/arsdm_sample.yaml \\
      --weights output/arsdm_sample/model_final.pth --masks-from vps_sample_train \\
      --output output/arsdm_sample/synthetic \\
      [--segmenter-config configs/frame_baseline_sample.yaml \\
       --segmenter-weights output/frame_baseline_sample/model_final.pth] \\
      [--name vps_sample_train_arsdm] [--batch-size 8] [--inception-weights FILE] \\
      [--contact-sheet sheet.png] [--overwrite] [--opts KEY VALUE ...]

One synthetic frame per mask of ``--masks-from`` (a registered dataset, or a folder of
masks: ``<folder>/GT/<video>/*.png`` or ``<folder>/*.png``), in the SUN-SEG layout
``<output>/TrainDataset/{Frame,GT}/<video>/``, frames at the masks' size. Each file is
written atomically; a killed run resumes where it stopped when rerun with the same command
(a rerun with other settings is refused; ``--overwrite`` starts afresh), and writes the same
images (noise seeded per video / per frame, MODEL.ARSDM.SAMPLER.*). Then, offline:

* ``measures.json`` next to the frames: ``mask_fidelity_dice`` (the frozen segmenter's Dice
  on the synthetic frames against their masks; with ``--segmenter-*``) and ``real_dice``
  (the same on the real frames), Fréchet distances of random-conv features (``fd_random_cnn``),
  of the segmenter's backbone features and, with ``--inception-weights``, Inception FID,
  each with its real-vs-real scale, and the temporal difference of consecutive frames
  (synthetic vs real);
* ``synthetic.json``: the dataset's name and ``complete: true`` (written last). Train on it
  with ``DATASETS.SYNTHETIC ("<output>",) DATASETS.TRAIN ("<real>", "<name>")``.

Exit status 0, or 1 with a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

from tqdm import tqdm

from vps_d2.cli import run_command
from vps_d2.config import ConfigError, add_vps_config, get_cfg
from vps_d2.utils.cli_args import DefaultsHelpFormatter
from vps_d2.utils.lazy import lazy_import

# torch, ArSDM and the model load after the flags are parsed: --help is quick.
torch = lazy_import("torch")
_checkpoint = lazy_import("vps_d2.checkpoint")
_datasets = lazy_import("vps_d2.data.datasets")
_measures = lazy_import("vps_d2.methods.arsdm.measures")
_segmenter = lazy_import("vps_d2.methods.arsdm.segmenter")
_synthesis = lazy_import("vps_d2.methods.arsdm.synthesis")
_model_zoo = lazy_import("vps_d2.model_zoo")
_modeling = lazy_import("vps_d2.modeling")
_file_io = lazy_import("vps_d2.utils.file_io")
_logger = lazy_import("vps_d2.utils.logger")
_plugins = lazy_import("vps_d2.utils.plugins")

logger = logging.getLogger("vps_d2.synthesize")


class SynthesisError(Exception):
    """Bad input: printed as one message, exit status 1."""


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Synthetic dataset from a trained ArSDM (SUN-SEG layout) + its measures.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--config-file", required=True, help="the generator's config")
    p.add_argument("--weights", required=True, help="the generator's checkpoint")
    p.add_argument("--masks-from", required=True, help="registered dataset or mask folder")
    p.add_argument("--output", required=True, help="folder of the synthetic dataset")
    p.add_argument("--segmenter-config", default="", help="frozen segmenter (mask fidelity)")
    p.add_argument("--segmenter-weights", default="", help="its checkpoint")
    p.add_argument("--name", default="", help="registered name (default <masks>_arsdm)")
    p.add_argument("--batch-size", type=int, default=8, help="frames per generation call")
    p.add_argument("--inception-weights", default="", help="torchvision Inception-v3 file")
    p.add_argument("--contact-sheet", default="", help="PNG: mask | synthetic | real rows")
    p.add_argument("--overwrite", action="store_true", help="delete --output first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plugin", action="append", default=[], help="plug-in module or file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE pairs")
    return p


def setup(args):
    _plugins.load_plugins(args.plugin)
    cfg = add_vps_config(get_cfg())
    try:
        cfg.merge_from_file(_model_zoo.resolve_config_path(args.config_file))
        cfg.merge_from_list(list(args.opts))
    except (FileNotFoundError, KeyError, ValueError, ConfigError) as e:
        raise SynthesisError(f"--config-file / --opts: {e}") from None
    cfg.freeze()
    return cfg


def _default_name(source: str) -> str:
    base = os.path.basename(os.path.normpath(source)) if os.path.isdir(source) else source
    return f"{base}_arsdm"


def main(args) -> dict:
    cfg = setup(args)
    if not os.path.isfile(args.weights):
        raise SynthesisError(f"--weights {args.weights!r}: no such file")
    if bool(args.segmenter_config) != bool(args.segmenter_weights):
        raise SynthesisError("--segmenter-config and --segmenter-weights go together")
    if args.inception_weights and not os.path.isfile(args.inception_weights):
        raise SynthesisError(f"--inception-weights {args.inception_weights!r}: no such file")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise SynthesisError(f"--output {args.output} is a file")
    _datasets.configure_datasets(cfg)
    try:
        videos = _synthesis.mask_videos(args.masks_from)
    except (KeyError, FileNotFoundError, ValueError) as e:
        raise SynthesisError(str(e).strip('"')) from None
    model = _modeling.build_model(cfg)
    if getattr(model, "task", "segmentation") != "generation":
        raise SynthesisError(
            f"--config-file {args.config_file}: {type(model).__name__} is not a generator "
            "(task 'generation'); pass an ArSDM config"
        )
    try:
        _checkpoint.load_model_weights(model, args.weights)
    except _checkpoint.CheckpointError as e:
        raise SynthesisError(f"--weights: {e}") from None
    model.eval()
    segmenter = None
    if args.segmenter_config:
        try:
            segmenter = _segmenter.build_frozen_segmenter(
                args.segmenter_config, args.segmenter_weights, device=cfg.MODEL.DEVICE
            ).model
        except (FileNotFoundError, _checkpoint.CheckpointError, KeyError) as e:
            raise SynthesisError(f"--segmenter-*: {e}") from None

    if args.overwrite and os.path.isdir(args.output):
        shutil.rmtree(args.output)
    name = args.name or _default_name(args.masks_from)
    n_frames = sum(len(v["gt_file_names"]) for v in videos)
    fingerprint = {
        "config": cfg.dump(),
        "weights_sha256": _synthesis.file_sha256(args.weights),
        "masks_from": args.masks_from,
        "frames": n_frames,
        "batch_size": int(args.batch_size),
        "name": name,
    }
    os.makedirs(args.output, exist_ok=True)
    lock = _file_io.DirectoryLock(args.output, what="--output")
    try:
        lock.acquire("tools/synthesize.py")
    except _file_io.LockedError as e:
        raise SynthesisError(str(e)) from None
    try:
        _file_io.remove_stale_temp_files(args.output, recursive=True)
        try:
            _synthesis.check_run(args.output, fingerprint)
        except ValueError as e:
            raise SynthesisError(str(e)) from None
        bar = tqdm(
            total=n_frames,
            desc="synthesize",
            disable=True if args.no_progress else None,
            unit="frame",
        )
        with bar:
            stats = _synthesis.synthesize(
                model,
                videos,
                args.output,
                batch_size=args.batch_size,
                image_format=cfg.INPUT.FORMAT,
                progress=bar.update,
            )
        logger.info(
            "%d frames: %d generated now, %d found complete",
            stats["frames"],
            stats["generated"],
            stats["skipped"],
        )
        if args.contact_sheet:
            _synthesis.contact_sheet(videos, args.output, args.contact_sheet)
        result = measure(args, cfg, videos, segmenter)
        _file_io.atomic_write_json(os.path.join(args.output, "measures.json"), result)
        _synthesis.write_manifest(
            args.output,
            {
                "name": name,
                "split_dir": _synthesis.SPLIT_DIR,
                "complete": True,
                "generator": type(model).__name__,
                "source": args.masks_from,
                "frames": n_frames,
                "videos": len(videos),
                "config_file": args.config_file,
                "weights": os.path.abspath(args.weights),
                "noise": cfg.MODEL.ARSDM.SAMPLER.NOISE,
                "seed": int(cfg.MODEL.ARSDM.SAMPLER.SEED),
                "measures": result,
            },
        )
    finally:
        lock.release()
    return {"name": name, "measures": result, **stats}


def measure(args, cfg, videos, segmenter) -> dict:
    synth_videos = [
        [_synthesis.output_paths(args.output, v["video_id"], s)[0] for s in v["frame_names"]]
        for v in videos
    ]
    synth = [dict(v, synthetic=paths) for v, paths in zip(videos, synth_videos)]
    real_videos = [v["file_names"] for v in videos if all(v["file_names"])]
    out: dict = {"frames": sum(len(v) for v in synth_videos)}
    if segmenter is not None:
        fid = _measures.mask_fidelity(segmenter, synth, "synthetic", cfg.INPUT.FORMAT)
        out["mask_fidelity_dice"] = fid["dice"]
        out["mask_fidelity_frames"] = fid["frames"]
        if len(real_videos) == len(videos):
            out["real_dice"] = _measures.mask_fidelity(
                segmenter, videos, "file_names", cfg.INPUT.FORMAT
            )["dice"]
    out["temporal_diff_synthetic"] = _measures.temporal_difference(synth_videos)
    if real_videos:
        out["temporal_diff_real"] = _measures.temporal_difference(real_videos)
        extractors = {"random_cnn": (_measures.RandomConvFeatures(seed=0), (128, 128))}
        if segmenter is not None:
            fn = _measures.segmenter_backbone_features(segmenter)
            if fn is not None:
                extractors["segmenter_backbone"] = (fn, tuple(segmenter.test_size))
        if args.inception_weights:
            extractors["inception"] = (
                _measures.inception_features(args.inception_weights),
                (299, 299),
            )
        synthetic = [p for v in synth_videos for p in v]
        with torch.no_grad():
            out.update(_measures.distances(synthetic, real_videos, extractors))
    return out


def run(argv=None) -> int:
    args = get_parser().parse_args(argv)
    _logger.setup_logger(fmt="[%(asctime)s %(name)s] %(message)s", stream="stderr")
    try:
        result = main(args)
    except SynthesisError as e:
        print(f"synthesize.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the OS's errors as "<path>: <reason>" (read-only, not a folder, ...)
        msg = _file_io.describe_os_error(e) if e.strerror is not None else e
        print(f"synthesize.py: error: {msg}", file=sys.stderr)
        return 1
    m = result["measures"]
    print(f"Wrote {result['frames']} frames to {args.output} (dataset {result['name']!r}).")
    for k, v in m.items():
        print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    print(
        f"Train on it: DATASETS.SYNTHETIC \"('{args.output}',)\" DATASETS.TRAIN "
        f"\"('<real dataset>', '{result['name']}')\""
    )
    return 0


def console(argv=None) -> int:
    """The ``vps-synthesize`` command: :func:`run`, a Ctrl-C it did not catch as one line."""
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(console())
