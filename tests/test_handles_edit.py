"""The Diffusion Handles API end to end on a tiny random SD2-depth prior, its baselines,
depth estimation and input validation.

A random prior cannot make a good edit; these tests check the plumbing (shapes, what is
reused, what is logged, that guidance acts) at 4 DDIM steps and 1 inversion step.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dreamlift.errors import CaptionError, DataError, ModelError
from dreamlift.methods.handles import (
    EDITORS,
    HandlesConfig,
    Transform3D,
    depth_only,
    edit,
    scene_case,
    score_edit,
    warp_paste_2d,
)
from dreamlift.methods.handles.baselines import projected_affine, undo_warp_paste_2d
from dreamlift.methods.handles.estimate import estimate_depth
from dreamlift.methods.handles.inputs import check_inputs, check_prior
from dreamlift.methods.handles.morphology import dilate
from dreamlift.methods.handles.passes import Inversion

# The package exports the function ``edit``, which hides its module of the same name.
edit_module = importlib.import_module("dreamlift.methods.handles.edit")
FAST = HandlesConfig(steps=4, inversion_inner_steps=1)
MOVE = Transform3D(translate=(0.2, 0.0, 0.0), angle_deg=20.0)


@pytest.fixture(scope="module")
def prior(tiny_depth_sd):
    from dreamlift.priors import DiffusionPrior

    return DiffusionPrior.load(tiny_depth_sd, device="cpu")


@pytest.fixture(scope="module")
def case():
    return scene_case("a red cube next to a blue sphere", 0, MOVE, resolution=32)


def _counting(monkeypatch, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(edit_module, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(edit_module, name, wrapper)
    return calls


def test_edit_runs_end_to_end_and_reuses_inversion_and_recording(prior, case, monkeypatch):
    inversions = _counting(monkeypatch, "invert_input")
    recordings = _counting(monkeypatch, "record")
    generations = _counting(monkeypatch, "guided_generation")
    stages: set[str] = set()
    result = edit(
        case.image, case.mask, case.depth, case.transform, case.prompt,
        prior=prior, config=FAST, intrinsics=case.intrinsics, interpolate=3,
        progress=lambda stage, done, total: stages.add(stage),
    )  # fmt: skip
    assert (len(inversions), len(recordings), len(generations)) == (1, 1, 3)
    assert stages == {"inversion", "recording", "guided", "frames"}
    assert result.method == "handles"
    assert result.image.shape == (32, 32, 3) and 0 <= result.image.min() <= result.image.max() <= 1
    assert result.frames is not None and result.frames.shape == (3, 32, 32, 3)
    assert torch.equal(result.frames[-1], result.image)
    assert result.reconstruction is not None and result.reconstruction.shape == (32, 32, 3)
    assert torch.equal(result.mask, result.geometry.mask) and result.mask.any()
    positive = result.depth > 0
    assert torch.allclose(result.disparity[positive], 1 / result.depth[positive], rtol=1e-5)
    assert set(result.timings) == {
        "geometry_s", "inversion_s", "recording_s", "guided_s", "frames_s", "total_s"
    }  # fmt: skip
    # Clouds: every input pixel with depth; after the edit the object's points have moved.
    valid = int((case.depth > 0).sum())
    assert result.points_before.shape == (valid, 6)
    assert result.points_after.shape[1] == 6 and result.points_after.shape[0] <= valid
    # Guided steps 0-2 of 4 (38/50 of the steps), 3 inner steps each, all logged.
    assert [(e["step"], e["inner"]) for e in result.energies] == [
        (s, k) for s in range(3) for k in range(3)
    ]
    assert all(e["energy"] > 0 for e in result.energies)
    scores = score_edit(result, case)
    assert set(scores) == {"object_iou", "geometry_iou", "background_psnr", "object_l1"}
    assert scores["geometry_iou"] > 0.8 and all(np.isfinite(v) for v in scores.values())
    # Guidance acts: the same inversion regenerated with the edited depth alone differs.
    baseline = depth_only(
        case.image, case.mask, case.depth, case.transform, case.prompt,
        prior=prior, config=FAST, intrinsics=case.intrinsics,
    )  # fmt: skip
    assert baseline.method == "depth_only" and baseline.energies == []
    assert torch.equal(baseline.disparity, result.disparity)
    assert (baseline.image - result.image).abs().max() > 1e-3


def test_background_cells_leave_a_margin_around_both_objects():
    from dreamlift.methods.handles.depth_edit import LatentTargets
    from dreamlift.methods.handles.passes import background_cells

    bg_orig, bg_trans = torch.ones(36, dtype=torch.bool), torch.ones(36, dtype=torch.bool)
    bg_orig[2 * 6 + 2] = False  # the original object at cell (2, 2) of a 6 × 6 grid
    bg_trans[3 * 6 + 3] = False  # the moved one at (3, 3)
    none = torch.zeros(0, dtype=torch.long)
    targets = LatentTargets(none, none, bg_orig, bg_trans, (6, 6))
    keep = background_cells(targets, 1)[0, 0]
    assert not keep[1:4, 1:4].any() and not keep[2:5, 2:5].any()
    assert keep[0, 5] and keep[5, 0] and int(keep.sum()) == 36 - (9 + 9 - 4)
    assert int(background_cells(targets, 0).sum()) == 34


def test_keep_background_copies_the_reconstruction_outside_both_objects(prior, case, monkeypatch):
    from dreamlift.methods.handles.passes import background_cells

    seen: dict[str, object] = {}

    def spy(name: str):
        original = getattr(edit_module, name)

        def wrapper(*args, **kwargs):
            seen[name] = (args, out := original(*args, **kwargs))
            return out

        monkeypatch.setattr(edit_module, name, wrapper)

    spy("record")
    spy("guided_generation")

    def final_latents(config: HandlesConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        edit(
            case.image, case.mask, case.depth, case.transform, case.prompt,
            prior=prior, config=config, intrinsics=case.intrinsics,
        )  # fmt: skip
        recording = seen["record"][1]
        args, generation = seen["guided_generation"]
        keep = background_cells(args[5], config.background_margin).expand_as(generation.latents)
        return generation.latents, recording.latents, keep

    edited, reconstruction, keep = final_latents(replace(FAST, keep_background=True))
    assert keep.any() and not keep.all()
    assert torch.equal(edited[keep], reconstruction[keep])  # the background, as reconstructed
    assert not torch.equal(edited[~keep], reconstruction[~keep])  # the edit, not the input
    plain, reconstruction, keep = final_latents(FAST)  # the paper's pass leaves it free
    assert not torch.equal(plain[keep], reconstruction[keep])
    with pytest.raises(ValueError, match="background_margin"):
        HandlesConfig(background_margin=-1)


def test_warp_paste_baseline_moves_the_pixels_and_keeps_the_rest(case):
    shift = Transform3D(translate=(0.25, 0.0, 0.0), frame=case.transform.frame)
    result = warp_paste_2d(
        case.image, case.mask, case.depth, shift, intrinsics=case.intrinsics, interpolate=2
    )
    assert result.method == "warp_paste_2d" and result.reconstruction is None
    assert result.frames is not None and result.frames.shape[0] == 2
    affine = projected_affine(result.geometry)
    assert affine[1, 2] > 2  # moved right by a few pixels
    assert torch.allclose(affine[:, :2], torch.eye(2).double(), atol=0.1)
    untouched = ~(dilate(case.mask, 1) | result.mask)
    assert torch.equal(result.image[untouched], case.image[untouched])
    assert (result.image[result.mask] - case.image[case.mask].mean(0)).abs().mean() < 0.2
    assert set(EDITORS) == {"handles", "depth_only", "warp_paste_2d"}
    # Its own inverse (the benchmark's cycle): the object comes back to its pixels; what
    # differs is the filled ring around the old and new places.
    back = undo_warp_paste_2d(result)
    assert (back[case.mask] - case.image[case.mask]).abs().mean() < 0.01
    far = ~dilate(case.mask | result.mask, 2)
    assert torch.equal(back[far], case.image[far])
    assert (back - case.image).abs().mean() < 0.5 * (result.image - case.image).abs().mean()


def test_a_prepared_geometry_is_reused_not_recomputed(case, monkeypatch):
    shift = Transform3D(translate=(0.25, 0.0, 0.0), frame=case.transform.frame)
    cfg = HandlesConfig()
    _, geometry = edit_module.prepare(
        case.image, case.mask, case.depth, shift, cfg, intrinsics=case.intrinsics
    )
    fresh = warp_paste_2d(case.image, case.mask, case.depth, shift, intrinsics=case.intrinsics)
    edits = _counting(monkeypatch, "edit_depth")
    reused = warp_paste_2d(
        case.image, case.mask, case.depth, shift, intrinsics=case.intrinsics, geometry=geometry
    )
    assert edits == [] and reused.geometry is geometry
    assert torch.equal(reused.image, fresh.image)
    small = replace(geometry, mask=geometry.mask[:16, :16])
    with pytest.raises(DataError, match="the given 3D edit is"):
        warp_paste_2d(case.image, case.mask, case.depth, shift, geometry=small)


def test_a_passed_inversion_or_step_count_that_does_not_fit_is_a_user_error(prior, case):
    args = (case.image, case.mask, case.depth, case.transform, case.prompt)
    kw = {"prior": prior, "config": FAST, "intrinsics": case.intrinsics}
    channels = prior.latent_channels
    null = torch.zeros(1, 1, 1)
    short = Inversion(torch.zeros(1, channels, 16, 16), [null] * 3)
    small = Inversion(torch.zeros(1, channels, 8, 8), [null] * 4)
    for method in (edit, depth_only):
        with pytest.raises(DataError, match="3 null embeddings but the edit runs 4 steps"):
            method(*args, inversion=short, **kw)
        with pytest.raises(DataError, match=rf"noise is \(1, {channels}, 8, 8\)"):
            method(*args, inversion=small, **kw)
    too_many = HandlesConfig(steps=prior.num_train_timesteps + 1, inversion_inner_steps=1)
    with pytest.raises(DataError, match="exceed the prior's 1000 training timesteps"):
        edit(*args, prior=prior, config=too_many, intrinsics=case.intrinsics)
    with pytest.raises(DataError, match="exceed the prior's"):
        edit_module.invert_image(
            case.image, case.mask, case.depth, case.prompt, prior=prior, config=too_many
        )


def test_depth_is_estimated_with_a_dpt_folder(tiny_depth_sd, case):
    depth = estimate_depth(case.image, tiny_depth_sd)  # an SD2-depth folder's depth_estimator/
    assert depth.shape == (32, 32) and torch.isfinite(depth).all()
    assert float(depth.min()) >= 1.0 - 1e-5 and float(depth.max()) <= 10.0 + 1e-4
    inputs, geometry = edit_module.prepare(
        case.image, case.mask, None, Transform3D(), FAST, depth_model=tiny_depth_sd
    )
    assert inputs.intrinsics.fx == pytest.approx(16 / np.tan(np.radians(27.5)))
    assert geometry.mask.any()
    with pytest.raises(ModelError, match="no depth estimator"):
        estimate_depth(case.image, tiny_depth_sd / "unet")
    with pytest.raises(DataError, match="no depth for the image"):
        edit_module.prepare(case.image, case.mask, None, Transform3D(), FAST)


def test_bad_inputs_are_one_line_user_errors(prior, case):
    image, mask, depth = case.image, case.mask, case.depth
    cases = [
        ((image, mask[:16], depth), "the mask is 32×16 but the image is 32×32"),
        ((image, torch.zeros_like(mask), depth), "the object mask is empty"),
        ((image, torch.ones_like(mask), depth), "covers the whole image"),
        ((image, mask, depth[:, :8]), "the depth map is 8×32"),
        ((image, mask, -depth), "negative or non-finite"),
        ((image, mask, torch.where(mask, 0.0, depth)), "0 everywhere under the object"),
        ((image * 2, mask, depth), r"must lie in \[0, 1\]"),
        ((image[..., :2], mask, depth), "must be H×W×3"),
    ]
    for args, message in cases:
        with pytest.raises(DataError, match=message) as info:
            check_inputs(*args)
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="VAE factor 2") as info:
        check_prior(prior, torch.zeros(31, 32, 3))
    assert "resize it to 32×32" in str(info.value)
    with pytest.raises(DataError, match="the prior works at 32×32"):
        check_prior(prior, torch.zeros(64, 64, 3))
    flat = SimpleNamespace(depth_conditioned=False, folder="toy-sd")
    with pytest.raises(ModelError, match="depth-conditioned prior"):
        check_prior(flat, image)  # type: ignore[arg-type]
    with pytest.raises(CaptionError, match="unknown word"):
        edit(image, mask, depth, MOVE, "a red spaceship", prior=prior, config=FAST)
    with pytest.raises(DataError, match="out of view"):
        edit(image, mask, depth, Transform3D(translate=(0, 0, 50)), case.prompt, prior=prior)
