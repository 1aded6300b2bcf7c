"""Smoke test of ``python -m vps_d2.methods.pgn_aen.benchmark --quick``: the sample config at its
size, one timed repeat, the JSON figures."""

import json

from vps_d2.methods.pgn_aen import benchmark


def test_pgn_aen_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["threads"] == 1
    assert "(b) AEN + CFFM, sample, one 3-frame clip at 96x128, first clip" in text
    assert "| AEN + CFFM sample |" in text and "| frames streamed |" in text
    params, gflops = results["aen_cffm_sample_first_clip"]["total"]
    assert params > 0 and gflops > 0
    assert results["ms_per_frame"]["AEN + CFFM sample"] > 0
    assert list(results["memory_run"]["checkpoints"]) == ["6"]
