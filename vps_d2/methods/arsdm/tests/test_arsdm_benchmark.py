"""Smoke test of ``python -m vps_d2.methods.arsdm.benchmark --quick``."""

import json

from vps_d2.methods.arsdm import benchmark


def test_arsdm_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert "| arsdm_sample.yaml | 36x48 |" in text
    size = results["sizes"][0]
    assert 0.3 < size["params_m"] < 0.6 and 0.1 < size["gflops"] < 0.3
    speed = results["speed"][0]
    assert speed["steps"] == 25 and speed["ms_frame"] > speed["ms_call"] > 0
