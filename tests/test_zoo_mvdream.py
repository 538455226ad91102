"""toy-mvdream's recipe at its tiny size: trains from a toy-sd-shaped base, resumes,
exports a folder that loads as a multi-view prior, and evaluates its figures."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from dreamlift.priors import DiffusionPrior, MultiViewPrior  # noqa: E402
from dreamlift.zoo.recipes import run_stage  # noqa: E402
from dreamlift.zoo.recipes.mvdream import best_asset_iou, eval_captions  # noqa: E402
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402


def test_tiny_recipe_trains_resumes_exports_and_evaluates(tmp_path):
    root = tmp_path / "zoo"
    base = TinySDConfig(
        unet_channels=(8, 8),
        unet_groups=4,
        attention_head_dim=2,
        text_width=16,
        cross_attention_dim=16,
    )
    save_tiny_sd(root / "toy-sd", sample_size=8, config=base)
    work = tmp_path / "work" / "toy-mvdream"
    report = run_stage("toy-mvdream", "unet", work, size="tiny", root=root, steps=1, quiet=True)
    assert report.steps == 1
    report = run_stage("toy-mvdream", "unet", work, size="tiny", root=root, steps=2, quiet=True)
    assert report.steps == 2  # resumed from step 1
    assert 0.0 <= report.figures["best_asset_iou"] <= 1.0
    assert "baseline_best_asset_iou" not in report.figures  # no toy-sd-camera in this zoo
    record = json.loads((root / "toy-mvdream" / "zoo.json").read_text())
    assert record["stages"]["unet"]["steps"] == 2
    prior = DiffusionPrior.load(root / "toy-mvdream", device="cpu")
    assert isinstance(prior, MultiViewPrior) and prior.num_views == 4
    assert prior.unet.config.projection_class_embeddings_input_dim == 16


def test_best_asset_iou_is_one_for_the_worlds_own_renders_of_one_asset():
    """The metric's anchor: a world cube rendered at 4 cameras 90° apart scores 1 (its own
    asset at yaw 0), and views of two different assets score less."""
    from dreamlift.cameras import DEFAULT_ORBIT, orbit_cameras
    from dreamlift.world.assets import layout
    from dreamlift.world.captions import parse
    from dreamlift.world.render import render
    from dreamlift.zoo.recipes.mvdream import MVDreamConfig

    cfg = MVDreamConfig(eval_yaws=4)
    az = torch.tensor([0.0, 90.0, 180.0, 270.0])
    el = torch.full((4,), 15.0)
    cams = orbit_cameras(az, el, DEFAULT_ORBIT.radius, DEFAULT_ORBIT.fov_deg, 32)
    cube = render(layout(parse("a red cube")), cams)["rgb"].permute(0, 3, 1, 2)
    torus = render(layout(parse("a red torus")), cams)["rgb"].permute(0, 3, 1, 2)
    assert best_asset_iou(cube, ["a red cube"], az, el, cfg) > 0.99
    mixed = torch.cat([cube[:2], torus[2:]])
    assert best_asset_iou(mixed, ["a red cube"], az, el, cfg) < 0.95
    captions = eval_captions(8)
    assert captions[0] == "a red cone" and any("next to" in c for c in captions)
