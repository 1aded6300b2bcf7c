"""Engine tests on a toy method with no data on disk (Detectron2's tests/test_engine.py idea).

The toy (tests/plugins/toy_method.py) is a method kept outside the package, loaded as a
plug-in: a segmenter trained by the default step, or with a discriminator by its own
two-optimizer step.
"""

import importlib.util
import json
import os
import shutil

import pytest
import torch
from test_engine import _load_tool
from train_net_runner import ROOT, run_train_net

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.engine import OptimizerSet, Trainer
from vps_d2.utils.events import EventStorage
from vps_d2.utils.plugins import load_plugins

PLUGIN = os.path.join(ROOT, "tests", "plugins", "toy_method.py")
CONFIG = os.path.join(ROOT, "tests", "plugins", "toy.yaml")
load_plugins([PLUGIN])  # registers MODEL.TOY, the model, the mapper, the step, the dataset


def _cfg(*opts):
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture
def cli(capsys):
    tool = _load_tool()

    def run(*opts, flags=()):
        code = tool.cli(["--plugin", PLUGIN, "--config-file", CONFIG, *flags, *opts])
        return code, capsys.readouterr().err

    return run


def _ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_optimizer_set_never_leaks_gradients():
    """A's backward leaves a gradient on B's parameter; B's step must ignore it."""
    from lightning_fabric import Fabric

    fabric = Fabric(accelerator="cpu", devices=1)
    a, b = torch.nn.Parameter(torch.tensor(1.0)), torch.nn.Parameter(torch.tensor(2.0))
    model = torch.nn.Module()
    model.a, model.b = a, b
    opt_a, opt_b = torch.optim.SGD([a], lr=1.0), torch.optim.SGD([b], lr=1.0)
    model, opt_a, opt_b = fabric.setup(model, opt_a, opt_b)
    optim = OptimizerSet(
        fabric,
        model,
        {"main": opt_a, "other": opt_b},
        {"main": _cfg().SOLVER.CLIP_GRADIENTS, "other": _cfg().SOLVER.CLIP_GRADIENTS},
    )
    optim.minimize("main", {"l": (a * b) ** 2})  # d/da = 2ab^2 = 8, leaves d/db = 2a^2 b = 4
    assert a.item() == pytest.approx(1.0 - 8.0) and b.grad.item() == pytest.approx(4.0)
    optim.minimize("other", {"l": 3.0 * b})  # only d/db = 3 of this loss may count
    assert b.item() == pytest.approx(2.0 - 3.0)
    assert a.item() == pytest.approx(-7.0)  # A is not stepped by B
    with pytest.raises(KeyError, match="No optimizer named 'nope'"):
        optim.minimize("nope", {"l": a})


def test_two_optimizers_alternate_each_on_its_own_group(tmp_path):
    cfg = _cfg("OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", "3")
    trainer = Trainer(cfg)
    assert trainer.optim.names == ["main", "discriminator"]
    assert type(trainer.train_step).__name__ == "ToyAdversarialStep"
    seg0 = [p.detach().clone() for p in trainer.model_raw.segmenter.parameters()]
    disc0 = [p.detach().clone() for p in trainer.model_raw.discriminator.parameters()]
    # Each optimizer holds exactly its group, and has its own learning rate.
    assert {id(p) for g in trainer.optimizers_raw["main"].param_groups for p in g["params"]} == {
        id(p) for p in trainer.model_raw.segmenter.parameters()
    }
    assert trainer.optimizers_raw["discriminator"].param_groups[0]["lr"] == pytest.approx(0.002)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert all(
        not torch.equal(a, b) for a, b in zip(seg0, trainer.model_raw.segmenter.parameters())
    )
    assert any(
        not torch.equal(a, b) for a, b in zip(disc0, trainer.model_raw.discriminator.parameters())
    )
    lines = [json.loads(x) for x in open(tmp_path / "metrics.json")]
    last = lines[-1]
    assert {
        "total_loss",
        "loss_bce",
        "loss_dice",
        "loss_adv",
        "discriminator/total_loss",
        "discriminator/loss_d",
        "lr",
        "discriminator/lr",
    } <= set(last)
    assert last["discriminator/lr"] == pytest.approx(0.002)  # WarmupConstantLR


def test_discriminator_lr_zero_leaves_it_untouched_although_the_generator_backprops(tmp_path):
    """The generator's loss flows through the discriminator (its parameters get gradients),
    but only the discriminator's own optimizer may move them: with its lr at 0 they stay."""
    cfg = _cfg(
        "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", "2", "SOLVER.DISCRIMINATOR.BASE_LR", "0.0"
    )
    trainer = Trainer(cfg)
    disc0 = [p.detach().clone() for p in trainer.model_raw.discriminator.parameters()]
    seen = {}

    def record(name):
        if name == "main":
            seen["disc_grad"] = any(
                p.grad is not None and p.grad.abs().sum() > 0
                for p in trainer.model_raw.discriminator.parameters()
            )

    trainer.optim.after_backward = record
    trainer.train()
    assert seen["disc_grad"]
    for a, b in zip(disc0, trainer.model_raw.discriminator.parameters()):
        assert torch.equal(a, b)


def test_two_optimizer_resume_equals_uninterrupted(cli, tmp_path):
    full, half = str(tmp_path / "full"), str(tmp_path / "half")
    assert cli("OUTPUT_DIR", full)[0] == 0
    ck = _ckpt(f"{full}/model_0000002.pth")
    assert {
        "model",
        "optimizer",
        "scheduler",
        "optimizer_discriminator",
        "scheduler_discriminator",
        "trainer",
        "iteration",
    } <= set(ck)
    os.makedirs(half)
    shutil.copy(f"{full}/model_0000002.pth", half)
    with open(f"{half}/last_checkpoint", "w") as f:
        f.write("model_0000002.pth")
    assert cli("OUTPUT_DIR", half, flags=["--resume"])[0] == 0
    a, b = _ckpt(f"{full}/model_final.pth"), _ckpt(f"{half}/model_final.pth")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for opt in ("optimizer", "optimizer_discriminator"):
        sa, sb = a[opt]["state"], b[opt]["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for k, v in sa[i].items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[i][k])), (opt, i, k)


def test_default_step_and_old_single_optimizer_checkpoints(cli, tmp_path):
    out = str(tmp_path / "plain")
    assert cli("MODEL.TOY.ADVERSARIAL", "False", "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", out)[0] == 0
    ck = _ckpt(f"{out}/model_0000002.pth")
    assert "optimizer_discriminator" not in ck and {"optimizer", "scheduler"} <= set(ck)
    # A checkpoint of the earlier single-optimizer layout (no trainer state) still resumes.
    del ck["trainer"]
    torch.save(ck, f"{out}/model_0000002.pth")
    code, err = cli(
        "MODEL.TOY.ADVERSARIAL",
        "False",
        "SOLVER.MAX_ITER",
        "5",
        "OUTPUT_DIR",
        out,
        flags=["--resume"],
    )
    assert code == 0, err
    assert _ckpt(f"{out}/model_final.pth")["iteration"] == 4
    assert "Resumed from" in open(f"{out}/log.txt").read()


def test_two_process_cpu_ddp_trains_both_optimizers(tmp_path):
    out = str(tmp_path / "ddp")
    p = run_train_net(
        str(tmp_path),
        CONFIG,
        "SOLVER.MAX_ITER",
        "3",
        "OUTPUT_DIR",
        out,
        flags=["--plugin", PLUGIN, "--num-gpus", "2"],
    )
    assert "World size: 2" in p.stdout and "CPU" in p.stdout
    last = [json.loads(x) for x in open(f"{out}/metrics.json")][-1]
    assert "discriminator/loss_d" in last and "loss_adv" in last
    assert os.path.isfile(f"{out}/model_final.pth")


def test_plugin_errors_are_one_clear_line(capsys):
    tool = _load_tool()
    assert tool.cli(["--plugin", "no_such_module_xyz", "--config-file", CONFIG]) == 2
    err = capsys.readouterr().err
    assert "no_such_module_xyz" in err and "Traceback" not in err
    assert tool.cli(["--plugin", "/nonexistent/plugin.py", "--config-file", CONFIG]) == 2
    assert "/nonexistent/plugin.py" in capsys.readouterr().err


def test_toy_without_plugin_is_a_config_error(tmp_path, capsys):
    """A method's keys exist only when its plug-in is loaded: the error names the key."""
    yaml = tmp_path / "other.yaml"
    yaml.write_text("MODEL:\n  NOPE_SECTION:\n    X: 1\n")
    tool = _load_tool()
    assert tool.cli(["--config-file", str(yaml)]) == 2
    assert "MODEL.NOPE_SECTION" in capsys.readouterr().err


def test_storage_names_losses_per_optimizer():
    from vps_d2.engine.train_loop import put_step_metrics

    with EventStorage() as s:
        put_step_metrics(
            {
                "main": {"loss_a": torch.tensor(1.0), "loss_b": torch.tensor(2.0)},
                "critic": {"loss_c": torch.tensor(4.0)},
            },
            0.1,
        )
        latest = {k: v for k, (v, _) in s.latest().items()}
    assert latest == {
        "data_time": pytest.approx(0.1),
        "total_loss": 3.0,
        "loss_a": 1.0,
        "loss_b": 2.0,
        "critic/total_loss": 4.0,
        "critic/loss_c": 4.0,
    }


def test_out_of_tree_method_streams_through_the_demo(cli, tmp_path):
    """The plug-in's model, trained by tools/train_net.py, runs in tools/demo.py too."""
    import cv2
    import numpy as np

    out = str(tmp_path / "train")
    assert cli("SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out)[0] == 0
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        img = np.full((40, 48, 3), 30, np.uint8)
        cv2.circle(img, (20 + i, 20), 8, (200, 200, 200), -1)
        cv2.imwrite(str(frames / f"{i:03d}.png"), img)
    demo = importlib.import_module("vps_d2.cli.demo")
    video = str(tmp_path / "toy.mp4")
    weights = f"{out}/model_final.pth"
    code = demo.main(
        [
            "--plugin",
            PLUGIN,
            "--config-file",
            CONFIG,
            "--input",
            str(frames),
            "--output",
            video,
            "--opts",
            "MODEL.WEIGHTS",
            weights,
        ]
    )
    assert code == 0 and os.path.getsize(video) > 0
    cap = cv2.VideoCapture(video)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5


def test_mixed_precision_drives_both_optimizers(cli, tmp_path):
    """SOLVER.AMP.ENABLED (Fabric's bf16-mixed on the CPU) with two named optimizers."""
    out = str(tmp_path / "amp")
    code, err = cli("SOLVER.AMP.ENABLED", "True", "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out)
    assert code == 0, err
    last = [json.loads(x) for x in open(f"{out}/metrics.json")][-1]
    assert "discriminator/loss_d" in last and "loss_adv" in last
    ck = _ckpt(f"{out}/model_final.pth")
    assert ck["optimizer_discriminator"]["state"] and ck["optimizer"]["state"]
