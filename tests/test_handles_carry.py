"""Carrying the object along the 3D edit's flow (``HandlesConfig.carry_steps``): the carried
image against the world's true edit, and what the generation pass writes where and when."""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest
import torch

from dreamlift.methods.handles import HandlesConfig, Transform3D, depth_only, edit, scene_case
from dreamlift.methods.handles.carry import (
    EDGE,
    ObjectCarry,
    carried_image,
    object_carry,
    remove_object,
)
from dreamlift.methods.handles.config import GeometryConfig
from dreamlift.methods.handles.depth_edit import edit_depth, touched_cells
from dreamlift.methods.handles.edit import invert_image
from dreamlift.methods.handles.morphology import dilate
from dreamlift.methods.handles.scores import mask_iou, object_mask_by_colour

edit_module = importlib.import_module("dreamlift.methods.handles.edit")
SCENE = "a red cube next to a blue sphere"
FAST = HandlesConfig(steps=4, inversion_inner_steps=1)


@pytest.fixture(scope="module")
def prior(tiny_depth_sd):
    from dreamlift.priors import DiffusionPrior

    return DiffusionPrior.load(tiny_depth_sd, device="cpu")


@pytest.mark.parametrize(
    "transform",
    [
        Transform3D(translate=(-0.3, 0.0, 0.0)),
        Transform3D(translate=(0.0, 0.0, -0.3)),
        Transform3D(scale=1.25),
        Transform3D(angle_deg=30.0),
    ],
    ids=["sideways", "away", "larger", "turned"],
)
def test_the_carried_image_puts_the_object_where_the_world_does(transform):
    case = scene_case(SCENE, 0, transform, resolution=64)
    geometry = edit_depth(case.depth, case.mask, transform, case.intrinsics, GeometryConfig())
    plate = remove_object(case.image, case.mask, EDGE)
    carried = carried_image(plate, case.image, geometry)
    found = object_mask_by_colour(carried, case.image, case.mask)
    # As good as the 3D edit of the depth allows: its own mask against the truth.
    assert mask_iou(found, case.target_mask) >= mask_iou(geometry.mask, case.target_mask) - 0.03
    assert mask_iou(found, case.target_mask) > mask_iou(case.mask, case.target_mask)  # it moved
    left = case.mask & ~geometry.mask
    if bool(left.any()):  # where the 3D edit says the object left, no object colour remains
        assert float(found[left].float().mean()) < 0.05
    away = ~(dilate(case.mask, EDGE) | geometry.mask)  # the rest is the input's
    assert torch.equal(carried[away], case.image[away].float())


def test_carried_cells_cover_both_objects_and_the_noise_is_seeded():
    case = scene_case(SCENE, 0, Transform3D(translate=(-0.3, 0.0, 0.0)), resolution=64)
    geometry = edit_depth(case.depth, case.mask, case.transform, case.intrinsics)
    latents = torch.zeros(1, 4, 16, 16)
    carry = object_carry(latents, case.mask, geometry, 4, seed=3)
    cells = carry.cells[0, 0]
    for mask in (case.mask, geometry.mask):
        touched = touched_cells(mask, 4)
        assert torch.equal(cells & touched, touched)
    assert not cells.all()
    assert torch.equal(carry.noise, object_carry(latents, case.mask, geometry, 4, seed=3).noise)
    assert not torch.equal(carry.noise, object_carry(latents, case.mask, geometry, 4, seed=4).noise)


def test_carry_steps_must_lie_within_the_steps():
    assert HandlesConfig(steps=20, carry_steps=20).carry_steps == 20
    for bad in (-1, 21):
        with pytest.raises(ValueError, match="carry_steps must be between 0"):
            HandlesConfig(steps=20, carry_steps=bad)


@pytest.mark.parametrize("method", [edit, depth_only], ids=["handles", "depth_only"])
def test_the_pass_writes_the_carried_latents_into_the_objects_cells_for_k_steps(
    prior, method, monkeypatch
):
    case = scene_case(SCENE, 0, Transform3D(translate=(-0.2, 0.0, 0.0)), resolution=32)
    seen: dict[str, object] = {}
    original = edit_module.guided_generation
    writes: list[int] = []
    blend = ObjectCarry.blend

    def spy(*args, **kwargs):
        seen["args"], seen["out"] = args, (out := original(*args, **kwargs))
        return out

    def counting_blend(self, latents, noised):
        writes.append(1)
        return blend(self, latents, noised)

    monkeypatch.setattr(edit_module, "guided_generation", spy)
    monkeypatch.setattr(importlib.import_module(method.__module__), "guided_generation", spy)
    monkeypatch.setattr(ObjectCarry, "blend", counting_blend)

    def run(config: HandlesConfig):
        writes.clear()
        method(
            case.image, case.mask, case.depth, case.transform, case.prompt,
            prior=prior, config=config, intrinsics=case.intrinsics,
        )  # fmt: skip
        return seen["out"].latents, seen["args"][-1], len(writes)

    final_t = prior.previous_timestep(prior.timesteps(FAST.steps)[-1], FAST.steps)
    carried, carry, count = run(replace(FAST, carry_steps=FAST.steps))
    assert count == FAST.steps + 1  # x_T, then after each step
    cells = carry.cells.expand_as(carried)
    expected = prior.add_noise(carry.latents, carry.noise, final_t)
    assert torch.allclose(carried[cells], expected[cells])  # carried all the way
    assert not torch.allclose(carried[~cells], expected[~cells])  # the rest is the pass's
    _, none, count = run(FAST)
    assert none is None and count == 0  # off by default: the paper's pass
    partly, _, count = run(replace(FAST, carry_steps=1))
    assert count == 2  # x_T and after the first step; the prior draws the rest
    assert not torch.allclose(partly[cells], expected[cells])


def test_an_identity_frame_carries_nothing(prior):
    case = scene_case(SCENE, 0, Transform3D(), resolution=32)
    config = replace(FAST, carry_steps=2)
    plain = edit(case.image, case.mask, case.depth, Transform3D(), case.prompt, prior=prior,
                 config=FAST, intrinsics=case.intrinsics)  # fmt: skip
    carried = edit(case.image, case.mask, case.depth, Transform3D(), case.prompt, prior=prior,
                   config=config, intrinsics=case.intrinsics)  # fmt: skip
    assert torch.equal(plain.image, carried.image)  # the inversion's rebuild, unchanged


@pytest.mark.parametrize("method", [edit, depth_only], ids=["handles", "depth_only"])
def test_the_steps_after_the_carry_run_at_the_redraw_guidance_scale(prior, method, monkeypatch):
    case = scene_case(SCENE, 0, Transform3D(translate=(-0.2, 0.0, 0.0)), resolution=32)
    scales: list[float] = []
    predict = type(prior).predict_eps

    def spy(self, latents, t, text, guidance_scale=7.5, *args, **kwargs):
        if not torch.is_grad_enabled():  # a CFG step, not the energy's features
            scales.append(guidance_scale)
        return predict(self, latents, t, text, guidance_scale, *args, **kwargs)

    def generation_scales(config: HandlesConfig) -> list[float]:
        inversion = invert_image(case.image, case.mask, case.depth, case.prompt, prior=prior,
                                 config=config, intrinsics=case.intrinsics)  # fmt: skip
        with monkeypatch.context() as m:
            m.setattr(type(prior), "predict_eps", spy)
            scales.clear()
            method(
                case.image, case.mask, case.depth, case.transform, case.prompt, prior=prior,
                config=config, intrinsics=case.intrinsics, inversion=inversion,
            )  # fmt: skip
        return scales[-config.steps :]  # the generation pass's CFG steps (after the recording's)

    carried = replace(FAST, carry_steps=1, redraw_guidance_scale=2.0)
    assert generation_scales(carried) == [7.5] + [2.0] * (FAST.steps - 1)
    assert generation_scales(FAST) == [7.5] * FAST.steps  # no carry: the paper's CFG throughout
    with pytest.raises(ValueError, match="redraw_guidance_scale"):
        HandlesConfig(redraw_guidance_scale=-1.0)
