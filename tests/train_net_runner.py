"""Run tools/train_net.py in a subprocess on a datasets root (shared by the end-to-end tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")


def default_sigint() -> None:
    """``preexec_fn`` of a child the test Ctrl-Cs: SIGINT back to its default. A test run
    started in the background (``nohup ... &``) has SIGINT ignored, and children inherit
    that: Python would then never raise KeyboardInterrupt in them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def train_net_env(root: str) -> dict:
    """Environment of a run on the datasets root ``root``: one OMP thread, unbuffered output,
    and this checkout's ``vps_d2`` first on the path (whatever is installed)."""
    env = dict(os.environ, VPS_DATASETS=root, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env.pop("DETECTRON2_DATASETS", None)
    return env


def start_tool(cmd: list[str], root: str, **popen_kwargs) -> subprocess.Popen:
    """``cmd`` started on the datasets root ``root`` (:func:`train_net_env`), its stdout and
    stderr text pipes, SIGINT at its default in the child (:func:`default_sigint`)."""
    return subprocess.Popen(
        cmd,
        env=train_net_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        **popen_kwargs,
    )


def run_train_net(
    root: str, config: str, *opts: str, flags=(), check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``tools/train_net.py --config-file config [flags] [KEY VALUE opts]``; with ``check``, a
    non-zero exit raises with the tail of its output."""
    cmd = [sys.executable, TRAIN_NET, "--config-file", config, *flags, *opts]
    p = subprocess.run(
        cmd, env=train_net_env(root), capture_output=True, text=True, timeout=timeout
    )
    if check and p.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        )
    return p
