"""Smoke test of ``python -m vps_d2.methods.frame_baseline.benchmark --quick``: the sample
config at its size, one timed repeat, the JSON figures."""

import json

import pytest

from vps_d2.methods.frame_baseline import benchmark


def test_frame_baseline_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["threads"] == 1
    assert "| backbone | " in text and "| decoder (light FPN) | " in text
    sizes = results["sizes"]
    parts = ("backbone", "decoder (light FPN)", "head (1x1 predictor + upsampling)")
    total = sizes["**total**"]
    assert sum(sizes[k]["params_m"] for k in parts) == pytest.approx(total["params_m"])
    assert total["gflops"] > 0 and results["size"] == [128, 160]
    assert [r["config"] for r in results["ms_per_frame"]] == ["frame_baseline_sample.yaml"]
    assert results["ms_per_frame"][0]["ms"] > 0
