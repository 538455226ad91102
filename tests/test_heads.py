"""Heads of the world: parameters, part labels, composition, lights, EG3D cameras, captions
and ``dreamlift world render --head``, checked against their ground truth."""

from __future__ import annotations

import json
import math

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from cli_helpers import run_main

from dreamlift import world
from dreamlift.errors import CaptionError, ConfigError, DataError
from dreamlift.world.assets import Description, ObjectSpec
from dreamlift.world.heads import ATTRIBUTES, RANGES, check_head_seed
from dreamlift.world.lighting import named_light

LABEL = {name: i for i, name in enumerate(world.PART_LABELS)}


def _front(size: int = 48, azimuth: float = 0.0, elevation: float = 0.0):
    return world.head_cameras(azimuth, elevation, size)


def _render(params, size: int = 48, light: str = "front", **kw):
    return world.render_head(params, _front(size, **kw), named_light(light))


def test_head_params_are_deterministic_in_range_and_differ_between_seeds():
    assert world.head_params(5) == world.head_params(5)
    heads = [world.head_params(s) for s in range(40)]
    assert len(set(heads)) == 40
    for p in heads:
        for name, (lo, hi) in RANGES.items():
            assert lo <= getattr(p, name) <= hi
    styles = {p.hair for p in heads}
    assert styles == {"none", "short", "long", "bun"}
    assert any(p.glasses for p in heads) and any(p.beard for p in heads)


def test_the_same_seed_renders_identically_and_labels_cover_exactly_the_alpha():
    params = world.with_overrides(world.head_params(3), {"glasses": "yes", "hat": "yes"})
    a, b = _render(params, elevation=10.0), _render(params, elevation=10.0)
    for key in ("rgb", "depth", "labels"):
        assert torch.equal(a[key], b[key])
    covered = a["alpha"][..., 0] > 0
    assert torch.equal(a["labels"] > 0, covered)
    assert 0.2 < covered.float().mean() < 0.9
    assert {"skin", "eyes", "nose", "lips", "glasses", "hat"} <= {
        world.PART_LABELS[i] for i in a["labels"].unique().tolist()
    }


def test_glasses_yes_adds_glasses_pixels_and_no_has_none():
    base = world.head_params(8)
    with_glasses = _render(world.with_overrides(base, {"glasses": "yes"}), size=64)
    without = _render(world.with_overrides(base, {"glasses": "no"}), size=64)
    assert (with_glasses["labels"] == LABEL["glasses"]).sum() > 20
    assert (without["labels"] == LABEL["glasses"]).sum() == 0
    # The glasses cover some of what was skin or eyes; nothing else moves.
    changed = with_glasses["labels"] != without["labels"]
    assert (with_glasses["labels"][changed] == LABEL["glasses"]).all()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"hairstyle": "long"}, "hair_colour"),
        ({"hair": "curly"}, "none, short, long, bun"),
        ({"hair_colour": "tartan"}, "red"),
        ({"glasses": "maybe"}, "yes or no"),
        ({"nose_length": "9"}, "[0.025, 0.045]"),
        ({"ear_size": "big"}, "a number"),
    ],
)
def test_overrides_validate_with_one_line_listing_the_valid_ones(overrides, needle):
    with pytest.raises(ConfigError) as err:
        world.with_overrides(world.head_params(0), overrides)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_overrides_change_only_what_they_name():
    p = world.head_params(12)
    q = world.with_overrides(p, {"hair": "long", "hair_color": "red", "nose_length": "0.04"})
    assert (q.hair, q.hair_colour, q.nose_length) == ("long", "red", 0.04)
    assert {n for n in ATTRIBUTES if getattr(p, n) != getattr(q, n)} <= {
        "hair",
        "hair_colour",
        "nose_length",
    }


def test_held_out_heads_are_a_fixed_split_disjoint_from_training():
    assert (world.HEAD_SEEDS.start, world.HEAD_SEEDS.stop) == (0, 250)
    assert (world.HELD_OUT_HEADS.start, world.HELD_OUT_HEADS.stop) == (200, 250)
    training = set(world.training_head_seeds())
    assert training.isdisjoint(world.HELD_OUT_HEADS)
    assert training | set(world.HELD_OUT_HEADS) == set(world.HEAD_SEEDS)
    for bad in (-1, 250, 10_000):
        with pytest.raises(DataError):
            check_head_seed(bad)
    with pytest.raises(DataError):
        world.head_params(250)


def test_compose_puts_b_hair_on_a_face():
    a = world.with_overrides(world.head_params(1), {"hair": "none", "skin_tone": "dark"})
    b = world.with_overrides(world.head_params(2), {"hair": "long", "hair_colour": "red"})
    c = world.compose_heads(a, b, "hair")
    assert (c.hair, c.hair_colour) == ("long", "red")
    assert world.compose_heads(a, b, "hair") == world.with_overrides(
        a, {"hair": "long", "hair_colour": "red"}
    )
    ra, rc = _render(a, size=64), _render(c, size=64)
    hair = rc["labels"] == LABEL["hair"]
    assert hair.sum() > 100 and (ra["labels"] == LABEL["hair"]).sum() == 0
    red = torch.tensor(world.COLOURS["red"])
    hair_rgb = rc["rgb"][hair]
    # Shaded, but red: the hue of b's hair.
    assert (hair_rgb[:, 0] > 2 * hair_rgb[:, 1]).float().mean() > 0.95 and red[0] > red[1]
    # a's face where the hair does not reach: the nose and lips are a's (up to the sphere
    # tracer's tolerance, which other parts nearby change).
    face = (ra["labels"] == LABEL["nose"]) | (ra["labels"] == LABEL["lips"])
    assert face.sum() > 10
    assert torch.equal(ra["labels"][face], rc["labels"][face])
    assert torch.allclose(ra["rgb"][face], rc["rgb"][face], atol=1e-2)
    with pytest.raises(ConfigError):
        world.compose_heads(a, b, "tail")


def test_eg3d_camera_vector_round_trips_and_matches_eg3d_conventions():
    azimuth = torch.tensor([0.0, 30.0, -60.0, 170.0])
    elevation = torch.tensor([0.0, 15.0, -10.0, 40.0])
    cams = world.head_cameras(azimuth, elevation, 64)
    vectors = world.eg3d_camera_vector(cams)
    assert vectors.shape == (4, 25)
    back = world.cameras_from_eg3d(vectors, 64)
    assert torch.allclose(back.c2w, cams.c2w, atol=1e-6)
    for name in ("fx", "fy", "cx", "cy"):
        assert torch.allclose(getattr(back, name), getattr(cams, name), atol=1e-4)
    # Every camera sits at EG3D's radius 2.7 and sees the pivot at the image centre.
    c2w = vectors[:, :16].reshape(-1, 4, 4)
    assert torch.allclose(c2w[:, :3, 3].norm(dim=-1), torch.full((4,), 2.7), atol=1e-5)
    assert torch.allclose(c2w[:, :3, :3] @ c2w[:, :3, :3].transpose(1, 2), torch.eye(3), atol=1e-5)
    assert torch.allclose(torch.det(c2w[:, :3, :3]), torch.ones(4), atol=1e-5)
    pixels, _ = cams.project(torch.zeros(4, 1, 3))
    assert torch.allclose(pixels, torch.full_like(pixels, 32.0), atol=1e-3)
    intrinsics = torch.tensor([4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1])
    assert torch.allclose(vectors[:, 16:], intrinsics.expand(4, 9), atol=1e-4)
    # The front view is EG3D's canonical camera: on +z, looking down -z, y down (OpenCV).
    assert torch.allclose(c2w[0, :3, 3], torch.tensor([0.0, 0.0, 2.7]), atol=1e-5)
    assert torch.allclose(c2w[0, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)
    # A camera raised above the head sits at +y (EG3D's up).
    assert c2w[3, 1, 3] > 0
    assert world.HEAD_ORBIT.fov_deg == pytest.approx(
        2 * math.degrees(math.atan(0.5 / 4.2647)), abs=1e-9
    )


def test_a_left_light_makes_the_left_half_brighter():
    params = world.with_overrides(world.head_params(4), {"hair": "none", "hat": "no"})

    def halves(light: str) -> tuple[float, float]:
        r = _render(params, size=64, light=light)
        lum = r["rgb"][0].mean(-1)
        skin = r["labels"][0] == LABEL["skin"]
        left, right = skin.clone(), skin.clone()
        left[:, 32:], right[:, :32] = False, False
        return float(lum[left].mean()), float(lum[right].mean())

    left, right = halves("left")
    assert left > right + 0.1
    left, right = halves("right")
    assert right > left + 0.1
    left, right = halves("front")
    assert abs(left - right) < 0.05


def test_head_captions_parse_and_round_trip():
    d = world.parse_head("A person with red hair and glasses.")
    assert dict(d.attributes) == {"hair_colour": "red", "glasses": "yes"} and d.view is None
    d = world.parse_head("a person with a blue hat and a beard, side view")
    assert dict(d.attributes) == {"hat": "yes", "hat_colour": "blue", "beard": "yes"}
    assert d.view == "side"
    d = world.parse_head("a person with no hair, black glasses, an orange hat and a grey beard")
    assert dict(d.attributes)["hair"] == "none" and dict(d.attributes)["beard_colour"] == "grey"
    assert dict(world.parse_head("a person with white hair in a bun").attributes) == {
        "hair": "bun",
        "hair_colour": "white",
    }
    assert world.is_head_caption("A person") and not world.is_head_caption("a red cube")
    # A head's caption, applied to any other head, gives it the same hair and every
    # accessory the head wears (a caption names what is there, not what is missing).
    for seed in range(30):
        p = world.head_params(seed)
        text = world.head_caption(p, view="front")
        assert world.parse_head(text).view == "front"
        q = world.with_overrides(
            world.head_params(seed + 100), dict(world.parse_head(text).attributes)
        )
        assert p.hair == q.hair and (p.hair == "none" or p.hair_colour == q.hair_colour)
        for part in ("glasses", "hat", "beard"):
            if getattr(p, part):
                assert getattr(q, part) and getattr(q, f"{part}_colour") == getattr(
                    p, f"{part}_colour"
                ), text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a person with purple ears", "ears"),
        ("a person with hair", "head feature"),
        ("a person with red hair, diagonal view", "diagonal"),
        ("a person in a hat", "a person with"),
    ],
)
def test_bad_head_captions_give_one_line_errors(text, needle):
    with pytest.raises(CaptionError) as err:
        world.parse_head(text)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_object_captions_and_the_tokens_vocabulary_are_unchanged():
    assert world.parse("a red cube with a blue sphere on top") == Description(
        (ObjectSpec("red", "cube"), ObjectSpec("blue", "sphere")), "on_top"
    )
    assert world.parse("a green cone next to a white cylinder, side view") == Description(
        (ObjectSpec("green", "cone"), ObjectSpec("white", "cylinder")), "next_to", "side"
    )
    # The toy priors' tokenizers hold exactly these words: head words stay out of them.
    assert world.vocabulary()["structure"] == (
        "a", "an", "with", "on", "top", "of", "next", "to", "and", "view",
    )  # fmt: skip
    assert set(world.vocabulary()) == {"colours", "shapes", "views", "structure"}
    assert "person" in world.head_vocabulary()["head"]
    with pytest.raises(CaptionError):
        world.parse("a person with red hair")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--head", "250"), "0..249"),
        (("--head", "-3"), "0..249"),
        (("--head", "1", "--set", "hair=curly"), "none, short, long, bun"),
        (("--head", "1", "--set", "wings=yes"), "hair_colour"),
        (("--head", "1", "--set", "hair"), "name=value"),
        (("--head", "1", "--light", "sideways"), "left"),
        (("a red cube", "--set", "hair=long"), "--head"),
        (("a red cube", "--head", "1"), "head caption"),
    ],
)
def test_world_render_bad_head_input_exits_2_with_one_line(capsys, tmp_path, args, needle):
    code, err = run_main(capsys, "world", "render", *args, "--out", str(tmp_path / "o"))
    assert code == 2
    assert needle in err and err.strip().count("\n") == 0


def test_world_render_head_writes_images_depth_parts_and_eg3d_cameras(capsys, tmp_path):
    out = tmp_path / "h"
    argv = ["world", "render", "--head", "17", "--views", "3", "--resolution", "32"]
    argv += ["--supersample", "1", "--set", "hair=long,hair_colour=red,glasses=yes"]
    argv += ["--light", "left", "--out", str(out)]
    code, err = run_main(capsys, *argv)
    assert code == 0, err
    meta = json.loads((out / "transforms.json").read_text())
    caption = meta["dreamlift"]["caption"]
    assert caption.startswith("a person with long red hair") and "glasses" in caption
    assert meta["dreamlift"]["head"] == 17 and len(meta["dreamlift"]["sh"]) == 9
    assert meta["dreamlift"]["part_labels"][0] == "background"
    assert len(meta["frames"]) == 3
    seen = set()
    for frame in meta["frames"]:
        assert len(frame["eg3d_camera"]) == 25
        rgba = imageio.imread(out / frame["file_path"])
        labels = imageio.imread(out / frame["part_label_path"])
        depth = imageio.imread(out / frame["depth_file_path"])
        assert rgba.shape == (32, 32, 4) and labels.shape == (32, 32)
        assert np.array_equal(labels > 0, rgba[..., 3] > 0)
        assert np.array_equal(labels > 0, depth > 0)
        seen |= set(np.unique(labels).tolist())
    assert {LABEL["hair"], LABEL["glasses"], LABEL["skin"]} <= seen
    dataset = json.loads((out / "dataset.json").read_text())["labels"]
    assert dataset[0] == [meta["frames"][0]["file_path"], meta["frames"][0]["eg3d_camera"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["coverage_glasses"] > 0
    assert (out / "grid.png").exists() and (out / "parts.png").exists()


def test_a_head_caption_renders_that_head_and_lights_take_sh_coefficients(tmp_path):
    from dreamlift.methods.world_render import HeadRequest, WorldRender, WorldViews, render_world
    from dreamlift.world.lighting import light_from_text

    views = WorldViews(count=1, elevation=0.0)
    bald = next(s for s in range(50) if world.head_params(s).hair == "none")
    request = WorldRender(
        "a person with red hair and a green hat", views, 32, supersample=1,
        head=HeadRequest(bald),
    )  # fmt: skip
    result = render_world(request, tmp_path / "c")
    params = result["params"]
    assert (params.hair, params.hair_colour, params.hat, params.hat_colour) == (
        "short", "red", True, "green",
    )  # fmt: skip
    assert result["caption"] == world.head_caption(params)
    assert light_from_text("left") == named_light("left")
    assert light_from_text(",".join(["0.5"] * 27)).sh == (0.5,) * 27
    with pytest.raises(ConfigError):
        light_from_text("1,2,3")


def test_labels_sit_where_the_parts_project():
    params = world.with_overrides(world.head_params(6), {"glasses": "no", "hat": "no"})
    asset = world.head_asset(params)
    cams = _front(96)
    labels = world.render_head(params, cams)["labels"][0]
    for part in asset.parts:
        if part.label in ("eyes", "nose", "lips") and part.center[0] > 0:
            # The front-most point of the part, seen by the front camera.
            tip = torch.tensor(part.center) + torch.tensor([part.radius * 0.5, 0.0, 0.0])
            pixel, _ = cams.project(tip[None, None])
            u, v = (int(c) for c in pixel[0, 0])
            assert world.PART_LABELS[int(labels[v, u])] == part.label, part.label
