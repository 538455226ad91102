"""The voxel NeRF against closed-form ground truth: an analytic ball seen by orbit cameras."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from dreamlift.cameras import Cameras, focal_from_fov, orbit_cameras
from dreamlift.errors import DataError
from dreamlift.fields.nerf import NerfConfig, NerfField
from dreamlift.fields.volume import composite_weights, ray_aabb
from dreamlift.io.mesh import extract_mesh, write_mesh

CENTER = torch.tensor([0.12, -0.08, 0.05])  # off-centre, so swapped axes would show
RADIUS = 0.45
COLOUR = torch.tensor([0.85, 0.2, 0.1])
LIGHT = torch.nn.functional.normalize(torch.tensor([0.4, 0.3, 0.85]), dim=0)
DIST, FOV = 2.7, 40.0


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)


def ball_sigma(points: torch.Tensor) -> torch.Tensor:
    """A solid ball whose raw grid value is linear in the signed distance (so trilinear
    interpolation keeps the sphere where it is): ~1500/unit one voxel inside, ~0 outside,
    reaching optical depth 1 within 0.007 of the true surface."""
    sdf = (points - CENTER).norm(dim=-1) - RADIUS
    return NerfConfig().density_scale * torch.nn.functional.softplus(-1000.0 * sdf)


def ball_field(res: int = 64, **overrides) -> NerfField:
    cfg = NerfConfig(resolutions=((0, res),), mesh_resolution=64, **overrides)
    field = NerfField(cfg)
    field.set_from_functions(ball_sigma, lambda p: COLOUR.expand(len(p), 3))
    return field.eval()


def cameras(n: int, size: int, elevation: float = 20.0) -> Cameras:
    azimuth = torch.arange(n, dtype=torch.float32) * 360.0 / n + 15.0
    elev = torch.full((n,), elevation) + 10.0 * torch.arange(n) % 30
    return orbit_cameras(azimuth, elev, DIST, FOV, size, target=CENTER)


def analytic(cams: Cameras) -> dict[str, torch.Tensor]:
    """Exact ray-sphere renders: hit mask, z-depth, normals and shaded colour on white."""
    o, d, zpt = cams.rays()
    oc = o - CENTER
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - RADIUS**2)
    hit = disc > 0
    t = -b - disc.clamp(min=0).sqrt()
    normals = torch.nn.functional.normalize(oc + t[..., None] * d, dim=-1)
    shade = 0.3 + 0.7 * (normals @ LIGHT).clamp(min=0)
    rgb = torch.where(hit[..., None], COLOUR * shade[..., None], torch.ones(3))
    return {"hit": hit, "depth": t * zpt[..., 0], "normals": normals, "rgb": rgb}


def test_ray_aabb_and_weights_closed_form():
    o = torch.tensor([[-3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    near, far, hit = ray_aabb(o, d, -1.0, 1.0)
    assert hit.tolist() == [True, True, False]
    assert torch.allclose(near[:2], torch.tensor([2.0, 0.0]))
    assert torch.allclose(far[:2], torch.tensor([4.0, 1.0]))
    sigma = torch.tensor([[0.0, 1.0, 2.0, 1e9, 3.0]])
    w = composite_weights(sigma, torch.tensor([[0.5]]))
    alpha = 1 - torch.exp(-sigma * 0.5)
    trans = torch.cumprod(torch.cat([torch.ones(1, 1), 1 - alpha[:, :-1]], 1), 1)
    assert torch.allclose(w, alpha * trans, atol=1e-6)
    assert abs(float(w.sum()) - 1.0) < 1e-6 and float(w[0, 4]) == 0.0


def test_ball_silhouette_and_depth_match_analytic():
    field = ball_field()
    cams = cameras(3, 64)
    with torch.no_grad():
        out = field.render(cams)
    gt = analytic(cams)
    pred = out["opacity"][..., 0] > 0.5
    f = float(focal_from_fov(FOV, 64))
    disc_area = math.pi * (f * math.tan(math.asin(RADIUS / DIST))) ** 2
    areas = pred.flatten(1).sum(1).float()
    assert torch.allclose(areas, torch.full_like(areas, disc_area), rtol=0.03), (areas, disc_area)
    iou = (pred & gt["hit"]).sum() / (pred | gt["hit"]).sum()
    assert iou > 0.97
    # The four pixels around the image centre see the ball's nearest point: depth DIST - RADIUS.
    centre = out["depth"][:, 31:33, 31:33, 0]
    voxel = 2.0 / 63
    assert (centre - (DIST - RADIUS)).abs().max() < voxel
    assert (centre - gt["depth"][:, 31:33, 31:33]).abs().max() < voxel
    # Pixels whose rays pass well clear of the ball: white, zero opacity and zero depth.
    o, d, _ = cams.rays()
    miss = (o - CENTER).cross(d, dim=-1).norm(dim=-1) > RADIUS + 2 * voxel
    assert miss.sum() > 1000
    assert out["rgb"][miss].min() == 1.0 and out["opacity"][miss].max() == 0
    assert out["depth"][miss].abs().max() == 0
    # Solid pixels: the ball's colour composited opaquely.
    solid = gt["hit"] & (out["opacity"][..., 0] > 0.999)
    assert (out["rgb"][solid] - COLOUR).abs().max() < 0.02


def test_ball_normals_point_radially():
    field = ball_field()
    cams = cameras(2, 48)
    with torch.no_grad():
        out = field.render(cams, normals=True)
    gt = analytic(cams)
    inside = gt["hit"] & (out["opacity"][..., 0] > 0.99)
    cos = (out["normals"] * gt["normals"]).sum(-1)[inside]
    assert inside.sum() > 500 and cos.mean() > 0.9, float(cos.mean())
    assert out["normals"][out["opacity"][..., 0] == 0].abs().max() == 0


def test_fit_recovers_ball_silhouette():
    torch.manual_seed(0)
    cfg = NerfConfig(
        resolutions=((0, 16), (100, 24)),
        samples_per_ray=48,
        train_steps=300,
        occupancy_every=8,
    )
    field = NerfField(cfg)
    train_cams, test_cams = cameras(12, 32), cameras(2, 32, elevation=35.0)
    gt = analytic(train_cams)
    o, d, z = (x.reshape(-1, x.shape[-1]) for x in train_cams.rays())
    target = gt["rgb"].reshape(-1, 3)
    gen = torch.Generator().manual_seed(1)
    opt = field.make_optimizer()
    losses = []
    for step in range(cfg.train_steps):
        idx = torch.randint(0, len(o), (1024,), generator=gen)
        out = field.render_rays(o[idx], d[idx], z[idx], torch.ones(3))
        mse = (out["rgb"] - target[idx]).square().mean()
        opt.zero_grad()
        (mse + field.regularizer()).backward()
        opt.step()
        opt = field.after_step(step, opt)
        losses.append(float(mse.detach()))
    assert field.resolution == 24
    assert np.mean(losses[-10:]) < 0.08 * np.mean(losses[:5]), (losses[:5], losses[-10:])
    field.eval()
    with torch.no_grad():
        out = field.render(test_cams)
    pred, hit = out["opacity"][..., 0] > 0.5, analytic(test_cams)["hit"]
    assert (pred & hit).sum() / (pred | hit).sum() > 0.9


def _train_steps(field: NerfField, opt: torch.optim.Optimizer, steps: range, rays):
    o, d, z = rays
    for step in steps:
        out = field.render_rays(o, d, z)
        loss = (out["rgb"] - 0.3).square().mean() + field.regularizer()
        opt.zero_grad()
        loss.backward()
        opt.step()
        opt = field.after_step(step, opt)
    return opt


def test_state_round_trip_after_upsampling_is_exact():
    cfg = NerfConfig(
        resolutions=((0, 12), (2, 20)),
        samples_per_ray=32,
        occupancy_every=2,
        color_mode="mlp",
        color_features=4,
        mlp_hidden=8,
    )
    rays = tuple(x[0, ::4, ::4].reshape(-1, x.shape[-1]) for x in cameras(1, 32).rays())
    field = NerfField(cfg, torch.Generator().manual_seed(7))
    opt = _train_steps(field, field.make_optimizer(), range(3), rays)
    assert field.resolution == 20 and field.density_grid.shape == (1, 1, 20, 20, 20)
    moments = opt.state[field.density_grid]["exp_avg"]
    assert moments.shape == field.density_grid.shape  # moments carried
    state = field.state_tensors()

    fresh = NerfField(cfg)  # a different generator seed and the initial 12^3 grids
    fresh.load_state_tensors(state)
    for k, v in fresh.state_tensors().items():
        assert torch.equal(v, state[k]), k
    # Training on from the restored state is bit-identical, jitter included.
    opt_a = _train_steps(field, field.make_optimizer(), range(3, 5), rays)
    opt_b = _train_steps(fresh, fresh.make_optimizer(), range(3, 5), rays)
    for k, v in field.state_tensors().items():
        assert torch.equal(v, fresh.state_tensors()[k]), k
    assert opt_a is not opt_b


def test_same_seed_same_field():
    cfg = NerfConfig(resolutions=((0, 12),), samples_per_ray=32)
    rays = tuple(x[0, ::4, ::4].reshape(-1, x.shape[-1]) for x in cameras(1, 32).rays())
    fields = [NerfField(cfg) for _ in range(2)]
    for f in fields:
        _train_steps(f, f.make_optimizer(), range(3), rays)
    assert torch.equal(fields[0].density_grid, fields[1].density_grid)


def test_ball_mesh_extraction_and_glb_round_trip(tmp_path):
    field = ball_field(res=48)
    verts, faces, colors = extract_mesh(field.sigma, field.rgb, 1.0, 64, threshold=10.0)
    dist = np.linalg.norm(verts - CENTER.numpy(), axis=1)
    assert abs(dist.mean() - RADIUS) < 2.0 / 63 and dist.std() < 0.01
    assert np.abs(colors - COLOUR.numpy()).max() < 0.02
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight and mesh.volume > 0  # closed, outward-facing
    assert abs(mesh.volume / (4 / 3 * math.pi * RADIUS**3) - 1) < 0.05

    for name in ("ball.glb", "ball.obj"):
        path = write_mesh(tmp_path / name, verts, faces, colors)
        back = trimesh.load(path, force="mesh", process=False)
        assert len(back.vertices) == len(verts) and len(back.faces) == len(faces)
        vc = np.asarray(back.visual.vertex_colors)[:, :3] / 255.0
        assert np.abs(vc - COLOUR.numpy()).max() < 0.01, name
        if name.endswith(".glb"):
            assert np.allclose(back.vertices, verts, atol=1e-5)

    paths = field.export(tmp_path / "export")
    back = trimesh.load(paths["mesh"], force="mesh", process=False)
    up = np.array([CENTER[0], CENTER[2], -CENTER[1]])  # glTF is y-up
    assert abs(np.linalg.norm(back.vertices - up, axis=1).mean() - RADIUS) < 2.0 / 63
    assert back.visual.vertex_colors.shape == (len(back.vertices), 4)


def test_empty_field_export_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="nothing to mesh"):
        NerfField(NerfConfig(resolutions=((0, 16),), mesh_resolution=32)).export(tmp_path)
    with pytest.raises(DataError):
        extract_mesh(lambda p: torch.zeros(len(p)), lambda p: p, 1.0, 16, threshold=1.0)


def test_sphere_radius_removes_density_outside_and_keeps_it_inside():
    """A uniform fog bounded to a sphere renders as that sphere's disc."""
    fog = NerfField(NerfConfig(resolutions=((0, 32),), sphere_radius=0.5))
    fog.set_from_functions(
        lambda p: torch.full((len(p),), 200.0), lambda p: COLOUR.expand(len(p), 3)
    )
    points = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.2, 0.1], [0.0, 0.0, 0.8], [0.9, 0.9, 0.0]])
    sigma = fog.sigma(points)
    assert (sigma[:2] > 100).all() and (sigma[2:] == 0).all()
    cams = cameras(2, 48)
    with torch.no_grad():
        covered = fog.eval().render(cams)["opacity"][..., 0] > 0.5
    f = float(focal_from_fov(FOV, 48))
    disc = math.pi * (f * math.tan(math.asin(0.5 / DIST))) ** 2
    areas = covered.flatten(1).sum(1).float()
    assert torch.allclose(areas, torch.full_like(areas, disc), rtol=0.08), (areas, disc)
