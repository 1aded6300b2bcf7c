"""Smoke test of ``python -m vps_d2.methods.sali.benchmark --quick``: the sample config at its
size, one timed repeat, the JSON figures."""

import json

from vps_d2.methods.sali import benchmark


def test_sali_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["threads"] == 1
    assert "| SALI sample |" in text and "| frames streamed |" in text
    r = results["sample"]
    assert r["params_m"] > 0 and 0 < r["gflops_mem1"] <= r["gflops_memfull"]
    assert r["ms_mem1"] > 0 and results["size"] == [96, 128]
    assert list(results["memory_run"]["checkpoints"]) == ["3", "6"]
