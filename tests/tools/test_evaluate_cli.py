"""tools/evaluate.py against the slow reference, on a tiny SUN-SEG-layout tree."""

import csv
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest

from vps_d2.evaluation import reference as R

# SUN stems; "_image<i>" is not zero-padded, so lexical order is not the SUN order.
STEM = "case_M_20181001100941_0U62372100109341_1_005_001-1_a2_ayy_image{}"
GT_SHAPE = (24, 32)
# split -> case -> number of GT frames
LAYOUT = {
    "TestEasyDataset/Unseen": {"case1_1": 11, "case2_3": 4, "case3": 2},
    "TestHardDataset/Seen": {"case5": 5},
}


def load_cli():
    return importlib.import_module("vps_d2.cli.evaluate")


def make_gt_tree(root: str, seed: int = 0, layout=LAYOUT) -> dict:
    """Write GT PNGs; returns {split: {case: [gt paths in SUN order]}}."""
    rng = np.random.default_rng(seed)
    out: dict = {}
    yy, xx = np.mgrid[: GT_SHAPE[0], : GT_SHAPE[1]]
    for split, cases in layout.items():
        for case, n in cases.items():
            d = os.path.join(root, split, "GT", case)
            os.makedirs(d, exist_ok=True)
            paths = []
            for i in range(1, n + 1):
                cy, cx = rng.uniform(4, 20), rng.uniform(4, 28)
                r = rng.uniform(2, 8)
                dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
                # anti-aliased edge: values between 0 and 255 around the border
                gt = np.clip((r - dist) * 120 + 128, 0, 255).astype(np.uint8)
                p = os.path.join(d, STEM.format(i) + ".png")
                cv2.imwrite(p, gt)
                paths.append(p)
            out.setdefault(split, {})[case] = paths
    return out


def write_predictions(pred_root: str, model: str, tree: dict, seed: int = 1) -> None:
    """Random 8-bit predictions, every third one at another size (resized by the toolbox)."""
    rng = np.random.default_rng(seed)
    k = 0
    for split, cases in tree.items():
        for case, paths in cases.items():
            d = os.path.join(pred_root, model, split, case)
            os.makedirs(d, exist_ok=True)
            for p in paths:
                shape = (30, 41) if k % 3 == 0 else GT_SHAPE
                pred = rng.integers(0, 256, shape, dtype=np.uint8)
                pred[pred < 90] = 0
                cv2.imwrite(os.path.join(d, os.path.basename(p)), pred)
                k += 1


def expected_split(split_cases: dict, pred_dir: str, skip: set = frozenset()) -> tuple:
    """Reference values from the known SUN order: ({metric: value}, {case: n_frames})."""
    frames_per_case, counts = {}, {}
    for case, paths in split_cases.items():
        frames = []
        for p in paths[1:-1]:
            pp = os.path.join(pred_dir, case, os.path.basename(p))
            if pp in skip:
                continue
            gt = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
            pred = cv2.imread(pp, cv2.IMREAD_GRAYSCALE)
            if pred.shape != gt.shape:
                pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]))
            frames.append(R.reference_frame_metrics(pred, gt))
        if frames:
            frames_per_case[case] = frames
            counts[case] = len(frames)
    return R.reference_split_metrics(frames_per_case), counts


@pytest.fixture()
def tree(tmp_path):
    gt_root = str(tmp_path / "SUN-SEG")
    pred_root = str(tmp_path / "preds")
    t = make_gt_tree(gt_root)
    write_predictions(pred_root, "m", t)
    return gt_root, pred_root, t


def _args(gt_root, pred_root, *extra):
    return [
        "--gt-root",
        gt_root,
        "--pred-root",
        pred_root,
        "--model",
        "m",
        "--workers",
        "1",
        *extra,
    ]


def test_cli_matches_reference(tree, tmp_path, capsys):
    gt_root, pred_root, t = tree
    cli = load_cli()
    j, c, p = (str(tmp_path / n) for n in ("r.json", "r.csv", "r.png"))
    assert cli.main(_args(gt_root, pred_root, "--json", j, "--csv", c, "--plot", p)) == 0
    with open(j) as f:
        got = json.load(f)
    assert list(got) == ["TestEasyDataset/Unseen", "TestHardDataset/Seen"]  # default splits
    rows = list(csv.DictReader(open(c)))
    for split in got:
        exp, counts = expected_split(t[split], os.path.join(pred_root, "m", split))
        assert set(got[split]) == set(exp)
        for k, v in exp.items():
            assert abs(got[split][k] - v) <= 1e-12, (split, k)
        split_rows = {r["case"]: r for r in rows if r["split"] == split}
        assert {k: int(r["frames"]) for k, r in split_rows.items()} == counts
    # case1_1 scores image2..image10 (SUN order), not the lexical [1:-1]
    assert {r["case"]: int(r["frames"]) for r in rows} == {"case1_1": 9, "case2_3": 2, "case5": 3}
    # per-case CSV value = the reference on that case alone
    one, _ = expected_split(
        {"case5": t["TestHardDataset/Seen"]["case5"]},
        os.path.join(pred_root, "m", "TestHardDataset/Seen"),
    )
    case5 = next(r for r in rows if r["case"] == "case5")
    assert abs(float(case5["maxDice"]) - one["maxDice"]) <= 1e-12
    img = cv2.imread(p)
    assert img is not None and img.shape[2] == 3  # the figure (see the plot test below)
    out = capsys.readouterr().out
    assert "Smeasure" in out and f"{got['TestHardDataset/Seen']['maxDice']:.3f}" in out


def test_cli_workers_give_the_same_numbers(tree, tmp_path):
    gt_root, pred_root, _ = tree
    cli = load_cli()
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    assert cli.main(_args(gt_root, pred_root, "--json", a)) == 0
    args = _args(gt_root, pred_root, "--json", b)
    args[args.index("--workers") + 1] = "2"
    assert cli.main(args) == 0
    assert json.load(open(a)) == json.load(open(b))


def test_cli_missing_prediction_listed_and_skippable(tree, tmp_path, capsys):
    gt_root, pred_root, t = tree
    cli = load_cli()
    split = "TestEasyDataset/Unseen"
    gone = os.path.join(pred_root, "m", split, "case1_1", os.path.basename(t[split]["case1_1"][4]))
    os.remove(gone)
    assert cli.main(_args(gt_root, pred_root, "--splits", split)) == 1
    err = capsys.readouterr().err
    assert "1 prediction file(s) missing" in err and gone in err
    j, c = str(tmp_path / "r.json"), str(tmp_path / "r.csv")
    assert (
        cli.main(
            _args(gt_root, pred_root, "--splits", split, "--skip-missing", "--json", j, "--csv", c)
        )
        == 0
    )
    rows = {r["case"]: int(r["frames"]) for r in csv.DictReader(open(c))}
    assert rows == {"case1_1": 8, "case2_3": 2}
    exp, _ = expected_split(t[split], os.path.join(pred_root, "m", split), skip={gone})
    got = json.load(open(j))[split]
    assert all(abs(got[k] - v) <= 1e-12 for k, v in exp.items())


def test_cli_unreadable_file_is_named(tree, capsys):
    gt_root, pred_root, t = tree
    cli = load_cli()
    split = "TestHardDataset/Seen"
    bad = os.path.join(pred_root, "m", split, "case5", os.path.basename(t[split]["case5"][2]))
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really a png")
    assert cli.main(_args(gt_root, pred_root, "--splits", split)) == 1
    assert bad in capsys.readouterr().err


def test_cli_bad_roots(tmp_path, capsys):
    cli = load_cli()
    assert cli.main(_args(str(tmp_path / "nope"), str(tmp_path))) == 1
    assert "nope" in capsys.readouterr().err
    (tmp_path / "gt").mkdir()
    (tmp_path / "p" / "m").mkdir(parents=True)
    assert cli.main(_args(str(tmp_path / "gt"), str(tmp_path / "p"))) == 1
    assert "No SUN-SEG test split" in capsys.readouterr().err


def test_default_splits_score_those_with_predictions(tmp_path, capsys, caplog):
    """Issue 23, item 7: predictions for one split only stopped the run ("N prediction
    file(s) missing"); the splits with predictions are scored, the others named."""
    gt_root, pred_root = str(tmp_path / "SUN-SEG"), str(tmp_path / "preds")
    t = make_gt_tree(gt_root)
    write_predictions(pred_root, "m", {"TestHardDataset/Seen": t["TestHardDataset/Seen"]})
    j = str(tmp_path / "r.json")
    with caplog.at_level("WARNING"):
        assert load_cli().main(_args(gt_root, pred_root, "--json", j)) == 0
    with open(j) as f:
        got = json.load(f)
    assert list(got) == ["TestHardDataset/Seen"]
    exp, _ = expected_split(
        t["TestHardDataset/Seen"], os.path.join(pred_root, "m", "TestHardDataset/Seen")
    )
    assert got["TestHardDataset/Seen"]["maxDice"] == pytest.approx(exp["maxDice"], abs=1e-9)
    (warning,) = [r.getMessage() for r in caplog.records if "Not scored" in r.getMessage()]
    assert "TestEasyDataset/Unseen" in warning and "TestHardDataset/Seen" in warning
    # explicit --splits stay strict: a split without predictions is an error
    assert load_cli().main(_args(gt_root, pred_root, "--splits", "TestEasyDataset/Unseen")) == 1
    assert "missing" in capsys.readouterr().err
    # no split with predictions at all: one line naming the folder
    os.makedirs(os.path.join(pred_root, "empty"))
    args = _args(gt_root, pred_root)
    args[args.index("m")] = "empty"
    assert load_cli().main(args) == 1
    assert "No split has predictions" in capsys.readouterr().err


def test_single_model_plot_is_labelled_with_pr_curves(tree, tmp_path, monkeypatch):
    """Issue 23, item 10: --plot of one model (drawn with OpenCV before: no y label, the
    legend over the curves, no PR curve, no marker at the maximum)."""
    from vps_d2.visualization import curves as C

    figures = []
    real = C.save_figure
    monkeypatch.setattr(C, "save_figure", lambda fig, path: (figures.append(fig), real(fig, path)))
    gt_root, pred_root, _ = tree
    p = str(tmp_path / "curves.png")
    assert load_cli().main(_args(gt_root, pred_root, "--plot", p)) == 0
    assert os.path.getsize(p) > 0 and os.path.getsize(str(tmp_path / "curves_pr.png")) > 0
    thr, pr = figures
    for ax in thr.axes:
        assert ax.get_xlabel() == "threshold" and ax.get_ylabel()
        assert any(line.get_marker() == "o" for line in ax.get_lines())  # the maximum
        assert ax.get_legend() is None  # the legend is the figure's, outside the panels
    assert [lg.get_texts()[0].get_text() for lg in thr.legends] == ["m"]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in pr.axes] == [("recall", "precision")] * 2
