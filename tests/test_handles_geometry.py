"""Diffusion Handles' 3D edit of the depth, checked against the world's ground truth.

No diffusion here: lifting, transforming, z-buffering, cleaning and Laplace filling are
pure tensor functions, and the world renders the true edited scene to compare with.
"""

from __future__ import annotations

import math

import pytest
import torch

from dreamlift.errors import DataError
from dreamlift.methods.handles import GeometryConfig, Intrinsics, Transform3D, edit_depth
from dreamlift.methods.handles.depth_edit import (
    background_disparity,
    latent_targets,
    to_disparity,
)
from dreamlift.methods.handles.laplace import poisson_fill
from dreamlift.methods.handles.lift import lift, project, zbuffer
from dreamlift.methods.handles.morphology import clean_mask, close, dilate, erode, open_
from dreamlift.methods.handles.scene import gravity_frame, scene_camera, scene_case
from dreamlift.methods.handles.scores import mask_iou
from dreamlift.methods.handles.transform import parse_axis, rodrigues, transform_from_options

PAIR = "a red cube next to a blue sphere"


@pytest.fixture(scope="module")
def identity_case():
    return scene_case(PAIR, 0, Transform3D(), resolution=64)


# ---------------------------------------------------------------- lifting and projecting


def test_lift_then_project_lands_on_the_same_pixel_and_depth():
    k = Intrinsics.from_fov(55.0, 48, 32)
    depth = 1.0 + torch.rand(32, 48)
    points = lift(depth, k).reshape(-1, 3)
    pix, z = project(points, k)
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(48), indexing="ij")
    assert torch.equal(pix, torch.stack([rows, cols], -1).reshape(-1, 2))
    assert torch.allclose(z, depth.reshape(-1))
    assert k.fx == pytest.approx(24 / math.tan(math.radians(27.5)))


def test_zbuffer_keeps_the_nearest_point_and_respects_the_background():
    k = Intrinsics.from_fov(60.0, 8, 8)
    ray = k.pixel_rays()[3, 4]
    points = torch.stack([ray * 2.0, ray * 1.5, ray * 3.0])  # three points on one pixel's ray
    splat = zbuffer(points, k)
    assert splat.won.sum() == 1 and splat.won[3, 4]
    assert splat.winner[3, 4] == 1 and splat.depth[3, 4] == pytest.approx(1.5)
    background = torch.full((8, 8), 1.0)  # a wall in front of every point
    assert not zbuffer(points, k, background).won.any()


# ---------------------------------------------------------------- the transform


def test_rodrigues_and_the_default_frame_turn_about_the_cameras_up_axis():
    rot = rodrigues(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), 90.0)
    assert torch.allclose(
        rot @ torch.tensor([1.0, 0, 0]).double(), torch.tensor([0, 1.0, 0]).double()
    )
    # Handle frame: y up, z towards the viewer. In OpenCV camera space up is -y.
    r_cam, t_cam, s = Transform3D(translate=(1.0, 2.0, 3.0), angle_deg=30.0).in_camera()
    assert torch.allclose(t_cam, torch.tensor([1.0, -2.0, -3.0]).double())
    assert torch.allclose(
        r_cam @ torch.tensor([0.0, -1.0, 0.0]).double(), torch.tensor([0.0, -1.0, 0.0]).double()
    )
    # +45 about up, seen from above counter-clockwise: the side facing the viewer turns right.
    r_cam, _, _ = Transform3D(angle_deg=45.0).in_camera()
    towards_viewer = torch.tensor([0.0, 0.0, -1.0]).double()
    assert (r_cam @ towards_viewer)[0] > 0.7
    assert s == 1.0


def test_transform_options_interpolation_and_axis_errors():
    t = transform_from_options((0.2, 0.0, -0.4), ("-y", 60.0), 2.0)
    assert t.axis == (-0.0, -1.0, -0.0) and t.angle_deg == 60.0
    half = t.interpolate(0.5)
    assert half.translate == (0.1, 0.0, -0.2) and half.angle_deg == 30.0
    assert half.scale == pytest.approx(math.sqrt(2.0))
    assert t.interpolate(0.0).is_identity
    assert parse_axis("0, 1, 1") == (0.0, 1.0, 1.0)
    for bad in ("up", "0,0,0", "1,2"):
        with pytest.raises(DataError, match="rotation axis"):
            parse_axis(bad)
    with pytest.raises(DataError, match="scale"):
        Transform3D(scale=0.0)
    for axis in ((math.nan, 1.0, 0.0), (0.0, math.inf, 0.0)):
        with pytest.raises(DataError, match="non-finite"):
            Transform3D(axis=axis, angle_deg=10.0)
    with pytest.raises(DataError, match="non-finite"):
        transform_from_options(rotate=("inf,0,0", 10.0))


def test_scene_frame_maps_handle_y_to_the_worlds_vertical():
    cams = scene_camera(64, azimuth=30.0, elevation=20.0)
    frame = torch.tensor(gravity_frame(cams)).double()  # rows: handle axes in camera coords
    c2w = cams.c2w[0, :3, :3].double()
    up_world = c2w @ frame[1]
    assert torch.allclose(up_world, torch.tensor([0.0, 0.0, 1.0]).double(), atol=1e-6)
    assert torch.allclose(frame @ frame.T, torch.eye(3).double(), atol=1e-6)


# ---------------------------------------------------------------- Laplace and morphology


def test_harmonic_fill_is_exact_on_a_linear_ramp():
    rows, cols = torch.meshgrid(
        torch.arange(40.0).double(), torch.arange(56.0).double(), indexing="ij"
    )
    ramp = (0.3 * cols - 0.2 * rows + 5.0).double()
    region = torch.zeros(40, 56, dtype=torch.bool)
    region[5:30, 8:50] = True
    region[12:20, 2:8] = True  # not convex
    holed = torch.where(region, torch.zeros_like(ramp), ramp)
    filled = poisson_fill(holed, region)
    assert (filled - ramp).abs().max() < 1e-6
    assert torch.equal(filled[~region], ramp[~region])


def test_harmonic_fill_of_a_large_region_uses_the_coarse_start_and_converges():
    rows, cols = torch.meshgrid(
        torch.arange(96.0).double(), torch.arange(96.0).double(), indexing="ij"
    )
    ramp = (0.05 * cols + 0.02 * rows).double()
    region = torch.zeros(96, 96, dtype=torch.bool)
    region[10:86, 10:86] = True
    filled = poisson_fill(torch.where(region, torch.zeros_like(ramp), ramp), region)
    assert (filled - ramp).abs().max() < 1e-6


def test_morphology_closes_pinholes_and_opens_specks():
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[4:14, 4:14] = True
    mask[8, 8] = False  # a pinhole
    mask[17, 17] = True  # a speck
    assert close(mask, 1)[8, 8]
    assert not open_(mask, 1)[17, 17]
    cleaned = clean_mask(mask, 1, 1)
    assert cleaned[8, 8] and not cleaned[17, 17] and cleaned[4:14, 4:14].all()
    assert torch.equal(erode(dilate(mask, 0), 0), mask)
    border = torch.zeros(6, 6, dtype=torch.bool)
    border[:, :3] = True
    assert torch.equal(erode(border, 1)[:, 0], border[:, 0])  # no erosion in from the border
    tiny = torch.zeros(9, 9, dtype=torch.bool)
    tiny[4, 4] = True
    assert clean_mask(tiny, 1, 1)[4, 4]  # an object the open would erase is kept


def test_kernel_radii_follow_the_codes_integer_widths():
    # close width res // 50, open width res // 250 (10 and 2 px at 512), as radii width // 2
    assert GeometryConfig().radii(512) == (5, 1, 15)
    assert GeometryConfig().radii(1024) == (10, 2, 30)
    # 64 // 250 = 0: no opening at small sizes; the close keeps 1 px for splat pinholes.
    assert GeometryConfig().radii(64) == (1, 0, 2)
    assert GeometryConfig().radii(32) == (1, 0, 1)
    assert GeometryConfig(close_radius=3, open_radius=0).radii(64)[:2] == (3, 0)
    assert GeometryConfig(close_radius=0, open_radius=2).radii(512)[:2] == (0, 2)
    with pytest.raises(ValueError, match="open_radius must be non-negative"):
        GeometryConfig(open_radius=-1)


# ---------------------------------------------------------------- the edit against the world


def test_background_removal_is_exact_for_an_object_in_front_of_a_plane():
    """A plane's disparity is affine in the pixels, so harmonic removal rebuilds it."""
    rows, cols = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    plane = 0.2 + 0.004 * cols + 0.006 * rows  # 1/z of a tilted wall
    mask = (rows - 20) ** 2 + (cols - 26) ** 2 < 81
    depth = torch.where(mask, 1.0, 1.0 / plane)  # the object sits in front of the wall
    background, occluders = background_disparity(depth, mask, 2)
    assert (background - plane).abs().max() < 1e-5
    assert torch.equal(occluders, background)  # nothing capped: the wall is behind
    # In a real scene (the world's ground) sky above the object leaks into the fill, but
    # what is rebuilt is never nearer than the object it replaces.
    case = scene_case("a green cylinder", 0, Transform3D(), resolution=32)
    rebuilt, _ = background_disparity(case.depth, case.mask, 1)
    assert (rebuilt[case.mask] <= to_disparity(case.depth)[case.mask] + 1e-6).all()


def test_a_capped_background_does_not_hide_an_object_moved_back():
    """Surroundings at depth 1, an object at 2-2.5 seen through them: the rebuilt background
    under it is only a bound (capped at the object's disparity), so it occludes nothing."""
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    mask = (rows >= 24) & (rows < 40) & (cols >= 24) & (cols < 40)
    depth = torch.where(mask, 2.0 + 0.5 * (cols - 24) / 15, torch.ones(64, 64))
    background, occluders = background_disparity(depth, mask, 2)
    assert torch.equal(background[mask], to_disparity(depth)[mask])  # capped everywhere
    assert (occluders[mask] == 0).all() and torch.equal(occluders[~mask], background[~mask])
    k = Intrinsics.from_fov(55.0, 64, 64)
    e = edit_depth(depth, mask, Transform3D(translate=(0.0, 0.0, -0.05)), k)
    assert mask_iou(e.mask, mask) > 0.85
    moved = e.mask & e.splat_mask
    assert (e.depth[moved] > 2.04).all() and (e.depth[moved] < 2.56).all()
    # Further back it shrinks; the pixels it leaves keep the capped background.
    e = edit_depth(depth, mask, Transform3D(translate=(0.0, 0.0, -1.0)), k)
    vacated = mask & ~e.mask
    assert vacated.sum() > 50 and torch.equal(e.disparity[vacated], background[vacated])


def test_identity_reproduces_the_depth_and_the_mask(identity_case):
    case = identity_case
    e = edit_depth(case.depth, case.mask, case.transform, case.intrinsics)
    assert torch.equal(e.splat_mask, case.mask)
    assert mask_iou(e.mask, case.mask) > 0.99
    assert torch.allclose(e.depth[e.splat_mask & e.mask], case.depth[e.splat_mask & e.mask])
    # Beyond the ring where the background is re-solved (object edges of estimated depth
    # bleed), the depth is untouched.
    far = ~dilate(case.mask, GeometryConfig().radii(64)[2])
    assert torch.allclose(e.depth[far], case.depth[far], rtol=1e-6)
    assert torch.equal(e.source, e.target)


@pytest.mark.parametrize(
    ("scene", "index", "transform"),
    [
        ("a red cube", 0, Transform3D(translate=(0.3, 0.0, 0.0))),
        ("a red cube", 0, Transform3D(translate=(0.0, 0.1, 0.4))),
        (PAIR, 1, Transform3D(translate=(-0.2, 0.0, -0.3))),  # partly behind the cube
        ("a red cube", 0, Transform3D(angle_deg=30.0)),
        (PAIR, 0, Transform3D(angle_deg=-30.0, translate=(0.0, 0.0, 0.2))),
        ("a green cylinder", 0, Transform3D(scale=1.3)),
    ],
)
def test_moved_object_matches_the_true_render(scene, index, transform):
    case = scene_case(scene, index, transform, resolution=64)
    e = edit_depth(case.depth, case.mask, case.transform, case.intrinsics)
    assert mask_iou(e.mask, case.target_mask) > 0.9
    both = e.mask & e.splat_mask & case.target_mask
    rel = ((e.depth - case.target_depth).abs() / case.target_depth.clamp(min=1e-6))[both]
    assert rel.median() < 0.01


def test_pixels_where_a_nearer_surface_hides_the_moved_object_stay_that_surface():
    """The sphere moved back and left, partly behind the cube: where its points land but the
    cube is nearer, the cube is seen, so neither the cleaned mask nor the hole filling may
    take those pixels."""
    case = scene_case(PAIR, 1, Transform3D(translate=(-0.35, 0.0, -0.6)), resolution=64)
    e = edit_depth(case.depth, case.mask, case.transform, case.intrinsics)
    pix, z = project(e.moved_points, case.intrinsics)
    inside = (z > 0) & (pix >= 0).all(1) & (pix < 64).all(1)
    landed = torch.zeros(64, 64, dtype=torch.bool)
    landed[pix[inside, 0], pix[inside, 1]] = True
    hidden = landed & ~e.splat_mask
    assert hidden.sum() > 50  # a good part of the sphere is behind the cube
    assert not (e.mask & hidden).any()
    # Closing the splat alone would have claimed some of them (the bug this guards against).
    close_r, open_r, dilation = GeometryConfig().radii(64)
    assert (clean_mask(e.splat_mask, close_r, open_r) & hidden).any()
    assert torch.equal(e.disparity[hidden], e.background[hidden])
    # There the cube is seen, at its input depth (beyond the re-solved ring around the sphere).
    cube = hidden & (case.target_instance == 0) & ~dilate(case.mask, dilation)
    assert cube.sum() > 20
    assert torch.allclose(e.depth[cube], case.depth[cube], rtol=1e-6)
    assert torch.allclose(e.depth[cube], case.target_depth[cube], rtol=1e-3)
    assert mask_iou(e.mask, case.target_mask) > 0.8


def test_correspondences_land_where_the_transform_sends_them(identity_case):
    case = identity_case
    t = Transform3D(translate=(0.15, 0.05, 0.1), angle_deg=20.0, frame=case.transform.frame)
    e = edit_depth(case.depth, case.mask, t, case.intrinsics)
    assert e.source.shape[0] > 100 and e.mask[e.target[:, 0], e.target[:, 1]].all()
    src_points = lift(case.depth, case.intrinsics)[e.source[:, 0], e.source[:, 1]]
    pix, _ = project(t.apply(src_points, e.center), case.intrinsics)
    assert torch.equal(pix, e.target)
    assert case.mask[e.source[:, 0], e.source[:, 1]].all()


def test_latent_targets_divide_by_the_vae_factor(identity_case):
    case = identity_case
    e = edit_depth(case.depth, case.mask, Transform3D(translate=(0.2, 0, 0)), case.intrinsics)
    lt = latent_targets(e, case.mask, 4)
    assert lt.size == (16, 16)
    assert torch.equal(lt.source, (e.source[:, 0] // 4) * 16 + e.source[:, 1] // 4)
    assert torch.equal(lt.target, (e.target[:, 0] // 4) * 16 + e.target[:, 1] // 4)
    assert not lt.bg_orig[lt.source].any() and not lt.bg_trans[lt.target].any()
    assert lt.bg_orig.any() and lt.bg_trans.any()


def test_out_of_view_and_bad_scene_edits_are_user_errors(identity_case):
    case = identity_case
    for far in ((30.0, 0.0, 0.0), (0.0, 0.0, 10.0)):
        with pytest.raises(DataError, match="out of view"):
            edit_depth(case.depth, case.mask, Transform3D(translate=far), case.intrinsics)
    with pytest.raises(DataError, match="vertical axis"):
        scene_case(PAIR, 0, Transform3D(axis=(1.0, 0.0, 0.0), angle_deg=30.0), resolution=32)
    with pytest.raises(DataError, match="object 5 does not exist"):
        scene_case(PAIR, 5, Transform3D(), resolution=32)
