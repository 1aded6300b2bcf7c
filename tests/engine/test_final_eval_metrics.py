"""Every evaluation, the final one included, reaches metrics.json and TensorBoard (issue 23,
item 3: the final evaluation ran after the last step's write, at the same iteration, and the
writers dropped it)."""

from __future__ import annotations

import glob
import importlib
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine import CONFIG, FAST

from vps_d2.utils.events import EventStorage, JSONWriter, TensorboardWriter


def test_writers_keep_scalars_put_at_an_iteration_already_written(tmp_path):
    path = tmp_path / "metrics.json"
    json_writer, tb_writer = JSONWriter(str(path)), TensorboardWriter(str(tmp_path / "tb"))
    with EventStorage(0) as storage:
        for it in range(3):
            storage.iter = it
            storage.put_scalar("total_loss", 1.0 / (it + 1))
            json_writer.write()
            tb_writer.write()
        # after the last step's write, at the same iteration: the final evaluation
        storage.put_scalars(smoothing_hint=False, **{"ds/maxDice": 0.75, "ds/n_frames": 96})
        json_writer.write()
        tb_writer.write()
        json_writer.write()  # nothing new: no line
    tb_writer.close()
    lines = [json.loads(x) for x in open(path)]
    assert [x["iteration"] for x in lines] == [0, 1, 2, 2]
    assert lines[-1] == {"iteration": 2, "ds/maxDice": 0.75, "ds/n_frames": 96.0}
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("ds/maxDice")] == [(2, 0.75)]
    assert [e.step for e in acc.Scalars("total_loss")] == [0, 1, 2]


def test_final_evaluation_in_metrics_json_and_tensorboard(
    tiny_sample_root, tmp_path, monkeypatch, capsys
):
    """4 iterations, an evaluation every 2: iteration 1 (periodic) and 3 (the final one)."""
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    tool = importlib.import_module("vps_d2.cli.train_net")
    out = tmp_path / "o"
    opts = [*FAST, "SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "2", "OUTPUT_DIR", str(out)]
    assert tool.cli(["--config-file", CONFIG, *opts]) == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in open(out / "metrics.json")]
    evals = {x["iteration"]: x for x in lines if any(k.endswith("/maxDice") for k in x)}
    assert sorted(evals) == [1, 3], [sorted(x) for x in lines]
    assert all(0.0 <= v <= 1.0 for k, v in evals[3].items() if k.endswith("/maxDice"))
    (events,) = glob.glob(str(out / "events.out.tfevents.*"))
    acc = EventAccumulator(events)
    acc.Reload()
    tag = next(t for t in acc.Tags()["scalars"] if t.endswith("/maxDice"))
    assert [e.step for e in acc.Scalars(tag)] == [1, 3]
