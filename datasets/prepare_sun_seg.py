#!/usr/bin/env python
"""Re-organise the raw SUN-SEG release into the layout vps_d2 reads.

Expected raw input (as distributed after the application is approved):

    <frames>/                      # --frames, usually SUN-Positive/
      case1/<stem>.jpg             # frames of source video 1 (any depth below caseN/ works)
      case2/...
    <annotations>/                 # --annotations, the annotation tree
      TrainDataset/GT/<case>/<stem>.png          (+ Edge/ Scribble/ Polygon/
      TestEasyDataset/Seen/GT/<case>/<stem>.png     Classification/ Detection/, optional)
      TestEasyDataset/Unseen/GT/...
      TestHardDataset/Seen/GT/...
      TestHardDataset/Unseen/GT/...

Output (--out, conventionally datasets/SUN-SEG):

    <out>/<split>/Frame/<case>/<stem>.jpg    # the frame of every GT mask, found by stem
    <out>/<split>/GT/<case>/<stem>.png       # and every other folder of the annotation
    <out>/<split>/Edge/ ...                  # tree, copied (or hard-linked with --link)

When --out is the annotation tree itself, only Frame/ folders are added. Every GT mask
must have a frame with the same stem somewhere under --frames; missing frames are an error
listing them (--allow-missing copies the rest). Existing identical files are skipped, so
the script can be re-run. --dry-run prints what would be done and writes nothing.

Example:
    python datasets/prepare_sun_seg.py --frames /data/SUN-Positive \\
        --annotations /data/SUN-SEG-Annotation --out datasets/SUN-SEG --link
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile

try:
    from vps_d2.data.datasets.sun_seg import SUN_SEG_SPLITS
    from vps_d2.data.io import is_image_file
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from vps_d2.data.datasets.sun_seg import SUN_SEG_SPLITS
    from vps_d2.data.io import is_image_file


class PrepareError(RuntimeError):
    """A problem with the inputs; the message says which file or folder."""


def index_frames(frames_root: str) -> dict[str, dict[str, str]]:
    """{top folder (e.g. "case12"): {stem: path}} of every image below ``frames_root``.

    Hidden files are ignored. Raises PrepareError for two images with one stem in a folder.
    """
    if not os.path.isdir(frames_root):
        raise PrepareError(f"--frames folder not found: {frames_root}")
    index: dict[str, dict[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(frames_root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, frames_root)
        top = "" if rel == "." else rel.split(os.sep)[0]
        for name in sorted(filenames):
            if not is_image_file(name):
                continue
            stem = os.path.splitext(name)[0]
            path = os.path.join(dirpath, name)
            folder = index.setdefault(top, {})
            if stem in folder:
                raise PrepareError(f"Two frames with the stem '{stem}': {folder[stem]} and {path}")
            folder[stem] = path
    if not index:
        raise PrepareError(f"No image files below --frames {frames_root}")
    return index


def find_frame(index: dict[str, dict[str, str]], case: str, stem: str) -> str | None:
    """The frame of GT ``case/stem``: from the source folder ``case<N>`` of a clip
    ``case<N>_<M>`` when the raw release has that folder, else the only frame with that stem
    anywhere (None when missing; PrepareError when ambiguous)."""
    m = re.match(r"^(case\d+)(?:_\d+)?$", case)
    if m and m.group(1) in index:
        return index[m.group(1)].get(stem)
    hits = [folder[stem] for folder in index.values() if stem in folder]
    if len(hits) > 1:
        raise PrepareError(f"GT {case}/{stem}: several frames have this stem: {hits[:5]}")
    return hits[0] if hits else None


def plan(frames_root: str, ann_root: str, out_root: str) -> tuple[list, list[str]]:
    """Return ([(src, dst)], [GT files without a frame])."""
    if not os.path.isdir(ann_root):
        raise PrepareError(f"--annotations folder not found: {ann_root}")
    splits = [s for s in SUN_SEG_SPLITS.values() if os.path.isdir(os.path.join(ann_root, s, "GT"))]
    if not splits:
        raise PrepareError(
            f"No <split>/GT/ folder in --annotations {ann_root}; expected some of "
            f"{', '.join(s + '/GT' for s in SUN_SEG_SPLITS.values())}"
        )
    index = index_frames(frames_root)
    in_place = os.path.realpath(ann_root) == os.path.realpath(out_root)
    ops, missing = [], []
    for split in splits:
        src_split = os.path.join(ann_root, split)
        dst_split = os.path.join(out_root, split)
        gt_root = os.path.join(src_split, "GT")
        for case in sorted(os.listdir(gt_root)):
            case_dir = os.path.join(gt_root, case)
            if case.startswith(".") or not os.path.isdir(case_dir):
                continue
            for name in sorted(os.listdir(case_dir)):
                if not is_image_file(name):
                    continue
                stem = os.path.splitext(name)[0]
                src = find_frame(index, case, stem)
                if src is None:
                    missing.append(os.path.join(case_dir, name))
                    continue
                ops.append((src, os.path.join(dst_split, "Frame", case, os.path.basename(src))))
        if in_place:
            continue
        for entry in sorted(os.listdir(src_split)):
            src_dir = os.path.join(src_split, entry)
            if entry.startswith(".") or entry == "Frame" or not os.path.isdir(src_dir):
                continue
            for dirpath, dirnames, filenames in os.walk(src_dir):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel = os.path.relpath(dirpath, src_split)
                for name in sorted(filenames):
                    if not name.startswith("."):
                        src = os.path.join(dirpath, name)
                        ops.append((src, os.path.join(dst_split, rel, name)))
    return ops, missing


def transfer(src: str, dst: str, link: bool, overwrite: bool) -> str:
    """Copy/link ``src`` to ``dst`` atomically; returns "done" or "skipped"."""
    if os.path.exists(dst):
        if os.path.samefile(src, dst) or os.path.getsize(src) == os.path.getsize(dst):
            return "skipped"
        if not overwrite:
            raise PrepareError(f"{dst} exists and differs from {src}; pass --overwrite")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".tmp_")
    os.close(fd)
    try:
        if link:
            os.remove(tmp)
            try:
                os.link(src, tmp)
            except OSError as e:
                raise PrepareError(
                    f"Cannot hard-link {src} to {dst} ({e}); hard links need one filesystem. "
                    f"Run without --link to copy."
                ) from e
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return "done"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", required=True, help="raw frames root (SUN-Positive/)")
    parser.add_argument("--annotations", required=True, help="annotation tree root")
    parser.add_argument("--out", required=True, help="output SUN-SEG root")
    parser.add_argument("--link", action="store_true", help="hard-link instead of copying")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace differing files")
    parser.add_argument(
        "--allow-missing", action="store_true", help="continue when GT masks have no frame"
    )
    args = parser.parse_args(argv)
    try:
        ops, missing = plan(args.frames, args.annotations, args.out)
        if missing:
            shown = "\n  ".join(missing[:20])
            more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
            msg = f"{len(missing)} GT mask(s) have no frame under {args.frames}:\n  {shown}{more}"
            if not args.allow_missing:
                raise PrepareError(msg + "\n(--allow-missing prepares the others)")
            print("WARNING: " + msg, file=sys.stderr)
        n_frames = sum(1 for _, d in ops if f"{os.sep}Frame{os.sep}" in d)
        print(f"{n_frames} frames and {len(ops) - n_frames} annotation files -> {args.out}")
        if args.dry_run:
            for src, dst in ops[:10]:
                print(f"  {'link' if args.link else 'copy'} {src} -> {dst}")
            if len(ops) > 10:
                print(f"  ... and {len(ops) - 10} more (dry run: nothing written)")
            return 0
        counts = {"done": 0, "skipped": 0}
        for src, dst in ops:
            counts[transfer(src, dst, args.link, args.overwrite)] += 1
        print(f"{counts['done']} written, {counts['skipped']} already present")
    except PrepareError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
