"""``dreamlift invert`` on a tiny random generator: stages, outputs, scoring, bad input."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from cli_helpers import run_main
from PIL import Image

from dreamlift.errors import DataError, ModelError
from dreamlift.generators import TriplaneConfig, TriplaneGenerator
from dreamlift.io.mesh import extract_mesh
from dreamlift.methods.invert import InvertRequest, Pose, Target, invert, preset_config
from dreamlift.methods.invert.inputs import estimate_pose, load_photo, render_world_head
from dreamlift.methods.invert.optimize import (
    START_SAMPLES,
    START_TRUNCATION,
    fit_latent,
    fit_w,
    input_loss,
    pivotal_tuning,
    ramp,
    restart_points,
)
from dreamlift.methods.invert.scores import mesh_silhouettes
from dreamlift.world.heads import head_cameras
from dreamlift.zoo.registry import PACKAGE_MODELS


@pytest.fixture(scope="module")
def generator_folder(tiny_generator_folder):
    return tiny_generator_folder


def quick(folder, **kw):
    base = dict(
        generator=str(folder),
        w_steps=3,
        wplus_steps=2,
        pti_steps=2,
        resolution=24,
        perceptual_weight=0.0,
        turntable_frames=3,
        turntable_resolution=16,
        mesh_resolution=24,
        mesh_threshold=1e-3,
        samples=(6, 6),
    )
    return preset_config("fast", **{**base, **kw})


def test_ramp_rises_then_falls_and_never_stops():
    rates = [ramp(i, 100) for i in range(100)]
    assert min(rates) > 0 and max(rates) == pytest.approx(1.0)
    assert rates[0] < rates[5] and rates[-1] < rates[70]


def test_latent_fit_lowers_the_reconstruction_error(generator_folder):
    gen = TriplaneGenerator.from_pretrained(generator_folder)
    cam = head_cameras(0.0, 10.0, 16)
    truth_ws = gen.mapping(torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        image = gen.render(gen.synthesis(truth_ws), cam).rgb
    target = Target(image, cam)
    start = gen.broadcast(gen.w_avg()[None]).clone()
    cfg = quick(generator_folder, latent_lr=0.05, latent_prior=0.0)
    fitted = fit_latent(gen, target, start, 40, cfg, None, per_layer=False)

    def err(ws):
        with torch.no_grad():
            return float((gen.render(gen.synthesis(ws), cam).rgb - image).square().mean())

    assert err(fitted) < 0.5 * err(start)
    assert torch.equal(fitted[:, 0], fitted[:, -1])  # W: one w for every layer


def test_w_restarts_from_the_sample_that_renders_the_input_and_keeps_the_best_fit(
    generator_folder,
):
    gen = TriplaneGenerator.from_pretrained(generator_folder)
    cam = head_cameras(20.0, 10.0, 16)
    cfg = quick(generator_folder, w_candidates=6, w_restarts=2, seed=5, w_steps=4)
    z = torch.randn(6, gen.z_dim, generator=torch.Generator().manual_seed(5))
    truth = gen.mapping(z, START_TRUNCATION)[3:4]  # the fourth candidate drawn
    with torch.no_grad():
        image = gen.render(gen.synthesis(truth), cam, samples=START_SAMPLES).rgb
    target = Target(image, cam)
    starts = restart_points(gen, target, cfg, None)
    assert len(starts) == 3 and torch.equal(starts[0], gen.broadcast(gen.w_avg()[None]))
    assert torch.allclose(starts[1], truth)

    def loss(ws):
        return input_loss(gen, ws, target, cfg, None, cfg.samples)

    restarted = fit_w(gen, target, cfg, None)
    from_avg = fit_w(gen, target, replace(cfg, w_restarts=0), None)
    torch.manual_seed(cfg.seed)
    assert torch.equal(from_avg, fit_latent(gen, target, starts[0], 4, cfg, None, False))
    assert loss(restarted) < loss(from_avg)
    assert loss(restarted) == min(
        loss(fit_latent(gen, target, s, 4, cfg, None, False)) for s in starts
    )


def test_the_wplus_delta_keeps_each_layer_near_the_w_solution(generator_folder):
    gen = TriplaneGenerator.from_pretrained(generator_folder)
    cam = head_cameras(0.0, 10.0, 16)
    truth = gen.mapping(torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        image = gen.render(gen.synthesis(truth), cam).rgb
    start = gen.broadcast(gen.w_avg()[None]).clone()

    def moved(delta: float) -> float:
        cfg = quick(generator_folder, latent_lr=0.05, latent_prior=0.0, wplus_delta=delta)
        ws = fit_latent(gen, Target(image, cam), start, 20, cfg, None, per_layer=True)
        return float((ws - start).norm())

    assert moved(1e3) < 0.5 * moved(0.0)


def test_pti_tunes_a_copy_and_keeps_the_input_generator(generator_folder):
    gen = TriplaneGenerator.from_pretrained(generator_folder)
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    cam = head_cameras(0.0, 10.0, 16)
    target = Target(torch.rand(1, 3, 16, 16), cam)
    ws = gen.broadcast(gen.w_avg()[None])
    for anchor in ("none", "views", "locality"):
        tuned = pivotal_tuning(gen, ws, target, quick(generator_folder, anchor=anchor), None)
        assert any(
            not torch.equal(a, b)
            for a, b in zip(tuned.state_dict().values(), before.values(), strict=False)
        )
    assert all(torch.equal(v, before[k]) for k, v in gen.state_dict().items())


def test_invert_a_world_head_writes_outputs_and_scores_each_stage(generator_folder, tmp_path):
    summary = invert(
        InvertRequest(head=203, pose=Pose(25.0, 10.0)), tmp_path / "run", quick(generator_folder)
    )
    stages = summary["metrics"]["stages"]
    assert set(stages) == {"w", "wplus", "pti"}
    for scores in stages.values():
        assert scores["novel_psnr_head"] < scores["novel_psnr"]  # background flatters
        assert -1 <= scores["novel_identity"] <= 1
    assert 0 <= summary["metrics"]["mesh_silhouette_iou"] <= 1
    for name in ("latent", "generator", "input", "views", "turntable_gif", "mesh"):
        assert (tmp_path / "run" / summary["outputs"][name]).is_file(), name
    t = summary["timings"]
    assert t["inversion_s"] == pytest.approx(t["w_s"] + t["wplus_s"] + t["pti_s"])
    assert summary["input"] == {"head": 203, "yaw": 25.0, "pitch": 10.0, "pose_from": "given"}
    from safetensors.torch import load_file

    latent = load_file(str(tmp_path / "run" / "latent.safetensors"))
    assert latent["ws"].shape == (1, TriplaneConfig.tiny().num_ws, TriplaneConfig.tiny().w_dim)


def test_without_pti_no_generator_is_written(generator_folder, tmp_path):
    summary = invert(InvertRequest(head=3), tmp_path / "run", quick(generator_folder, pti_steps=0))
    assert "generator" not in summary["outputs"]
    assert not (tmp_path / "run" / "generator").exists()


def test_photo_inputs_are_checked(tmp_path):
    world = render_world_head(5, [Pose(0, 10)], 48)["rgb"][0].permute(1, 2, 0)
    png = tmp_path / "head.png"
    Image.fromarray((world.numpy() * 255).astype(np.uint8)).save(png)
    assert load_photo(png, 24).shape == (1, 3, 24, 24)  # a square crop is resized
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((40, 60, 3), 255, np.uint8)).save(wide)
    with pytest.raises(DataError, match="60×40"):
        load_photo(wide, 24)
    dark = tmp_path / "dark.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(dark)
    with pytest.raises(DataError, match="far from the generator's training crop"):
        load_photo(dark, 24)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError):
        load_photo(text, 24)


def test_a_photo_without_a_pose_gets_toy_poses_estimate(generator_folder, tmp_path):
    """The world knows the camera of its render: toy-pose's estimate is within 3° of it."""
    truth = Pose(-25.0, 12.0)
    world = render_world_head(207, [truth], 64)["rgb"][0].permute(1, 2, 0)
    png = tmp_path / "head.png"
    Image.fromarray((world.numpy() * 255).round().astype(np.uint8)).save(png)
    estimate = estimate_pose(png)
    assert abs(estimate.yaw - truth.yaw) < 3 and abs(estimate.pitch - truth.pitch) < 3
    cfg = quick(generator_folder, w_steps=1, wplus_steps=0, pti_steps=0)
    summary = invert(InvertRequest(image=png), tmp_path / "run", cfg)
    assert summary["input"]["pose_from"] == "toy-pose"
    assert summary["input"]["yaw"] == pytest.approx(estimate.yaw, abs=1e-4)
    with pytest.raises(ModelError, match="not a pose estimator"):
        estimate_pose(load_photo(png, 64), str(PACKAGE_MODELS / "toy-light"))


def test_mesh_silhouette_of_a_sphere_is_its_projected_disc():
    verts, faces, _ = extract_mesh(
        lambda p: 100 * (p.norm(dim=-1) < 0.25).float() + 1e-3, lambda p: p * 0, 0.45, 48, 10.0
    )
    cams = head_cameras(torch.tensor([0.0, 135.0]), torch.tensor([10.0, 40.0]), 48)
    masks = mesh_silhouettes(verts, faces, cams)
    ys, xs = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(48) + 0.5, indexing="ij")
    radius = 0.25 * float(cams.fx[0]) / 2.7
    disc = (xs - 24) ** 2 + (ys - 24) ** 2 < radius**2
    for m in masks:
        assert float((m & disc).sum() / (m | disc).sum()) > 0.95


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("invert", "--head", "300"), "head"),
        (("invert",), "give an image or --head"),
        (("invert", "--head", "3", "--generator", "/nonexistent/gen"), "neither a zoo model"),
        (("invert", "--head", "3", "--anchor", "sideways"), "anchor must be one of none, views"),
    ],
)
def test_bad_invert_command_lines_exit_2_with_one_line(capsys, tmp_path, argv, message):
    code, err = run_main(capsys, *argv, "--out", str(tmp_path / "o"))
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_cli_inverts_a_world_head(capsys, generator_folder, tmp_path):
    code, err = run_main(
        capsys,
        "invert",
        "--head",
        "204",
        "--yaw",
        "-20",
        "--generator",
        str(generator_folder),
        "--set",
        "w_steps=2",
        "--set",
        "wplus_steps=1",
        "--set",
        "pti_steps=1",
        "--set",
        "resolution=16",
        "--set",
        "perceptual_weight=0",
        "--set",
        "mesh_threshold=0.001",
        "--set",
        "turntable_frames=2",
        "--set",
        "turntable_resolution=16",
        "--set",
        "mesh_resolution=16",
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["input"]["yaw"] == -20.0 and summary["config"]["pti_steps"] == 1


def test_identity_similarity_tells_the_same_head_from_another():
    """toy-id on the world's renders: a head at another pose is nearer itself than another
    head is, which is what the novel views' identity score rests on."""
    from dreamlift.methods.invert.scores import identity_similarity
    from dreamlift.zoo.recipes.head_nets import load_head_net

    net = load_head_net("toy-id")
    poses = [Pose(-30.0, 10.0), Pose(30.0, 10.0)]
    a = render_world_head(211, poses, 64)["rgb"]
    b = render_world_head(212, poses, 64)["rgb"]
    same = identity_similarity(net, a[:1], a[1:])
    other = identity_similarity(net, a[:1], b[1:])
    assert float(same) > float(other) and float(same) > 0.5
