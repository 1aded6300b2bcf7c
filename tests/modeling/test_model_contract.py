"""Contract tests every registered meta-architecture gets for free (timm's test_models idea).

For each name in META_ARCH_REGISTRY, its sample config
(vps_d2/methods/<method>/configs/<method>_sample.yaml; for the
out-of-tree toy method of tests/plugins, tests/plugins/*.yaml) must build it
with random init; one training step through the engine's own step object gives finite
losses and a gradient for every trainable parameter; a 40-frame synthetic video streams to
one output per frame with the documented keys and shapes, the same through Detectron2's
per-batch forward as through ``stream()``; and the streaming state stops growing.

A generator (``task = "generation"``, e.g. ArSDM) gets the same contract with its inverted
inference: each test frame carries its mask and the output is ``{"image": uint8 (3, H, W)}``;
the same mask sequence streamed twice gives the same frames.
"""

import glob
import os

import numpy as np
import pytest
import torch
import yaml
from lightning_fabric import Fabric
from train_net_runner import ROOT

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.data import CLASS_NAMES
from vps_d2.engine.trainer import setup_optimization
from vps_d2.modeling import META_ARCH_REGISTRY, build_model, clip_contract, resolve_clip_config
from vps_d2.solver.train_step import build_train_step
from vps_d2.utils.plugins import load_plugins

# A method kept outside the package gets the same contract (docs/adding_a_method.md).
load_plugins([os.path.join(ROOT, "tests", "plugins", "toy_method.py")])

# Streaming-memory settings small enough that a 40-frame video fills the memory (used by
# the "state stops growing" check): a method whose memory does not saturate within 40
# frames of its sample config lists KEY VALUE opts under "small_memory" in the file
# tests/contract.yaml of its own folder (vps_d2/methods/<method>/tests/contract.yaml).
CONTRACT_FILE = os.path.join("tests", "contract.yaml")


def _small_memory_opts(config: str) -> list[str]:
    """The "small_memory" opts of the method folder holding ``config`` (none without a file)."""
    path = os.path.join(os.path.dirname(os.path.dirname(config)), CONTRACT_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return [str(x) for x in data.get("small_memory", [])]


# Built-in sizes for speed: the contract is about behaviour, not accuracy.
FAST = {"SOLVER.IMS_PER_BATCH": "2", "DATALOADER.NUM_WORKERS": "0"}


def _sample_configs() -> dict[str, list[str]]:
    by_arch: dict[str, list[str]] = {}
    paths = glob.glob(os.path.join(ROOT, "vps_d2", "methods", "*", "configs", "*_sample.yaml"))
    paths += glob.glob(os.path.join(ROOT, "tests", "plugins", "*.yaml"))
    for path in sorted(paths):
        cfg = _load(path)
        by_arch.setdefault(cfg.MODEL.META_ARCHITECTURE, []).append(path)
    return by_arch


def _load(path, *opts):
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(path)
    cfg.merge_from_list([x for kv in FAST.items() for x in kv] + list(opts))
    cfg.MODEL.DEVICE = "cpu"
    return resolve_clip_config(cfg)  # INPUT.CLIP.* from the model's clip contract


SAMPLES = _sample_configs()
ARCHS = sorted(name for name, _ in META_ARCH_REGISTRY)


def test_every_registered_method_has_a_sample_config():
    missing = [a for a in ARCHS if a not in SAMPLES and a not in _ALIASES()]
    assert not missing, (
        "meta-architectures without a vps_d2/methods/<method>/configs/<method>_sample.yaml: "
        f"{missing}"
    )


def _ALIASES():
    """Second names of a class registered under another name that has a sample config."""
    classes = {name: cls for name, cls in META_ARCH_REGISTRY}
    return {a for a, c in classes.items() if any(classes.get(s) is c for s in SAMPLES)}


def _disc_masks(t, h, w, rng):
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, 0.2 * min(h, w)
    return np.stack([((yy - cy - i) ** 2 + (xx - cx) ** 2 <= r * r) for i in range(t)])


def _train_batch(cfg, n=2, seed=0):
    rng = np.random.default_rng(seed)
    t, (h, w) = int(cfg.INPUT.CLIP.LENGTH), cfg.INPUT.SIZE_TRAIN
    batch = []
    for k in range(n):
        masks = _disc_masks(t, h, w, rng).astype(np.float32)
        image = rng.integers(0, 90, size=(t, 3, h, w)) + 140 * masks[:, None]
        ys, xs = np.nonzero(masks[-1])
        box = [
            (xs.min() + xs.max() + 1) / 2 / w,
            (ys.min() + ys.max() + 1) / 2 / h,
            (xs.max() - xs.min() + 1) / w,
            (ys.max() - ys.min() + 1) / h,
        ]
        batch.append(
            {
                "image": torch.from_numpy(image.clip(0, 255).astype(np.uint8)),
                "sem_seg": torch.from_numpy(masks),
                "class_id": k % len(CLASS_NAMES),
                "boxes": torch.tensor([box] * t, dtype=torch.float32),
                "box_valid": torch.ones(t, dtype=torch.bool),
                "frame_indices": list(range(t)),
                "video_id": f"v{k}",
            }
        )
    return batch


def _video(n, h=72, w=88, seed=1, with_masks=False):
    rng = np.random.default_rng(seed)
    masks = _disc_masks(n, h, w, rng)
    frames = []
    for i in range(n):
        img = rng.integers(0, 90, size=(3, h, w)) + 140 * masks[i][None]
        frames.append(
            {
                "image": torch.from_numpy(img.clip(0, 255).astype(np.uint8)),
                "height": h,
                "width": w,
                "video_id": "synthetic",
                "frame_index": i,
                "video_length": n,
            }
        )
        if with_masks:  # a generator's input: the frame's mask
            frames[-1]["sem_seg"] = torch.from_numpy(masks[i].astype(np.float32))
    return frames


def _check_output(model, out, h=72, w=88) -> None:
    """The documented output of one frame, per the model's task."""
    if getattr(model, "task", "segmentation") == "generation":
        assert set(out) >= {"image"}, out.keys()
        assert out["image"].shape == (3, h, w) and out["image"].dtype == torch.uint8
        return
    assert out["prob"].shape == (h, w) and out["prob"].dtype == torch.float32
    assert float(out["prob"].min()) >= 0.0 and float(out["prob"].max()) <= 1.0
    if "class_scores" in out:
        assert out["class_scores"].shape == (len(CLASS_NAMES),)
        assert float(out["class_scores"].sum()) == pytest.approx(1.0, abs=1e-5)
    if "box" in out:
        assert out["box"].shape == (4,)


def _same_output(a, b) -> bool:
    if "prob" in a:
        return torch.allclose(a["prob"], b["prob"], atol=1e-6)
    return torch.equal(a["image"], b["image"])


def _state_nbytes(model) -> int:
    """Bytes of tensors a model holds outside its parameters and buffers (stream state)."""
    own = {id(t) for t in model.parameters()} | {id(t) for t in model.buffers()}
    seen: set[int] = set()

    def walk(x, depth=0) -> int:
        if id(x) in seen or depth > 6:
            return 0
        seen.add(id(x))
        if torch.is_tensor(x):
            return 0 if id(x) in own else x.numel() * x.element_size()
        if isinstance(x, dict):
            return sum(walk(v, depth + 1) for v in x.values())
        if isinstance(x, (list, tuple, set)) or type(x).__name__ == "deque":
            return sum(walk(v, depth + 1) for v in x)
        if isinstance(x, torch.nn.Module):
            return sum(
                walk(v, depth + 1)
                for k, v in vars(x).items()
                if k not in ("_parameters", "_buffers", "_modules")
            ) + sum(walk(m, depth + 1) for m in x._modules.values())
        if hasattr(x, "__dict__") and not isinstance(x, type):
            return sum(walk(v, depth + 1) for v in vars(x).values())
        return 0

    return walk(model)


@pytest.mark.parametrize(
    "config", [p for ps in SAMPLES.values() for p in ps], ids=lambda p: os.path.basename(p)
)
def test_one_training_step_gives_finite_losses_and_every_gradient(config):
    cfg = _load(config)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    fabric = Fabric(accelerator="cpu", devices=1)
    wrapped, optim, _, _ = setup_optimization(cfg, model, fabric)
    got_grad: set[int] = set()

    def record(_name):
        # A gradient reached the parameter (it may be 0 where a zero-initialised layer
        # follows it, e.g. SALI's offset convs: still part of the graph, as DDP needs).
        got_grad.update(
            id(p) for p in model.parameters() if p.grad is not None and torch.isfinite(p.grad).all()
        )

    optim.after_backward = record
    step = build_train_step(cfg, model)
    losses = step(wrapped, _train_batch(cfg), optim)
    assert "main" in losses and losses["main"]
    for name, loss_dict in losses.items():
        for k, v in loss_dict.items():
            assert v.dim() == 0 and torch.isfinite(v), (name, k, v)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in got_grad]
    assert not missing, f"trainable parameters without a gradient: {missing[:8]}"


@pytest.mark.parametrize(
    "config", [p for ps in SAMPLES.values() for p in ps], ids=lambda p: os.path.basename(p)
)
def test_streaming_40_frames_one_output_each_and_bounded_state(config):
    cfg = _load(config)
    cfg.merge_from_list(_small_memory_opts(config))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    generator = getattr(model, "task", "segmentation") == "generation"
    assert getattr(model, "task", "segmentation") in ("segmentation", "generation")
    frames = _video(40, with_masks=generator)
    outs = list(model.stream(frames))
    assert len(outs) == 40
    for o in outs:
        _check_output(model, o)
    # Detectron2's protocol (batches of the clip contract's test_frames_per_batch
    # consecutive frames, state kept by the model per video) gives the same outputs as
    # stream().
    contract = clip_contract(cfg)
    n = contract.test_frames_per_batch
    assert n == model.frames_per_call and contract.online == model.online
    batched = []
    for i in range(0, 40, n):
        batched += model(frames[i : i + n])
    for a, b in zip(outs, batched):
        assert _same_output(a, b)
    # The stream state stops growing: the same after 60 and after 120 frames (multiples of
    # any clip length up to 6, so the last window is full in both).
    sizes = {}
    for length in (60, 120):
        model.reset()
        video = _video(length, with_masks=generator)
        for i in range(0, length, n):
            model(video[i : i + n])
        sizes[length] = _state_nbytes(model)
    assert sizes[120] <= sizes[60], sizes
