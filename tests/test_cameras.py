import math

import torch

from dreamlift.cameras import (
    OrbitRange,
    opencv_to_opengl,
    opengl_to_opencv,
    orbit_cameras,
    sample_orbit,
    turntable,
    view_word,
)


def test_rays_project_back_to_their_pixels():
    cams = orbit_cameras(torch.tensor([10.0, 130.0]), torch.tensor([5.0, 50.0]), 2.7, 40.0, 16)
    origins, dirs, z_per_t = cams.rays()
    points = origins + 1.7 * dirs
    uv, z = cams.project(points.reshape(2, -1, 3))
    ys, xs = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    expected = torch.stack([xs, ys], -1).reshape(1, -1, 2).expand(2, -1, -1)
    assert torch.allclose(uv, expected, atol=1e-3)
    assert torch.allclose(z, (1.7 * z_per_t).reshape(2, -1), atol=1e-5)


def test_camera_frames_are_rigid_and_look_at_the_origin():
    cams, _, _ = sample_orbit(
        32, 8, OrbitRange(elevation=(-80, 89)), torch.Generator().manual_seed(0)
    )
    rot = cams.c2w[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(32, 3, 3), atol=1e-5)
    assert torch.allclose(torch.det(rot), torch.ones(32), atol=1e-5)
    forward = rot[:, :, 2]
    to_origin = torch.nn.functional.normalize(-cams.centers, dim=-1)
    assert torch.allclose(forward, to_origin, atol=1e-5)
    assert torch.allclose(cams.w2c() @ cams.c2w, torch.eye(4).expand(32, 4, 4), atol=1e-5)


def test_straight_down_camera_is_well_defined():
    cams = orbit_cameras(torch.tensor([0.0]), torch.tensor([90.0]), 2.0, 40.0, 8)
    assert torch.isfinite(cams.c2w).all()
    assert torch.allclose(cams.c2w[0, :3, 2], torch.tensor([0.0, 0.0, -1.0]), atol=1e-5)


def test_image_up_is_world_up_for_orbit_cameras():
    cams = turntable(4, 8, elevation_deg=0.0)
    # OpenCV +y is image-down, so it must point to world -z.
    assert torch.allclose(
        cams.c2w[:, :3, 1], torch.tensor([0.0, 0.0, -1.0]).expand(4, 3), atol=1e-5
    )


def test_opengl_conversion_flips_y_and_z_and_is_an_involution():
    cams = turntable(3, 8)
    gl = opencv_to_opengl(cams.c2w)
    assert torch.allclose(gl[:, :3, 2], -cams.c2w[:, :3, 2])  # OpenGL looks along -z
    assert torch.allclose(gl[:, :3, 1], -cams.c2w[:, :3, 1])
    assert torch.allclose(opengl_to_opencv(gl), cams.c2w)


def test_view_words():
    assert view_word(0) == "front"
    assert view_word(30) == "front" and view_word(-30) == "front"
    assert view_word(90) == "side" and view_word(-100) == "side"
    assert view_word(180) == "back" and view_word(-170) == "back" and view_word(190) == "back"
    assert view_word(0, 75) == "overhead"


def test_sampled_elevations_and_fov_stay_in_range():
    ranges = OrbitRange(radius=(2.0, 3.0), elevation=(10, 30), fov=(30, 50))
    cams, az, el = sample_orbit(200, 32, ranges, torch.Generator().manual_seed(1))
    assert el.min() >= 10 - 1e-4 and el.max() <= 30 + 1e-4
    radius = cams.centers.norm(dim=-1)
    assert radius.min() >= 2.0 - 1e-4 and radius.max() <= 3.0 + 1e-4
    fov = 2 * torch.rad2deg(torch.atan(16 / cams.fx))
    assert fov.min() >= 30 - 1e-3 and fov.max() <= 50 + 1e-3
    assert math.isclose(float(az.min()), -180, abs_tol=10) and math.isclose(
        float(az.max()), 180, abs_tol=10
    )
