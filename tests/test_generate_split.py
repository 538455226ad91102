"""Where a generate iteration's time goes, and the time budget: the two-stage backward gives
the one-pass gradient, the split's parts add up to the step time, a budget stops the loop
(with a checkpoint) and the command line still runs after the module split."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from dreamlift.errors import DreamliftError  # noqa: E402
from dreamlift.fields.nerf import NerfConfig, NerfField  # noqa: E402
from dreamlift.io.checkpoint import load_checkpoint  # noqa: E402
from dreamlift.io.run import RunDir  # noqa: E402
from dreamlift.loop import LoopSettings, checkpoint_path, optimize  # noqa: E402
from dreamlift.methods import generate as gen  # noqa: E402
from dreamlift.methods.generate import step as gen_step  # noqa: E402
from dreamlift.priors import DiffusionPrior  # noqa: E402
from dreamlift.utils.timing import SectionTimer  # noqa: E402
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402

FAST = {"turntable_frames": 4, "score": False, "log_every": 1, "checkpoint_every": 100}


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_sd_split")
    return save_tiny_sd(root / "sd", sample_size=8, config=TinySDConfig(unet_channels=(16, 32, 32)))


def _step(cfg, prior):
    """A fresh field and step function; equal seeds give equal steps."""
    fld = gen.initial_field(cfg, torch.Generator().manual_seed(0)).to(prior.device)
    prompt, template = gen.resolve_prompt(cfg, prior)
    cams, noise = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    return fld, gen.TextTo3D(cfg, fld, prior, prompt, template, cams, noise)


@pytest.mark.parametrize(
    ("field", "guidance", "extra"),
    [
        ("gaussians", "ge3d", {"scale_weight": 0.5}),
        ("nerf", "sds", {}),
        ("gaussians", "ism", {}),
        ("nerf", "ge3d", {"tv_weight": 1.0, "flip_views": 1.0, "background_aug": 1.0}),
        ("nerf", "sds", {"opacity_weight": 0.0}),
    ],
)
def test_two_stage_backward_is_the_one_pass_gradient(tiny_sd, field, guidance, extra):
    cfg = gen.build_config(
        "fast", prompt="a red cube", prior=str(tiny_sd), field=field, guidance=guidance, **extra
    )
    prior = DiffusionPrior.load(tiny_sd, device="cpu")
    grads = []
    for two_stage in (False, True):
        fld, step = _step(cfg, prior)
        loss, _, out = step(0)
        step.backward(loss) if two_stage else loss.backward()
        found = {n: p.grad.clone() for n, p in fld.named_parameters() if p.grad is not None}
        if "means2d" in out:
            found["means2d"] = out["means2d"].grad.clone()
        grads.append(found)
        assert set(step.timer.seconds) >= {"render_forward", "guidance"}
        if two_stage:
            assert {"vae_backward", "render_backward"} <= set(step.timer.seconds)
    one, two = grads
    assert one.keys() == two.keys() and len(one) >= 2
    moved = "features_dc" if field == "gaussians" else "color_grid"
    assert one[moved].abs().sum() > 0  # the guidance's gradient reaches the field
    for name in one:
        # TV and the opacity penalty also read the render: the two sums add in another order.
        if "tv_weight" in extra or cfg.resolved_opacity_weight() > 0:
            scale = float(one[name].abs().max())
            torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-5 * scale)
        else:
            assert torch.equal(two[name], one[name]), name


def test_a_method_term_on_the_renders_keeps_the_two_stage_backward(tiny_sd):
    """An edit's identity terms read the step's renders: added through ``add_render_loss`` the
    backward is still timed in two stages (not lumped into one pass the split cannot see),
    and its gradient is the one-pass gradient to rounding."""
    cfg = gen.build_config("fast", prompt="a red cube", prior=str(tiny_sd), field="nerf")
    prior = DiffusionPrior.load(tiny_sd, device="cpu")
    grads = []
    for two_stage in (False, True):
        fld, step = _step(cfg, prior)
        loss, _, out = step(0)
        total = step.add_render_loss(loss, 3.0 * (out["rgb"] - 0.5).abs().mean())
        step.backward(total) if two_stage else total.backward()
        grads.append({n: p.grad.clone() for n, p in fld.named_parameters() if p.grad is not None})
        assert ("render_backward" in step.timer.seconds) is two_stage
    one, two = grads
    assert one.keys() == two.keys() and one
    for name in one:
        scale = float(one[name].abs().max())
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("field", ["gaussians", "nerf"])
def test_opacity_penalty_alone_clears_what_the_views_see(tiny_sd, field):
    """With the guidance switched off, the opacity penalty empties the views, and it is
    logged; switched off, nothing is logged."""
    prior = DiffusionPrior.load(tiny_sd, device="cpu")
    base = {"prompt": "a red cube", "prior": str(tiny_sd), "field": field, "guidance": "sds"}
    cfg = gen.build_config("fast", guidance_weight=0.0, opacity_weight=0.05, **base)
    fld, step = _step(cfg, prior)
    optimizer = fld.make_optimizer()
    seen = []
    for i in range(15):
        loss, logs, out = step(i)
        seen.append(float(out["opacity"].detach().mean()))
        optimizer.zero_grad()
        step.backward(loss)
        optimizer.step()
    # Views differ step to step; nothing but the penalty moves the field.
    assert seen[0] > 0.05 and sum(seen[-3:]) < 0.95 * sum(seen[:3]), seen
    assert logs["loss_opacity"] > 0
    _, plain = _step(gen.build_config("fast", opacity_weight=0.0, **base), prior)
    assert "loss_opacity" not in plain(0)[1]
    # Left unset, the field's default applies: on for the grid, off for Gaussians.
    _, default = _step(gen.build_config("fast", **base), prior)
    assert ("loss_opacity" in default(0)[1]) == (field == "nerf")


@pytest.mark.parametrize("augment", [False, True])
def test_flip_and_background_augmentation_reach_the_prior(tiny_sd, augment, monkeypatch):
    """With the augmentations certain, the guidance sees the mirrored render on a coloured
    background; without them, the plain render on white."""
    extra = {"flip_views": 1.0, "background_aug": 1.0} if augment else {}
    cfg = gen.build_config("fast", prompt="a red cube", prior=str(tiny_sd), **extra)
    _, step = _step(cfg, DiffusionPrior.load(tiny_sd, device="cpu"))
    seen, backgrounds, cameras, told = [], [], [], []
    original_losses, original_render = step.guidance.losses, gen_step.render_views
    original_orbit = gen_step.sample_orbit

    def spy_losses(prior_, inp):
        seen.append(inp.images.detach())
        told.append((inp.azimuths, inp.elevations))
        return original_losses(prior_, inp)

    def spy_orbit(*args, **kwargs):
        cameras.append(original_orbit(*args, **kwargs))
        return cameras[-1]

    def spy_render(fld_, cams_, size, background):
        backgrounds.append(background)
        images, out = original_render(fld_, cams_, size, background)
        backgrounds.append(images.detach())
        return images, out

    step.guidance.losses = spy_losses
    monkeypatch.setattr(gen_step, "render_views", spy_render)
    monkeypatch.setattr(gen_step, "sample_orbit", spy_orbit)
    step(0)
    background, rendered = backgrounds
    white = torch.ones(3)
    assert torch.equal(background, white) != augment
    expected = rendered.flip(-1) if augment else rendered
    assert torch.equal(seen[0], expected)
    assert not torch.equal(rendered.flip(-1), rendered)  # the flip is visible at all
    # A camera-conditioned prior is told the mirrored camera of a mirrored view.
    (_, azimuth, elevation), (told_azimuth, told_elevation) = cameras[0], told[0]
    assert torch.equal(told_azimuth, -azimuth if augment else azimuth)
    assert torch.equal(told_elevation, elevation)


def test_another_loss_gets_the_one_pass_backward(tiny_sd):
    cfg = gen.build_config("fast", prompt="a red cube", prior=str(tiny_sd), guidance="sds")
    fld, step = _step(cfg, DiffusionPrior.load(tiny_sd, device="cpu"))
    loss, _, _ = step(0)
    step.backward(2.0 * loss)  # not the returned tensor: no split, but the gradient arrives
    assert fld.features_dc.grad is not None and fld.features_dc.grad.abs().sum() > 0


@pytest.mark.parametrize("field", ["gaussians", "nerf"])
def test_split_parts_add_up_to_the_step_time(tmp_path, tiny_sd, field):
    cfg = gen.build_config(
        "fast", prompt="a red cube", prior=str(tiny_sd), field=field, steps=3, **FAST
    )
    result = gen.generate(cfg, tmp_path / "r", quiet=True)
    split = json.loads((tmp_path / "r" / "summary.json").read_text())["iteration_split"]
    assert split == json.loads(json.dumps(result["iteration_split"]))
    fractions, seconds = split["fractions"], split["seconds"]
    assert set(fractions) == {*gen.SPLIT_PARTS, "other"}
    assert all(v >= 0 for v in fractions.values())
    assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-6)
    assert sum(seconds.values()) == pytest.approx(split["step_s"], rel=1e-6)
    for part in ("render_forward", "render_backward", "unet", "vae_encode", "optimizer"):
        assert seconds[part] > 0, part
    assert split["prior_fraction"] == pytest.approx(sum(fractions[k] for k in gen.PRIOR_PARTS))
    assert split["iterations"] == 3 and fractions["other"] < 0.5


def test_section_timer_times_module_calls_and_removes_its_hooks():
    timer = SectionTimer()
    layer = torch.nn.Linear(4, 4)
    with timer.modules({"layer": layer}), timer.section("outer"):
        layer(torch.zeros(1, 4))
        layer(torch.zeros(1, 4))
    assert 0 < timer.seconds["layer"] <= timer.seconds["outer"]
    before = timer.seconds["layer"]
    layer(torch.zeros(1, 4))
    assert timer.seconds["layer"] == before


# ---------------------------------------------------------------------- time budget
def test_time_budget_stops_the_loop_with_a_checkpoint(tmp_path):
    field = NerfField(NerfConfig(resolutions=((0, 8),)), torch.Generator().manual_seed(0))
    run = RunDir(tmp_path / "run").prepare()

    def step_loss(step):
        time.sleep(0.03)
        return field.density_grid.mean() ** 2, {}, {}

    def slow_eval(step):
        time.sleep(0.2)  # evaluations are not training time
        return {"eval": 1.0}

    settings = LoopSettings(
        steps=1000, kind="t/nerf", checkpoint_every=500, log_every=1, quiet=True, time_budget_s=0.1
    )
    result = optimize(field, step_loss, run, settings, {}, resume=False, on_log=slow_eval)
    assert result.out_of_time and 3 <= result.steps_done <= 6
    assert load_checkpoint(checkpoint_path(run)).step == result.steps_done
    records = [json.loads(x) for x in run.metrics_path.read_text().splitlines()]
    assert records[-1]["step"] == result.steps_done
    assert result.timings["log_s"] >= 0.2 * len(records) - 1e-3
    assert result.timings["loop_s"] < result.timings["log_s"]


def test_generate_time_budget_and_periodic_eval(tmp_path, tiny_sd):
    cfg = gen.build_config(
        "fast",
        prompt="a red cube",
        prior=str(tiny_sd),
        guidance="sds",
        steps=50,
        eval_every=2,
        time_budget_s=1e-3,
        **{**FAST, "log_every": 2},
    )
    result = gen.generate(cfg, tmp_path / "b", quiet=True)
    metrics = result["metrics"]
    assert metrics["out_of_time"] and metrics["steps_done"] == 1
    assert any("time budget" in w for w in result["warnings"])
    assert [p["step"] for p in metrics["eval_curve"]] == [1]
    assert 0.0 <= metrics["eval_curve"][0]["iou"] <= 1.0
    records = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [1]  # as the eval curve and checkpoints count
    with pytest.raises(DreamliftError, match="multiple of log_every"):
        gen.build_config("fast", prompt="a red cube", eval_every=3, log_every=2)


def test_cli_runs_after_the_module_split_and_takes_a_time_budget(tmp_path, tiny_sd):
    out = tmp_path / "g"
    args = ["a red cube", "--prior", str(tiny_sd), "--steps", "40", "--time-budget", "0.001"]
    args.append("--all-steps")  # the fast preset's stop at convergence turned off
    proc = subprocess.run(
        [sys.executable, "-m", "dreamlift", "generate", *args, "--no-score", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["steps_done"] == 1 and summary["config"]["time_budget_s"] == 0.001
    assert summary["iteration_split"]["iterations"] == 1
    assert summary["config"]["convergence"]["enabled"] is False
    assert "converged_at" not in summary["metrics"]
    for name in gen.__all__:
        assert hasattr(gen, name), name


def test_colour_ranking_names_the_colour_of_the_asset_itself():
    from dreamlift.metrics.colour import colour_ranking
    from dreamlift.metrics.ground_truth import asset_renderer
    from dreamlift.world import asset_from_caption, parse

    ranking = colour_ranking(
        asset_renderer(asset_from_caption("a brown torus")), parse("a brown torus")
    )
    assert ranking["colour_winner"] == "brown" and ranking["colour_correct"]
    assert ranking["colour_distances"]["brown"] < 3.0  # CIEDE2000 of the lit-surface albedo
