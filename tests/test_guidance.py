"""Score-distillation guidance on tiny random SD pipelines.

Each guidance's injected gradient is checked against its formula, recomputed here from raw
UNet calls (``prior.unet_eps`` per branch) and raw random draws, so the checks do not go
through the code under test. The draw order each guidance documents (t or nodes, then noise)
is what lets the test replay them.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamlift.errors import DreamliftError  # noqa: E402
from dreamlift.guidance import (  # noqa: E402
    GUIDANCES,
    GE3DConfig,
    GuidanceInput,
    ISMConfig,
    PerpNegConfig,
    SDSConfig,
    denoising_trajectory,
    guidance_names,
    inject_gradient,
    make_guidance,
    noising_trajectory,
    surrogate_loss,
)
from dreamlift.guidance.ge3d import GE3D_NEGATIVE_PROMPT, node_weights  # noqa: E402
from dreamlift.guidance.ism import inversion_nodes  # noqa: E402
from dreamlift.guidance.perpneg import (  # noqa: E402
    guided_eps,
    perpendicular,
    perpneg_text,
    perpneg_weights,
)
from dreamlift.guidance.schedules import (  # noqa: E402
    dynamic_balancing_coefficient,
    ism_interval,
    ism_t_max,
    linear_anneal,
    ramp,
    sample_nodes,
    sds_t_range,
)
from dreamlift.priors import DiffusionPrior, TextEmbeddings  # noqa: E402
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402

LATENT = 8  # 16 x 16 images
PROMPTS = ["a red cube, front view", "a red cube, side view"]
CONFIG = TinySDConfig(unet_channels=(16, 32, 32), unet_out_scale=0.1)


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> DiffusionPrior:
    folder = save_tiny_sd(
        tmp_path_factory.mktemp("guidance") / "sd", sample_size=LATENT, config=CONFIG, seed=3
    )
    return DiffusionPrior.load(folder, device="cpu")


def _z(seed: int = 0, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, LATENT, LATENT, generator=g).requires_grad_(True)


def _cfg_eps(prior, x, t, text: TextEmbeddings, s: float) -> torch.Tensor:
    """eps_u + s (eps_c - eps_u) from two separate single-branch UNet calls."""
    text = text.expand(x.shape[0])
    eps_c = prior.unet_eps(x, t, text.cond)
    eps_u = prior.unet_eps(x, t, text.uncond)
    return eps_u + s * (eps_c - eps_u)


def _alpha(prior, t: int) -> float:
    return float(prior.alphas_cumprod[t])


def _ddim(x, eps, a: float, a_next: float) -> torch.Tensor:
    x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
    return math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps


def _input_at(step: int, total: int, seed: int, **data: torch.Tensor) -> GuidanceInput:
    """PROMPTS at training step ``step`` of ``total``, with ``latents=`` or ``images=``."""
    return GuidanceInput(
        prompts=PROMPTS,
        step=step,
        total_steps=total,
        generator=torch.Generator().manual_seed(seed),
        **data,
    )


def _grad_of(loss: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, z)
    return g


# ---------------------------------------------------------------- injection


def test_inject_gradient_equals_the_surrogate_in_value_and_gradient():
    z = _z(1, batch=3)
    grad = torch.randn(z.shape, generator=torch.Generator().manual_seed(2))
    a, b = inject_gradient(z, grad), surrogate_loss(z, grad)
    assert torch.allclose(a, b)
    assert torch.allclose(a, 0.5 * grad.square().sum() / 3)
    assert torch.allclose(_grad_of(a, z), grad / 3)
    assert torch.allclose(_grad_of(b, z), grad / 3, atol=1e-6)
    bad = grad.clone()
    bad[0, 0, 0, 0] = float("nan")
    assert torch.isfinite(_grad_of(inject_gradient(z, bad), z)).all()


# ---------------------------------------------------------------- schedules


def test_linear_anneal_and_threestudio_ramp():
    assert linear_anneal(0, 100, 0.98, 0.5) == pytest.approx(0.98)
    assert linear_anneal(100, 100, 0.98, 0.5) == pytest.approx(0.5)
    assert linear_anneal(50, 100, 0.98, 0.5) == pytest.approx(0.74)
    assert linear_anneal(500, 100, 0.98, 0.5) == pytest.approx(0.5)  # clamped
    assert ramp(7, 0.3) == 0.3
    spec = [100, 1.0, 0.0, 300]
    assert [ramp(s, spec) for s in (0, 100, 200, 300, 999)] == pytest.approx([1, 1, 0.5, 0, 0])
    with pytest.raises(ValueError):
        ramp(0, [1, 2, 3])


def test_sds_and_ism_t_schedules_anneal_between_their_ends():
    assert sds_t_range(0, 600) == pytest.approx((0.02, 0.98))
    assert sds_t_range(600, 600) == pytest.approx((0.02, 0.5))
    assert sds_t_range(300, 600, anneal_fraction=0.5) == pytest.approx((0.02, 0.5))
    assert sds_t_range(300, 600, t_max_end=None) == pytest.approx((0.02, 0.98))
    maxes = [sds_t_range(s, 600)[1] for s in range(0, 601, 50)]
    assert all(a >= b for a, b in zip(maxes, maxes[1:], strict=False))
    # ISM: the bound is extended to 0.98 at step 0 and narrows to 0.5 by the end of warm-up.
    assert ism_t_max(0, 1500) == pytest.approx(0.98)
    assert ism_t_max(750, 1500) == pytest.approx(0.74)
    assert ism_t_max(1500, 1500) == ism_t_max(4000, 1500) == pytest.approx(0.5)
    assert ism_interval(0, 1500) == 100 and ism_interval(1500, 1500) == 80
    deltas = [ism_interval(s, 1500) for s in range(0, 1501, 100)]
    assert all(80 <= d <= 100 for d in deltas) and deltas == sorted(deltas, reverse=True)


def test_sample_nodes_respects_bounds_and_shrinks_with_progress():
    g = torch.Generator().manual_seed(0)
    for progress in (0.0, 0.3, 0.7, 1.0):
        f = progress
        lo, hi = 60 - math.floor(30 * f), 80 - math.floor(30 * f)
        top = 480 - math.floor(180 * f)
        for _ in range(50):
            nodes = sample_nodes(progress, g)
            assert nodes[0] == 0 and 1 <= len(nodes) - 1 <= 6
            jumps = [b - a for a, b in zip(nodes, nodes[1:], strict=False)]
            assert all(lo <= j < hi for j in jumps), (progress, nodes)
            assert nodes[-1] < top
            # It stopped either at n nodes or because the next jump would have reached top.
            assert len(nodes) == 7 or nodes[-1] + lo < top + hi
    early = [sample_nodes(0.0, g)[1] for _ in range(30)]
    late = [sample_nodes(1.0, g)[1] for _ in range(30)]
    assert min(early) >= 60 and max(late) < 50
    assert sample_nodes(0.0, g, max_step=(60, 60)) == [0]  # no room for a single jump
    again = [sample_nodes(0.5, torch.Generator().manual_seed(9)) for _ in range(2)]
    assert again[0] == again[1]


def test_dynamic_balancing_coefficient_moves_from_coarse_to_fine():
    total, n = 3000, 6
    rows = torch.stack([dynamic_balancing_coefficient(s, total, n) for s in range(0, 3001, 100)])
    assert rows.shape == (31, n)
    assert torch.allclose(rows.sum(1), torch.ones(31, dtype=torch.float64))
    assert int(rows[0].argmax()) == n - 1  # coarsest node first
    assert int(rows[-1].argmax()) == 0  # finest node at the end
    assert (rows[1:, 0] >= rows[:-1, 0]).all()  # w_0 only grows
    assert (rows[1:, -1] <= rows[:-1, -1]).all()  # w_{n-1} only shrinks
    # Gaussian j peaks at (n-1-j) T / (n-1): at that step row j is the largest.
    for j in range(n):
        peak = round((n - 1 - j) * (total + 1) / (n - 1))
        assert int(dynamic_balancing_coefficient(min(peak, total), total, n).argmax()) == j
    # A large sigma flattens it, a small one makes it nearly one-hot; tiny sigma stays finite.
    assert float(dynamic_balancing_coefficient(1500, total, n, sigma=1e6).std()) < 1e-3
    sharp = dynamic_balancing_coefficient(0, total, n, sigma=1.0)
    assert torch.isfinite(sharp).all() and float(sharp[-1]) == pytest.approx(1.0)


# ---------------------------------------------------------------- SDS


@pytest.mark.parametrize("weighting", ["sds", "uniform"])
def test_sds_gradient_is_w_times_cfg_eps_minus_noise(prior, weighting):
    s, t_fix = 3.0, 600
    cfg = SDSConfig(
        guidance_scale=s, t_range=(t_fix / 1000, t_fix / 1000), t_max_end=None, weighting=weighting
    )
    z = _z(0)
    inp = GuidanceInput(latents=z, prompts=PROMPTS, generator=torch.Generator().manual_seed(5))
    guidance = make_guidance("sds", cfg)
    losses = guidance(prior, inp)
    assert set(losses) == {"loss_sds"}
    got = _grad_of(losses["loss_sds"], z)

    g = torch.Generator().manual_seed(5)
    t = torch.randint(t_fix, t_fix + 1, (2,), generator=g)
    noise = torch.randn(z.shape, generator=g)
    assert (t == t_fix).all()
    a = _alpha(prior, t_fix)
    with torch.no_grad():
        z_t = math.sqrt(a) * z + math.sqrt(1 - a) * noise
        eps = _cfg_eps(prior, z_t, t_fix, prior.embed_text(PROMPTS), s)
    w = 1 - a if weighting == "sds" else 1.0
    want = w * (eps - noise) / 2
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    assert guidance.last_info["t"] == t_fix and guidance.last_info["w"] == pytest.approx(w)


def test_sds_latent_x0_form_is_mvdream_reconstruction_with_std_rescale(prior):
    s, t_fix, r = 5.0, 400, 0.5
    cfg = SDSConfig(
        guidance_scale=s,
        t_range=(t_fix / 1000, t_fix / 1000),
        t_max_end=None,
        form="latent_x0",
        recon_std_rescale=r,
        std_group=2,
        negative_prompt="a blue cone",
    )
    z = _z(3)
    inp = GuidanceInput(latents=z, prompts=PROMPTS, generator=torch.Generator().manual_seed(1))
    loss = make_guidance("sds", cfg)(prior, inp)["loss_sds"]
    got = _grad_of(loss, z)

    g = torch.Generator().manual_seed(1)
    torch.randint(t_fix, t_fix + 1, (2,), generator=g)
    noise = torch.randn(z.shape, generator=g)
    a = _alpha(prior, t_fix)
    text = prior.embed_text(PROMPTS, negative="a blue cone")
    with torch.no_grad():
        z_t = math.sqrt(a) * z + math.sqrt(1 - a) * noise
        eps_cfg = _cfg_eps(prior, z_t, t_fix, text, s)
        eps_c = prior.unet_eps(z_t, t_fix, text.cond)
        x0_cfg = (z_t - math.sqrt(1 - a) * eps_cfg) / math.sqrt(a)
        x0_c = (z_t - math.sqrt(1 - a) * eps_c) / math.sqrt(a)
        f = x0_c.std() / x0_cfg.std()  # one group of both views
        target = r * f * x0_cfg + (1 - r) * x0_cfg
    assert torch.allclose(got, (z - target).detach() / 2, atol=1e-5, rtol=1e-4)
    assert float(loss.detach()) == pytest.approx(
        float(0.5 * (z.detach() - target).square().sum() / 2), rel=1e-4
    )


def test_sds_image_x0_form_pulls_the_render_toward_the_decoded_target(prior):
    t_fix = 300
    cfg = SDSConfig(t_range=(t_fix / 1000, t_fix / 1000), t_max_end=None, form="x0")
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    images.requires_grad_(True)
    inp = GuidanceInput(images=images, prompts=PROMPTS, generator=torch.Generator().manual_seed(4))
    loss = make_guidance("sds", cfg)(prior, inp)["loss_sds"]
    got = _grad_of(loss, images)

    g = torch.Generator().manual_seed(4)
    torch.randint(t_fix, t_fix + 1, (2,), generator=g)
    noise = torch.randn((2, 4, LATENT, LATENT), generator=g)
    a = _alpha(prior, t_fix)
    with torch.no_grad():
        z = prior.encode(images)
        z_t = math.sqrt(a) * z + math.sqrt(1 - a) * noise
        eps = _cfg_eps(prior, z_t, t_fix, prior.embed_text(PROMPTS), cfg.guidance_scale)
        target = prior.decode((z_t - math.sqrt(1 - a) * eps) / math.sqrt(a))
    assert torch.allclose(got, (images - target).detach() / 2, atol=1e-5)
    with pytest.raises(DreamliftError, match="needs images"):
        make_guidance("sds", cfg)(prior, GuidanceInput(latents=_z(), prompts=PROMPTS))


# ---------------------------------------------------------------- ISM


def test_inversion_nodes_follow_luciddreamer():
    assert inversion_nodes(300, 200, 5) == [0, 200, 300]
    assert inversion_nodes(0, 200, 5) == [0]
    assert inversion_nodes(900, 100, 3) == [600, 700, 800, 900]


def test_ism_gradient_is_w_times_cfg_minus_uncond_one_interval_earlier(prior):
    t_fix, delta, s_cfg = 430, 80, 4.0
    cfg = ISMConfig(
        guidance_scale=s_cfg,
        delta_t=delta,
        delta_t_start=delta,
        t_range=(t_fix / 1000, t_fix / 1000),
        t_max_warmup=t_fix / 1000,
        warmup_steps=0,
        negative_prompt="a green torus",
    )
    z = _z(4)
    inp = GuidanceInput(latents=z, prompts=PROMPTS, generator=torch.Generator().manual_seed(8))
    guidance = make_guidance("ism", cfg)
    got = _grad_of(guidance(prior, inp)["loss_ism"], z)
    assert guidance.last_info["t"] == t_fix and guidance.last_info["s"] == t_fix - delta

    g = torch.Generator().manual_seed(8)
    torch.randint(t_fix, t_fix + 1, (1,), generator=g)
    noise = torch.randn(z.shape, generator=g)
    text = prior.embed_text(PROMPTS, negative="a green torus")
    nodes = [0, 200, 350, 430]  # xs steps of 200 to s = 350, then s → t
    with torch.no_grad():
        a0 = _alpha(prior, 0)
        x = math.sqrt(a0) * z + math.sqrt(1 - a0) * noise
        for t, t_next in zip(nodes, nodes[1:], strict=False):
            eps_u = prior.unet_eps(x, t, text.uncond)
            x = _ddim(x, eps_u, _alpha(prior, t), _alpha(prior, t_next))
        eps_cfg = _cfg_eps(prior, x, t_fix, text, s_cfg)
        a = _alpha(prior, t_fix)
        want = math.sqrt((1 - a) / a) * (eps_cfg - eps_u) / 2
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- GE3D


def test_ge3d_gradient_aligns_the_two_trajectories_with_dbc(prior):
    cfg = GE3DConfig(guidance_scale=5.0, negative_prompt="a blue cone", dbc_sigma=300.0)
    z = _z(6)
    step, total = 700, 1000
    inp = _input_at(step, total, seed=11, latents=z)
    guidance = make_guidance("ge3d", cfg)
    got = _grad_of(guidance(prior, inp)["loss_ge3d"], z)

    g = torch.Generator().manual_seed(11)
    nodes = sample_nodes(0.7, g)
    noise = torch.randn(z.shape, generator=g) + 0.1 * torch.randn((1, 4, 1, 1), generator=g)
    assert nodes == guidance.last_nodes and len(nodes) >= 3
    k = len(nodes) - 1
    text = prior.embed_text(PROMPTS, negative="a blue cone")
    alpha = [_alpha(prior, t) for t in nodes]
    with torch.no_grad():
        inv = [math.sqrt(alpha[0]) * z + math.sqrt(1 - alpha[0]) * noise]
        for i in range(k):
            eps_u = prior.unet_eps(inv[-1], nodes[i], text.uncond)  # code: negative prompt
            inv.append(_ddim(inv[-1], eps_u, alpha[i], alpha[i + 1]))
        den = {k: inv[k]}
        for i in range(k, 0, -1):
            eps = _cfg_eps(prior, den[i], nodes[i], text, 5.0)
            den[i - 1] = _ddim(den[i], eps, alpha[i], alpha[i - 1])
        # DBC rows 0..k-1 of the n = 6 table, not renormalised.
        t_big = total + 1
        gauss = [math.exp(-((step - (5 - j) * t_big / 5) ** 2) / (2 * 300.0**2)) for j in range(6)]
        w = [gj / sum(gauss) for gj in gauss]
        want = w[0] * (z - den[0])
        for j in range(1, k):
            want = want + w[j] * (inv[j] - den[j])
        want = 0.1 * want / 2
    assert sum(w[:k]) < 1.0 or k == 6
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_trajectories_share_the_deepest_node_and_invert_each_other(prior):
    z = _z(7).detach() * 0.5
    nodes = [0, 70, 140, 205]
    uncond = prior.embed_prompts([""])
    inv = noising_trajectory(prior, z, nodes, uncond, exact_clean_end=True)
    assert len(inv.latents) == 4 and len(inv.eps) == 3 and torch.equal(inv.latents[0], z)
    # Denoising with the same (uncond-only) eps at scale 1 retraces the inversion closely.
    text = TextEmbeddings(uncond, uncond)
    den = denoising_trajectory(prior, inv.latents[-1], nodes, text, 1.0, exact_clean_end=True)
    assert den.latents[-1] is inv.latents[-1]
    err = (den.latents[0] - z).abs().max() / z.abs().max()
    assert float(err) < 0.05


def test_one_node_ge3d_is_ism_with_s_zero(prior):
    """GE3D Eq. 6-7: with nodes [0, t] and a clean node at ᾱ = 1,
    z - x^den_0 = sqrt((1 - ᾱ_t)/ᾱ_t) (eps_cfg(x_t, t) - eps_u(z, 0)) — ISM's gradient at s = 0.
    """
    t_fix, lam, s_cfg = 240, 0.1, 6.0
    ge3d = GE3DConfig(
        n=1,
        jump_min=(t_fix, t_fix),
        jump_max=(t_fix + 1, t_fix + 1),
        max_step=(t_fix + 1, t_fix + 1),
        lambda_g=lam,
        use_dbc=False,
        guidance_scale=s_cfg,
        negative_prompt="",
        exact_clean_end=True,
    )
    ism = ISMConfig(
        guidance_scale=s_cfg,
        delta_t=t_fix,
        delta_t_start=t_fix,
        t_range=(t_fix / 1000, t_fix / 1000),
        t_max_warmup=t_fix / 1000,
        warmup_steps=0,
        exact_clean_end=True,
    )
    z = _z(9)
    grads = {}
    for name, cfg in (("ge3d", ge3d), ("ism", ism)):
        inp = GuidanceInput(latents=z, prompts=PROMPTS, generator=torch.Generator().manual_seed(0))
        guidance = make_guidance(name, cfg)
        grads[name] = _grad_of(guidance(prior, inp)[f"loss_{name}"], z)
        if name == "ge3d":
            assert guidance.last_nodes == [0, t_fix]
        else:
            assert guidance.last_info["s"] == 0 and guidance.last_info["t"] == t_fix
    assert grads["ism"].abs().max() > 1e-4
    assert torch.allclose(grads["ge3d"], lam * grads["ism"], atol=1e-6, rtol=1e-4)
    # With the code's convention (node 0 noised to ᾱ_0 < 1) the two differ, by a small bias.
    inp = GuidanceInput(latents=z, prompts=PROMPTS, generator=torch.Generator().manual_seed(0))
    code = GE3DConfig(**{**ge3d.__dict__, "exact_clean_end": False, "noise_offset": 0.0})
    g_code = _grad_of(make_guidance("ge3d", code)(prior, inp)["loss_ge3d"], z)
    assert not torch.allclose(g_code, grads["ge3d"], atol=1e-6)


def test_ge3d_empty_inversion_prompt_and_no_room_for_nodes(prior):
    z = _z(2)
    cfg = GE3DConfig(inversion_prompt="empty", max_step=(50, 50))  # jump 60 > max_step
    guidance = make_guidance("ge3d", cfg)
    loss = guidance(prior, GuidanceInput(latents=z, prompts=PROMPTS))["loss_ge3d"]
    assert guidance.last_info["k"] == 0 and float(loss.detach()) == 0.0
    assert float(_grad_of(loss, z).abs().sum()) == 0.0


def test_ge3d_image_clean_target_pulls_the_render_toward_the_decoded_edit(prior):
    """clean_target="image": the w_0 term leaves the latent and becomes λ_g w_0 (x - D(x^den_0))."""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    images.requires_grad_(True)
    step, total = 100, 1000
    grads, nodes = {}, {}
    for weight in (0.0, 2.0):
        cfg = GE3DConfig(clean_target="image", image_weight=weight, dbc_sigma=300.0)
        guidance = make_guidance("ge3d", cfg)
        inp = _input_at(step, total, seed=5, images=images)
        grads[weight] = _grad_of(guidance(prior, inp)["loss_ge3d"], images)
        nodes[weight] = guidance.last_nodes
    assert nodes[0.0] == nodes[2.0] and len(nodes[0.0]) >= 2

    g = torch.Generator().manual_seed(5)
    sample_nodes(step / total, g)
    with torch.no_grad():
        z = prior.encode(images)
        noise = torch.randn(z.shape, generator=g) + 0.1 * torch.randn((1, 4, 1, 1), generator=g)
        text = prior.embed_text(PROMPTS, negative=GE3D_NEGATIVE_PROMPT)
        x_t0 = prior.add_noise(z, noise, torch.full((2,), nodes[0.0][0]))
        inv = noising_trajectory(prior, x_t0, nodes[0.0], text.uncond)
        den = denoising_trajectory(prior, inv.latents[-1], nodes[0.0], text, 7.5)
        w0 = float(node_weights(cfg, step, total, len(nodes[0.0]) - 1)[0])
        want = 0.1 * 2.0 * w0 * (images - prior.decode(den.latents[0])) / 2
    assert w0 > 0.0
    assert torch.allclose(grads[2.0] - grads[0.0], want, atol=1e-5, rtol=1e-4)
    with pytest.raises(DreamliftError, match="needs images"):
        make_guidance("ge3d", cfg)(prior, GuidanceInput(latents=_z(), prompts=PROMPTS))


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("sds", SDSConfig()),
        ("sds", SDSConfig(form="x0")),
        ("ism", ISMConfig(warmup_steps=10)),
        ("ge3d", GE3DConfig(n=3)),
        ("ge3d", GE3DConfig(n=2, perpneg=PerpNegConfig(enabled=True))),
        ("sds", SDSConfig(perpneg=PerpNegConfig(enabled=True))),
    ],
)
def test_gradient_flows_to_an_image_parameter_through_the_encoder(prior, name, config):
    param = torch.nn.Parameter(torch.full((2, 3, 16, 16), 0.5))
    images = torch.sigmoid(param * 2.0)  # a tiny "field": the render depends on a parameter
    inp = GuidanceInput(
        images=images,
        prompts=PROMPTS,
        prompt="a red cube",
        azimuths=torch.tensor([10.0, 120.0]),
        step=3,
        total_steps=10,
        generator=torch.Generator().manual_seed(0),
    )
    guidance = make_guidance(name, config)
    losses = guidance(prior, inp)
    assert list(losses) == [f"loss_{name}"]
    sum(losses.values()).backward()
    assert param.grad is not None and torch.isfinite(param.grad).all()
    assert float(param.grad.abs().sum()) > 0
    assert guidance.last_info and all(math.isfinite(v) for v in guidance.last_info.values())


# ---------------------------------------------------------------- registry


def test_registry_lists_guidances_and_rejects_unknown_names(prior):
    assert {"sds", "ism", "ge3d"} <= set(guidance_names()) == set(GUIDANCES)
    assert GUIDANCES["ge3d"].config_cls is GE3DConfig
    with pytest.raises(DreamliftError) as info:
        make_guidance("vsd")
    assert "vsd" in str(info.value) and all(n in str(info.value) for n in ("sds", "ism", "ge3d"))
    assert make_guidance("ism", {"delta_t": 50}).config.delta_t == 50
    assert make_guidance("sds").config.guidance_scale == SDSConfig().guidance_scale
    with pytest.raises(DreamliftError, match="delta"):
        make_guidance("sds", {"delta_t": 50})
    with pytest.raises(DreamliftError, match="SDSConfig"):
        make_guidance("sds", ISMConfig())
    with pytest.raises(DreamliftError, match="prompts"):
        make_guidance("sds")(prior, GuidanceInput(latents=_z()))


# ---------------------------------------------------------------- Perp-Neg


def test_perpneg_weights_follow_the_azimuth_bands():
    cfg = PerpNegConfig()
    r, start, end, w = perpneg_weights(0.0, cfg)
    assert (r, start, end) == (1.0, "front", "side") and w == pytest.approx([0.0, -2.0])
    r, start, end, w = perpneg_weights(-45.0, cfg)
    assert r == pytest.approx(0.5) and w[0] == pytest.approx(-2 * math.exp(-1.0))
    assert w[1] == pytest.approx(-2 * math.exp(-5.0))
    r, start, end, w = perpneg_weights(180.0, cfg)
    assert (r, start, end) == (0.0, "side", "back") and w == pytest.approx([-1.0, -2.0])
    assert perpneg_weights(190.0, cfg)[0] == pytest.approx(perpneg_weights(-170.0, cfg)[0])
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert torch.allclose((perpendicular(a, b) * b).sum((1, 2, 3)), torch.zeros(2), atol=1e-5)


def test_perpneg_with_zero_weights_is_plain_cfg(prior):
    x = _z(5).detach()
    cfg = PerpNegConfig(enabled=True, negative_w=0.0)
    text = perpneg_text(prior, "a red cube", torch.tensor([0.0, 45.0]), cfg, "a blue cone")
    assert float(text.weights.abs().sum()) == 0.0
    got, _ = guided_eps(prior, x, 500, text, 7.5)
    front, side = prior.embed_prompts(["a red cube, front view", "a red cube, side view"])
    positive = torch.stack([front, 0.5 * front + 0.5 * side])
    plain = prior.predict_eps(
        x, 500, TextEmbeddings(positive, prior.embed_prompts(["a blue cone"]))
    )
    assert torch.allclose(got, plain, atol=1e-5)
    # With the default weights the side negative changes the front view's eps.
    text = perpneg_text(prior, "a red cube", torch.tensor([0.0, 45.0]), PerpNegConfig(), "")
    assert not torch.allclose(guided_eps(prior, x, 500, text, 7.5)[0], plain, atol=1e-4)
