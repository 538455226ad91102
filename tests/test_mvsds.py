"""MV-SDS guidance on a multi-view prior: the x0-reconstruction gradient against a hand
computation, one t per group, its refusals, generate's camera groups, and generate / edit
runs (the edit through the CLI) on tiny random multi-view priors."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from cli_helpers import run_main  # noqa: E402
from mvdream_layout import write_mvdream_folder  # noqa: E402

from dreamlift.cameras import OrbitRange  # noqa: E402
from dreamlift.guidance import GuidanceError, GuidanceInput, make_guidance  # noqa: E402
from dreamlift.methods.generate import build_config, generate  # noqa: E402
from dreamlift.methods.generate.step import sample_views  # noqa: E402
from dreamlift.priors import DiffusionPrior, MultiViewPrior  # noqa: E402
from dreamlift.priors.multiview import (  # noqa: E402
    MultiViewSettings,
    add_camera_embedding,
    group_azimuths,
)
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402


@pytest.fixture(scope="module")
def toy_mv_folder(tmp_path_factory):
    """toy-mvdream's layout at random: a tiny SD folder whose UNet has the camera MLP (its
    last layer opened so the cameras matter) and a multiview.json."""
    from diffusers import UNet2DConditionModel

    folder = tmp_path_factory.mktemp("toy_mv") / "mv"
    save_tiny_sd(folder, sample_size=8, config=TinySDConfig(unet_channels=(16, 32, 32)))
    unet = add_camera_embedding(UNet2DConditionModel.from_pretrained(folder / "unet"))
    torch.manual_seed(1)
    with torch.no_grad():
        unet.class_embedding.linear_2.weight.normal_(0, 0.05)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    MultiViewSettings().save(folder)
    return folder


@pytest.fixture(scope="module")
def prior(toy_mv_folder):
    loaded = DiffusionPrior.load(toy_mv_folder, device="cpu")
    assert isinstance(loaded, MultiViewPrior)
    return loaded


def _views(prior, groups=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(4 * groups, 3, prior.image_size, prior.image_size, generator=gen)
    azimuths = group_azimuths(torch.rand(groups, generator=gen) * 360 - 180)
    return images, azimuths, torch.full((4 * groups,), 15.0)


def test_latent_x0_gradient_is_the_std_rescaled_reconstruction(prior):
    """grad on z = (z − x̂0) / B, x̂0 from the CFG eps of the 4 views denoised together with
    their cameras, std-rescaled toward the conditional x̂0 over the group (r = 0.5)."""
    images, az, el = _views(prior, groups=2)
    z = prior.encode(images).detach().requires_grad_(True)
    guidance = make_guidance("mvsds", {"guidance_scale": 5.0, "negative_prompt": "a blue cube"})
    inp = GuidanceInput(
        latents=z,
        prompt="a red cube",
        prompts=["x"] * 8,
        azimuths=az,
        elevations=el,
        generator=torch.Generator().manual_seed(3),
    )
    loss = guidance(prior, inp)["loss_mvsds"]
    loss.backward()
    t, noise = guidance.last_draws.t, guidance.last_draws.noise
    assert t[:4].unique().numel() == 1 and t[4:].unique().numel() == 1
    with torch.no_grad(), prior.views(az, el):
        text = prior.embed_text(["a red cube"] * 8, negative="a blue cube")
        z_t = prior.add_noise(z.detach(), noise, t)
        parts = prior.predict_eps(z_t, t, text, 5.0, return_parts=True)
        x0 = prior.predict_x0(z_t, t, parts.guided)
        x0_cond = prior.predict_x0(z_t, t, parts.cond)
    groups = x0.reshape(2, -1)
    factor = (x0_cond.reshape(2, -1).std(1) / (groups.std(1) + 1e-8)).repeat_interleave(4)
    target = 0.5 * factor.view(-1, 1, 1, 1) * x0 + 0.5 * x0
    assert torch.allclose(z.grad, (z.detach() - target) / 8, atol=1e-5)
    # the same draws replayed give the same loss; a given t must be one per group
    again = guidance(
        prior,
        GuidanceInput(**{**inp.__dict__, "latents": z.detach()}).with_draws(guidance.last_draws),
    )
    assert torch.allclose(again["loss_mvsds"], loss)
    with pytest.raises(GuidanceError, match="one t per group"):
        guidance(prior, GuidanceInput(**{**inp.__dict__, "t": torch.arange(8) + 100}))


def test_image_form_and_t_annealing(prior):
    images, az, el = _views(prior)
    images.requires_grad_(True)
    guidance = make_guidance("mvsds", {"form": "x0"})
    gen = torch.Generator().manual_seed(0)
    early = GuidanceInput(
        images=images,
        prompt="a red cube",
        azimuths=az,
        elevations=el,
        step=0,
        total_steps=10,
        generator=gen,
    )
    guidance(prior, early)["loss_mvsds"].backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert guidance.last_info["t_min"] == pytest.approx(0.98)
    late = GuidanceInput(**{**early.__dict__, "step": 9})
    guidance(prior, late)
    assert guidance.last_info["t_max"] == pytest.approx(0.40)
    assert guidance.last_info["t_min"] == pytest.approx(0.02)


def test_refusals(prior, tmp_path):
    images, az, el = _views(prior)
    guidance = make_guidance("mvsds")
    with pytest.raises(GuidanceError, match="groups of 4"):
        guidance(prior, GuidanceInput(images=images[:3], prompt="a red cube", azimuths=az[:3]))
    with pytest.raises(GuidanceError, match="azimuth"):
        guidance(prior, GuidanceInput(images=images, prompt="a red cube"))
    single = DiffusionPrior.load(
        save_tiny_sd(
            tmp_path / "sd",
            sample_size=8,
            config=TinySDConfig(unet_channels=(8, 8), unet_groups=4, attention_head_dim=2),
        ),
        device="cpu",
    )
    with pytest.raises(GuidanceError, match="multi-view prior"):
        guidance(single, GuidanceInput(images=images, prompt="a red cube", azimuths=az))


def test_generate_samples_groups_of_four_views_ninety_degrees_apart():
    gen = torch.Generator().manual_seed(0)
    ranges = OrbitRange(radius=(2.0, 3.0), elevation=(0.0, 30.0), azimuth=(-80.0, 80.0))
    cams, az, el = sample_views(5, 16, ranges, gen, group=4)
    assert len(cams) == 8 and az.shape == (8,)
    for g in range(2):
        steps = torch.diff(az[4 * g : 4 * g + 4]) % 360
        assert torch.allclose(steps, torch.full((3,), 90.0), atol=1e-4)
        assert el[4 * g : 4 * g + 4].unique().numel() == 1
        radii = cams.centers[4 * g : 4 * g + 4].norm(dim=-1)
        assert torch.allclose(radii, radii[:1].expand(4), atol=1e-4)
    assert -80.0 <= float(az[0]) <= 80.0 and 0.0 <= float(el[0]) <= 30.0
    one, _, _ = sample_views(3, 16, ranges, torch.Generator().manual_seed(0))
    assert len(one) == 3


FAST = {
    "turntable_frames": 2,
    "score": False,
    "log_every": 1,
    "checkpoint_every": 2,
    "nerf": {"resolutions": ((0, 12),), "samples_per_ray": 8},
}


def test_generate_with_mvsds_on_the_toy_layout(prior, toy_mv_folder, tmp_path):
    cfg = build_config(
        "fast",
        prompt="a red cube",
        prior=str(toy_mv_folder),
        guidance="mvsds",
        field="nerf",
        steps=2,
        device="cpu",
        **FAST,
    )
    result = generate(cfg, tmp_path / "g", quiet=True, prior=prior)
    records = [json.loads(x) for x in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_mvsds" in r for r in records)
    assert result["metrics"] is not None


def test_generate_then_edit_through_the_cli_on_an_official_checkpoint(capsys, tmp_path):
    """The official key layout loads from --prior PATH; a 2-step MV-SDS source, then one
    revise and one IPG iteration of Perturb-and-Revise with MV-SDS, through the CLI. MV-SDS
    is chosen because the prior is multi-view (no --guidance); a single-view guidance is
    refused with a one-line error."""
    folder = write_mvdream_folder(tmp_path / "mvdream")
    nerf = "nerf.resolutions=[[0,12]]"
    code, err = run_main(
        capsys,
        "generate",
        "a red cube",
        "--prior",
        str(folder),
        "--field",
        "nerf",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--set",
        nerf,
        "--set",
        "nerf.samples_per_ray=8",
        "--set",
        "score=false",
        "--set",
        "turntable_frames=2",
        "--out",
        str(tmp_path / "g"),
    )
    assert code == 0, err
    records = [json.loads(x) for x in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_mvsds" in r for r in records)
    code, err = run_main(
        capsys, "generate", "a red cube", "--prior", str(folder), "--guidance", "sds",
        "--out", str(tmp_path / "refused"),
    )  # fmt: skip
    assert code == 2 and "multi-view prior" in err and not (tmp_path / "refused").exists()
    code, err = run_main(
        capsys,
        "edit",
        str(tmp_path / "g"),
        "a blue cube",
        "--prior",
        str(folder),
        "--device",
        "cpu",
        "--quiet",
        "--eta",
        "0.3",
        "--set",
        "revise_steps=1",
        "--set",
        "ipg_steps=1",
        "--set",
        "ipg_perceptual=0",
        "--set",
        f"step.{nerf}",
        "--set",
        "step.nerf.samples_per_ray=8",
        "--set",
        "step.score=false",
        "--set",
        "step.turntable_frames=2",
        "--out",
        str(tmp_path / "e"),
    )
    assert code == 0, err
    records = [json.loads(x) for x in (tmp_path / "e" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_mvsds" in r for r in records) and any("loss_ipg_l1" in r for r in records)


def test_edit_refuses_a_single_view_guidance_on_a_multi_view_prior_before_any_work(tmp_path):
    from dreamlift.errors import ConfigError
    from dreamlift.methods.edit import build_config as build_edit

    folder = write_mvdream_folder(tmp_path / "mvdream")
    cfg = build_edit("fast", prompt="a blue cube", source="x", step={"prior": str(folder)})
    assert cfg.step.guidance == "mvsds"
    with pytest.raises(ConfigError, match="multi-view prior"):
        build_edit(
            "fast", prompt="a blue cube", source="x", step={"prior": str(folder), "guidance": "sds"}
        )
