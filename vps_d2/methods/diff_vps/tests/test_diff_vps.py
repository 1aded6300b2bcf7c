"""Diff-VPS units: schedule, DDIM sampling, heads, discriminator, losses, the two-optimizer
step, gradients and streaming (small CPU models; the training runs are in
test_diff_vps_train.py)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from lightning_fabric import Fabric

import vps_d2.methods.diff_vps  # noqa: F401  (registers MODEL.DIFF_VPS)
from vps_d2.config import ConfigError, add_vps_config, get_cfg
from vps_d2.methods.diff_vps.criterion import DiffVPSCriterion, build_weight_dict
from vps_d2.methods.diff_vps.diffusion import (
    DDIMSampler,
    MaskLatentEmbedding,
    alpha_sigma,
    cosine_log_snr,
    noise_from_generators,
    q_sample,
)
from vps_d2.methods.diff_vps.discriminator import InceptionDiscriminator, SmallDiscriminator
from vps_d2.methods.diff_vps.encoders import PriorFPN
from vps_d2.methods.diff_vps.heads import (
    BoxHead,
    ClassHead,
    DecodeHead,
    LatentFusion,
    LogSNREmbedding,
)
from vps_d2.methods.diff_vps.model import frame_seed
from vps_d2.methods.diff_vps.reconstruction import ReconstructionDecoder
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model, resolve_clip_config
from vps_d2.solver import build_optimizer
from vps_d2.solver.train_step import OptimizerSet, build_train_step

H, W = 64, 80


def small_cfg(*opts):
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_list(
        [
            "MODEL.META_ARCHITECTURE",
            "DiffVPS",
            "MODEL.DEVICE",
            "cpu",
            "MODEL.BACKBONE.NAME",
            "SmallCNN",
            "MODEL.BACKBONE.SMALL_CNN_CHANNELS",
            "[8, 16, 16, 16]",
            "MODEL.DIFF_VPS.FPN_CHANNELS",
            "16",
            "MODEL.DIFF_VPS.HEAD.CHANNELS",
            "24",
            "MODEL.DIFF_VPS.HEAD.LATENT_HIDDEN",
            "16",
            "MODEL.DIFF_VPS.HEAD.TIME_DIM",
            "32",
            "MODEL.DIFF_VPS.HEAD.BOX_CHANNELS",
            "16",
            "MODEL.DIFF_VPS.RECONSTRUCTION.CHANNELS",
            "16",
            "MODEL.DIFF_VPS.DISCRIMINATOR.NAME",
            "small",
            "MODEL.DIFF_VPS.DISCRIMINATOR.INPUT_SIZE",
            "[]",
            "MODEL.DIFF_VPS.DISCRIMINATOR.SMALL_CHANNELS",
            "[8, 8, 16, 16]",
            "INPUT.SIZE_TRAIN",
            f"({H}, {W})",
            "INPUT.SIZE_TEST",
            f"({H}, {W})",
            "INPUT.CLIP.SAMPLING",
            "online",
            "INPUT.CLIP.LENGTH",
            "5",
            *opts,
        ]
    )
    return cfg


def small_model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(small_cfg(*opts))


def clips(n=2, t=5, seed=0, class_ids=None, box_valid=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        mask = torch.zeros(t, H, W)
        mask[:, 10 + i : 40, 20 : 50 + i] = 1
        out.append(
            {
                "image": torch.randint(0, 256, (t, 3, H, W), dtype=torch.uint8, generator=g),
                "sem_seg": mask,
                "class_id": (class_ids[i] if class_ids is not None else i % 6),
                "boxes": torch.tensor([[0.44, 0.4, 0.4, 0.47]]).repeat(t, 1),
                "box_valid": torch.full((t,), bool(box_valid)),
            }
        )
    return out


def frames(n=7, seed=0, video="v"):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=g),
            "height": 50,
            "width": 70,
            "video_id": video,
            "frame_index": i,
        }
        for i in range(n)
    ]


# ------------------------------------------------------------------ schedule and sampling
def test_cosine_log_snr_matches_closed_form():
    t = np.array([0.0, 1e-3, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1.0])
    c = np.cos((t + 0.0002) / 1.00025 * np.pi / 2)
    expected = -np.log(np.maximum(c**-2.0 - 1.0, 1e-5))
    got = cosine_log_snr(torch.tensor(t, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert got[0] == got[1] == pytest.approx(-math.log(1e-5))  # the floor near t = 0
    assert np.all(np.diff(got[1:]) < 0)  # then decreasing in t
    a, s = alpha_sigma(torch.tensor(expected))
    np.testing.assert_allclose(a.numpy(), np.sqrt(1 / (1 + np.exp(-expected))), rtol=1e-12)
    np.testing.assert_allclose((a**2 + s**2).numpy(), 1.0, rtol=1e-12)


def test_q_sample_is_alpha_x0_plus_sigma_eps():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 4, 5, 6, generator=g)
    ls = torch.tensor([-3.0, 0.0, 5.0])
    sig = 1 / (1 + np.exp(-ls.numpy()))
    ref = (
        np.sqrt(sig)[:, None, None, None] * x0.numpy()
        + np.sqrt(1 - sig)[:, None, None, None] * eps.numpy()
    )
    np.testing.assert_allclose(q_sample(x0, ls, eps).numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_ddim_with_true_x0_returns_it_on_the_forward_trajectory(steps):
    """predict() always gives the true x0: each latent lies on q_sample(x0, t_i, eps) with ONE
    eps (consistent re-noising) and the result is x0."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 3, 4, 4, generator=g) * 0.01
    noise = torch.randn(2, 3, 4, 4, generator=g)
    sampler = DDIMSampler(steps, "mean")

    def predict(z, log_snr):
        return {"x0": x0, "mask_logits": x0 * 7}

    res = sampler.sample(predict, noise)
    ts = np.linspace(1.0, 0.0, steps + 1)
    ls = -np.log(np.maximum(np.cos((ts + 0.0002) / 1.00025 * np.pi / 2) ** -2.0 - 1.0, 1e-5))
    a, s = np.sqrt(1 / (1 + np.exp(-ls))), np.sqrt(1 / (1 + np.exp(ls)))
    eps = (noise.numpy() - a[0] * x0.numpy()) / s[0]
    assert len(res["latents"]) == steps + 1
    for i, z in enumerate(res["latents"]):
        np.testing.assert_allclose(z.numpy(), a[i] * x0.numpy() + s[i] * eps, atol=1e-5)
    for x in res["x0"]:
        assert torch.equal(x, x0)
    torch.testing.assert_close(res["mask_logits"], x0 * 7)


def test_ddim_step_feeds_back_the_previous_prediction():
    """Changing one step's prediction changes the next latent and what the next step sees
    (the public code re-embedded argmax over one channel: a constant, so this would fail)."""
    noise = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(2))

    def run(bump_at):
        seen = []

        def predict(z, log_snr):
            seen.append(z.clone())
            x0 = torch.full_like(z, 0.01 * (1 + (len(seen) - 1 == bump_at)))
            return {"x0": x0, "mask_logits": x0}

        res = DDIMSampler(3, "last").sample(predict, noise)
        return seen, res

    base, res0 = run(-1)
    bumped, res1 = run(0)
    assert torch.equal(base[0], bumped[0])
    assert not torch.allclose(base[1], bumped[1])  # step 2 sees step 1's changed x0
    assert not torch.allclose(res0["latents"][1], res1["latents"][1])


def test_model_sampler_reembeds_the_head_prediction():
    """On the real model: making the decode head predict other logits at step 1 changes the
    latent that step 2's latent transform receives."""
    model = small_model().eval()
    x = torch.randn(1, 3, H, W)
    temporal = model.backbone.temporal_features(torch.randn(1, 4, 3, H, W))

    def run(offset):
        calls, seen = [0], []
        head_fwd, fusion_fwd = model.decode_head.forward, model.latent_fusion.forward

        def head(levels, temb):
            f, logits = head_fwd(levels, temb)
            calls[0] += 1
            return f, logits + (offset if calls[0] == 1 else 0.0)

        def fusion(z, h1):
            seen.append(z.clone())
            return fusion_fwd(z, h1)

        model.decode_head.forward, model.latent_fusion.forward = head, fusion
        try:
            model.predict(x, temporal, [torch.Generator().manual_seed(0)])
        finally:
            del model.decode_head.forward, model.latent_fusion.forward
        return seen

    a, b = run(-20.0), run(20.0)  # step 1 predicts all background vs all polyp
    assert len(a) == 3 and torch.equal(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    codes = model.mask_embed.codes()
    # with the x0 of step 1 known, z_2 = alpha_2 x0 + sigma_2 eps_hat: the difference is
    # (alpha_2 - sigma_2 alpha_1 / sigma_1) (code_1 - code_0) at every pixel
    ls1, ls2 = cosine_log_snr(torch.tensor([1.0, 2 / 3]))
    (a1, s1), (a2, s2) = alpha_sigma(ls1), alpha_sigma(ls2)
    diff = (a2 - s2 * a1 / s1) * (codes[1] - codes[0])
    torch.testing.assert_close(
        (b[1] - a[1])[0], diff.view(-1, 1, 1).expand_as(a[1][0]), atol=1e-6, rtol=1e-4
    )


def test_mask_embedding_and_reembedding():
    emb = MaskLatentEmbedding(5, bit_scale=0.01)
    w = emb.embedding.weight.detach()
    codes = (torch.sigmoid(w) * 2 - 1) * 0.01
    assert codes.abs().max() <= 0.01
    mask = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    z = emb(mask)
    assert z.shape == (1, 5, 2, 2)
    torch.testing.assert_close(z[0, :, 0, 1], codes[1])
    torch.testing.assert_close(z[0, :, 0, 0], codes[0])
    logits = torch.tensor([[[[-2.0, 3.0], [0.5, -0.1]]]])
    torch.testing.assert_close(emb.reembed(logits, "threshold"), emb((logits[:, 0] > 0).float()))
    p = torch.sigmoid(logits[0, 0])
    ref = p[None] * codes[1].view(-1, 1, 1) + (1 - p[None]) * codes[0].view(-1, 1, 1)
    torch.testing.assert_close(emb.reembed(logits, "prob")[0], ref)
    with pytest.raises(ValueError, match="REEMBED"):
        emb.reembed(logits, "argmax")


# ------------------------------------------------------------------ parts
def test_part_shapes_and_public_code_sizes():
    """Shapes of each part, and the parameter counts of the paper-sized heads against the
    public code's measured sizes (methods.md: FPN 0.21 M, latent transform 0.44 M, time
    MLP 1.07 M, decode head 8.88 M incl. class 4.6 K and box 17.5 K, reconstruction 3.15 M)."""
    mit = [64, 128, 320, 512]
    feats = [torch.randn(2, c, 56 // 2**i, 56 // 2**i) for i, c in enumerate(mit)]
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    fpn = PriorFPN(mit, 64)
    h = fpn(feats)
    assert [tuple(x.shape) for x in h] == [(2, 64, 56 // 2**i, 56 // 2**i) for i in range(4)]
    fusion = LatentFusion(64, 64, 256)
    h1 = fusion(torch.randn(2, 64, 56, 56), h[0])
    assert h1.shape == (2, 64, 56, 56)
    temb_mod = LogSNREmbedding(8, 1024)
    temb = temb_mod(torch.tensor([-3.0, 4.0]))
    assert temb.shape == (2, 1024) and temb_mod.features(torch.zeros(2)).shape == (2, 17)
    head = DecodeHead([64] * 4, 768, 1024, 0.1)
    f, logits = head([h1] + h[1:], temb)
    assert f.shape == (2, 768, 56, 56) and logits.shape == (2, 1, 56, 56)
    cls_head, box_head = ClassHead(768, 6), BoxHead([64] * 4, 64, 16)
    assert cls_head(f).shape == (2, 6)
    box = box_head([h1] + h[1:])
    assert box.shape == (2, 4) and box.min() >= 0 and box.max() <= 1
    rec = ReconstructionDecoder(mit, 768)
    assert rec(feats, (224, 224)).shape == (2, 3, 224, 224)
    sizes = {
        "fpn": (n(fpn), 0.21e6),
        "latent": (n(fusion), 0.44e6),
        "time": (n(temb_mod), 1.07e6),
        "cls": (n(cls_head), 4.6e3),
        "box": (n(box_head), 17.5e3),
        "recon": (n(rec), 3.15e6),
        "decode": (n(head) + n(cls_head) + n(box_head), 8.88e6),
    }
    for name, (ours, theirs) in sizes.items():
        assert abs(ours - theirs) / theirs < 0.02, (name, ours, theirs)


def test_inception_discriminator_is_torchvisions_architecture_with_a_logit():
    torch.manual_seed(0)
    d = InceptionDiscriminator(input_size=(75, 75))
    ref = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True)
    assert sum(p.numel() for p in d.parameters()) == sum(p.numel() for p in ref.parameters()) + 1001
    assert sorted(d.net.state_dict()) == sorted(ref.state_dict())
    assert d.logit.in_features == 1000 and d.logit.out_features == 1
    d.eval()
    with torch.no_grad():
        out = d(torch.randn(2, 3, 40, 60))  # resized to 75x75
    assert out.shape == (2,) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="INPUT_SIZE"):
        InceptionDiscriminator(input_size=(64, 64))


def test_inception_weights_only_from_a_local_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="DISCRIMINATOR.WEIGHTS.*never downloads"):
        InceptionDiscriminator(weights=str(tmp_path / "missing.pth"))
    torch.manual_seed(1)
    src = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    path = tmp_path / "inception_v3.pth"
    torch.save(src.state_dict(), path)  # torchvision's layout, AuxLogits included
    d = InceptionDiscriminator(weights=str(path))
    for k, v in d.net.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    bad = {k: v for k, v in src.state_dict().items() if not k.startswith("Mixed_7c")}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="missing.*Mixed_7c"):
        InceptionDiscriminator(weights=str(tmp_path / "bad.pth"))


def test_small_discriminator_shape():
    d = SmallDiscriminator((8, 8, 16, 16))
    assert d(torch.randn(3, 3, 40, 52)).shape == (3,)


# ------------------------------------------------------------------ losses
def test_weight_dict_is_the_papers_lambdas():
    cfg = small_cfg()
    w = build_weight_dict(cfg.MODEL.DIFF_VPS.LOSS, use_mdm=True, use_trm=True, use_adversarial=True)
    mdm, trm = 0.75, 0.25  # Eq. 6
    expected = {
        "loss_seg_ce": mdm * 0.5,
        "loss_seg_mse": mdm * 0.5,
        "loss_seg_iou": mdm * 0.5,
        "loss_cls": mdm * 0.05,
        "loss_box": mdm * 0.2,
        "loss_recon": trm * 1.0,
        "loss_adv": trm * 0.001,
        "loss_d": 1.0,
    }
    assert w == pytest.approx(expected)
    cfg.merge_from_list(["MODEL.DIFF_VPS.LOSS.SEG", "code", "MODEL.DIFF_VPS.LOSS.BOX", "l1_giou"])
    w = build_weight_dict(
        cfg.MODEL.DIFF_VPS.LOSS, use_mdm=True, use_trm=False, use_adversarial=False
    )
    assert sorted(w) == [
        "loss_box_giou",
        "loss_box_l1",
        "loss_cls",
        "loss_seg_bce",
        "loss_seg_dice",
        "loss_seg_mse",
    ]
    cfg.merge_from_list(["MODEL.DIFF_VPS.LOSS.SEG", "ce"])
    with pytest.raises(ValueError, match="LOSS.SEG"):
        build_weight_dict(cfg.MODEL.DIFF_VPS.LOSS, use_mdm=True, use_trm=True, use_adversarial=True)


def test_segmentation_terms_against_numpy():
    crit = DiffVPSCriterion({"loss_seg_ce": 1.0, "loss_seg_mse": 1.0, "loss_seg_iou": 1.0})
    g = torch.Generator().manual_seed(3)
    logits, masks = torch.randn(2, 1, 6, 7, generator=g), (torch.rand(2, 6, 7, generator=g) > 0.5)
    out = crit(mask_logits=logits, masks=masks.float())
    x, m = logits[:, 0].double().numpy(), masks.double().numpy()
    p = 1 / (1 + np.exp(-x))
    ce = np.mean(np.maximum(x, 0) - x * m + np.log1p(np.exp(-np.abs(x))))
    inter = (p * m).sum((1, 2))
    iou = np.mean(1 - (inter + 1) / (p.sum((1, 2)) + m.sum((1, 2)) - inter + 1))
    assert float(out["loss_seg_ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(out["loss_seg_mse"]) == pytest.approx(np.mean((p - m) ** 2), rel=1e-5)
    assert float(out["loss_seg_iou"]) == pytest.approx(iou, rel=1e-5)


@pytest.mark.parametrize("box_loss", ["mse", "l1_giou"])
def test_class_and_box_losses_ignore_unlabelled_frames(box_loss):
    names = {"mse": {"loss_box": 1.0}, "l1_giou": {"loss_box_l1": 1.0, "loss_box_giou": 1.0}}
    crit = DiffVPSCriterion(
        {
            "loss_seg_ce": 1.0,
            "loss_seg_mse": 1.0,
            "loss_seg_iou": 1.0,
            "loss_cls": 1.0,
            **names[box_loss],
        },
        box_loss=box_loss,
    )
    g = torch.Generator().manual_seed(4)
    cls = torch.randn(3, 6, generator=g, requires_grad=True)
    box = torch.rand(3, 4, generator=g).mul(0.5).add(0.2).requires_grad_()
    target = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.2, 0.2], [0.5, 0.5, 0.4, 0.4]])
    ids, valid = torch.tensor([2, -1, 5]), torch.tensor([True, False, True])
    kw = {"mask_logits": torch.zeros(3, 1, 4, 4), "masks": torch.zeros(3, 4, 4)}
    out = crit(
        class_logits=cls, class_ids=ids, boxes=box, box_targets=target, box_valid=valid, **kw
    )
    ref_cls = F.cross_entropy(cls[[0, 2]], ids[[0, 2]])
    torch.testing.assert_close(out["loss_cls"], ref_cls)
    if box_loss == "mse":
        torch.testing.assert_close(out["loss_box"], F.mse_loss(box[[0, 2]], target[[0, 2]]))
    sum(v for k, v in out.items() if k.startswith("loss_box") or k == "loss_cls").backward()
    assert cls.grad[1].abs().sum() == 0 and cls.grad[[0, 2]].abs().sum() > 0
    assert box.grad[1].abs().sum() == 0 and box.grad[[0, 2]].abs().sum() > 0
    # nothing labelled: a zero that still has a graph (no crash, no NaN)
    out = crit(
        class_logits=cls,
        class_ids=torch.full((3,), -1),
        boxes=box,
        box_targets=target,
        box_valid=torch.zeros(3, dtype=torch.bool),
        **kw,
    )
    for k in out:
        if k == "loss_cls" or k.startswith("loss_box"):
            assert float(out[k].detach()) == 0.0 and out[k].requires_grad


def test_model_takes_the_target_frames_labels():
    model = small_model().train()
    data = clips(2, class_ids=[3, -1])
    data[1]["box_valid"][-1] = False  # the target frame has no box, the others do
    tg = model._clip_targets(data)
    assert tg["class_ids"].tolist() == [3, -1]
    assert tg["box_valid"].tolist() == [True, False]
    torch.testing.assert_close(tg["boxes"][0], data[0]["boxes"][-1])
    assert torch.equal(tg["masks"][0], data[0]["sem_seg"][-1])


# ------------------------------------------------------------------ adversarial training
def test_discriminator_labels_real_1_fake_0_and_adversarial_gradient_reaches_the_decoder():
    model = small_model().train()
    out = model(clips(2), mode="generator")
    real, fake = out["real"], out["fake"]
    d = model.discriminator
    r, f = d(real).detach().double().numpy(), d(fake.detach()).detach().double().numpy()
    ld = model({"real": real, "fake": fake.detach()}, mode="discriminator")["loss_d"]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = np.mean(-np.log(sig(r))) + np.mean(-np.log(1 - sig(f)))  # real 1, fake 0
    assert float(ld.detach()) == pytest.approx(expected, rel=1e-5)
    swapped = np.mean(-np.log(sig(f))) + np.mean(-np.log(1 - sig(r)))
    assert abs(expected - swapped) > 1e-6  # the test can tell the labels apart
    g = model({"fake": fake, "losses": out["losses"]}, mode="adversarial")
    expected_adv = 0.25 * 0.001 * np.mean(-np.log(sig(f)))  # TRM x ADV x -log D(fake)
    assert float(g["loss_adv"].detach()) == pytest.approx(expected_adv, rel=1e-5)
    model.zero_grad()
    g["loss_adv"].backward()
    rec = model.reconstruction.predictor.weight.grad
    assert rec is not None and rec.abs().sum() > 0
    assert model.backbone.temporal.stem[0][0].weight.grad.abs().sum() > 0
    assert model.backbone.image.stem[0][0].weight.grad is None  # the term only reaches TRM


def _optimizer_set(cfg, model):
    fabric = Fabric(accelerator="cpu", devices=1)
    groups = model.optimizer_groups()
    opts = {name: build_optimizer(cfg, model, params=ps, name=name) for name, ps in groups.items()}
    wrapped, *opts_w = fabric.setup(model, *opts.values())
    clips_cfg = {
        "main": cfg.SOLVER.CLIP_GRADIENTS,
        "discriminator": cfg.SOLVER.DISCRIMINATOR.CLIP_GRADIENTS,
    }
    return wrapped, OptimizerSet(fabric, wrapped, dict(zip(opts, opts_w)), clips_cfg)


def test_each_optimizer_updates_only_its_own_parameters():
    cfg = small_cfg("SOLVER.BASE_LR", "0.01", "SOLVER.DISCRIMINATOR.BASE_LR", "0.01")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    d_ids = {id(p) for p in model.discriminator.parameters()}
    groups = model.optimizer_groups()
    assert set(groups) == {"main", "discriminator"}
    assert {id(p) for p in groups["discriminator"]} == d_ids
    assert not d_ids & {id(p) for p in groups["main"]}
    assert len(groups["main"]) + len(groups["discriminator"]) == len(list(model.parameters()))
    wrapped, optim = _optimizer_set(cfg, model)
    snaps = []
    snap = lambda: {n: p.detach().clone() for n, p in model.named_parameters()}  # noqa: E731
    minimize = optim.minimize

    def recording(name, losses):
        total = minimize(name, losses)
        snaps.append((name, snap()))
        return total

    optim.minimize = recording
    step = build_train_step(cfg, model)
    assert type(step).__name__ == "DiffVPSTrainStep"
    before = snap()
    logged = step(wrapped, clips(2), optim)
    assert set(logged) == {"main", "discriminator"} and "loss_adv" in logged["main"]
    assert [name for name, _ in snaps] == ["discriminator", "main"]
    is_d = lambda n: n.startswith("discriminator.")  # noqa: E731
    after_d, after_g = snaps[0][1], snaps[1][1]
    for n in before:
        moved_d = not torch.equal(before[n], after_d[n])
        moved_g = not torch.equal(after_d[n], after_g[n])
        assert not (moved_d and not is_d(n)), f"D step moved generator parameter {n}"
        assert not (moved_g and is_d(n)), f"G step moved discriminator parameter {n}"
    assert any(not torch.equal(before[n], after_d[n]) for n in before if is_d(n))
    assert any(not torch.equal(after_d[n], after_g[n]) for n in before if not is_d(n))


def test_every_trainable_parameter_gets_a_gradient():
    model = small_model().train()
    out = model(clips(2), mode="generator")
    ld = model({"real": out["real"], "fake": out["fake"].detach()}, mode="discriminator")
    g = model({"fake": out["fake"], "losses": out["losses"]}, mode="adversarial")
    assert set(g) == {
        "loss_seg_ce",
        "loss_seg_mse",
        "loss_seg_iou",
        "loss_cls",
        "loss_box",
        "loss_recon",
        "loss_adv",
    }
    (sum(g.values()) + sum(ld.values())).backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert not missing, missing


def test_ablation_switches_build_only_their_parts():
    m1 = small_model(
        "MODEL.DIFF_VPS.USE_MDM",
        "False",
        "MODEL.DIFF_VPS.USE_TRM",
        "False",
        "MODEL.DIFF_VPS.USE_ADVERSARIAL",
        "False",
    )
    assert m1.backbone.temporal is None and m1.reconstruction is None
    assert m1.class_head is None and m1.box_head is None and m1.discriminator is None
    assert list(m1.optimizer_groups()) == ["main"]
    losses = m1.train()(clips(2, t=1))  # ablation #1 trains on single frames
    assert sorted(losses) == ["loss_seg_ce", "loss_seg_iou", "loss_seg_mse"]
    out = next(iter(m1.eval().stream(frames(1))))
    assert sorted(out) == ["prob"]
    m3 = small_model("MODEL.DIFF_VPS.USE_MDM", "False", "MODEL.DIFF_VPS.USE_ADVERSARIAL", "False")
    assert sorted(m3.train()(clips(2))) == [
        "loss_recon",
        "loss_seg_ce",
        "loss_seg_iou",
        "loss_seg_mse",
    ]
    with pytest.raises(ValueError, match="USE_ADVERSARIAL needs USE_TRM"):
        small_model("MODEL.DIFF_VPS.USE_TRM", "False")


def test_training_clip_length_is_checked():
    # INPUT.CLIP is checked once, against the clip contract (before any model is built)
    with pytest.raises(ConfigError, match="INPUT.CLIP.LENGTH = 3 .*INPUT.CLIP.LENGTH 5"):
        resolve_clip_config(small_cfg("INPUT.CLIP.LENGTH", "3"))
    with pytest.raises(ConfigError, match="INPUT.CLIP.SAMPLING = 'window' .*'online'"):
        resolve_clip_config(small_cfg("INPUT.CLIP.SAMPLING", "window"))
    # without the temporal module only the target frame is used: any length
    no_trm = ("MODEL.DIFF_VPS.USE_TRM", "False", "MODEL.DIFF_VPS.USE_ADVERSARIAL", "False")
    assert resolve_clip_config(small_cfg(*no_trm, "INPUT.CLIP.LENGTH", "1")).INPUT.CLIP.LENGTH == 1
    unset = resolve_clip_config(small_cfg("INPUT.CLIP.LENGTH", "0", "INPUT.CLIP.SAMPLING", ""))
    assert (unset.INPUT.CLIP.LENGTH, unset.INPUT.CLIP.SAMPLING) == (5, "online")
    model = small_model().train()
    with pytest.raises(ValueError, match="clip contract.*INPUT.CLIP.LENGTH 5"):
        model(clips(2, t=3))
    with pytest.raises(ValueError, match="unknown mode"):
        model(clips(2), mode="gan")


# ------------------------------------------------------------------ streaming
def test_streaming_outputs_and_equivalence_with_clip_prediction():
    model = small_model().eval()
    fr = frames(7)
    outs = list(model.stream(fr))
    assert len(outs) == 7
    for o in outs:
        assert o["prob"].shape == (50, 70) and 0 <= o["prob"].min() <= o["prob"].max() <= 1
        assert o["class_scores"].shape == (6,)
        assert float(o["class_scores"].sum()) == pytest.approx(1.0, abs=1e-5)
        assert o["box"].shape == (4,) and o["box_score"].shape == ()
        assert float(o["box_score"]) == pytest.approx(float(o["prob"].max()))
    # frame t = the clip [t-4 .. t] (clamped at 0: the first frame repeats) through
    # predict_clips with the same per-frame generator
    x = model.prepare_test_images(torch.stack([f["image"] for f in fr]))
    for t in (0, 2, 6):
        idx = [max(0, t - k) for k in range(4, -1, -1)]
        res = model.predict_clips(x[idx][None], [model.frame_generator("v", t)])
        prob = model.logits_to_probs(res["mask_logits"], 50, 70)[0]
        torch.testing.assert_close(prob, outs[t]["prob"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            res["class_logits"][0].softmax(-1), outs[t]["class_scores"], atol=1e-5, rtol=1e-4
        )
    assert len(model._buffer) <= model.delta


def test_test_noise_is_seeded_per_frame_and_batch_independent():
    model = small_model().eval()
    a = [o["prob"] for o in model.stream(frames(4))]
    b = [o["prob"] for o in model.stream(frames(4))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert frame_seed(0, "v", 1) != frame_seed(0, "v", 2) != frame_seed(0, "w", 2)
    model.test_seed = 5
    c = [o["prob"] for o in model.stream(frames(4))]
    assert not torch.equal(a[2], c[2])
    # a batch of two gives each sample what it gives alone (per-sample noise)
    x = torch.randn(2, 5, 3, H, W)
    gens = lambda: [model.frame_generator("a", 3), model.frame_generator("b", 3)]  # noqa: E731
    both = model.predict_clips(x, gens())
    for i in range(2):
        alone = model.predict_clips(x[i : i + 1], [gens()[i]])
        torch.testing.assert_close(
            both["mask_logits"][i], alone["mask_logits"][0], atol=1e-5, rtol=1e-4
        )
    assert not torch.allclose(both["latents"][0][0], both["latents"][0][1])


def test_output_mean_or_last_over_steps():
    model = small_model("MODEL.DIFF_VPS.DIFFUSION.SAMPLE_STEPS", "2").eval()
    x = torch.randn(1, 5, 3, H, W)
    logits = []
    fwd = model.decode_head.forward

    def head(levels, temb):
        f, lg = fwd(levels, temb)
        logits.append(lg)
        return f, lg

    model.decode_head.forward = head
    mean = model.predict_clips(x, [torch.Generator().manual_seed(0)])["mask_logits"]
    model.sampler.output = "last"
    last = model.predict_clips(x, [torch.Generator().manual_seed(0)])["mask_logits"]
    up = lambda t: F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)  # noqa
    torch.testing.assert_close(mean, up((logits[0] + logits[1]) / 2), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(last, up(logits[3]), atol=1e-5, rtol=1e-4)


def test_noise_is_drawn_on_the_generators_device_then_moved():
    """The initial DDIM noise comes from CPU generators and is moved to the model's device
    ("meta" stands in for a GPU here), so a frame's noise, hence its output, is the same on
    the CPU and on a GPU (a CUDA generator draws other numbers from the same seed)."""
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(get_config_file("diff_vps_sample.yaml"))
    model = build_model(resolve_clip_config(cfg))
    g = model.frame_generator("v", 3)
    assert g.device == torch.device("cpu")
    want = torch.randn(
        (2, 3, 4), generator=torch.Generator().manual_seed(frame_seed(model.test_seed, "v", 3))
    )
    got = noise_from_generators((2, 3, 4), [g, model.frame_generator("w", 3)], "cpu")
    assert torch.equal(got[0], want) and not torch.equal(got[1], want)
    moved = noise_from_generators((2, 3, 4), [model.frame_generator("v", 3)], "meta")
    assert moved.device.type == "meta" and moved.shape == (1, 2, 3, 4)
