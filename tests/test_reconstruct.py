"""End-to-end reconstruction on world assets: CLI contract, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dreamlift.devices import resolve_device
from dreamlift.errors import DreamliftError
from dreamlift.io.checkpoint import load_checkpoint
from dreamlift.methods.reconstruct import build_config, reconstruct

CLI = [sys.executable, "-m", "dreamlift"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(args, **kw):
    return subprocess.run(CLI + args, capture_output=True, text=True, env=ENV, timeout=300, **kw)


@pytest.mark.parametrize(("field", "steps"), [("gaussians", 60), ("nerf", 200)])
def test_short_fit_writes_the_run_contract_and_learns(tmp_path, field, steps):
    cfg = build_config(
        "fast",
        field=field,
        asset="a yellow torus",
        resolution=32,
        train_views=16,
        test_views=4,
        steps=steps,
        turntable_frames=4,
    )
    result = reconstruct(cfg, tmp_path / "run", quiet=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["command"].startswith("reconstruct --field " + field)
    for key in ("psnr", "ssim", "mask_iou"):
        assert key in summary["metrics"]
    assert summary["timings"]["wall_s"] > 0
    for name, rel in summary["outputs"].items():
        assert (tmp_path / "run" / rel).is_file(), name
    expected = "gaussians" if field == "gaussians" else "mesh"
    assert expected in summary["outputs"]
    # Learning happened: better than the all-background image against the same views.
    assert result["metrics"]["psnr"] > 14.0
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < records[0]["loss"]


def _tiny_config(field: str):
    """A 10-step fit of a red cube at 32² with 8 views: enough to leave a checkpoint."""
    return build_config(
        "fast",
        field=field,
        asset="a red cube",
        resolution=32,
        train_views=8,
        test_views=2,
        steps=10,
        turntable_frames=2,
    )


def test_existing_run_is_never_overwritten_without_resume(tmp_path):
    cfg = _tiny_config("gaussians")
    reconstruct(cfg, tmp_path / "r", quiet=True)
    before = (tmp_path / "r" / "checkpoint.safetensors").read_bytes()
    proc = _run(
        ["reconstruct", "--asset", "a red cube", "--out", str(tmp_path / "r"), "--steps", "5"]
    )
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (tmp_path / "r" / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--asset", "a red dragon"], "unknown word"),
        (["--asset", ""], "empty"),
        (["--asset", "a red cube", "--field", "voxels"], "unknown field"),
        ([], "exactly one of"),
        (["--data", "/nonexistent/transforms.json"], "no transforms.json"),
        (["--asset", "a red cube", "--set", "steps=abc"], "steps must be an integer or null"),
        (["--asset", "a red cube", "--set", "gaussians.sh_degree=x"], "gaussians.sh_degree"),
    ],
)
def test_bad_input_gives_one_line_error_and_exit_code_2(tmp_path, args, needle):
    proc = _run(["reconstruct", *args, "--out", str(tmp_path / "o")])
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    proc = _run(["reconstruct", "--asset", "a red cube", "--out", str(blocker / "o")])
    assert proc.returncode == 2 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_checkpoint_on_resume_is_refused_and_kept(tmp_path):
    cfg = _tiny_config("nerf")
    reconstruct(cfg, tmp_path / "r", quiet=True)
    ckpt = tmp_path / "r" / "checkpoint.safetensors"
    damaged = ckpt.read_bytes()[:-100]
    ckpt.write_bytes(damaged)
    proc = _run(
        [
            "reconstruct",
            "--asset",
            "a red cube",
            "--field",
            "nerf",
            "--out",
            str(tmp_path / "r"),
            "--resume",
            "--steps",
            "20",
        ]
    )
    assert proc.returncode == 2 and "corrupt or truncated" in proc.stderr
    assert ckpt.read_bytes() == damaged


def test_transforms_json_input(tmp_path):
    proc = _run(
        [
            "world",
            "render",
            "a green cone",
            "--views",
            "12",
            "--resolution",
            "32",
            "--random",
            "--out",
            str(tmp_path / "w"),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    proc = _run(
        [
            "reconstruct",
            "--data",
            str(tmp_path / "w"),
            "--field",
            "gaussians",
            "--steps",
            "40",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["metrics"]["train_views"] == 10 and summary["metrics"]["test_views"] == 2
    assert "mask_iou" in summary["metrics"]  # the RGBA images carry alpha
    # a missing image is a one-line error
    (tmp_path / "w" / "images" / "005.png").unlink()
    proc = _run(["reconstruct", "--data", str(tmp_path / "w"), "--out", str(tmp_path / "r2")])
    assert proc.returncode == 2 and "005.png" in proc.stderr and "missing" in proc.stderr


CONE = {"asset": "a green cone", "resolution": 24, "train_views": 6, "turntable_frames": 2}
"""A 120-step fit, checkpointed often enough to be killed between checkpoints."""


@pytest.mark.parametrize("field", ["gaussians", "nerf"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, field):
    """Two SIGKILLs of a real process at random moments (one to three checkpoints after
    the previous kill), each followed by a resume: the parameters equal an uninterrupted
    fit's bit for bit, and no logged step is doubled."""
    from kill_helpers import assert_same_tensors, kill_at_random_moments

    ref = tmp_path / "ref"
    torch.set_num_threads(1)
    reconstruct(build_config(field=field, steps=120, checkpoint_every=20, **CONE), ref, quiet=True)

    out = tmp_path / "killed"
    settings = {"field": field, "steps": 120, "checkpoint_every": 10, **CONE}
    code = (
        "import sys, torch; torch.set_num_threads(1);"
        "from dreamlift.methods.reconstruct import build_config, reconstruct;"
        f"cfg = build_config(**{settings!r});"
        f"reconstruct(cfg, __import__('pathlib').Path(r'{out}'), resume=True, quiet=True)"
    )
    left = kill_at_random_moments(code, out, kills=2, seed=11, env=ENV)
    assert all(mark is not None and mark[1] < 120 for mark in left), left
    reconstruct(build_config(**settings), out, resume=True, quiet=True)
    assert_same_tensors(ref / "checkpoint.safetensors", out / "checkpoint.safetensors")
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_ctrl_c_writes_a_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "r"
    args = [
        "reconstruct",
        "--asset",
        "a red cube",
        "--resolution",
        "24",
        "--train-views",
        "6",
        "--steps",
        "400",
        "--out",
        str(out),
        "--quiet",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(CLI + args, env=ENV, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not metrics.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped at step" in err and "--resume" in err and "Traceback" not in err
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps[-1] < 399
    done = _run(args + ["--resume"])
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] > 0


def test_config_file_sets_nested_field_settings(tmp_path):
    (tmp_path / "c.yaml").write_text("field: gaussians\nsteps: 7\ngaussians:\n  num_init: 123\n")
    cfg = build_config("fast", tmp_path / "c.yaml", asset="a red cube", steps=9)
    assert cfg.steps == 9 and cfg.gaussians.num_init == 123 and cfg.field == "gaussians"
    (tmp_path / "bad.yaml").write_text("stepz: 3\n")
    proc = _run(
        [
            "reconstruct",
            "--asset",
            "a red cube",
            "--config",
            str(tmp_path / "bad.yaml"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert proc.returncode == 2 and "stepz" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_config_file_and_resume_changes_are_one_line_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("steps: [\n")
    (tmp_path / "typed.yaml").write_text("steps: abc\n")
    for name, needle in (("bad.yaml", "not valid YAML"), ("typed.yaml", "steps must be")):
        args = ["--config", str(tmp_path / name), "--out", str(tmp_path / "o")]
        proc = _run(["reconstruct", "--asset", "a red cube", *args])
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    reconstruct(_tiny_config("gaussians"), tmp_path / "r", quiet=True)
    proc = _run(["reconstruct", "--resume", "--field", "nerf", "--out", str(tmp_path / "r")])
    assert proc.returncode == 2 and "field ('gaussians' → 'nerf')" in proc.stderr, proc.stderr
    args = ["--resume", "--steps", "12", "--device", "cpu", "--quiet", "--out", str(tmp_path / "r")]
    proc = _run(["reconstruct", *args])
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu" in (tmp_path / "r" / "config.yaml").read_text()
    assert load_checkpoint(tmp_path / "r" / "checkpoint.safetensors").step == 12


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_is_a_one_line_error(tmp_path):
    proc = _run(
        ["reconstruct", "--asset", "a red cube", "--device", "cuda", "--out", str(tmp_path)]
    )
    assert proc.returncode == 2, proc.stderr
    assert "'cuda' is not available" in proc.stderr and "--device cpu" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("name", ["gpu0", "", "cuda:x", "meta"])
def test_device_names_are_checked(name):
    with pytest.raises(DreamliftError, match="unknown device"):
        resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_unknown_device_is_a_one_line_error(tmp_path):
    proc = _run(
        ["reconstruct", "--asset", "a red cube", "--device", "gpu0", "--out", str(tmp_path)]
    )
    assert proc.returncode == 2 and "unknown device 'gpu0'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_device_cpu_fits_and_is_saved_in_the_config(tmp_path):
    args = ["reconstruct", "--asset", "a red cube", "--resolution", "16", "--train-views", "4"]
    args += ["--steps", "3", "--device", "cpu", "--out", str(tmp_path / "r"), "--quiet"]
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu" in (tmp_path / "r" / "config.yaml").read_text()
    assert (tmp_path / "r" / "gaussians.ply").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("field", ["gaussians", "nerf"])
def test_fit_on_cuda_writes_cpu_outputs_and_resumes_on_cpu(tmp_path, field):
    cfg = _tiny_config(field)
    cfg.device = "cuda"
    result = reconstruct(cfg, tmp_path / "r", quiet=True)
    assert result["metrics"]["psnr"] > 0
    assert all(path.is_file() for path in result["outputs"].values())
    cfg = _tiny_config(field)
    cfg.device, cfg.steps = "cpu", 12
    reconstruct(cfg, tmp_path / "r", resume=True, quiet=True)
    assert load_checkpoint(tmp_path / "r" / "checkpoint.safetensors").step == 12


def test_turntables_are_rendered_at_their_own_size_beside_the_truth(tmp_path):
    """The turntable is rendered from the final field at ``turntable_size`` (not the training
    size); for a world caption its right half is the world's own render of the asset from
    the same cameras."""
    import imageio.v3 as iio

    from dreamlift.cameras import turntable
    from dreamlift.world import RenderSettings, asset_from_caption, render

    assert build_config(asset="a red cube").turntable_size == 256  # the default people see
    cfg = build_config(
        asset="a red cube",
        resolution=16,
        train_views=2,
        steps=2,
        turntable_frames=2,
        turntable_size=40,
    )
    result = reconstruct(cfg, tmp_path / "r", quiet=True)
    alone = iio.imread(result["outputs"]["turntable_gif"], index=None)
    both = iio.imread(result["outputs"]["turntable_compare_gif"], index=None)
    assert alone.shape[:3] == (2, 40, 40) and both.shape[:3] == (2, 40, 80)
    left = both[..., :40, :3].astype(float) - alone[..., :3].astype(float)
    assert abs(left).mean() < 8  # left: the result (the two GIFs' palettes differ)
    radius, fov = 2.7, 40.0  # the world views' orbit (reconstruct's defaults)
    cams = turntable(2, 40, elevation_deg=20.0, radius=radius, fov_deg=fov)
    truth = render(asset_from_caption("a red cube"), cams, RenderSettings(supersample=1))["rgb"]
    right = torch.from_numpy(both[..., 40:, :3].copy()).float() / 255
    assert (right - truth).abs().mean() < 0.03  # GIF palette quantisation only
    assert str(result["outputs"]["turntable_compare_mp4"]).endswith(".mp4")
