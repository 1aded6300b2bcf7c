#!/usr/bin/env python
"""Split the raw CVC-612 (CVC-ClinicDB) release into one folder per sequence, as PNG.

Expected raw input (--raw, the unpacked web download):

    <raw>/Original/<n>.tif|png          # frames 1..612
    <raw>/Ground Truth/<n>.tif|png      # masks ("GroundTruth", "Ground_Truth" accepted;
                                        #  Original/ may also sit in <raw>/PNG or <raw>/TIF)

Output (--out), readable by vps_d2's plain folder reader (register_video_folder):

    <out>/Frame/seqNN/<nnn>.png         # NN = 0-based sequence index (00..28), as in
    <out>/GT/seqNN/<nnn>.png            # DATASETS.CVC612.*_SEQUENCES; masks saved 0/255

The 29 sequences' frame ranges are those of vps_d2.data.datasets.cvc612.CVC612_SEQUENCES.
All 612 frames must be present (missing ones are listed). Files are written atomically;
existing ones are kept unless --overwrite. --dry-run only checks the input and prints the
plan. Note: the built-in cvc612_* datasets read the raw release directly; this layout is
for tools that want per-sequence folders.

Example:
    python datasets/prepare_cvc612.py --raw /data/CVC-ClinicDB --out datasets/CVC-612-seq
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

try:
    import cv2

    from vps_d2.data.datasets.cvc612 import CVC612_SEQUENCES, find_cvc612_files
    from vps_d2.data.io import read_image, read_mask
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import cv2

    from vps_d2.data.datasets.cvc612 import CVC612_SEQUENCES, find_cvc612_files
    from vps_d2.data.io import read_image, read_mask


def write_png(img, dst: str) -> None:
    """Encode ``img`` (H, W) or (H, W, 3 BGR) as PNG into ``dst`` atomically."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"PNG encoding failed for {dst}")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".tmp_", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", required=True, help="raw release root (holds Original/)")
    parser.add_argument("--out", required=True, help="output root (gets Frame/ and GT/)")
    parser.add_argument("--dry-run", action="store_true", help="check and print, write nothing")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing files")
    args = parser.parse_args(argv)
    try:
        frames, gts = find_cvc612_files(args.raw)
    except (FileNotFoundError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    jobs = []
    for idx, (first, last) in enumerate(CVC612_SEQUENCES):
        seq = f"seq{idx:02d}"
        for n in range(first, last + 1):
            jobs.append((frames[n], os.path.join(args.out, "Frame", seq, f"{n:03d}.png"), False))
            if n in gts:
                jobs.append((gts[n], os.path.join(args.out, "GT", seq, f"{n:03d}.png"), True))
    n_gt = sum(1 for j in jobs if j[2])
    print(
        f"{len(CVC612_SEQUENCES)} sequences, {len(jobs) - n_gt} frames, {n_gt} masks -> {args.out}"
    )
    if args.dry_run:
        for src, dst, _ in jobs[:4]:
            print(f"  {src} -> {dst}")
        print("  ... (dry run: nothing written)")
        return 0
    written = 0
    try:
        for src, dst, is_mask in jobs:
            if os.path.exists(dst) and not args.overwrite:
                continue
            img = read_mask(src).astype("uint8") * 255 if is_mask else read_image(src, "BGR")
            write_png(img, dst)
            written += 1
    except OSError as e:  # FileNotFoundError / ImageReadError name the file
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(f"{written} files written, {len(jobs) - written} already present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
