"""``dreamlift sample`` end to end on tiny random SD folders, its errors, and the prior benchmark.

The command runs through :func:`dreamlift.cli.main`, the real error handling.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from benchmark_modules import load_benchmark  # noqa: E402
from cli_helpers import run_main  # noqa: E402

from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402

LATENT = 8  # 16 x 16 images through a 2-level VAE
CONFIG = TinySDConfig(unet_channels=(16, 32, 32), unet_out_scale=0.1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_sd_sample")
    return {
        name: save_tiny_sd(root / name, sample_size=LATENT, config=CONFIG, depth=name == "depth")
        for name in ("sd", "depth")
    }


@pytest.fixture(autouse=True)
def _empty_zoo(tmp_path, monkeypatch):
    """No trained zoo models: judging and zoo names behave as on a fresh checkout."""
    monkeypatch.setenv("DREAMLIFT_ZOO_DIR", str(tmp_path / "zoo"))


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Exit code and stderr of ``dreamlift sample ARGS --quiet``."""
    return run_main(capsys, "sample", *args, "--quiet")


def test_sample_writes_grid_samples_and_the_run_contract(folders, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    args = ("a red cube, side view", "--prior", str(folders["sd"]), "--n", "3")
    code, err = run_cli(monkeypatch, capsys, *args, "--steps", "2", "--out", str(out))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["n"] == 3 and summary["config"]["guidance_scale"] == 7.5
    assert summary["outputs"]["grid"] == "grid.png" and (out / "grid.png").is_file()
    assert len(list((out / "samples").glob("*.png"))) == 3
    assert summary["timings"]["sample_s"] > 0 and summary["metrics"] == {}
    assert any("toy-clip" in note for note in summary["notes"])  # why nothing was judged
    assert (out / "config.yaml").is_file()
    # Same seed, same samples; the batch size does not change them.
    again = tmp_path / "again"
    code, _ = run_cli(
        monkeypatch, capsys, *args, "--steps", "2", "--batch", "2", "--out", str(again)
    )
    assert code == 0
    assert (again / "grid.png").read_bytes() == (out / "grid.png").read_bytes()


def test_world_captions_are_judged_by_a_clip_when_given(folders, tmp_path, monkeypatch, capsys):
    from test_metrics_clip import save_tiny_clip

    judge = save_tiny_clip(tmp_path / "clip")
    out = tmp_path / "judged"
    code, err = run_cli(
        monkeypatch,
        capsys,
        "a green cone, front view",
        "--prior",
        str(folders["sd"]),
        "--n",
        "2",
        "--steps",
        "2",
        "--judge",
        str(judge),
        "--out",
        str(out),
    )
    assert code == 0, err
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert {"clip_similarity", "shape_agreement", "colour_agreement", "view_agreement"} <= set(
        metrics
    )
    assert all(0.0 <= metrics[k] <= 1.0 for k in metrics if k.endswith("agreement"))


def test_depth_prior_conditions_on_the_captions_rendered_depth(
    folders, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "d"
    args = ["a red cube with a blue sphere on top", "--prior", str(folders["depth"])]
    code, err = run_cli(
        monkeypatch,
        capsys,
        *args,
        "--n",
        "2",
        "--steps",
        "2",
        "--depth-from-caption",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert (out / "depth.png").is_file() and (out / "grid.png").is_file()
    code, err = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "no-depth"))
    assert code == 2 and "--depth-from-caption" in err


def test_a_multiview_prior_draws_each_sample_as_one_group_of_its_views(
    tmp_path, monkeypatch, capsys
):
    from mvdream_layout import write_mvdream_folder
    from PIL import Image

    folder = write_mvdream_folder(tmp_path / "mvdream")
    out = tmp_path / "mv"
    args = ("a red cube next to a green sphere", "--prior", str(folder), "--n", "2")
    code, err = run_cli(
        monkeypatch, capsys, *args, "--steps", "2", "--azimuth", "30", "--out", str(out)
    )
    assert code == 0, err
    assert len(list((out / "samples").glob("*.png"))) == 2 * 4
    size = Image.open(out / "samples" / "sample_000.png").size
    grid = Image.open(out / "grid.png").size  # one row a group, one column a view
    assert grid == (4 * size[0], 2 * size[1])
    summary = json.loads((out / "summary.json").read_text())
    assert any("azimuths 30, 120, 210, 300°" in note for note in summary["notes"])
    assert "--azimuth 30.0 --elevation 15.0" in summary["command"]
    # The views of a group are drawn together: one group alone gives the same first group.
    one = tmp_path / "one"
    code, err = run_cli(
        monkeypatch, capsys, *args[:-1], "1", "--steps", "2", "--azimuth", "30", "--out", str(one)
    )
    assert code == 0, err
    for i in range(4):
        name = f"sample_{i:03d}.png"
        assert (one / "samples" / name).read_bytes() == (out / "samples" / name).read_bytes()


def test_caption_depth_sees_the_asset_from_the_captions_view():
    from dreamlift.methods.sample import caption_depth
    from dreamlift.world import parse

    front = caption_depth(parse("a red cube next to a blue cone"), 32)
    side = caption_depth(parse("a red cube next to a blue cone, side view"), 32)
    assert front.shape == (1, 32, 32) and (front > 0).any() and (front == 0).any()
    # From the front the two objects stand side by side, from the side one hides the other.
    assert (front > 0).sum() > (side > 0).sum()


@pytest.mark.parametrize(
    ("prompt", "prior", "needle"),
    [
        ("a red spaceship", "sd", "unknown word(s) in caption: spaceship"),
        ("   ", "sd", "the prompt is empty"),
        ("a red cube", "missing-folder", "model folder not found"),
        ("a red cube", "toy-sd", "dreamlift zoo train toy-sd"),
        ("a red cube", "depth-flag", "needs a depth-conditioned prior"),
        ("a red cube", "azimuth-flag", "--azimuth needs a camera-conditioned prior"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(
    folders, tmp_path, monkeypatch, capsys, prompt, prior, needle
):
    extra: list[str] = []
    flags = {"depth-flag": ["--depth-from-caption"], "azimuth-flag": ["--azimuth", "45"]}
    if prior in ("sd", *flags):
        path = str(folders["sd"])
        extra = flags.get(prior, [])
    elif prior == "missing-folder":
        path = str(tmp_path / "no-such-model")
    else:
        path = prior
    out = tmp_path / "out"
    code, err = run_cli(
        monkeypatch, capsys, prompt, "--prior", path, *extra, "--steps", "1", "--out", str(out)
    )
    assert code == 2
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written before the inputs were checked


def test_unknown_words_list_the_vocabulary(folders, tmp_path, monkeypatch, capsys):
    code, err = run_cli(
        monkeypatch,
        capsys,
        "a red cube, sideways view",
        "--prior",
        str(folders["sd"]),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and "colours:" in err and "shapes:" in err


def test_prior_benchmark_runs_on_a_tiny_folder_and_writes_json(folders, tmp_path):
    module = load_benchmark("prior")
    out = tmp_path / "prior.json"
    threads = torch.get_num_threads()
    try:
        result = module.main(
            [
                "--prior",
                str(folders["sd"]),
                "--n",
                "2",
                "--steps",
                "3",
                "--inner-steps",
                "2",
                "--repeats",
                "1",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    stored = json.loads(out.read_text())
    assert stored["inversion"].keys() == result["inversion"].keys()
    for key in ("vae_psnr_db", "cfg1_psnr_db", "cfg7.5_ddim_psnr_db", "cfg7.5_null_text_psnr_db"):
        assert isinstance(stored["inversion"][key], float)
    assert [r["batch"] for r in stored["speed"][:3]] == [1, 2, 8]
    assert all(r["per_s"] > 0 for r in stored["speed"])
    assert isinstance(stored["all_pass"], bool)


def test_zoo_benchmark_captions_hold_out_a_fifth_and_parse():
    from dreamlift.world import parse
    from dreamlift.zoo.heldout import mentions_heldout

    zoo = load_benchmark("zoo")
    pairs = zoo.sd_captions(200)
    assert len(pairs) == 200
    held = [text for text, group in pairs if group.startswith("heldout")]
    assert len(held) >= 40 and all(mentions_heldout(t) for t in held)
    assert not any(mentions_heldout(t) for t, g in pairs if g.startswith("seen"))
    for text, _ in pairs:
        parse(text)
    others = zoo.distractors("a red cube with a blue sphere on top, side view")
    assert len(set(others)) == 5 and all(parse(t).relation == "on_top" for t in others)


def test_zoo_benchmark_foreground_rule_recovers_render_masks():
    from dreamlift.metrics.image import mask_iou
    from dreamlift.world.datasets import WorldDataset
    from dreamlift.zoo.heldout import eval_dataset

    zoo = load_benchmark("zoo")
    data = WorldDataset(eval_dataset(kinds={"single": 1.0}, resolution=48), 12)
    items = [data[i] for i in range(12)]
    images = torch.stack([x["image"] for x in items])
    target = torch.stack([x["depth"] for x in items])[:, 0] > 0
    noisy = images + 0.02 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    for x in (images, noisy.clamp(0, 1)):
        assert mask_iou(zoo.foreground_mask(x).float(), target.float()).mean() > 0.95


def test_zoo_benchmark_reports_missing_models_and_runs_on_tiny_folders(folders, tmp_path):
    from test_metrics_clip import save_tiny_clip

    zoo = load_benchmark("zoo")
    threads = torch.get_num_threads()
    common = ["--n", "4", "--steps", "2", "--threads", "1", "--grid", str(tmp_path / "g.png")]
    try:
        missing = zoo.main([*common, "--out", str(tmp_path / "missing.json")])
        clip = save_tiny_clip(tmp_path / "clip")
        tiny = zoo.main(
            [
                *common,
                *("--clip", str(clip), "--sd", str(folders["sd"])),
                *("--sd-depth", str(folders["depth"]), "--out", str(tmp_path / "tiny.json")),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    for part in ("clip", "vae", "sd", "depth"):
        assert missing["parts"][part]["status"].startswith("missing (train with dreamlift zoo")
        assert tiny["parts"][part]["status"] == "ok"
        assert isinstance(tiny["parts"][part]["pass"], bool)
    assert {"fid", "kid_mean", "seen_shape_agreement"} <= set(tiny["parts"]["sd"])
    assert (tmp_path / "g.png").is_file() and (tmp_path / "tiny.json").is_file()
