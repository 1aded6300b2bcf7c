"""Another method's run in OUTPUT_DIR is never touched, and a run's config.yaml is never lost.

A run leaves its full config in ``OUTPUT_DIR/config.yaml``. Before anything is written,
:func:`check_run_compatible` compares it with the config of the new command:

* another ``MODEL.META_ARCHITECTURE`` (``--resume``, ``--eval-only`` or a new run): refused,
  naming both methods and the way out (another OUTPUT_DIR, or ``--overwrite``, which moves
  the old run to ``OUTPUT_DIR/previous_runs/<time>/``);
* the same method with other ``MODEL.*`` values (``MODEL.WEIGHTS`` and ``MODEL.DEVICE``
  aside) under ``--resume`` / ``--eval-only``: refused, naming the keys (the checkpoint
  would be loaded into another model, or the run's results.json replaced by another
  model's); ``--config-file OUTPUT_DIR/config.yaml`` continues the run as it was.

:func:`save_run_config` writes the new config.yaml, first moving a different one to
``OUTPUT_DIR/previous_configs/config.<time>.yaml``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import yaml

from vps_d2.utils.file_io import atomic_write_bytes

__all__ = [
    "IncompatibleRunError",
    "PREVIOUS_CONFIGS",
    "check_run_compatible",
    "read_run_config",
    "save_run_config",
]

logger = logging.getLogger(__name__)

#: Folder of OUTPUT_DIR where replaced config.yaml files are kept.
PREVIOUS_CONFIGS = "previous_configs"
#: MODEL keys that may change between the commands of one run.
_FREE_KEYS = ("MODEL.WEIGHTS", "MODEL.DEVICE")
_MAX_LISTED = 4


class IncompatibleRunError(ValueError):
    """OUTPUT_DIR holds a run of another method or model (the message says what to do)."""


def _flat(d: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}"))
    return out


def read_run_config(output_dir: str) -> dict | None:
    """``OUTPUT_DIR/config.yaml`` as a plain dict, or None when absent or unreadable."""
    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        logger.warning("Cannot read %s (%s): the run in it is not checked", path, e)
        return None
    return data if isinstance(data, dict) else None


def _model_differences(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """``(key, run's value, new value)`` of the MODEL keys present in both that differ."""
    a, b = _flat(old.get("MODEL", {}), "MODEL"), _flat(new.get("MODEL", {}), "MODEL")
    return [
        (k, a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k] and k not in _FREE_KEYS
    ]


def check_run_compatible(
    cfg, output_dir: str, *, resume: bool, eval_only: bool, overwrite: bool
) -> bool:
    """Refuse (:class:`IncompatibleRunError`) a command that would mix its run with the one
    already in ``output_dir`` (see the module doc). Reads only; writes nothing.

    Returns True when ``--overwrite`` has to move the old run aside (another method's run,
    even one without a checkpoint), False otherwise.
    """
    old = read_run_config(output_dir) if output_dir else None
    if old is None:
        return False
    new = yaml.safe_load(cfg.dump())
    old_arch = (old.get("MODEL") or {}).get("META_ARCHITECTURE")
    new_arch = new["MODEL"]["META_ARCHITECTURE"]
    cmd = "--eval-only" if eval_only else "--resume" if resume else "a new run"
    config = os.path.join(output_dir, "config.yaml")
    if old_arch and old_arch != new_arch:
        if overwrite and not (resume or eval_only):
            return True
        keep = (
            f"; to continue the {old_arch} run: --config-file {config} --resume" if resume else ""
        )
        raise IncompatibleRunError(
            f"OUTPUT_DIR {output_dir} holds a run of another method: {old_arch} ({config}), "
            f"and this config builds {new_arch}; {cmd} would mix the two. Choose another "
            f"OUTPUT_DIR, or start a new {new_arch} run with --overwrite (without --resume/"
            f"--eval-only), which first moves the {old_arch} run to {output_dir}/previous_runs/"
            f"<time>/ (nothing is deleted){keep}"
        )
    if not (resume or eval_only):
        return False
    diffs = _model_differences(old, new)
    if not diffs:
        return False
    listed = ", ".join(f"{k} (run: {a!r}, now: {b!r})" for k, a, b in diffs[:_MAX_LISTED])
    more = f" and {len(diffs) - _MAX_LISTED} more" if len(diffs) > _MAX_LISTED else ""
    what = (
        "its checkpoint would be loaded into another model"
        if resume
        else "the run's results would be replaced by another model's"
    )
    raise IncompatibleRunError(
        f"OUTPUT_DIR {output_dir} holds a {old_arch} run with another model config ({config}): "
        f"{listed}{more}; with {cmd} {what}. Use --config-file {config} to continue it as it "
        "was, or choose another OUTPUT_DIR (or --overwrite for a new run, which first moves "
        f"it to {output_dir}/previous_runs/<time>/)"
    )


def save_run_config(output_dir: str, text: str) -> str | None:
    """Write ``OUTPUT_DIR/config.yaml`` (atomically). A config.yaml with other contents is
    first moved to ``OUTPUT_DIR/previous_configs/config.<time>.yaml``; returns that path
    (None when nothing was kept)."""
    path = os.path.join(output_dir, "config.yaml")
    kept = None
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            same = f.read() == text
        if not same:
            folder = os.path.join(output_dir, PREVIOUS_CONFIGS)
            os.makedirs(folder, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(path)))
            kept = os.path.join(folder, f"config.{stamp}.yaml")
            n = 1
            while os.path.exists(kept):
                n += 1
                kept = os.path.join(folder, f"config.{stamp}-{n}.yaml")
            os.replace(path, kept)
    atomic_write_bytes(path, text.encode())
    return kept
