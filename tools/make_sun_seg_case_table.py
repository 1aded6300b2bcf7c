#!/usr/bin/env python
"""Write vps_d2's SUN-SEG case table (case -> pathological class) from the benchmark's list.

Input: the Markdown page of the 285 SUN-SEG positive cases ("Information of Positive Cases
in our SUN-SEG", a table ``| ID | Frames | Duration (s) | Shape | Size | Location |
Pathological diagnosis |``). Output: the CSV shipped as package data,
``vps_d2/data/datasets/sun_seg_cases.csv`` (columns ``case,id,class_name,frames,shape,size,
location``), read by :func:`vps_d2.data.datasets.sun_seg.sun_seg_cases`.

Example::

    python tools/make_sun_seg_case_table.py --md sun-seg-positive-cases.md \\
        --output vps_d2/data/datasets/sun_seg_cases.csv

The benchmark ID ``N_M`` (or ``N``) becomes the case folder name ``caseN_M`` (``caseN``);
diagnoses are mapped to ``vps_d2.data.CLASS_NAMES`` by the exact table ``DIAGNOSES`` below
(an unknown diagnosis is an error).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import signal
import sys


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run (torch takes seconds): one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

try:
    from vps_d2.utils.file_io import atomic_write_bytes
except ImportError:  # running from a source checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from vps_d2.utils.file_io import atomic_write_bytes

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt

# Diagnosis as written in the benchmark's table -> vps_d2.data.CLASS_NAMES entry.
DIAGNOSES = {
    "Low-grade adenoma": "low_grade_adenoma",
    "High-grade adenoma": "high_grade_adenoma",
    "Hyperplastic polyp": "hyperplastic_polyp",
    "Traditional serrated adenoma": "traditional_serrated_adenoma",
    "Sessile serrated lesion": "sessile_serrated_lesion",
    "Invasive cancer (T1b)": "invasive_cancer",
}
COLUMNS = ("case", "id", "class_name", "frames", "shape", "size", "location")
_ID_RE = re.compile(r"^\d+(?:_\d+)?$")


def parse_cases(text: str, source: str = "<md>") -> list[dict[str, str]]:
    """Rows of the Markdown table whose first cell is a case ID (``N`` or ``N_M``).

    Raises:
        ValueError: naming ``source`` and the line for a row with the wrong number of cells,
            a non-integer frame count, an unknown diagnosis or a repeated ID.
    """
    rows, seen = [], set()
    for lineno, line in enumerate(text.splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or not _ID_RE.match(cells[0]):
            continue
        if len(cells) != 7:
            raise ValueError(f"{source}:{lineno}: expected 7 cells, got {len(cells)}: {line!r}")
        case_id, frames, _, shape, size, location, diagnosis = cells
        if diagnosis not in DIAGNOSES:
            raise ValueError(
                f"{source}:{lineno}: unknown diagnosis {diagnosis!r}; known: {sorted(DIAGNOSES)}"
            )
        if not frames.isdigit():
            raise ValueError(f"{source}:{lineno}: frame count {frames!r} is not an integer")
        if case_id in seen:
            raise ValueError(f"{source}:{lineno}: case ID {case_id} appears twice")
        seen.add(case_id)
        rows.append(
            {
                "case": f"case{case_id}",
                "id": case_id,
                "class_name": DIAGNOSES[diagnosis],
                "frames": frames,
                "shape": shape,
                "size": size,
                "location": location,
            }
        )
    if not rows:
        raise ValueError(f"{source}: no table row with a case ID found")
    return rows


def format_csv(rows: list[dict[str, str]]) -> str:
    """The CSV text: two comment lines (provenance, class mapping), a header, the rows."""
    buf = io.StringIO()
    buf.write(
        f"# SUN-SEG positive cases ({len(rows)}): case folder name, benchmark ID, pathological"
        " class, frames, shape (Paris), size, location (C A T D S R = cecum, ascending,"
        " transverse, descending, sigmoid colon, rectum). Written by"
        " tools/make_sun_seg_case_table.py from the benchmark's case list.\n"
    )
    buf.write(
        "# Diagnosis -> class_name: "
        + "; ".join(f"{k} -> {v}" for k, v in DIAGNOSES.items())
        + "\n"
    )
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="SUN-SEG positive-case list (Markdown) -> CSV.")
    p.add_argument("--md", required=True, help="the Markdown page of the positive cases")
    p.add_argument("--output", required=True, help="CSV to write (atomically)")
    args = p.parse_args(argv)
    with open(args.md, encoding="utf-8") as f:
        rows = parse_cases(f.read(), args.md)
    atomic_write_bytes(args.output, format_csv(rows).encode("utf-8"))
    sys.stdout.write(f"{len(rows)} cases -> {args.output}\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # wherever main() did not catch it: one line, status 130
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
