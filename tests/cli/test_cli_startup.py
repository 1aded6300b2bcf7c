"""The commands as a package (vps_d2.cli, console scripts, tools/ wrappers) and their start-up
cost: ``import vps_d2`` and every command's ``--help`` import no torch, method, timm or
evaluation module (issue 23, items 2 and 9; the import list is checked, not the time)."""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import subprocess
import sys

import pytest
from train_net_runner import ROOT

COMMANDS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "vps_d2", "cli", "*.py"))
    if not p.endswith("__init__.py")
)
# Modules a quick start-up must not load (prefixes of sys.modules names).
HEAVY = ("torch", "timm", "vps_d2.methods", "vps_d2.evaluation", "vps_d2.engine", "vps_d2.modeling")


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    env.pop("VPS_D2_PLUGINS", None)
    return env


def _heavy_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; {"heavy": [loaded HEAVY modules], "out": stdout}."""
    probe = (
        "import io, json, sys, contextlib\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        + "".join(f"        {line}\n" for line in code.splitlines())
        + "    except SystemExit as e:\n"
        "        code = e.code\n"
        f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
        "print(json.dumps({'heavy': heavy, 'out': out.getvalue()}))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_import_vps_d2_loads_no_torch_method_or_evaluation():
    got = _heavy_after("import vps_d2")
    assert got["heavy"] == [], got["heavy"][:20]


def test_the_probe_sees_heavy_imports():
    """The check can fail: building a config loads the methods (and what they import)."""
    got = _heavy_after(
        "from vps_d2.config import add_vps_config, get_cfg\n"
        "cfg = add_vps_config(get_cfg())\n"
        "print('SALI' in cfg.MODEL, 'PGN_AEN' in cfg.MODEL)"
    )
    assert got["out"].split() == ["True", "True"], got["out"]  # the lazily loaded sections
    assert "vps_d2.methods.sali" in got["heavy"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_loads_no_torch_method_or_evaluation(command):
    got = _heavy_after(
        f"sys.argv = ['vps', '--help']\nimport runpy\nrunpy.run_module('vps_d2.cli.{command}', "
        "run_name='__main__')"
    )
    if command == "d2_demo":
        has_d2 = (
            subprocess.run(  # in the commands' environment (PYTHONPATH as _env)
                [sys.executable, "-c", "import detectron2"], env=_env(), capture_output=True
            ).returncode
            == 0
        )
        if has_d2:
            # Detectron2's own demo.py gives the flags: importing it (and vps_d2.d2, which
            # its hook needs) loads torch and the models; that is Detectron2's start-up
            assert "--config-file" in got["out"], got["out"][:500]
            return
        # without Detectron2, a one-line error before anything heavy
        assert got["heavy"] == [], got["heavy"][:20]
        return
    assert got["out"].startswith("usage:"), got["out"][:500]
    assert got["heavy"] == [], got["heavy"][:20]


def _console_scripts() -> dict[str, str]:
    """{command: "module:function"} from setup.py's entry_points."""
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        text = f.read()
    return dict(re.findall(r'"(vps-[\w-]+) = ([\w.]+:\w+)"', text))


def test_every_command_is_a_console_script_and_a_tools_wrapper():
    scripts = _console_scripts()
    modules = {target.split(":")[0] for target in scripts.values()}
    assert modules == {f"vps_d2.cli.{c}" for c in COMMANDS}, scripts
    assert {"vps-train", "vps-evaluate", "vps-demo", "vps-quickstart"} <= set(scripts)
    for target in scripts.values():
        module, func = target.split(":")
        path = os.path.join(ROOT, *module.split(".")) + ".py"
        tree = ast.parse(open(path, encoding="utf-8").read())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, target
    for c in COMMANDS:  # tools/<name>.py runs the same function (through tools/_command.py)
        with open(os.path.join(ROOT, "tools", f"{c}.py"), encoding="utf-8") as f:
            assert f'run("{c}")' in f.read(), c


def test_tools_wrapper_runs_the_command(tmp_path):
    """tools/make_sample_dataset.py --help from another folder: this checkout's command."""
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "make_sample_dataset.py"), "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "datasets/vps-sample" in p.stdout and "--train-clips" in p.stdout


def test_demo_flag_constants_match_the_library():
    """The demo's flags name the extensions and overlay modes without importing them."""
    from vps_d2.cli import demo
    from vps_d2.io import VIDEO_EXTENSIONS
    from vps_d2.visualization import OVERLAY_MODES

    assert demo.VIDEO_EXTENSIONS == VIDEO_EXTENSIONS
    assert demo.OVERLAY_MODES == OVERLAY_MODES


def test_convert_lists_its_converters(capsys):
    from vps_d2.cli import convert_weights

    assert convert_weights.main(["--from", "list"]) == 0
    out = capsys.readouterr().out
    assert "sali" in out and "pvt_v2" in out
    with pytest.raises(SystemExit):
        convert_weights.main(["--from", "nope", "--input", "a", "--output", "b"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
