"""The leaderboard: statistics against scipy and hand values, ranking of methods of known
quality, missing predictions named, the three formats, attributes."""

import csv
import io
import math
import os
import shutil

import numpy as np
import pytest
from leaderboard_data import METHODS, SPLITS, make_tree
from scipy import stats

from vps_d2.data.frame_order import case_sort_key
from vps_d2.evaluation import leaderboard as L
from vps_d2.evaluation.metrics import frame_metrics
from vps_d2.evaluation.protocol import aggregate_cases, evaluate_case, toolbox_frames


def _rng(seed):
    return L._rng_kwargs(seed)


# ---------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_bootstrap_of_a_mean_equals_scipy_on_the_values(method):
    values = np.array([0.61, 0.72, 0.55, 0.93, 0.47, 0.81, 0.66])
    got = L.bootstrap_ci(values, n_resamples=999, seed=3, method=method)
    ref = stats.bootstrap(
        (values,), np.mean, n_resamples=999, method=method, vectorized=True, **_rng(3)
    ).confidence_interval
    assert got == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert ref.low < values.mean() < ref.high


def test_bootstrap_of_max_dice_resamples_whole_case_curves():
    # 5 cases x 4 thresholds, by hand; the statistic is max over thresholds of the mean curve
    curves = np.array(
        [
            [0.1, 0.5, 0.7, 0.2],
            [0.3, 0.6, 0.4, 0.1],
            [0.2, 0.9, 0.8, 0.3],
            [0.0, 0.2, 0.6, 0.5],
            [0.4, 0.4, 0.5, 0.2],
        ]
    )
    got = L.bootstrap_ci(curves, curve=True, reduce="max", n_resamples=500, seed=7)

    # the same with scipy's paired bootstrap of the 4 threshold columns
    def stat(*cols, axis=-1):
        return np.max(np.mean(np.stack(cols), axis=axis), axis=0)

    ref = stats.bootstrap(
        tuple(curves.T),
        stat,
        paired=True,
        vectorized=True,
        n_resamples=500,
        method="percentile",
        **_rng(7),
    ).confidence_interval
    assert got == pytest.approx((ref.low, ref.high), abs=1e-12)
    # max of the mean differs from the mean of the per-case maxima (0.7 0.6 0.9 0.6 0.5)
    assert L.bootstrap_ci(curves, curve=True, reduce="max", n_resamples=500, seed=7) != (
        L.bootstrap_ci(curves.max(1), n_resamples=500, seed=7)
    )
    assert L.bootstrap_ci(curves[:1], curve=True) == (pytest.approx(math.nan, nan_ok=True),) * 2


def test_paired_test_exact_p_and_wins():
    a = np.array([0.90, 0.80, 0.70, 0.85, 0.95, 0.60])
    d = np.array([0.10, 0.20, 0.05, 0.30, 0.15, 0.25])
    p, wa, wb, ties, diff = L.paired_test(a, a - d)
    # all six differences positive: exact two-sided p = 2 / 2**6
    assert p == pytest.approx(2 / 64, abs=1e-12)
    assert p == pytest.approx(stats.wilcoxon(a, a - d).pvalue, abs=1e-12)
    assert (wa, wb, ties) == (6, 0, 0) and diff == pytest.approx(d.mean())
    # MAE: lower is better, the wins swap
    assert L.paired_test(a, a - d, lower_is_better=True)[1:4] == (0, 6, 0)
    # one tie, mixed signs
    b = a - np.array([0.10, -0.20, 0.0, 0.30, -0.05, 0.25])
    p2, wa, wb, ties, _ = L.paired_test(a, b)
    assert (wa, wb, ties) == (3, 2, 1)
    assert p2 == pytest.approx(stats.wilcoxon(a, b, zero_method="wilcox").pvalue, abs=1e-12)
    assert L.paired_test(a, a)[:4] == (1.0, 0, 0, 6)


def test_holm_by_hand():
    assert L.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert L.holm([0.5, 0.2]) == pytest.approx([0.5, 0.4])
    out = L.holm([0.01, math.nan, 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_size_groups():
    assert L.size_group("3mm") == L.size_group("5mm") == "<= 5 mm (diminutive)"
    assert L.size_group("6mm") == L.size_group("8mm") == "6-9 mm (small)"
    assert L.size_group("10mm") == L.size_group("15mm-") == ">= 10 mm (large)"
    assert L.size_group("unknown") == "unknown"


# ------------------------------------------------------------------------------- methods
def test_resolve_methods_names_globs_all(tmp_path):
    for d in ("sali_a", "sali_b", "pns", ".hidden"):
        (tmp_path / d).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    root = str(tmp_path)
    assert L.resolve_methods(root, ["all"]) == ["pns", "sali_a", "sali_b"]
    assert L.resolve_methods(root, ["sali*"]) == ["sali_a", "sali_b"]
    assert L.resolve_methods(root, ["pns", "sali_?", "pns"]) == ["pns", "sali_a", "sali_b"]
    with pytest.raises(ValueError, match=r"'pnsplus' matches no method folder.*pns, sali_a"):
        L.resolve_methods(root, ["pnsplus"])
    with pytest.raises(ValueError, match="'x\\*'"):
        L.resolve_methods(root, ["x*"])


# ------------------------------------------------------------------------------- scoring
def _score(plan):
    per_case: dict = {}
    for task in plan.tasks:
        split, case, accs = L.score_case_task(task)
        per_case.setdefault(split, {})[case] = accs
    return per_case


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lb"))
    return root, make_tree(root)


def _plan(root, methods=METHODS):
    return L.collect_frames(
        os.path.join(root, "SUN-SEG"), os.path.join(root, "preds"), list(methods)
    )


@pytest.fixture(scope="module")
def board(tree):
    root, _ = tree
    plan = _plan(root)
    return L.build_leaderboard(
        plan, _score(plan), gt_root=os.path.join(root, "SUN-SEG"), n_resamples=300
    )


def test_ranking_of_known_quality(board):
    for split in SPLITS:
        r = {m: board.results[m][split] for m in METHODS}
        for k in ("Smeasure", "meanEm", "wFmeasure", "maxDice", "meanDice", "maxIoU", "meanIoU"):
            assert r["gt"][k] > r["blurred"][k] > r["noise"][k], (split, k)
        assert r["gt"]["MAE"] < r["blurred"]["MAE"] < r["noise"]["MAE"]
        assert board.best(split, "maxDice") == r["gt"]["maxDice"]
        assert board.best(split, "MAE") == r["gt"]["MAE"]
        for m in METHODS:  # the point estimate lies in its interval
            lo, hi = board.ci[m][split]["maxDice"]
            assert lo - 1e-12 <= r[m]["maxDice"] <= hi + 1e-12
        lo_b, hi_b = board.ci["blurred"][split]["Smeasure"]
        assert board.ci["noise"][split]["Smeasure"][1] < lo_b  # far apart: no overlap
        # gt beats noise on every case; with n cases the exact p is 2 / 2**n
        t = next(
            t
            for t in board.tests
            if (t.split, t.metric, t.a, t.b) == (split, "meanDice", "gt", "noise")
        )
        n = SPLITS[split]
        assert (t.n, t.wins_a, t.wins_b) == (n, n, 0)
        assert t.p == pytest.approx(2 / 2**n) and t.p_holm == pytest.approx(3 * 2 / 2**n)


def test_leaderboard_values_equal_single_model_protocol(tree, board):
    """Scoring all methods at once gives each method's own toolbox numbers."""
    root, t = tree
    split = "TestEasyDataset/Unseen"
    for m in ("blurred", "noise"):
        cases = {}
        for case, paths in t[split].items():
            frames = [
                (g, os.path.join(root, "preds", m, split, case, os.path.basename(g)))
                for g in toolbox_frames(paths, case)
            ]
            cases[case] = evaluate_case(frames)
        exp = aggregate_cases(cases)
        assert board.results[m][split] == exp  # bit-identical
        # and per case
        for case, acc in cases.items():
            assert board.per_case[m][split][case]["meanDice"] == pytest.approx(
                float(np.mean(acc.mean()["Dice"])), abs=0
            )


def test_paired_bootstrap_draws_the_same_cases_for_every_method(board):
    # same seed, same cases -> the same resamples: a method's interval depends on its own
    # values only through them (checked by recomputing one from the per-case values)
    split = "TestHardDataset/Unseen"
    vals = [
        board.per_case["blurred"][split][c]["Smeasure"]
        for c in sorted(board.per_case["blurred"][split], key=case_sort_key)
    ]
    assert board.ci["blurred"][split]["Smeasure"] == pytest.approx(
        L.bootstrap_ci(np.array(vals), n_resamples=300, seed=0), abs=1e-12
    )


def test_missing_frames_are_named_not_scored_lower(tree, tmp_path):
    root_src, t = tree
    root = str(tmp_path)
    shutil.copytree(root_src, root, dirs_exist_ok=True)
    split = "TestEasyDataset/Unseen"
    case = next(iter(t[split]))
    gone = os.path.join(root, "preds", "blurred", split, case, os.path.basename(t[split][case][2]))
    os.remove(gone)
    plan = _plan(root)
    assert list(plan.missing) == ["blurred"] and plan.missing["blurred"] == [gone]
    per_case = _score(plan)
    with pytest.raises(L.MissingPredictionsError) as e:
        L.build_leaderboard(plan, per_case)
    msg = str(e.value)
    assert "blurred: 1 of 39 frame(s) missing (TestEasyDataset/Unseen: 1)" in msg
    assert gone in msg and "noise:" not in msg and "gt:" not in msg
    lb = L.build_leaderboard(plan, per_case, allow_missing=True, n_resamples=100)
    assert lb.incomplete == ["blurred"]
    assert lb.frames["blurred"][split] == (20, 21) and lb.frames["gt"][split] == (21, 21)
    md = L.format_markdown(lb)
    assert "| blurred | 20/21 (incomplete) |" in md
    assert "INCOMPLETE: blurred lacks 1 prediction file(s)" in md
    # the case it lacks a frame of is left out of its paired tests
    t_ = next(t for t in lb.tests if (t.split, t.a, t.b) == (split, "gt", "blurred"))
    assert t_.n == SPLITS[split] - 1
    rows = list(csv.DictReader(io.StringIO(L.format_csv(lb))))
    miss = [r for r in rows if r["section"] == "missing"]
    assert miss == [
        {**miss[0], "split": split, "method": "blurred", "frames": "20", "frames_expected": "21"}
    ]


# ------------------------------------------------------------------------------- formats
def test_three_formats(board, tmp_path):
    paths = {ext: str(tmp_path / f"lb{ext}") for ext in L.LEADERBOARD_FORMATS}
    for p in paths.values():
        L.write_leaderboard(board, p)
    md = open(paths[".md"]).read()
    head = md.splitlines()[md.splitlines().index("## TestEasyDataset/Unseen (7 cases)") + 2]
    assert "| max Dice | mean Dice | max IoU | mean IoU |" in head and "| Dice |" not in head
    gt_row = next(ln for ln in md.splitlines() if ln.startswith("| gt | 21 |"))
    assert gt_row.count("**") == 2 * len(L.TABLE_KEYS)  # best in every column
    assert "## TestHardDataset/Unseen: paired tests" in md and "[95% CI]" in md
    tex = open(paths[".tex"]).read()
    assert tex.count("\\begin{tabular}") == tex.count("\\bottomrule") >= 6
    assert "\\toprule" in tex and "\\midrule" in tex and "\\textbf{1.000}" in tex
    assert "TestEasyDataset/Unseen" in tex and "\\_" not in "".join(board.methods)
    rows = list(csv.DictReader(open(paths[".csv"])))
    score = {(r["split"], r["method"], r["metric"]): r for r in rows if r["section"] == "score"}
    r = score[("TestEasyDataset/Unseen", "blurred", "maxDice")]
    assert float(r["value"]) == board.results["blurred"]["TestEasyDataset/Unseen"]["maxDice"]
    assert float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"]) and r["best"] == "0"
    assert score[("TestEasyDataset/Unseen", "gt", "maxDice")]["best"] == "1"
    assert {r["section"] for r in rows} >= {"score", "pairwise"}
    with pytest.raises(ValueError, match="unknown extension '.xlsx'"):
        L.write_leaderboard(board, str(tmp_path / "lb.xlsx"))
    assert not os.path.exists(tmp_path / "lb.xlsx")


def test_latex_escapes():
    assert L._tex("a_b & 5% <= 3") == "a\\_b \\& 5\\% $\\leq$ 3"


# ---------------------------------------------------------------------------- attributes
def test_attributes_from_the_dataset_table(tree, tmp_path):
    root_src, t = tree
    root = str(tmp_path)
    shutil.copytree(root_src, root, dirs_exist_ok=True)
    split = "TestEasyDataset/Unseen"
    cases = list(t[split])
    folder = os.path.join(root, "SUN-SEG", split, "Classification")
    os.makedirs(folder)
    with open(os.path.join(folder, "cases.csv"), "w") as f:
        f.write("# my table\ncase,class_name,shape,size,location\n")
        f.write(f"{cases[0]},hyperplastic_polyp,Is,3mm,S\n")
        f.write(f"{cases[1]},low_grade_adenoma,Ip,12mm,R\n")
        f.write(f"{cases[2]},low_grade_adenoma,Is,15mm-,R\n")
    plan = _plan(root)
    lb = L.build_leaderboard(
        plan, _score(plan), gt_root=os.path.join(root, "SUN-SEG"), n_resamples=50
    )
    rows = {(c, g): (n, f, v) for c, g, n, f, v in lb.attributes}
    assert rows[("class_name", "low grade adenoma")][:2] == (2, 6)
    assert rows[("class_name", "hyperplastic polyp")][:2] == (1, 3)
    assert rows[("size", ">= 10 mm (large)")][:2] == (2, 6)
    assert rows[("location", "R (rectum)")][:2] == (2, 6)
    assert rows[("shape", "Ip (pedunculated)")][:2] == (1, 3)
    # a group's value: the methods' mean over its cases (one case: that case's values)
    v = rows[("class_name", "hyperplastic polyp")][2]
    assert v["blurred"]["Smeasure"] == pytest.approx(
        lb.per_case["blurred"][split][cases[0]]["Smeasure"], abs=1e-15
    )
    assert any("cases.csv" in s for s in lb.attribute_sources)
    md = L.format_markdown(lb)
    assert "## By pathology (all scored splits pooled)" in md
    assert "| hyperplastic polyp | 1 | 3 |" in md


def test_attributes_from_the_packaged_sun_seg_table(tmp_path):
    attrs, sources = L.case_attributes(
        str(tmp_path), {"TestEasyDataset/Unseen": ["case2_3", "Case_14_3", "case999"]}
    )
    a = attrs[("TestEasyDataset/Unseen", "case2_3")]
    assert a == {
        "class_name": "high grade adenoma",
        "shape": "Is (sessile)",
        "size": ">= 10 mm (large)",
        "location": "R (rectum)",
    }
    assert attrs[("TestEasyDataset/Unseen", "Case_14_3")]["location"] == "S (sigmoid colon)"
    assert ("TestEasyDataset/Unseen", "case999") not in attrs
    assert sources == ["the SUN-SEG case table shipped with vps_d2"]
    # not a SUN-SEG split: the table's names mean nothing there
    assert L.case_attributes(str(tmp_path), {"my_split": ["case2_3"]}) == ({}, [])


def test_precision_recall_curves_by_hand():
    rng = np.random.default_rng(5)
    pred = rng.integers(10, 240, (30, 40), dtype=np.uint8)
    gt = np.zeros((30, 40), bool)
    gt[8:20, 10:25] = True
    pred[gt] = np.maximum(pred[gt], 150)
    m = frame_metrics(pred, gt, precision_recall=True)
    p = pred / 255
    p = (p - p.min()) / (p.max() - p.min())
    q = (p * 255).astype(np.uint8)
    for i in (0, 40, 105, 200, 255):
        f = q >= 255 - i
        tp = np.sum(f & gt)
        assert m["Precision"][i] == pytest.approx(tp / f.sum() if f.sum() else 0.0, abs=1e-15)
        assert m["Recall"][i] == pytest.approx(tp / gt.sum(), abs=1e-15)
    fm = 1.3 * m["Precision"] * m["Recall"] / (0.3 * m["Precision"] + m["Recall"])
    np.testing.assert_allclose(np.nan_to_num(fm), m["Fm"], atol=1e-15)
    assert "Precision" not in frame_metrics(pred, gt)
