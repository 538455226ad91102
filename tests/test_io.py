import json

import imageio.v2 as imageio
import pytest
import torch

from dreamlift.cameras import orbit_cameras
from dreamlift.errors import CheckpointError, DataError, OutputError
from dreamlift.io import media
from dreamlift.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dreamlift.io.run import RunDir
from dreamlift.io.transforms import PosedImages, normalize_scene, read_transforms, write_transforms
from dreamlift.metrics import mask_iou, psnr, ssim
from dreamlift.world import RenderSettings, asset_from_caption, render


def _checkpoint() -> Checkpoint:
    p = torch.nn.Parameter(torch.randn(5, 3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones_like(p)
    opt.step()
    gen = torch.Generator().manual_seed(3)
    return Checkpoint(
        7, "test/kind", {"p": p.detach()}, opt.state_dict(), {"g": gen.get_state()}, {"a": 1}
    )


def test_checkpoint_round_trip(tmp_path):
    ckpt = _checkpoint()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, ckpt)
    back = load_checkpoint(path, expected_kind="test/kind")
    assert back.step == 7 and back.extra == {"a": 1}
    assert torch.equal(back.field["p"], ckpt.field["p"])
    assert torch.equal(back.generators["g"], ckpt.generators["g"])
    p = torch.nn.Parameter(back.field["p"].clone())
    opt = torch.optim.Adam([p], lr=0.1)
    opt.load_state_dict(back.optimizer)
    assert torch.equal(opt.state[p]["exp_avg"], ckpt.optimizer["state"][0]["exp_avg"])
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoints_raise_one_line_errors(tmp_path, damage):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _checkpoint())
    raw = path.read_bytes()
    path.write_bytes(
        {"truncate": raw[: len(raw) // 2], "garbage": b"\x00junk" * 50, "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _checkpoint())
    with pytest.raises(CheckpointError, match="not 'reconstruct/nerf'"):
        load_checkpoint(path, expected_kind="reconstruct/nerf")


def test_run_dir_refuses_unwritable_folders(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        RunDir(blocker / "sub").prepare()


def test_run_dir_summary_and_metric_truncation(tmp_path):
    run = RunDir(tmp_path / "r").prepare()
    for step in range(1, 6):
        run.log({"step": step, "loss": 1.0 / step})
        run.log({"step": step, "stage": "revise", "loss": 1.0 / step})
    run.truncate_metrics(2)  # a single-stage resume from step 2 keeps other stages' records
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in records if "stage" not in r] == [1, 2]
    assert [r["step"] for r in records if "stage" in r] == [1, 2, 3, 4, 5]
    run.truncate_metrics(3, stage="revise")
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in records if "stage" in r] == [1, 2, 3]
    (run.path / "a.txt").write_text("x")
    path = run.write_summary(
        "cmd", {"x": (1, 2)}, {"m": float("nan")}, {"t": 1.0}, {"a": run.path / "a.txt"}
    )
    summary = json.loads(path.read_text())
    assert summary["outputs"] == {"a": "a.txt"} and summary["metrics"]["m"] is None
    assert summary["timings"]["wall_s"] >= 0 and summary["config"] == {"x": [1, 2]}


def _world_views(n=6, size=32):
    cams = orbit_cameras(torch.arange(n) * 60.0, torch.full((n,), 20.0), 2.7, 40.0, size)
    r = render(asset_from_caption("a green cone"), cams, RenderSettings(supersample=2))
    return PosedImages(r["rgb"], cams, r["alpha"], r["depth"])


def test_transforms_round_trip(tmp_path):
    data = _world_views()
    write_transforms(tmp_path, data)
    back = read_transforms(tmp_path)
    assert torch.allclose(back.cameras.c2w, data.cameras.c2w, atol=1e-6)
    assert torch.allclose(back.cameras.fx, data.cameras.fx)
    assert (back.images - data.images).abs().max() < 2.5 / 255
    assert (back.alphas - data.alphas).abs().max() < 1 / 255
    normalized, center, scale = normalize_scene(back.cameras)
    assert center.norm() < 1e-3 and scale == pytest.approx(1.0, abs=1e-4)


def test_transforms_errors(tmp_path):
    data = _world_views()
    write_transforms(tmp_path, data)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    (tmp_path / "images" / "002.png").unlink()
    with pytest.raises(DataError, match="002.png.*missing"):
        read_transforms(tmp_path)
    write_transforms(tmp_path, data)
    small = _world_views(1, 16)
    write_transforms(tmp_path / "small", small)
    (tmp_path / "images" / "003.png").write_bytes(
        (tmp_path / "small" / "images" / "000.png").read_bytes()
    )
    with pytest.raises(DataError, match="16x16 but earlier images are 32x32"):
        read_transforms(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(DataError):
        read_transforms(tmp_path)
    meta["frames"] = []
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="no frames"):
        read_transforms(tmp_path)


def test_image_metrics_against_known_values():
    a = torch.rand(2, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    assert torch.isinf(psnr(a, a)).logical_not().all() and (psnr(a, a) > 90).all()
    noisy = (a + 0.1).clamp(0, 1)
    mse = ((noisy - a) ** 2).mean()
    assert float(psnr(noisy, a).mean()) == pytest.approx(float(-10 * torch.log10(mse)), rel=0.05)
    assert torch.allclose(ssim(a, a), torch.ones(2))
    assert (ssim(noisy, a) < 1).all()
    m = torch.zeros(1, 4, 4)
    m[0, :2] = 1
    n = torch.zeros(1, 4, 4)
    n[0, 1:3] = 1
    assert float(mask_iou(m, n)) == pytest.approx(4 / 12)


@pytest.mark.parametrize("has_ffmpeg", [True, False])
def test_turntable_keeps_the_gif_without_ffmpeg(tmp_path, monkeypatch, caplog, has_ffmpeg):
    monkeypatch.setattr(media, "mp4_writer_available", lambda: has_ffmpeg)
    frames = torch.zeros(5, 16, 16, 3)
    frames[:, :, :8, 0] = 1.0  # left half red: a content the GIF must keep
    frames[:, 0, 0, 1] = torch.arange(5) / 4  # distinct frames (the GIF writer merges twins)
    with caplog.at_level("WARNING"):
        outputs = media.save_turntable(tmp_path, frames)
    gif = imageio.mimread(outputs["turntable_gif"])
    assert len(gif) == 5 and gif[0][4, 2, 0] > 240 and gif[0][4, 12, 0] < 15
    assert ("turntable_mp4" in outputs) == has_ffmpeg == (tmp_path / "turntable.mp4").exists()
    assert ("imageio-ffmpeg" in caplog.text) != has_ffmpeg
