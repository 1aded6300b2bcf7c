"""tools/evaluate.py with several methods: --model names/globs/all, --leaderboard in the
three formats in one run, --plot, a method with missing frames named."""

import csv
import json
import os
import shutil

import pytest
from leaderboard_data import make_tree
from test_evaluate_cli import load_cli

SPLITS = {"TestEasyDataset/Unseen": 3, "TestHardDataset/Seen": 2}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli_lb"))
    tree = make_tree(root, frames=4, splits=SPLITS)
    return os.path.join(root, "SUN-SEG"), os.path.join(root, "preds"), tree


def _args(gt, pred, *extra):
    return ["--gt-root", gt, "--pred-root", pred, "--workers", "1", "--bootstrap", "200", *extra]


def test_all_methods_three_formats_and_plots_in_one_run(roots, tmp_path, capsys):
    gt, pred, _ = roots
    cli = load_cli()
    out = {e: str(tmp_path / f"board{e}") for e in (".md", ".csv", ".tex")}
    plot, js, per_case = (
        str(tmp_path / "curves.png"),
        str(tmp_path / "r.json"),
        str(tmp_path / "cases.csv"),
    )
    argv = _args(gt, pred, "--model", "all", "--leaderboard", *out.values(), "--plot", plot)
    assert cli.main(argv + ["--json", js, "--csv", per_case]) == 0
    stdout = capsys.readouterr().out
    assert "# Leaderboard" in stdout and "Methods: blurred, gt, noise." in stdout
    md = open(out[".md"]).read()
    assert md.split("## Notes")[0] in stdout  # printed = written
    assert "| max Dice | mean Dice |" in md and "## TestHardDataset/Seen: paired tests" in md
    assert "\\toprule" in open(out[".tex"]).read()
    rows = list(csv.DictReader(open(out[".csv"])))
    assert {r["method"] for r in rows if r["section"] == "score"} == {"blurred", "gt", "noise"}
    assert os.path.getsize(plot) > 0 and os.path.getsize(str(tmp_path / "curves_pr.png")) > 0
    res = json.load(open(js))
    assert set(res) == {"blurred", "gt", "noise"} and set(res["gt"]) == set(SPLITS)
    cases = list(csv.DictReader(open(per_case)))
    # 3 methods x 5 cases, 2 scored frames each (4 GT frames, first and last dropped)
    assert len(cases) == 15 and {r["frames"] for r in cases} == {"2"}
    assert (
        res["noise"]["TestEasyDataset/Unseen"]["maxDice"]
        < res["gt"]["TestEasyDataset/Unseen"]["maxDice"]
    )


def test_model_glob_and_names(roots, tmp_path, capsys):
    gt, pred, _ = roots
    cli = load_cli()
    md = str(tmp_path / "b.md")
    assert cli.main(_args(gt, pred, "--model", "n*", "g?", "--leaderboard", md)) == 0
    assert "Methods: noise, gt." in open(md).read()
    # one method with --leaderboard: a leaderboard of one (no paired tests)
    assert cli.main(_args(gt, pred, "--model", "b*", "--leaderboard", md)) == 0
    text = open(md).read()
    assert "Methods: blurred." in text and "paired tests" not in text
    capsys.readouterr()
    assert cli.main(_args(gt, pred, "--model", "pns*", "--leaderboard", md)) == 1
    assert "'pns*' matches no method folder" in capsys.readouterr().err


def test_missing_frames_name_the_method(roots, tmp_path, capsys):
    gt, pred_src, tree = roots
    pred = str(tmp_path / "preds")
    shutil.copytree(pred_src, pred)
    split = "TestHardDataset/Seen"
    case = next(iter(tree[split]))
    gone = os.path.join(pred, "noise", split, case, os.path.basename(tree[split][case][1]))
    os.remove(gone)
    md = str(tmp_path / "b.md")
    assert cli_main(_args(gt, pred, "--model", "all", "--leaderboard", md)) == 1
    err = capsys.readouterr().err
    assert "noise: 1 of 10 frame(s) missing (TestHardDataset/Seen: 1)" in err and gone in err
    assert "gt:" not in err and not os.path.exists(md)
    assert cli_main(_args(gt, pred, "--model", "all", "--leaderboard", md, "--skip-missing")) == 0
    text = open(md).read()
    assert "| noise | 3/4 (incomplete) |" in text and "INCOMPLETE: noise" in text


def cli_main(argv):
    return load_cli().main(argv)


def test_bad_leaderboard_file_stops_before_scoring(roots, tmp_path, capsys):
    gt, pred, _ = roots
    bad = str(tmp_path / "board.xlsx")
    assert cli_main(_args(gt, pred, "--model", "all", "--leaderboard", bad)) == 1
    err = capsys.readouterr().err
    assert f"--leaderboard {bad}: unknown extension" in err
    plot = str(tmp_path / "curves.xyz")
    assert cli_main(_args(gt, pred, "--model", "all", "--plot", plot)) == 1
    assert "matplotlib cannot write 'xyz'" in capsys.readouterr().err
