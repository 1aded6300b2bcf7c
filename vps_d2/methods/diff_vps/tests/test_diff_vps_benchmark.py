"""Smoke test of ``python -m vps_d2.methods.diff_vps.benchmark --quick``: the sample config at its
size, one timed repeat, the JSON figures."""

import json

from vps_d2.methods.diff_vps import benchmark


def test_diff_vps_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["threads"] == 1
    assert "| image encoder | " in text and "| DDIM steps | ms/frame | vs 3 steps |" in text
    label = "sample (small CNN)"
    assert results["params_m"][label]["generator"] > 0
    assert results["gflops"][label]["head per DDIM step"] > 0
    assert results["ms_per_frame"]["1"] > 0 and results["size"] == [96, 128]
    assert list(results["memory_run"]["checkpoints"]) == ["3", "6"]
