"""vps_d2.utils.benchmark: parameter and FLOP counts against independent values, the timing
helper's call count, the table formatter's rows and ratio columns, RSS and streaming memory."""

import json

import pytest
import torch
import torch.nn as nn

from vps_d2.utils.benchmark import (
    count_flops,
    count_parameters,
    markdown_table,
    params_m,
    peak_rss_mib,
    ratio_cell,
    rss_mib,
    sdpa_flop_jit,
    streaming_memory,
    synthetic_frames,
    time_callable,
    write_json,
)


def test_parameter_count_is_the_sum_of_numel():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Linear(8, 5))
    # Conv: 8*3*3*3 + 8, BN: 8 + 8, Linear: 5*8 + 5 (written out, independent of numel)
    expected = (8 * 3 * 3 * 3 + 8) + (8 + 8) + (5 * 8 + 5)
    assert count_parameters(net) == expected == sum(p.numel() for p in net.parameters())
    assert count_parameters(net[0], None, net[3]) == (8 * 27 + 8) + 45
    assert count_parameters(net, net[0]) == expected  # shared parameters counted once
    assert params_m(net) == pytest.approx(expected / 1e6)
    net[0].weight.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == expected - 8 * 27


def test_linear_flops_follow_fvcore_convention():
    """fvcore counts one fused multiply-add as one flop: Linear(8, 4) on (2, 8) = 2*8*4."""
    torch.manual_seed(0)
    flops = count_flops(nn.Linear(8, 4), torch.randn(2, 8))
    assert flops.total == 2 * 8 * 4
    assert flops.gflops == pytest.approx(64e-9)
    assert flops.not_counted == []


def test_flops_of_a_callable_and_per_module():
    owner = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2))
    flops = count_flops(lambda x: owner(x) * 2, (torch.randn(3, 8),), owner=owner)
    assert flops.total == 3 * 8 * 4 + 3 * 4 * 2
    assert flops.by_module["owner.0"] == 3 * 8 * 4
    assert flops.module_gflops("1", "owner.") == pytest.approx(3 * 4 * 2 / 1e9)


def test_sdpa_handle_counts_scores_and_weighted_sum():
    """q (2, 3, 5, 4), k (2, 3, 7, 4), v (2, 3, 7, 6): 2*3 heads x 5 x 7 x (4 + 6)."""
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 6)
    flops = count_flops(torch.nn.functional.scaled_dot_product_attention, (q, k, v))
    assert flops.total == 2 * 3 * 5 * 7 * (4 + 6)
    assert callable(sdpa_flop_jit)


def test_timing_calls_warmup_plus_repeats_and_is_positive():
    calls = []
    stats = time_callable(lambda: calls.append(sum(range(1000))), 4, warmup=2)
    assert len(calls) == 6
    assert stats.repeats == 4 and len(stats.times_s) == 4 and stats.warmup == 2
    assert all(t > 0 for t in stats.times_s)
    assert 0 < stats.min_ms <= stats.median_ms <= stats.max_ms
    assert stats.mean_ms > 0 and stats.stdev_ms >= 0
    assert set(stats.as_dict()) >= {"median_ms", "mean_ms", "repeats"}


def test_timing_setup_passes_arguments_untimed():
    seen = []
    stats = time_callable(seen.append, 2, warmup=1, setup=lambda i: (i * 10,))
    assert seen == [0, 10, 20] and stats.repeats == 2
    with pytest.raises(ValueError):
        time_callable(lambda: None, 0)


def test_markdown_table_rows_and_ratio_columns():
    lines = markdown_table(
        ["model", "ours", "theirs"],
        [["a", 2.0, 4.0], ["b", 3.0, None], ["c", "n/a", 1.0]],
        ratios=[("ours / theirs", 1, 2), ("theirs / ours", 2, 1)],
        missing="-",
    )
    assert lines[0] == "| model | ours | theirs | ours / theirs | theirs / ours |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2:] == [
        "| a | 2.00 | 4.00 | 0.500 | 2.000 |",
        "| b | 3.00 | - | - | - |",
        "| c | n/a | 1.00 | - | - |",
    ]


def test_markdown_table_formats_per_column_and_checks_widths():
    lines = markdown_table(["n", "ms"], [[3, 12.345]], fmt=[None, lambda v: f"{v:.0f} ms"])
    assert lines[2] == "| 3 | 12 ms |"
    assert ratio_cell(3.0, 2.0, "{:.2f}x") == "1.50x" and ratio_cell(1.0, 0.0) == ""
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [[1]])


def test_rss_and_streaming_memory():
    assert rss_mib() > 0 and peak_rss_mib() >= rss_mib() * 0.5
    frames = list(synthetic_frames(4, 6, 8, video_id="v"))
    assert [f["frame_index"] for f in frames] == [0, 1, 2, 3]
    assert frames[0]["image"].shape == (3, 6, 8) and frames[0]["image"].dtype == torch.uint8
    assert torch.equal(frames[1]["image"], torch.roll(frames[0]["image"], 1, 2))
    seen = []
    out = streaming_memory(map(seen.append, frames), [1, 3], lambda: {"n": len(seen)})
    assert list(out) == [1, 3] and out[3]["n"] == 3 and out[1]["rss_mib"] > 0
    assert len(seen) == 3  # stops at the last checkpoint


def test_write_json_is_readable(tmp_path):
    path = tmp_path / "r.json"
    write_json(str(path), {"a": 1, "b": [1.5]})
    assert json.loads(path.read_text()) == {"a": 1, "b": [1.5]}
