"""--help texts and printed numbers (issue 23, item 8): no "(default: None)", no RST markup,
working examples, no suggestion to write synthetic data into datasets/SUN-SEG; counts
printed as integers; no progress bar when the output is not a terminal."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from test_cli_startup import COMMANDS, _env
from train_net_runner import ROOT


def _help(command: str) -> str:
    p = subprocess.run(
        [sys.executable, "-m", f"vps_d2.cli.{command}", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=120,
    )
    return p.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "d2_demo"])
def test_help_is_clean(command):
    text = _help(command)
    assert text.startswith("usage:"), text[:300]
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "``" not in text and "::" not in text  # RST markup
    for line in text.splitlines():  # an example's continuation lines stay lines
        assert "         --" not in line.strip(), line


def test_demo_examples_use_the_sample_data():
    text = _help("demo")
    examples = text.split("Examples:")[1]
    assert examples.count("python tools/demo.py") == 3  # video, frames + GT, ONNX Runtime
    paths = [w for w in examples.split() if w.startswith("datasets/vps-sample/")]
    assert paths and all(p.rstrip("/").split("/")[-1] == "case6" for p in paths), paths
    from vps_d2.synthetic import plan_sample_dataset  # case6: the first Easy/Unseen case

    first = next(c.case for c in plan_sample_dataset() if c.split == "TestEasyDataset/Unseen")
    assert first == "case6"


def test_make_sample_never_suggests_the_real_dataset_folder():
    text = _help("make_sample_dataset")
    assert "datasets/SUN-SEG" not in text and "datasets/vps-sample" in text


def test_counts_print_as_integers():
    from vps_d2.evaluation.protocol import format_results_table, format_value, format_vps_results

    assert format_value("num_frames", 96.0) == "96"
    assert format_value("ds/detection/num_cases", 3.0) == "3"
    assert format_value("Dice", 1.0) == "1.000" and format_value("num_x", 2.5) == "2.500"
    md = format_vps_results({"s": {"num_frames": 96.0, "AP": 0.5}})
    assert "| 96 | 0.500 |" in md
    table = format_results_table({"s": {"num_frames": 96.0}}, keys=("num_frames",))
    assert table.splitlines()[1].split() == ["s", "96"]


def test_no_progress_bar_when_not_a_terminal(monkeypatch):
    from vps_d2.engine.hooks import ProgressBar

    class NotATTY:
        def write(self, s):
            raise AssertionError(f"a progress bar was drawn: {s!r}")

        def flush(self):
            pass

        def isatty(self):
            return False

    monkeypatch.setattr(sys, "stderr", NotATTY())
    hook = ProgressBar()
    hook.trainer = types.SimpleNamespace(max_iter=10, start_iter=0, iter=0)
    hook.before_train()
    assert hook._bar.disable
    hook.after_step()
    hook.after_train()
