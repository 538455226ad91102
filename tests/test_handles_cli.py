"""``dreamlift handles`` through :func:`dreamlift.cli.main` (the real error handling): the
run folder it writes, file inputs, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from cli_helpers import run_main  # noqa: E402

from dreamlift.errors import DataError  # noqa: E402
from dreamlift.io.points import read_point_cloud_ply  # noqa: E402
from dreamlift.methods.handles import HandlesConfig, Transform3D, scene_case  # noqa: E402
from dreamlift.methods.handles.files import read_depth  # noqa: E402
from dreamlift.methods.handles.request import HandlesRun  # noqa: E402
from dreamlift.methods.handles.run import run_handles  # noqa: E402

SCENE = "a red cube next to a blue sphere"
FAST = ("--steps", "4", "--inversion-steps", "1", "--quiet")


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Exit code and stderr of ``dreamlift handles ARGS``."""
    return run_main(capsys, "handles", *args)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 32 px world scene saved as image / mask / depth files, and a 64 px copy."""
    root = tmp_path_factory.mktemp("handles_files")
    paths = {}
    for size in (32, 64):
        case = scene_case(SCENE, 0, Transform3D(), resolution=size)
        image = (case.image.numpy() * 255 + 0.5).astype(np.uint8)
        paths[f"image{size}"] = root / f"image{size}.png"
        imageio.imwrite(paths[f"image{size}"], image)
        paths[f"mask{size}"] = root / f"mask{size}.png"
        imageio.imwrite(paths[f"mask{size}"], case.mask.numpy().astype(np.uint8) * 255)
        paths[f"depth{size}"] = root / f"depth{size}.npy"
        np.save(paths[f"depth{size}"], case.depth.numpy())
        paths["prompt"] = case.prompt
    for name, value in (("empty", 0), ("full", 255)):
        paths[name] = root / f"{name}.png"
        imageio.imwrite(paths[name], np.full((32, 32), value, dtype=np.uint8))
    paths["text"] = root / "notes.png"
    paths["text"].write_text("not an image")
    disparity = np.tile(np.arange(40, 200, 5, dtype=np.uint8), (32, 1))
    paths["depth_grey"] = root / "depth_grey.png"
    imageio.imwrite(paths["depth_grey"], disparity)
    paths["depth_grey_rgb"] = root / "depth_grey_rgb.png"
    imageio.imwrite(paths["depth_grey_rgb"], np.stack([disparity] * 3, axis=-1))
    paths["depth_rgb"] = root / "depth_rgb.png"
    imageio.imwrite(paths["depth_rgb"], np.stack([disparity, disparity, 255 - disparity], -1))
    paths["depth_tiff"] = root / "depth.tiff"
    imageio.imwrite(paths["depth_tiff"], np.full((32, 32), 2.5, dtype=np.float32))
    return paths


def test_scene_run_writes_every_output_and_scores(tiny_depth_sd, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    code, err = run_cli(
        monkeypatch, capsys, "--scene", SCENE, "--object", "0", "--translate", "0.2", "0", "0",
        "--rotate", "y", "20", "--prior", str(tiny_depth_sd), "--frames", "2", "--out", str(out),
        *FAST,
    )  # fmt: skip
    assert code == 0, err
    expected = {
        "edited.png", "edited_depth.png", "edited_depth.npy", "edited_mask.png", "input.png",
        "mask.png", "points_before.ply", "points_after.ply", "strip.png", "edit.gif",
        "reconstruction.png", "target.png", "summary.json", "config.yaml", "metrics.jsonl",
    }  # fmt: skip
    assert expected <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    timings = summary["timings"]
    assert {"load_s", "geometry_s", "inversion_s", "recording_s", "guided_s", "frames_s"} <= set(
        timings
    )
    metrics = summary["metrics"]
    assert {"object_iou", "geometry_iou", "background_psnr", "object_l1"} <= set(metrics)
    assert metrics["geometry_iou"] > 0.8 and metrics["correspondences"] > 0
    assert summary["config"]["transform"]["angle_deg"] == 20.0
    assert summary["config"]["config"]["steps"] == 4
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 9  # 3 steps × 3 inner
    assert np.load(out / "edited_depth.npy").shape == (32, 32)
    assert imageio.imread(out / "strip.png").shape[:2] == (32, 64)
    assert len(imageio.mimread(out / "edit.gif")) == 2
    xyz, rgb = read_point_cloud_ply(out / "points_before.ply")
    assert xyz.shape == rgb.shape and xyz.shape[0] > 500
    assert (xyz[:, 2] < 0).all()  # viewer frame: the scene lies in front, down -z
    assert read_point_cloud_ply(out / "points_after.ply")[0].shape[1] == 3


def test_file_inputs_resized_to_the_prior(files, tiny_depth_sd, tmp_path, monkeypatch, capsys):
    out = tmp_path / "files"
    code, err = run_cli(
        monkeypatch, capsys, str(files["image64"]), "--mask", str(files["mask64"]),
        "--depth", str(files["depth64"]), "--prompt", files["prompt"], "--translate", "0.1",
        "0", "0", "--method", "depth-only", "--resize", "--prior", str(tiny_depth_sd),
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["method"] == "depth_only"
    assert any("--scene" in note for note in summary["notes"])
    assert imageio.imread(out / "edited.png").shape == (32, 32, 3)
    assert (out / "strip.png").is_file() and (out / "points_after.ply").is_file()
    # No depth file: a DPT estimates it (the pipeline folder's depth_estimator/).
    out = tmp_path / "estimated"
    code, err = run_cli(
        monkeypatch, capsys, str(files["image32"]), "--mask", str(files["mask32"]),
        "--depth-model", str(tiny_depth_sd), "--prompt", files["prompt"], "--method",
        "warp_paste_2d", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert np.load(out / "edited_depth.npy").max() <= 10.0 + 1e-3


def test_bad_inputs_give_one_line_errors(files, tiny_depth_sd, tmp_path, monkeypatch, capsys):
    prior = ("--prior", str(tiny_depth_sd), "--out", str(tmp_path / "x"), *FAST)
    image, depth = str(files["image32"]), str(files["depth32"])
    with_depth = ("--depth", depth, "--prompt", files["prompt"])
    cases = [
        ([image, "--mask", str(files["mask64"]), *with_depth], "the mask is 64×64 but the image"),
        ([image, "--mask", str(files["empty"]), *with_depth], "the object mask is empty"),
        ([image, "--mask", str(files["full"]), *with_depth], "covers the whole image"),
        ([str(files["text"]), "--mask", str(files["mask32"]), *with_depth], "not an image file"),
        ([image, "--mask", str(files["mask32"]), "--prompt", "a red cube"], "no depth"),
        (
            [str(files["image64"]), "--mask", str(files["mask64"]), "--depth",
             str(files["depth64"]), "--prompt", files["prompt"]],
            "the prior works at 32×32",
        ),
        ([image, "--mask", str(files["mask32"]), *with_depth, "--translate", "0", "0", "40"],
         "out of view"),
        ([image, "--mask", str(files["mask32"]), *with_depth, "--rotate", "up", "30"],
         "rotation axis"),
        ([image, "--mask", str(files["mask32"]), *with_depth, "--method", "magic"],
         "unknown method"),
        ([image, "--mask", str(files["mask32"]), "--depth", str(files["depth_tiff"]),
          "--prompt", files["prompt"]], "save float depth as .npy"),
        ([image, "--mask", str(files["mask32"]), "--depth", str(files["depth_rgb"]),
          "--prompt", files["prompt"]], "is a colour image"),
        (["--scene", SCENE, "--rotate", "x", "30"], "vertical axis"),
        (["--scene", SCENE, "--object", "4"], "object 4 does not exist"),
        ([], "give an IMAGE with --mask"),
    ]  # fmt: skip
    for args, message in cases:
        code, err = run_cli(monkeypatch, capsys, *args, *prior)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (args, err)
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        assert message in lines[0], (message, err)
    assert not (tmp_path / "x").exists()  # nothing is written before the inputs pass


def test_a_run_is_never_overwritten_and_resume_redoes_it(
    tiny_depth_sd, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "h"
    scene = ("--scene", SCENE, "--translate", "0.2", "0", "0", "--prior", str(tiny_depth_sd))
    code, err = run_cli(monkeypatch, capsys, *scene, "--out", str(out), *FAST)
    assert code == 0, err
    edited = (out / "edited.png").read_bytes()
    for extra, needle in (
        ((), "already holds a run"),
        (("--resume", "--steps", "5"), "config.steps (4 → 5)"),
        (("--resume", "--set", "transform.scale=2"), "transform.scale"),
    ):
        code, err = run_cli(monkeypatch, capsys, *scene, "--out", str(out), *FAST, *extra)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and needle in lines[0], err
    # --resume redoes the saved request, on the device asked for; the edit is the same.
    code, err = run_cli(
        monkeypatch, capsys, "--resume", "--device", "cpu", "--quiet", "--out", str(out)
    )
    assert code == 0, err
    assert (out / "edited.png").read_bytes() == edited
    assert "device: cpu" in (out / "config.yaml").read_text()


def test_bad_settings_and_config_files_are_one_line_errors(
    tiny_depth_sd, tmp_path, monkeypatch, capsys
):
    (tmp_path / "bad.yaml").write_text("config: {steps: [\n")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "config.yaml").write_text(": : :\n")
    scene = ("--scene", SCENE, "--prior", str(tiny_depth_sd), "--quiet")
    cases = [
        ((*scene, "--set", "config.steps=abc"), "config.steps must be an integer, got 'abc'"),
        ((*scene, "--set", "steps=abc"), "no setting 'steps'"),
        ((*scene, "--config", str(tmp_path / "bad.yaml")), "not valid YAML"),
        (("--resume", "--out", str(saved)), "not valid YAML"),
    ]
    for args, needle in cases:
        out = ("--out", str(tmp_path / "x")) if "--out" not in args else ()
        code, err = run_cli(monkeypatch, capsys, *args, *out)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, err)
    assert not (tmp_path / "x").exists()


def test_depth_images_must_be_grey_8_or_16_bit(files):
    grey = read_depth(files["depth_grey"])
    assert torch.equal(read_depth(files["depth_grey_rgb"]), grey)  # equal channels: grey
    assert grey[0, 0] == pytest.approx(255 / 40)
    with pytest.raises(DataError, match="float32 image"):
        read_depth(files["depth_tiff"])
    with pytest.raises(DataError, match="colour image"):
        read_depth(files["depth_rgb"])


def test_too_many_steps_fail_before_anything_is_written(
    tiny_depth_sd, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "steps"
    code, err = run_cli(
        monkeypatch, capsys, "--scene", SCENE, "--prior", str(tiny_depth_sd), "--steps", "1001",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 2 and "--steps" in err and "1000" in err and "Traceback" not in err
    # A config made in code meets the prior's own limit.
    run = HandlesRun(
        Transform3D(), scene=SCENE, prior=str(tiny_depth_sd), config=HandlesConfig(steps=1001)
    )
    with pytest.raises(DataError, match="exceed the prior's 1000 training timesteps"):
        run_handles(run, out)
    assert not out.exists()


def test_list_shows_the_handles_methods_and_presets(capsys):
    from dreamlift.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["list"])
    assert exit_.value.code == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["handles methods"] == ["handles", "depth_only", "warp_paste_2d"]
    assert listing["handles presets"] == ["paper", "fast"]


def test_carry_steps_reach_the_run_and_bad_values_are_one_line_errors(
    tiny_depth_sd, tmp_path, monkeypatch, capsys
):
    scene = ("--scene", SCENE, "--object", "0", "--translate", "0.2", "0", "0")
    out = tmp_path / "carried"
    code, err = run_cli(
        monkeypatch, capsys, *scene, "--prior", str(tiny_depth_sd), "--carry-steps", "2",
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["config"]["carry_steps"] == 2
    assert "carry_steps: 2" in (out / "config.yaml").read_text()
    for value in ("-1", "x", "5"):  # 5: more than the 4 steps
        code, err = run_cli(
            monkeypatch, capsys, *scene, "--prior", str(tiny_depth_sd), "--carry-steps", value,
            "--out", str(tmp_path / "bad"), *FAST,
        )  # fmt: skip
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "carry" in lines[0], err
    assert not (tmp_path / "bad").exists()
