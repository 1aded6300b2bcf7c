#!/usr/bin/env python
"""Print (and check) the versions of vps_d2's dependencies installed in this environment.

    python .ci/check_versions.py                      # table of the core dependencies
    python .ci/check_versions.py --pins FILE          # ... and fail unless FILE's pins hold
    python .ci/check_versions.py --save FILE          # write "name==version" lines
    python .ci/check_versions.py --same-as FILE       # fail if a core version differs

The core dependencies are vps_d2's install_requires, read from the installed metadata.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys


def _name(req: str) -> str:
    return re.split(r"[ ;<>=!~\[(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def core_versions() -> dict[str, str]:
    reqs = [r for r in md.requires("vps_d2") or [] if "extra ==" not in r]
    return {_name(r): md.version(_name(r)) for r in reqs}


def read_pins(path: str) -> dict[str, str]:
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[_name(name)] = version.strip()
    return pins


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pins", help="constraints file whose == pins must all be installed")
    p.add_argument("--save", help="write the core versions to this file")
    p.add_argument("--same-as", help="fail unless the core versions equal this file's")
    args = p.parse_args()
    import cv2
    import numpy

    core = core_versions()
    print(f"python {sys.version.split()[0]}, cv2.__version__ {cv2.__version__}, "
          f"numpy {numpy.__version__}")  # fmt: skip
    for name, version in sorted(core.items()):
        print(f"  {name:26s} {version}")
    bad = []
    if args.pins:
        for name, want in read_pins(args.pins).items():
            have = _installed(name)
            if have is None or have.split("+")[0] != want:
                bad.append(f"{name}: {args.pins} pins {want}, installed {have}")
    if args.same_as:
        ref = read_pins(args.same_as)
        for name in sorted(set(ref) | set(core)):
            if ref.get(name) != core.get(name):
                bad.append(f"{name}: {ref.get(name)} in {args.same_as}, {core.get(name)} here")
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            f.writelines(f"{n}=={v}\n" for n, v in sorted(core.items()))
    for line in bad:
        print("VERSION MISMATCH " + line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
