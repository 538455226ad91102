"""``dreamlift blend`` (BlendNeRF): alignment, Poisson blending, the blending loss, the run's
phases and outputs, scoring against the world's composed heads, and bad input."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_main
from PIL import Image

from dreamlift.errors import ConfigError, DataError
from dreamlift.generators import TriplaneGenerator
from dreamlift.methods.blend import AlignConfig, BlendRequest, Warp, preset_config, run_blend
from dreamlift.methods.blend.align import icp_scale_translation, surface_points
from dreamlift.methods.blend.masks import check_region, icp_region, labels_to_mask, read_mask
from dreamlift.methods.blend.optimize import coarse_points
from dreamlift.methods.blend.poisson import contour_band, seamless_clone
from dreamlift.methods.invert.optimize import Target, joint_pivotal_tuning, pivotal_tuning
from dreamlift.methods.invert.run import load_generator
from dreamlift.world.heads import (
    PART_ATTRIBUTES,
    compose_heads,
    head_cameras,
    head_params,
    with_overrides,
)
from dreamlift.world.heads_geometry import PART_LABELS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


# ---------------------------------------------------------------------------- world
def test_seeds_never_draw_a_scale_and_an_override_sizes_the_whole_head():
    from dreamlift.world.heads_geometry import head_asset

    assert all(head_params(s).scale == 1.0 for s in range(200, 210))
    base = head_asset(head_params(205))
    big = head_asset(with_overrides(head_params(205), {"scale": "1.15"}))
    points = (torch.rand(4000, 3, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.8
    d_base, part_base = base.sdf(points)
    d_big, part_big = big.sdf(points * 1.15)
    near = d_base.abs() < 0.015  # near the surface both are exact (far off, bounds stand in)
    assert torch.allclose(d_big[near], 1.15 * d_base[near], atol=1e-5)
    assert torch.equal(part_big[near], part_base[near])
    with pytest.raises(ConfigError, match=r"scale is a number in \[0.8, 1.2\]"):
        with_overrides(head_params(205), {"scale": 1.5})


def test_the_face_part_takes_the_features_and_keeps_the_skull_and_hair():
    a, b = head_params(203), head_params(217)
    face = compose_heads(a, b, "face")
    assert (face.nose_length, face.eye_colour, face.skin_tone) == (
        b.nose_length,
        b.eye_colour,
        b.skin_tone,
    )
    assert (face.skull_width, face.hair, face.hair_colour, face.scale) == (
        a.skull_width,
        a.hair,
        a.hair_colour,
        a.scale,
    )
    assert "hair" not in PART_ATTRIBUTES["face"]


# ---------------------------------------------------------------------------- Poisson
def test_poisson_clone_keeps_the_outside_and_follows_the_source_gradients():
    gen = torch.Generator().manual_seed(0)
    source = torch.rand(3, 24, 24, generator=gen, dtype=torch.float64) * 0.5 + 0.25
    mask = torch.zeros(24, 24, dtype=torch.bool)
    mask[6:15, 4:20] = True
    assert torch.allclose(seamless_clone(source, source, mask), source, atol=1e-9)
    # An offset source is the same gradient field: the clone is the destination.
    shifted = seamless_clone(source + 0.1, source, mask)
    assert float((shifted - source).abs().max()) < 1e-5
    # So is a source that differs by a linear ramp (its discrete Laplacian is zero).
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    ramp = (0.004 * xs - 0.003 * ys).double()
    assert float((seamless_clone(source + ramp, source, mask) - source).abs().max()) < 1e-5
    # Into another image: the outside is kept, and inside, result − source is harmonic.
    other = torch.full((3, 24, 24), 0.4, dtype=torch.float64)
    out = seamless_clone(source, other, mask)
    assert torch.equal(out[:, ~mask], other[:, ~mask])
    d = (out - source)[:, 7:14, 5:19]
    laplace = (
        d[:, 1:-1, 2:] + d[:, 1:-1, :-2] + d[:, 2:, 1:-1] + d[:, :-2, 1:-1] - 4 * d[:, 1:-1, 1:-1]
    )
    assert float(laplace.abs().max()) < 1e-5


def test_the_contour_band_is_a_ring_just_outside_the_mask():
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[10:20, 10:20] = True
    band = contour_band(mask, 6)
    assert not (band & mask).any()
    assert band[7, 15] and band[22, 15] and not band[6, 15] and not band[23, 15]


# ---------------------------------------------------------------------------- alignment
def test_icp_recovers_a_scale_and_translation_and_clamps_and_falls_back():
    gen = torch.Generator().manual_seed(1)
    original = torch.randn(400, 3, generator=gen) * torch.tensor([0.2, 0.15, 0.25])
    shift = torch.tensor([0.02, -0.03, 0.01])
    reference = (original - shift) / 1.08  # the original = 1.08 · reference + shift
    warp = icp_scale_translation(reference, original, AlignConfig())
    assert warp.scale == pytest.approx(1.08, abs=1e-3) and not warp.fell_back
    assert torch.allclose(torch.tensor(warp.translation), shift, atol=1e-3)
    narrow = AlignConfig(scale_min=0.95, scale_max=1.05)
    clamped = icp_scale_translation(reference, original, narrow)
    assert clamped.clamped and clamped.scale == 1.05
    few = icp_scale_translation(reference[:5], original, AlignConfig())
    assert few.fell_back and few.is_identity and "too few" in few.reason


def test_the_warp_moves_query_points_not_the_image(tiny_generator_folder):
    warp = Warp(scale=1.2, translation=(0.01, 0.0, -0.02))
    o, d = torch.randn(1, 5, 3), torch.nn.functional.normalize(torch.randn(1, 5, 3), dim=-1)
    o2, d2 = warp.rays(o, d)
    t = torch.rand(1, 5, 1)
    assert torch.allclose(o2 + t * d2, warp.to_reference(o + t * d), atol=1e-6)
    gen = TriplaneGenerator.from_pretrained(tiny_generator_folder)
    planes = gen.synthesis(gen.broadcast(gen.w_avg()[None]))
    cam = head_cameras(0.0, 10.0, 16)
    plain = gen.render(planes, cam).rgb
    assert torch.equal(gen.render(planes, cam, warp=Warp().rays).rgb, plain)
    assert not torch.allclose(gen.render(planes, cam, warp=warp.rays).rgb, plain)


def test_raw_sigma_is_the_density_before_its_activation(tiny_generator_folder):
    gen = TriplaneGenerator.from_pretrained(tiny_generator_folder)
    planes = gen.synthesis(gen.broadcast(gen.w_avg()[None]))
    points = (torch.rand(1, 50, 3) - 0.5) * 0.8
    raw = gen.raw_sigma(planes, points)
    expected = gen.cfg.density_scale * torch.nn.functional.softplus(raw - 1.0)
    assert torch.allclose(gen.sigma(planes, points), expected, atol=1e-6)


@pytest.fixture(scope="module")
def toy_eg3d():
    return load_generator("toy-eg3d")


def test_surface_points_lie_on_the_density_level(toy_eg3d):
    gen = toy_eg3d
    ws = gen.broadcast(gen.w_avg()[None])
    planes = gen.synthesis(ws)
    cam = head_cameras(0.0, 10.0, 24)
    mask = torch.zeros(24, 24, dtype=torch.bool)
    mask[8:16, 8:16] = True
    cfg = AlignConfig(surface_samples=256)
    points = surface_points(gen, planes, cam, mask, cfg, gen.cfg.box)
    assert 40 <= points.shape[0] <= 64
    sigma = gen.sigma(planes, points[None])[0].detach()
    assert float((sigma - cfg.surface_level).abs().median()) < 0.5 * cfg.surface_level
    # Seen from the front, the surface is the face: in front of the pivot.
    assert float(points[:, 0].mean()) > 0.05


def test_coarse_points_fill_the_box_along_every_pixel_ray():
    cam = head_cameras(0.0, 10.0, 8)
    points, hit = coarse_points(cam, 0.45, 6)
    assert points.shape == (1, 64 * 6, 3) and bool(hit.all())
    assert float(points.abs().max()) <= 0.45 + 1e-5


# ---------------------------------------------------------------------------- masks
def test_part_regions_and_icp_regions():
    ids = {name: PART_LABELS.index(name) for name in PART_LABELS}
    labels = torch.tensor(
        [
            [0, ids["hair"], ids["hair"], ids["hat"]],
            [ids["skin"], ids["eyes"], ids["nose"], ids["hair"]],
            [ids["skin"], ids["lips"], ids["ears"], ids["beard"]],
            [0, ids["skin"], ids["skin"], 0],
        ]
    )
    assert torch.equal(labels_to_mask(labels, "hair"), labels == ids["hair"])
    face = torch.isin(
        labels, torch.tensor([ids[n] for n in ("skin", "nose", "eyes", "lips", "ears", "beard")])
    )
    assert torch.equal(labels_to_mask(labels, "face"), face)
    anatomy = torch.isin(
        labels, torch.tensor([ids[n] for n in ("skin", "nose", "eyes", "lips", "ears")])
    )
    # ICP matches what every head has (not the hair, hat or beard), less the part itself.
    assert torch.equal(icp_region(labels, "hair", "rest", None), anatomy)
    assert torch.equal(icp_region(labels, "nose", "rest", None), anatomy & (labels != ids["nose"]))
    assert torch.equal(
        icp_region(labels, "face", "rest", None), labels > 0
    )  # nothing left: the head
    assert torch.equal(icp_region(labels, "hair", "head", None), labels > 0)
    assert torch.equal(icp_region(labels, "hair", "part", None), labels == ids["hair"])
    with pytest.raises(DataError, match="unknown part 'tail'.*parts: hair"):
        labels_to_mask(labels, "tail")


def test_empty_and_full_regions_are_refused(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        check_region(torch.zeros(8, 8, dtype=torch.bool), "mask")
    with pytest.raises(DataError, match="covers the whole image"):
        check_region(torch.ones(8, 8, dtype=torch.bool), "mask")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(DataError, match="12×10"):
        read_mask(tmp_path / "m.png", 32)
    square = np.zeros((64, 64), np.uint8)
    square[10:30, 20:40] = 255
    Image.fromarray(square).save(tmp_path / "s.png")
    mask = read_mask(tmp_path / "s.png", 32)
    assert mask.shape == (32, 32) and int(mask.sum()) == 100


# ---------------------------------------------------------------------------- joint PTI
def test_joint_pti_with_one_pivot_is_plain_pti_and_fits_two_images(tiny_generator_folder):
    from dreamlift.methods.invert import preset_config as invert_preset

    gen = TriplaneGenerator.from_pretrained(tiny_generator_folder)
    cfg = invert_preset("fast", pti_steps=4, pti_lr=3e-3, samples=(6, 6), perceptual_weight=0.0)
    cams = [head_cameras(-20.0, 10.0, 16), head_cameras(30.0, 10.0, 16)]
    ws = [
        gen.mapping(torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(i)))
        for i in (1, 2)
    ]
    images = [
        torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5 + i)) for i in (1, 2)
    ]
    targets = [Target(img, cam) for img, cam in zip(images, cams, strict=True)]
    one = pivotal_tuning(gen, ws[0], targets[0], cfg, None)
    same = joint_pivotal_tuning(gen, [(ws[0], targets[0])], cfg, None)
    assert all(
        torch.equal(a, b)
        for a, b in zip(one.state_dict().values(), same.state_dict().values(), strict=True)
    )

    def errors(g: TriplaneGenerator) -> list[float]:
        with torch.no_grad():
            return [
                float(
                    (g.render(g.synthesis(w), t.camera, samples=(6, 6)).rgb - t.image)
                    .square()
                    .mean()
                )
                for w, t in zip(ws, targets, strict=True)
            ]

    before, after = (
        errors(gen),
        errors(joint_pivotal_tuning(gen, list(zip(ws, targets, strict=True)), cfg, None)),
    )
    assert after[0] < before[0] and after[1] < before[1]


# ---------------------------------------------------------------------------- runs
def quick_config(**overrides):
    cfg = preset_config("fast", steps=4, resolution=32, turntable_frames=3, mesh_resolution=32)
    inversion = replace(cfg.inversion, w_steps=4, wplus_steps=2, pti_steps=2)
    return replace(cfg, inversion=inversion, **overrides)


def world_request(**overrides) -> BlendRequest:
    values = dict(
        head=203,
        yaw=-15.0,
        reference_head=217,
        reference_yaw=20.0,
        part="hair",
        config=quick_config(),
    )
    return BlendRequest(**{**values, **overrides})


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("blend") / "run"
    return out, run_blend(world_request(), out)


def test_a_world_blend_writes_every_output_and_is_scored(world_run):
    out, summary = world_run
    for name in ("blended", "latent", "generator", "aligned_reference", "mask", "strip", "mesh"):
        assert (out / summary["outputs"][name]).is_file(), name
    strip = np.asarray(Image.open(out / "strip.png"))
    assert strip.shape == (32, 32 * 6, 3)  # original, reference, global, ICP, blend, truth
    metrics = summary["metrics"]
    assert 5 < metrics["psnr_view"] < 60 and 5 < metrics["psnr_novel"] < 60
    assert set(metrics["icp"]) >= {"scale", "translation", "fell_back", "points"}
    assert 0.75 <= metrics["icp"]["scale"] <= 1.25
    assert metrics["world_scale_ratio"] == 1.0 and metrics["true_icp_scale"] is not None
    timings = summary["timings"]
    assert {"inversion_s", "alignment_s", "blend_s", "pti_s"} <= set(timings)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and {"image", "density"} <= set(json.loads(lines[-1]))


def test_resume_reuses_the_finished_phases_and_gives_the_same_blend(world_run, tmp_path):
    out, first = world_run
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(out, copy)
    for name in ("summary.json", "alignment.json", "blended.png", "latent.safetensors"):
        (copy / name).unlink()
    again = run_blend(world_request(), copy, resume=True)
    assert again["resumed_phases"] == ["inversion"]
    from safetensors.torch import load_file

    assert torch.equal(
        load_file(str(out / "latent.safetensors"))["ws"],
        load_file(str(copy / "latent.safetensors"))["ws"],
    )
    assert again["metrics"]["psnr_view"] == first["metrics"]["psnr_view"]


def test_the_world_truth_has_the_original_identity_and_the_reference_part():
    from dreamlift.methods.blend.inputs import load_inputs
    from dreamlift.methods.blend.scores import composed_params

    request = world_request(reference_set="scale=1.1")
    original, reference = load_inputs(request)
    truth = composed_params(request, original)
    assert truth.hair == head_params(217).hair and truth.skull_width == head_params(203).skull_width
    assert truth.scale == 1.0 and reference.params.scale == 1.1
    assert reference.image.shape == (1, 3, 32, 32)


def test_the_scale_the_world_changed_is_what_icp_finds_on_the_true_surfaces():
    from dreamlift.methods.blend.inputs import load_inputs
    from dreamlift.methods.blend.scores import true_surface_scale

    request = BlendRequest(
        head=210,
        yaw=0.0,
        reference_head=210,
        reference_yaw=0.0,
        reference_set="scale=1.1,hair=long",
        part="hair",
        config=preset_config("fast", resolution=48),
    )
    original, _ = load_inputs(request)
    found = true_surface_scale(request, original, request.config)
    assert found["world_scale_ratio"] == pytest.approx(1 / 1.1)
    assert found["true_icp_scale"] == pytest.approx(1 / 1.1, rel=0.02)


def test_the_poisson_variant_keeps_the_original_outside_the_region(tmp_path):
    out = tmp_path / "p"
    summary = run_blend(world_request(config=quick_config(variant="poisson")), out)
    blended = np.asarray(Image.open(out / "blended.png")).astype(float) / 255
    mask = np.asarray(Image.open(out / "mask.png")) > 127
    original = np.asarray(Image.open(out / "strip.png"))[:, :32].astype(float) / 255
    band = contour_band(torch.from_numpy(mask), summary["config"]["config"]["band"]).numpy()
    keep = ~mask & ~band
    assert np.abs(blended[keep] - original[keep]).max() <= 1 / 255 + 1e-6


# ---------------------------------------------------------------------------- CLI
def _write_head(path: Path, head: int, yaw: float, size: int = 64) -> None:
    from dreamlift.methods.invert.inputs import Pose, render_world_head

    rgb = render_world_head(head, [Pose(yaw, 10.0)], size)["rgb"][0].permute(1, 2, 0)
    Image.fromarray((rgb.numpy() * 255).round().astype(np.uint8)).save(path)


QUICK_FLAGS = (
    "--steps",
    "2",
    "--set",
    "config.inversion.w_steps=2",
    "--set",
    "config.inversion.wplus_steps=1",
    "--set",
    "config.inversion.pti_steps=1",
    "--set",
    "config.resolution=32",
    "--set",
    "config.turntable_frames=2",
    "--set",
    "config.mesh_resolution=24",
    "--quiet",
)


def test_the_command_blends_two_photos_with_estimated_poses(tmp_path, capsys):
    _write_head(tmp_path / "a.png", 204, -10.0)
    _write_head(tmp_path / "b.png", 229, 25.0, size=96)  # another size: resized
    code, err = run_main(
        capsys,
        "blend",
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
        "--part",
        "hair",
        "--out",
        str(tmp_path / "o"),
        *QUICK_FLAGS,
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["input"]["original"]["pose_from"] == "toy-pose"
    assert any("b.png is 96×96: resized to 32×32" in w for w in summary["warnings"])
    assert set(summary["metrics"]["inversion_psnr"]) == {"original", "reference"}
    assert abs(summary["input"]["reference"]["yaw"] - 25.0) < 6


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--head", "203", "--reference-head", "217", "--part", "tail"), "unknown part 'tail'"),
        (("--head", "203", "--part", "hair"), "needs --head and --reference-head"),
        (("--head", "203", "--reference-head", "217"), "--part NAME or --mask FILE"),
        (("--head", "203", "--reference-head", "290", "--part", "hair"), "head 290 does not exist"),
        (
            (
                "--head",
                "203",
                "--reference-head",
                "217",
                "--part",
                "hair",
                "--reference-set",
                "wings=2",
            ),
            "unknown head attribute 'wings'",
        ),
        (
            ("--head", "203", "--reference-head", "217", "--part", "hair", "--preset", "slow"),
            "unknown preset",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code, err = run_main(capsys, "blend", *argv, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err and "Traceback" not in err


def test_an_empty_or_full_mask_file_is_refused(tmp_path, capsys):
    for name, value in (("empty", 0), ("full", 255)):
        Image.fromarray(np.full((64, 64), value, np.uint8)).save(tmp_path / f"{name}.png")
        code, err = run_main(
            capsys,
            "blend",
            "--head",
            "203",
            "--reference-head",
            "217",
            "--mask",
            str(tmp_path / f"{name}.png"),
            "--out",
            str(tmp_path / name),
            *QUICK_FLAGS,
        )
        assert code == 2 and ("is empty" in err or "whole image" in err), err
        assert not (tmp_path / name / "summary.json").exists()


def test_benchmark_pairs_are_fixed_differ_in_their_part_and_span_the_yaw_gaps():
    import blend as bench

    pairs = bench.make_pairs(20)
    assert pairs == bench.make_pairs(20)
    assert {p["part"] for p in pairs} == set(bench.PARTS)
    assert max(p["gap"] for p in pairs) == 45 and min(p["gap"] for p in pairs) == 5
    assert all(p["head"] >= 200 and p["reference_head"] >= 200 for p in pairs)
    scaled = [p for p in pairs if p["reference_set"]]
    assert len(scaled) == 5 and all(p["head"] == p["reference_head"] for p in scaled)
    for p in pairs:
        request = BlendRequest(
            head=p["head"],
            reference_head=p["reference_head"],
            reference_set=p["reference_set"],
            part=p["part"],
        )
        reference = request.reference_params()
        assert bench._differs(head_params(p["head"]), replace(reference, scale=1.0), p["part"])
        assert reference.scale in ((1.0,) if not p["reference_set"] else (0.9, 1.1))


def test_a_pair_shows_its_part_only_where_the_truth_differs_from_the_original_view():
    """Judged from the world's renders: a bun behind the head and a nose 0.01 longer leave the
    original's front view (nearly) as it is; another head's face does not."""
    import blend as bench

    from dreamlift.methods.blend.inputs import load_inputs
    from dreamlift.methods.blend.scores import truth_views

    def shown(head: int, reference: int, part: str, reference_set: str = "") -> int:
        request = BlendRequest(
            head=head,
            yaw=0.0,
            pitch=10.0,
            reference_head=reference,
            reference_yaw=0.0,
            reference_pitch=10.0,
            reference_set=reference_set,
            part=part,
            config=preset_config("fast"),
        )
        original, _ = load_inputs(request)
        truth = truth_views(request, original, [original.pose], 64)[0]
        return bench.visible_pixels(original.image[0], truth)

    assert shown(246, 246, "hair", "hair=short") == 0  # 246 wears a bun: behind the head
    nose = head_params(213).nose_length
    longer = f"nose_length={min(nose + 0.01, 0.045):.4f}"
    assert shown(213, 213, "nose", longer) < bench.VISIBLE_PIXELS
    assert shown(213, 213, "glasses", "glasses=yes,glasses_colour=red") >= bench.VISIBLE_PIXELS
    assert shown(245, 238, "face") > 10 * bench.VISIBLE_PIXELS
    # the same head's own part: nothing changes at all
    assert shown(213, 213, "eyes") == 0


def test_benchmark_summary_counts_a_failed_blend_as_a_loss():
    import blend as bench

    def record(gap: float, ours: dict) -> dict:
        methods = {name: {"psnr_view": 20.0} for name in bench.METHODS}
        methods["ours"] = ours
        methods["poisson_2d"] = {"psnr_view": 22.0}
        return {
            "gap": gap,
            "methods": methods,
            "blend_s": 100.0,
            "world_scale_ratio": 1.0,
            "true_icp_scale": 1.0,
        }

    icp = {"icp": {"scale": 1.0, "fell_back": False}}
    records = [
        record(25.0, {"psnr_view": 25.0, **icp}),
        record(30.0, {"failed": "the hair region is empty"}),
        record(10.0, {"psnr_view": 21.0, **icp}),
        record(40.0, {"psnr_view": 21.0, **icp}),
    ]
    for r, pixels in zip(records, (100, 50, 100, 0), strict=True):
        r["visible_pixels"] = pixels
    summary = bench.summarise(records, None)
    ours = summary["methods"]["ours"]
    assert ours["failed"] == 1 and ours["psnr_view"] == pytest.approx(67 / 3)
    assert ours["wins_vs_poisson_2d_gap20"] == pytest.approx(1 / 3)
    # the pair whose part the original's view does not show leaves the second figure
    assert ours["wins_vs_poisson_2d_gap20_shown"] == pytest.approx(0.5)
    assert (summary["pairs_gap20"], summary["pairs_gap20_shown"]) == (3, 2)
    assert math.isclose(summary["blend_s"], 100.0)


def test_an_image_the_generator_cannot_render_is_reported(tmp_path, capsys):
    """A white-bordered image that is no head inverts badly: the run says so."""
    _write_head(tmp_path / "a.png", 204, -10.0)
    picture = np.full((64, 64, 3), 255, np.uint8)
    picture[12:52, 12:52] = (20, 200, 40)  # a green square
    Image.fromarray(picture).save(tmp_path / "b.png")
    code, err = run_main(
        capsys,
        "blend",
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
        "--mask",
        str(tmp_path / "b.png"),
        "--yaw",
        "0",
        "--reference-yaw",
        "0",
        "--out",
        str(tmp_path / "o"),
        *QUICK_FLAGS,
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["metrics"]["inversion_psnr"]["reference"] < 18
    assert any(
        "the reference's inversion matches its image at only" in w for w in summary["warnings"]
    )
    assert "the reference's inversion" in " ".join(err.split())


def test_the_saved_latent_and_generator_render_the_blended_image(world_run):
    """What a user reloads (latent + tuned generator) gives back the blend."""
    from safetensors.torch import load_file

    from dreamlift.methods.invert.inputs import Pose

    out, summary = world_run
    gen = TriplaneGenerator.from_pretrained(out / "inversion" / "generator")
    ws = load_file(str(out / "latent.safetensors"))["ws"]
    pose = summary["input"]["original"]
    camera = Pose(pose["yaw"], pose["pitch"]).camera(32)
    with torch.no_grad():
        render = gen.render(gen.synthesis(ws), camera).rgb[0].permute(1, 2, 0).numpy()
    blended = np.asarray(Image.open(out / "blended.png")).astype(float) / 255
    assert np.abs(render - blended).max() <= 1 / 255 + 1e-6


def test_the_paper_preset_keeps_the_official_codes_numbers():
    paper = preset_config("paper")
    inv = paper.inversion
    assert (inv.w_steps, inv.wplus_steps, inv.pti_steps, inv.pti_lr) == (300, 0, 100, 2.5e-3)
    assert inv.pti_betas == (0.0, 0.9)
    assert (inv.anchor, inv.locality_alpha, inv.locality_weight) == ("locality", 30.0, 0.1)
    assert (paper.steps, paper.lr, paper.image_weight, paper.reference_weight) == (200, 0.01, 10, 5)
    assert (paper.density_weight, paper.density_samples) == (1.0, 48)
    assert (paper.align.scale_min, paper.align.scale_max) == (0.75, 1.25)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("slow")
