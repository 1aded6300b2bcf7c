"""ArSDM's parts against independent values: U-Net shapes and SPADE-GroupNorm, the schedule
and DDIM against their closed forms, the adaptive weights against Eq. 7, refinement
gradients (to the U-Net, never to the frozen segmenter), seeded DDIM determinism, EMA."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vps_d2.checkpoint import VPSCheckpointer
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.methods.arsdm.criterion import ArSDMCriterion, adaptive_weights, structure_loss
from vps_d2.methods.arsdm.diffusion import GaussianDiffusion, make_beta_schedule
from vps_d2.methods.arsdm.model import frame_seed, mask_to_cond
from vps_d2.methods.arsdm.unet import AttentionBlock, SemanticUNet, SPADEGroupNorm
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model

TINY_UNET = dict(
    model_channels=8,
    channel_mult=(1, 2, 2),
    num_res_blocks=1,
    attention_resolutions=(4,),
    num_head_channels=8,
    groups=4,
    spade_hidden=8,
)


def _cfg(*opts):
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(get_config_file("arsdm_sample.yaml"))
    cfg.merge_from_list(
        [
            "MODEL.ARSDM.UNET.MODEL_CHANNELS",
            "8",
            "MODEL.ARSDM.UNET.NUM_HEAD_CHANNELS",
            "8",
            "INPUT.SIZE_TRAIN",
            "(16, 24)",
            "INPUT.SIZE_TEST",
            "(16, 24)",
            "MODEL.ARSDM.SAMPLER.STEPS",
            "4",
            *opts,
        ]
    )
    return cfg


def _disc(n, h, w, r=0.3, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        out.append(((yy - cy) ** 2 + (xx - cx) ** 2 <= (r * min(h, w)) ** 2).astype(np.float32))
    return torch.from_numpy(np.stack(out))


# ---------------------------------------------------------------------------- U-Net
@pytest.mark.parametrize("updown", [True, False])
@pytest.mark.parametrize("size", [(16, 24), (32, 32)])
def test_unet_output_shape_and_attention_placement(updown, size):
    torch.manual_seed(0)
    unet = SemanticUNet(resblock_updown=updown, **TINY_UNET)
    x = torch.randn(2, 3, *size)
    out = unet(x, torch.tensor([0, 999]), mask_to_cond(_disc(2, *size)))
    assert out.shape == (2, 3, *size)
    # attention at ds 4 = the last level: 1 block in the encoder (1 res block), 1 in the
    # middle, 2 in the decoder (num_res_blocks + 1)
    assert sum(isinstance(m, AttentionBlock) for m in unet.modules()) == 4
    # zero-initialised output conv: the untrained U-Net predicts zero noise
    assert torch.count_nonzero(out) == 0


def test_unet_rejects_sizes_it_cannot_downsample():
    unet = SemanticUNet(**TINY_UNET)
    with pytest.raises(ValueError, match="multiple of 4"):
        unet(torch.randn(1, 3, 18, 24), torch.tensor([3]), torch.zeros(1, 2, 18, 24))


def test_unet_output_depends_on_mask_and_time():
    torch.manual_seed(0)
    unet = SemanticUNet(**TINY_UNET)
    for p in unet.parameters():  # leave the zero initialisation
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(1, 3, 16, 24)
    m1, m2 = _disc(1, 16, 24, seed=1), _disc(1, 16, 24, seed=2)
    a = unet(x, torch.tensor([10]), mask_to_cond(m1))
    assert not torch.allclose(a, unet(x, torch.tensor([10]), mask_to_cond(m2)))
    assert not torch.allclose(a, unet(x, torch.tensor([500]), mask_to_cond(m1)))


def test_spade_groupnorm_against_its_formula():
    torch.manual_seed(0)
    norm = SPADEGroupNorm(8, 2, hidden=6, groups=4)
    x = torch.randn(2, 8, 6, 10) * 3 + 1
    mask = _disc(2, 12, 20)
    cond = mask_to_cond(mask)
    # independent: per-group standardisation, nearest mask resize, convs by hand
    g = x.view(2, 4, -1)
    xn = (
        (g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 1e-5)
    ).view_as(x)
    c = cond[:, :, ::2, ::2]  # nearest resize 12x20 -> 6x10
    actv = F.relu(F.conv2d(c, norm.mlp_shared[0].weight, norm.mlp_shared[0].bias, padding=1))
    gamma = F.conv2d(actv, norm.mlp_gamma.weight, norm.mlp_gamma.bias, padding=1)
    beta = F.conv2d(actv, norm.mlp_beta.weight, norm.mlp_beta.bias, padding=1)
    assert torch.allclose(norm(x, cond), xn * (1 + gamma) + beta, atol=1e-5)
    assert not norm.norm.affine  # GroupNorm without affine: the mask gives scale and shift


# ---------------------------------------------------------------------------- schedule
def test_schedule_against_closed_form():
    T, b0, b1 = 1000, 0.0015, 0.0205
    betas = make_beta_schedule("scaled_linear", T, b0, b1).numpy()
    i = np.arange(T)
    expected = (math.sqrt(b0) + i / (T - 1) * (math.sqrt(b1) - math.sqrt(b0))) ** 2
    np.testing.assert_allclose(betas, expected, rtol=1e-12)
    assert betas[0] == pytest.approx(b0) and betas[-1] == pytest.approx(b1)
    np.testing.assert_allclose(
        make_beta_schedule("linear", T, b0, b1).numpy(), b0 + i / (T - 1) * (b1 - b0)
    )
    d = GaussianDiffusion(torch.from_numpy(betas))
    abar = np.exp(np.cumsum(np.log1p(-betas)))
    np.testing.assert_allclose(d.alphas_cumprod.numpy(), abar, rtol=1e-5)
    x0, eps = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    t = torch.tensor([0, 499, 999])
    a = torch.tensor(abar[[0, 499, 999]], dtype=torch.float32).view(3, 1, 1, 1)
    assert torch.allclose(d.q_sample(x0, t, eps), a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-6)
    with pytest.raises(ValueError, match="BETA_SCHEDULE"):
        make_beta_schedule("cosine", T, b0, b1)


def test_ddim_grid_and_steps_against_closed_form():
    T = 1000
    d = GaussianDiffusion(make_beta_schedule("scaled_linear", T, 0.0015, 0.0205))
    grid = d.ddim_timesteps(200)
    assert grid[:3] == [1, 6, 11] and grid[-1] == 996 and len(grid) == 200
    assert d.ddim_timesteps(T) == list(range(T))
    assert len(d.ddim_timesteps(3)) == 3
    with pytest.raises(ValueError, match="STEPS"):
        d.ddim_timesteps(0)
    # with the true noise, eta 0 DDIM lands on x0 (up to the chain's end alphas_cumprod[0])
    torch.manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = torch.full((2,), 996)
    x_t = d.q_sample(x0, t, eps)
    end = d.reverse(lambda x, tt: eps, x_t, grid[::-1], eta=0.0)
    a0 = d.alphas_cumprod[0]
    assert torch.allclose(end, a0.sqrt() * x0 + (1 - a0).sqrt() * eps, atol=1e-4)
    # eta 1 between consecutive steps: sigma^2 is DDPM's posterior variance
    abar = d.alphas_cumprod.double()
    s = 500
    a_t, a_p = abar[s], abar[s - 1]
    posterior = (1 - a_p) / (1 - a_t) * d.betas.double()[s]
    z = torch.randn(1, 1, 1, 1)
    tt, tp = torch.tensor([s]), torch.tensor([s - 1])
    x = torch.zeros(1, 1, 1, 1)
    e = torch.zeros(1, 1, 1, 1)
    with_noise, _ = d.ddim_step(x, e, tt, tp, 1.0, z)
    without, _ = d.ddim_step(x, e, tt, tp, 0.0, None)
    assert float(with_noise - without) == pytest.approx(float(posterior.sqrt() * z), rel=1e-4)


def test_clip_denoised_clamps_x0_and_keeps_the_step_consistent():
    d = GaussianDiffusion(make_beta_schedule("scaled_linear", 1000, 0.0015, 0.0205))
    x_t, eps = torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), -3.0)
    t, tp = torch.tensor([900]), torch.tensor([800])
    _, x0 = d.ddim_step(x_t, eps, t, tp, 0.0, None)
    assert float(x0.max()) > 1  # the raw estimate leaves the image range
    x_prev, x0c = d.ddim_step(x_t, eps, t, tp, 0.0, None, clip=True)
    assert torch.equal(x0c, torch.ones_like(x0c))
    a_t, a_p = d.alphas_cumprod[900], d.alphas_cumprod[800]
    eps_c = (x_t - a_t.sqrt()) / (1 - a_t).sqrt()  # the noise that x_t and x0 = 1 imply
    assert torch.allclose(x_prev, a_p.sqrt() + (1 - a_p).sqrt() * eps_c, atol=1e-5)


# ---------------------------------------------------------------------------- losses
def test_adaptive_weights_match_eq7():
    m = torch.zeros(3, 4, 5)
    m[0, :2, :2] = 1  # r = 4 / 20 = 0.2
    m[1] = 1  # full mask: r = 1 -> uniform weights (Eq. 7 would give zero)
    w = adaptive_weights(m)  # frame 2 empty: uniform
    assert torch.allclose(w[0][m[0] == 1], torch.tensor(0.8))
    assert torch.allclose(w[0][m[0] == 0], torch.tensor(0.2))
    assert torch.equal(w[1], torch.ones(4, 5)) and torch.equal(w[2], torch.ones(4, 5))


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_diffusion_loss_is_the_weighted_mean(kind):
    torch.manual_seed(0)
    eps, eps_hat = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    m = torch.zeros(2, 4, 5)
    m[:, 1:3, 1:4] = 1  # r = 6 / 20
    crit = ArSDMCriterion({"loss_diffusion": 1.0}, kind, adaptive=True)
    d = (eps - eps_hat).abs() if kind == "l1" else (eps - eps_hat) ** 2
    w = torch.where(m.bool(), 1 - 0.3, 0.3)[:, None]
    assert crit(eps_hat, eps, m)["loss_diffusion"] == pytest.approx(float((d * w).mean()))
    plain = ArSDMCriterion({"loss_diffusion": 1.0}, kind, adaptive=False)
    assert plain(eps_hat, eps, m)["loss_diffusion"] == pytest.approx(float(d.mean()))


def test_structure_loss_prefers_the_mask():
    m = _disc(2, 32, 32)
    good = structure_loss(m * 0.98 + 0.01, m)
    bad = structure_loss(1 - (m * 0.98 + 0.01), m)
    assert float(good) < 0.1 < float(bad)


# ---------------------------------------------------------------------------- model
def _segmenter_checkpoint(tmp_path):
    """A random-init frame_baseline_sample checkpoint (the frozen segmenter in tests)."""
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(get_config_file("frame_baseline_sample.yaml"))
    torch.manual_seed(1)
    VPSCheckpointer(build_model(cfg), str(tmp_path)).save("seg")
    return str(tmp_path / "seg.pth")


def _batch(n=2, h=16, w=24):
    masks = _disc(n, h, w)
    img = (torch.rand(n, 3, h, w) * 80 + 150 * masks[:, None]).clamp(0, 255).to(torch.uint8)
    return [{"image": img[i : i + 1], "sem_seg": masks[i : i + 1]} for i in range(n)]


def test_refinement_gradients_reach_the_unet_never_the_segmenter(tmp_path):
    ckpt = _segmenter_checkpoint(tmp_path)
    cfg = _cfg(
        "MODEL.ARSDM.REFINE.SEGMENTER_CONFIG",
        "frame_baseline_sample.yaml",
        "MODEL.ARSDM.REFINE.SEGMENTER_WEIGHTS",
        ckpt,
        "MODEL.ARSDM.REFINE.STEPS",
        "5",
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    for p in model.unet.parameters():  # away from the zero init, so every layer matters
        torch.nn.init.normal_(p, std=0.05)
    seg = model.segmenter.model
    before = {k: v.clone() for k, v in seg.state_dict().items()}
    # frozen: no gradient flag, eval mode even after model.train(), not a parameter / key /
    # optimizer entry of the generator
    assert not any(p.requires_grad for p in seg.parameters()) and not seg.training
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in seg.parameters())
    assert not any(k.startswith("_segmenter") for k in model.state_dict())
    assert {id(p) for p in model.optimizer_groups()["main"]} == {
        id(p) for p in model.unet.parameters()
    }
    torch.manual_seed(3)
    losses = model(_batch(), refine=True)
    assert set(losses) == {"loss_diffusion", "loss_refine"}
    losses["loss_refine"].backward()  # the refinement term alone
    grads = [p.grad for p in model.unet.parameters()]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)
    assert all(p.grad is None for p in seg.parameters())
    assert all(p.grad is None for p in model.unet_ema.parameters())
    for k, v in seg.state_dict().items():
        assert torch.equal(v, before[k]), k
    # only the last reverse step with a graph: the gradient still reaches the U-Net
    model.zero_grad()
    model.refine_grad_steps = 1
    torch.manual_seed(3)
    model(_batch(), refine=True)["loss_refine"].backward()
    assert model.unet.out[-1].weight.grad.abs().sum() > 0
    # without refine (the iterations between two refinements), loss_refine is absent
    assert set(model(_batch(), refine=False)) == {"loss_diffusion"}


def test_missing_segmenter_weights_is_one_clear_error():
    cfg = _cfg("MODEL.ARSDM.REFINE.SEGMENTER_CONFIG", "frame_baseline_sample.yaml")
    with pytest.raises(FileNotFoundError, match="SEGMENTER_WEIGHTS"):
        build_model(cfg)


def test_ddim_generation_is_deterministic_with_a_seed():
    torch.manual_seed(0)
    model = build_model(_cfg()).eval()
    for p in model.unet_ema.parameters():
        torch.nn.init.normal_(p, std=0.05)
    masks = _disc(3, 16, 24)

    def gens(*seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    a = model.generate(masks, gens(1, 2, 3))
    torch.manual_seed(123)  # the global stream plays no part
    b = model.generate(masks, gens(1, 2, 3))
    assert torch.equal(a, b)
    c = model.generate(masks, gens(1, 2, 4))
    assert torch.allclose(a[:2], c[:2], atol=1e-5)  # frames 0, 1: the same seeds
    assert not torch.allclose(a[2], c[2])
    alone = model.generate(masks[1:2], gens(2))  # a frame does not depend on its batch
    assert torch.allclose(alone[0], a[1], atol=1e-5)
    assert a.min() >= -1 and a.max() <= 1


def test_video_noise_is_shared_frame_noise_is_not():
    torch.manual_seed(0)
    model = build_model(_cfg()).eval()
    for p in model.unet_ema.parameters():
        torch.nn.init.normal_(p, std=0.05)
    m = _disc(1, 16, 24)[0]
    frames = [
        {"sem_seg": m, "height": 16, "width": 24, "video_id": "v", "frame_index": i}
        for i in range(2)
    ]
    same = model.process_frames(frames)  # same mask, same video: the same frame
    assert torch.equal(same[0]["image"], same[1]["image"])
    model.noise_mode = "frame"
    diff = model.process_frames(frames)
    assert not torch.equal(diff[0]["image"], diff[1]["image"])
    assert frame_seed(0, "v") != frame_seed(0, "w") and frame_seed(0, "v", 1) == frame_seed(
        0, "v", 1
    )
    with pytest.raises(KeyError, match="sem_seg"):
        model.process_frames([{"height": 16, "width": 24}])


def test_ema_update_follows_the_codes_warmup():
    torch.manual_seed(0)
    model = build_model(_cfg("MODEL.ARSDM.EMA.DECAY", "0.9")).train()
    p, e = next(model.unet.parameters()), next(model.unet_ema.parameters())
    with torch.no_grad():
        p.add_(1.0)
    e0 = e.clone()
    model.update_ema()  # n = 1: decay min(0.9, 2 / 11)
    d = 2 / 11
    assert torch.allclose(e, d * e0 + (1 - d) * p.detach(), atol=1e-6)
    assert int(model.ema_updates) == 1
    assert "unet_ema.out.2.weight" in model.state_dict() and "ema_updates" in model.state_dict()
