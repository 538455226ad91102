import itertools
import math

import pytest
import torch

from dreamlift import world
from dreamlift.cameras import DEFAULT_ORBIT, orbit_cameras
from dreamlift.errors import CaptionError
from dreamlift.world.assets import COLOURS, Description, ObjectSpec, Part
from dreamlift.world.datasets import DatasetConfig, WorldDataset
from dreamlift.world.shapes import SHAPES

SIZE = 129  # odd, so one pixel centre lies exactly on the optical axis


def _single(shape: str, colour: str = "red", **kw) -> world.Asset:
    return world.Asset((Part(shape, colour, (0.0, 0.0, 0.0), **kw),))


def _front_camera(distance: float, size: int = SIZE, fov: float = DEFAULT_ORBIT.fov_deg):
    return orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), distance, fov, size)


def test_sphere_silhouette_area_and_centre_depth_match_the_formula():
    d, r = DEFAULT_ORBIT.radius, 0.4
    cams = _front_camera(d)
    out = world.render(_single("sphere"), cams)
    focal = float(cams.fx[0])
    rho = focal * math.tan(math.asin(r / d))  # silhouette radius in pixels
    area = float(out["alpha"].sum())
    assert area == pytest.approx(math.pi * rho**2, rel=0.02)
    c = SIZE // 2
    assert float(out["depth"][0, c, c, 0]) == pytest.approx(d - r, abs=1e-3)
    # The normal at the centre faces the camera (+x).
    assert torch.allclose(out["normals"][0, c, c], torch.tensor([1.0, 0.0, 0.0]), atol=1e-2)


def test_cube_front_face_projects_to_the_expected_square():
    d, half = 3.0, 0.35
    cams = _front_camera(d)
    out = world.render(_single("cube"), cams)
    width_px = 2 * float(cams.fx[0]) * half / (d - half)
    row = out["alpha"][0, SIZE // 2, :, 0]
    assert float(row.sum()) == pytest.approx(width_px, abs=1.5)
    assert float(out["depth"][0, SIZE // 2, SIZE // 2, 0]) == pytest.approx(d - half, abs=1e-3)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_renders_a_centred_non_empty_silhouette(shape):
    out = world.render(_single(shape), _front_camera(DEFAULT_ORBIT.radius, 65))
    alpha = out["alpha"][0, ..., 0]
    assert 0.02 < float(alpha.mean()) < 0.5
    ys, xs = torch.nonzero(alpha > 0.5, as_tuple=True)
    # Symmetric about the vertical image axis (every shape is symmetric under y -> -y).
    assert float(xs.float().mean()) == pytest.approx(32.0, abs=0.6)


def test_instance_masks_partition_the_image_and_carry_part_colours():
    asset = world.asset_from_caption("a red cube next to a blue sphere", ground=True)
    cams = orbit_cameras(torch.tensor([0.0, 45.0]), torch.tensor([30.0, 30.0]), 3.2, 40, 64)
    settings = world.RenderSettings(lighting=world.Lighting(ambient=1.0, diffuse=0.0))
    out = world.render(asset, cams, settings)
    inst = out["instance"]
    onehot = torch.nn.functional.one_hot(inst + 1, 4)
    assert torch.equal(onehot.sum(-1), torch.ones_like(inst))
    assert torch.equal(out["alpha"][..., 0] > 0, inst >= 0)
    for k, part in enumerate(asset.parts):
        pixels = out["rgb"][inst == k]
        assert len(pixels) > 20
        assert torch.allclose(pixels, torch.tensor(part.rgb).expand_as(pixels), atol=1e-5)
    assert (inst == 2).any()  # the ground
    assert (out["depth"][inst < 0] == 0).all()


def test_supersampled_alpha_is_fractional_only_on_edges():
    out = world.render(
        _single("sphere"),
        _front_camera(DEFAULT_ORBIT.radius, 33),
        world.RenderSettings(supersample=3),
    )
    alpha = out["alpha"][0, ..., 0]
    frac = (alpha > 0) & (alpha < 1)
    assert frac.any()
    assert float(frac.float().sum()) < 0.5 * float((alpha > 0).float().sum())


def test_sh_lighting_from_a_directional_light_matches_lambert():
    lam = world.Lighting(ambient=0.4, diffuse=0.6, direction=(1.0, 0.3, 0.5))
    sh = world.Lighting(sh=world.sh_from_directional(0.4, 0.6, (1.0, 0.3, 0.5)))
    cams = _front_camera(DEFAULT_ORBIT.radius, 65)
    a = world.render(_single("sphere", "white"), cams, world.RenderSettings(lighting=lam))
    b = world.render(_single("sphere", "white"), cams, world.RenderSettings(lighting=sh))
    mask = a["alpha"][..., 0] > 0
    err = (a["rgb"] - b["rgb"]).abs()[mask]
    assert float(err.mean()) < 0.05


def test_sh_lighting_per_channel():
    coeffs = [0.0] * 27
    coeffs[0] = 1.0 / world.sh_basis(torch.tensor([0.0, 0.0, 1.0]))[0].item()  # red ambient = 1
    out = world.render(
        _single("sphere", "white"),
        _front_camera(DEFAULT_ORBIT.radius, 33),
        world.RenderSettings(lighting=world.Lighting(sh=tuple(coeffs))),
    )
    inside = out["rgb"][out["alpha"][..., 0] > 0]
    assert torch.allclose(inside[:, 0], torch.full_like(inside[:, 0], 0.92), atol=1e-4)
    assert float(inside[:, 1:].abs().max()) == 0.0


def test_caption_round_trip_over_the_grammar():
    colours, shapes = list(COLOURS)[:4], list(SHAPES)
    objs = [ObjectSpec(c, s) for c, s in itertools.product(colours, shapes)]
    descs = [Description((o,), "single") for o in objs]
    descs += [Description((a, b), "on_top") for a, b in zip(objs, objs[5:], strict=False)]
    descs += [Description((a, b), "next_to", "side") for a, b in zip(objs, objs[3:], strict=False)]
    descs += [
        Description((a, b, c), "next_to", "back")
        for a, b, c in zip(objs, objs[2:], objs[7:], strict=False)
    ]
    for desc in descs:
        text = world.caption(desc)
        assert world.parse(text) == desc, text


def test_caption_variants_normalise():
    assert world.caption(world.parse("A blue sphere on top of a red cube.")) == (
        "a red cube with a blue sphere on top"
    )
    assert world.caption(world.parse("an  orange   torus ,  overhead view")) == (
        "an orange torus, overhead view"
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a red dragon", "dragon"),
        ("a red cube, diagonal view", "diagonal"),
        ("red cube", "object like"),
        ("a cube red", "must be"),
    ],
)
def test_bad_captions_give_one_line_errors_listing_the_vocabulary(text, needle):
    with pytest.raises(CaptionError) as err:
        world.parse(text)
    message = str(err.value)
    assert needle in message
    assert "\n" not in message
    assert "shapes: cube" in message


def test_layouts_stack_and_place_side_by_side_without_overlap():
    stack = world.asset_from_caption("a red cube with a blue sphere on top")
    bottom, top = stack.parts
    assert top.center[2] > bottom.center[2]
    assert top.bottom_z == pytest.approx(bottom.center[2] + 0.35 * bottom.scale)
    row = world.asset_from_caption("a green cone, a white cylinder and a red cube")
    ys = [p.center[1] for p in row.parts]
    assert ys == sorted(ys)
    # Every point of every part is outside the others (no interpenetration).
    for scene in (stack, row):
        for i, part in enumerate(scene.parts):
            pts = torch.tensor(part.center) + 0.2 * torch.randn(
                500, 3, generator=torch.Generator().manual_seed(i)
            )
            inside = pts[part.sdf(pts) < -0.02]
            for j, other in enumerate(scene.parts):
                if j != i and len(inside):
                    assert (other.sdf(inside) > 0).all()
    center, radius = row.bounding_sphere()
    assert radius < 1.0


def test_transformed_part_keeps_the_object_on_the_ground():
    scene = world.asset_from_caption("a red cube next to a blue sphere", ground=True)
    moved = scene.transformed_part(0, translate=(0.2, 0.0, 0.0), yaw_deg=30, scale=1.5)
    assert moved.parts[0].bottom_z == pytest.approx(0.0, abs=1e-6)
    assert moved.parts[0].center[0] == pytest.approx(0.2)
    assert moved.parts[1] == scene.parts[1]
    with pytest.raises(IndexError):
        scene.transformed_part(5)


def test_datasets_are_deterministic_and_respect_held_out_pairs():
    cfg = DatasetConfig(resolution=32, seed=3, exclude_pairs=(("red", "cube"),), supersample=1)
    a, b = WorldDataset(cfg, 40), WorldDataset(cfg, 40)
    for i in (0, 7, 39):
        x, y = a[i], b[i]
        assert x["caption"] == y["caption"]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["c2w"], y["c2w"])
        assert x["image"].shape == (3, 32, 32) and x["depth"].shape == (1, 32, 32)
    other = WorldDataset(DatasetConfig(resolution=32, seed=4, supersample=1), 40)
    assert [other.describe(i) for i in range(10)] != [a.describe(i) for i in range(10)]
    captions = [a.describe(i)[0] for i in range(40)]
    for desc, _ in (a.describe(i) for i in range(40)):
        if desc.relation == "single":
            assert (desc.objects[0].colour, desc.objects[0].shape) != ("red", "cube")
    assert len(set(captions)) > 20
    item = a[5]
    view = item["caption"].rsplit(", ", 1)[1]
    assert view in ("front view", "side view", "back view", "overhead view")
    assert world.parse(item["caption"])
