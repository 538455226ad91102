"""Carrying the object along the 3D edit's flow (``HandlesConfig.carry_steps``): the carried
image against the world's true edit, and what the guided pass writes where."""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest
import torch

from dreamlift.methods.handles import HandlesConfig, Transform3D, edit, scene_case
from dreamlift.methods.handles.carry import EDGE, carried_image, object_carry, touched_cells
from dreamlift.methods.handles.config import GeometryConfig
from dreamlift.methods.handles.depth_edit import edit_depth
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
    carried = carried_image(case.image, case.mask, geometry)
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
    assert torch.equal(cells & touched_cells(case.mask, 4)[0, 0], touched_cells(case.mask, 4)[0, 0])
    assert torch.equal(
        cells & touched_cells(geometry.mask, 4)[0, 0], touched_cells(geometry.mask, 4)[0, 0]
    )
    assert not cells.all()
    assert torch.equal(carry.noise, object_carry(latents, case.mask, geometry, 4, seed=3).noise)
    assert not torch.equal(carry.noise, object_carry(latents, case.mask, geometry, 4, seed=4).noise)


def test_the_guided_pass_writes_the_carried_latents_only_where_the_objects_are(prior, monkeypatch):
    case = scene_case(SCENE, 0, Transform3D(translate=(-0.2, 0.0, 0.0)), resolution=32)
    seen: dict[str, object] = {}
    original = edit_module.guided_generation

    def spy(*args, **kwargs):
        seen["args"], seen["out"] = args, (out := original(*args, **kwargs))
        return out

    monkeypatch.setattr(edit_module, "guided_generation", spy)

    def run(config: HandlesConfig):
        edit(
            case.image, case.mask, case.depth, case.transform, case.prompt,
            prior=prior, config=config, intrinsics=case.intrinsics,
        )  # fmt: skip
        return seen["out"].latents, seen["args"][-1]

    carried, carry = run(replace(FAST, carry_steps=FAST.steps))
    cells = carry.cells.expand_as(carried)
    final_t = prior.previous_timestep(prior.timesteps(FAST.steps)[-1], FAST.steps)
    expected = prior.add_noise(carry.latents, carry.noise, final_t)
    assert torch.allclose(carried[cells], expected[cells])  # carried all the way
    plain, none = run(FAST)
    assert none is None  # off by default: the paper's pass
    assert not torch.allclose(plain[cells], expected[cells])
    partly, _ = run(replace(FAST, carry_steps=1))  # carried only at the start
    assert not torch.allclose(partly[cells], expected[cells])
    with pytest.raises(ValueError, match="carry_steps"):
        HandlesConfig(carry_steps=-1)
