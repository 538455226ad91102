"""The guidance energy and its schedule (arXiv:2312.02190 §5.2), and guided steps on a tiny
random SD2-depth prior."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamlift.errors import ModelError
from dreamlift.methods.handles import GuidanceSchedule, HandlesConfig, Transform3D, scene_case
from dreamlift.methods.handles.depth_edit import LatentTargets, latent_targets
from dreamlift.methods.handles.edit import disparity_input, invert_input, prepare
from dreamlift.methods.handles.energy import (
    StepEnergy,
    decoder_layers,
    feature_losses,
    to_latent_grid,
    weighted_energy,
)
from dreamlift.methods.handles.passes import record

FG, BG = 1.5 * 30, 1.25 * 30


# ---------------------------------------------------------------- the schedule


def test_schedule_cycles_layers_and_inner_multipliers_as_the_code_does():
    s = GuidanceSchedule()
    assert s.weights(0, 0, 50) == ((0.0, 0.0, FG * 7.5 * 2.5), (0.0, 0.0, BG * 1.5 * 1.25))
    assert s.weights(1, 1, 50) == ((0.0, FG * 5 * 1.25, 0.0), (0.0, BG * 1.5 * 2.5, 0.0))
    fg, bg = s.weights(2, 2, 50)
    assert fg == (0.0, FG * 5 * 1.25, FG * 7.5 * 1.25)
    assert bg == (0.0, BG * 1.5 * 1.25, BG * 1.5 * 1.25)
    assert s.weights(3, 0, 50) == s.weights(0, 0, 50)  # the cycle repeats
    assert s.weights(37, 1, 50) == s.weights(1, 1, 50)  # the last guided step (37 % 3 = 1)
    assert s.weights(38, 0, 50) == ((0.0,) * 3, (0.0,) * 3)  # unguided from step 38 on
    assert s.weights(2, 7, 50) == s.weights(2, 2, 50)  # extra inner steps reuse the last
    assert [s.guided_steps(n) for n in (50, 20, 4, 1)] == [38, 15, 3, 1]
    assert s.active_layers() == (False, True, True)  # index 0 is never weighted
    only_bg = GuidanceSchedule(fg_cycle=((0.0, 0.0, 0.0),), bg_cycle=((1.0, 0.0, 0.0),))
    assert only_bg.active_layers() == (True, False, False)
    silent = GuidanceSchedule(fg_cycle=((0.0, 0.0, 0.0),), bg_cycle=((0.0, 0.0, 0.0),))
    with pytest.raises(ValueError, match="weights no layer"):
        HandlesConfig(schedule=silent)


# ---------------------------------------------------------------- the energy


def _targets() -> LatentTargets:
    """A hand-made edit on a 4×4 grid: cells 0, 1, 4 move to 10, 11, 14."""
    moved = torch.tensor([0, 1, 4, 10, 11, 14])
    bg = torch.ones(16, dtype=torch.bool)
    bg[moved] = False
    return LatentTargets(torch.tensor([0, 1, 4]), torch.tensor([10, 11, 14]), bg, bg, (4, 4))


def test_energy_is_zero_for_features_that_are_the_warped_recording():
    gen = torch.Generator().manual_seed(0)
    recorded = [None, torch.randn(6, 16, generator=gen), torch.randn(5, 16, generator=gen)]
    targets = _targets()
    current = [None] + [r.clone() for r in recorded[1:]]
    for c, r in zip(current[1:], recorded[1:], strict=True):
        c[:, targets.target] = r[:, targets.source]
    losses = feature_losses(current, recorded, targets)
    assert set(losses) == {"loss_fg/1", "loss_bg/1", "loss_fg/2", "loss_bg/2"}
    assert all(float(v) == 0.0 for v in losses.values())
    fg, bg = GuidanceSchedule().weights(2, 0, 50)
    assert float(weighted_energy(losses, fg, bg)) == 0.0
    # The unwarped recording misses at the targets: the foreground term is positive and
    # the energy is its weighted sum.
    losses = feature_losses(recorded, recorded, targets)
    assert float(losses["loss_fg/1"]) > 0 and float(losses["loss_bg/2"]) == 0.0
    expected = fg[1] * losses["loss_fg/1"] + fg[2] * losses["loss_fg/2"]
    assert torch.allclose(weighted_energy(losses, fg, bg), expected)
    # Shifting the background changes only its average term.
    shifted = [None] + [c + 0.5 for c in current[1:]]
    losses = feature_losses(shifted, recorded, targets)
    assert float(losses["loss_bg/1"]) == pytest.approx(0.5)


def test_step_energy_resizes_maps_to_the_latent_grid_and_logs_named_terms():
    gen = torch.Generator().manual_seed(1)
    coarse = torch.randn(1, 8, 2, 2, generator=gen)  # a deeper block at half resolution
    fine = torch.randn(1, 4, 4, 4, generator=gen)
    identity = LatentTargets(
        torch.arange(16), torch.arange(16), torch.ones(16, dtype=torch.bool),
        torch.ones(16, dtype=torch.bool), (4, 4),
    )  # fmt: skip
    recorded = [None, to_latent_grid(coarse, (4, 4)), to_latent_grid(fine, (4, 4))]
    energy = StepEnergy(["a", "b", "c"], recorded, identity, GuidanceSchedule(), 2, 50)
    assert float(energy({"b": coarse, "c": fine}, 0)) == 0.0
    assert float(energy({"b": coarse, "c": fine + 1}, 1)) > 0
    assert [h["energy"] == 0 for h in energy.history] == [True, False]
    assert set(energy.history[1]) == {"energy", "loss_fg/1", "loss_bg/1", "loss_fg/2", "loss_bg/2"}


def test_decoder_layers_are_the_last_three_up_blocks():
    def unet(n: int) -> nn.Module:
        module = nn.Module()
        module.up_blocks = nn.ModuleList(nn.Identity() for _ in range(n))
        return module

    assert decoder_layers(unet(4)) == ("up_blocks.1", "up_blocks.2", "up_blocks.3")  # SD2
    assert decoder_layers(unet(3)) == ("up_blocks.0", "up_blocks.1", "up_blocks.2")  # toy
    with pytest.raises(ModelError, match="at least 3 up blocks"):
        decoder_layers(unet(2))


# ---------------------------------------------------------------- on a tiny prior


@pytest.fixture(scope="module")
def guided_setup(tiny_depth_sd):
    from dreamlift.priors import DiffusionPrior

    prior = DiffusionPrior.load(tiny_depth_sd, device="cpu")
    case = scene_case("a red cube next to a blue sphere", 0, Transform3D(translate=(0.2, 0, 0)), 32)
    cfg = HandlesConfig(steps=4, inversion_inner_steps=1)
    inputs, geometry = prepare(
        case.image, case.mask, case.depth, case.transform, cfg, prior, case.intrinsics
    )
    text = prior.embed_text(case.prompt)
    inversion = invert_input(prior, inputs, text, cfg)
    layers = decoder_layers(prior.unet)
    disparity = disparity_input(prior, inputs.depth, is_depth=True)
    recording = record(prior, inversion, text, disparity, layers, (False, True, True), cfg)
    targets = latent_targets(geometry, inputs.mask, prior.vae_scale_factor)
    edited = disparity_input(prior, geometry.disparity, is_depth=False)
    return prior, text, inversion, layers, disparity, recording, targets, edited


def test_recording_holds_the_conditional_only_activations(guided_setup):
    prior, text, inversion, layers, disparity, recording, _, _ = guided_setup
    t0 = prior.timesteps(4)[0]
    with torch.no_grad():
        features = prior.features(inversion.noise, t0, text, layers, disparity)
    assert recording.maps[0][0] is None  # index 0 has no weight: not recorded
    for i in (1, 2):
        expected = to_latent_grid(features[layers[i]], (16, 16))
        assert torch.allclose(recording.maps[0][i], expected, atol=1e-5)
    # Steps 0-2 of 4 are guided (38/50); the last is run (for the reconstruction), not kept.
    assert len(recording.maps) == 4
    assert all(recording.maps[t][i] is not None for t in range(3) for i in (1, 2))
    assert recording.maps[3] == [None, None, None]


def test_a_gradient_step_on_the_latent_lowers_the_energy(guided_setup):
    from dreamlift.priors.guided import energy_gradient

    prior, text, inversion, layers, _, recording, targets, edited = guided_setup
    ts = prior.timesteps(4)
    for step in range(3):
        energy = StepEnergy(layers, recording.maps[step], targets, GuidanceSchedule(), step, 4)
        names = [n for n, m in zip(layers, recording.maps[step], strict=True) if m is not None]
        z = inversion.noise
        grad, before = energy_gradient(prior, z, ts[step], text, energy, names, 0, edited)
        assert before > 0 and float(grad.abs().max()) > 0
        # The random tiny UNet is far rougher than a trained one, so the step is small.
        _, after = energy_gradient(prior, z - 1e-4 * grad, ts[step], text, energy, names, 0, edited)
        assert after < before
