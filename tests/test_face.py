"""``dreamlift face`` (FaceDNeRF): the head-caption prior's data, the attribute judge, the
objective's terms, the two stages, the run's phases and outputs, and bad input."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_main
from PIL import Image

from dreamlift.errors import CaptionError, ConfigError, DataError
from dreamlift.methods.face import FaceRequest, parse_light, preset_config, run_face
from dreamlift.methods.face.inputs import check_face, edited_head, wanted_attributes
from dreamlift.methods.face.objective import FaceGoal, FaceModels, FaceObjective
from dreamlift.methods.face.optimize import History, fit_wplus, w_spread
from dreamlift.methods.invert.inputs import Pose, render_world_head
from dreamlift.methods.invert.optimize import Target
from dreamlift.methods.invert.run import load_generator
from dreamlift.metrics.head_attributes import nearest_colour, seen_attributes
from dreamlift.world.captions import parse_head
from dreamlift.world.heads import head_cameras, head_params, with_overrides
from dreamlift.world.heads_geometry import render_head
from dreamlift.world.lighting import named_light
from dreamlift.zoo.recipes.head_nets import load_head_net


@pytest.fixture(scope="module")
def head_prior(tmp_path_factory):
    """A tiny random SD pipeline whose tokenizer holds the head words (32 px images)."""
    from dreamlift.zoo.recipes.head_prior import head_prior_words
    from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd

    config = TinySDConfig(unet_channels=(16, 32, 32), unet_out_scale=0.1, max_length=24)
    folder = tmp_path_factory.mktemp("prior") / "tiny-heads"
    return save_tiny_sd(folder, sample_size=16, config=config, words=head_prior_words(), seed=0)


def tiny_config(prior: Path, generator: Path, **overrides):
    base = preset_config("fast")
    inversion = replace(base.inversion, w_steps=3, wplus_steps=3, pti_steps=2)
    values = dict(
        prior=str(prior),
        generator=str(generator),
        inversion=inversion,
        resolution=32,
        turntable_frames=4,
        mesh_resolution=16,
        mesh_threshold=0.1,
        generation_steps=3,
    )
    values.update(overrides)
    return replace(base, **values)


# ---------------------------------------------------------------------------- the prior's data
def test_prior_items_depend_on_their_index_alone_and_every_caption_parses():
    from dreamlift.zoo.recipes.head_prior import (
        HeadCaptionSpec,
        item_caption,
        item_head,
        item_partial_caption,
    )

    spec = HeadCaptionSpec()
    assert item_head(spec, 17) == item_head(spec, 17)
    assert item_head(spec, 17) != item_head(HeadCaptionSpec(seed=2), 17)
    colours = set()
    for i in range(300):
        params = item_head(spec, i)[0]
        whole = parse_head(item_caption(spec, i))
        # the whole caption is the head's truth: applying it to the seed's head gives it back
        assert dict(whole.attributes)["hair"] == params.hair or params.hair in ("short", "long")
        partial = dict(parse_head(item_partial_caption(spec, i)).attributes)
        for name, value in partial.items():  # a partial caption never says anything false
            truth = getattr(params, name)
            assert str(truth).lower() in (value, "true" if value == "yes" else value)
        colours.add(params.hair_colour)
    assert len(colours) >= 10  # hair colours over the whole palette, not only natural ones


def test_tiny_head_prior_trains_exports_and_reads_head_captions(tmp_path):
    from dreamlift.zoo.recipes import run_stage

    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(Path(__file__).parents[1] / "src/dreamlift/zoo/models/toy-sd", root / "toy-sd")
    report = run_stage(
        "toy-sd-heads",
        "unet",
        tmp_path / "work" / "toy-sd-heads",
        size="tiny",
        root=root,
        evaluate=False,
        quiet=True,
    )
    assert report.steps == 2
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(root / "toy-sd-heads" / "tokenizer")
    ids = tok("a person with blue hair and a red hat").input_ids
    assert len(ids) == 11 and tok.unk_token_id not in ids[1:-1]  # one token a word


def test_head_decoder_stage_trains_only_the_priors_decoder_and_measures_heads(tmp_path):
    """The decoder stage keeps the encoder (so the UNet's latents) bit for bit, writes the
    prior's own VAE and not toy-sd's, and records its head figures."""
    from safetensors.torch import load_file

    from dreamlift.zoo.recipes import run_stage
    from dreamlift.zoo.recipes.common import read_zoo_json

    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(Path(__file__).parents[1] / "src/dreamlift/zoo/models/toy-sd", root / "toy-sd")
    work = tmp_path / "work" / "toy-sd-heads"
    run_stage("toy-sd-heads", "unet", work, size="tiny", root=root, evaluate=False, quiet=True)
    weights = "vae/diffusion_pytorch_model.safetensors"
    before = load_file(str(root / "toy-sd-heads" / weights))

    report = run_stage("toy-sd-heads", "decoder", work, size="tiny", root=root, quiet=True)

    after = load_file(str(root / "toy-sd-heads" / weights))
    encoder = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    decoder = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert encoder and decoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    objects = load_file(str(root / "toy-sd" / weights))
    assert all(torch.equal(objects[k], before[k]) for k in before)  # toy-sd keeps its decoder
    record = read_zoo_json(root / "toy-sd-heads")
    assert record["training_steps"] == {"unet": 2, "decoder": 2} and report.steps == 2
    figures = record["stages"]["decoder"]["figures"]
    assert 5.0 < figures["heads_psnr_db"] < 60.0
    assert 0.0 <= figures["glasses_agreement"] <= 1.0


# ---------------------------------------------------------------------------- the judge
def test_the_parts_judge_reads_the_attributes_the_world_rendered():
    parts = load_head_net("toy-parts")
    heads = []
    for seed in (201, 205, 210, 214, 222, 230):
        p = head_params(seed)
        heads.append(with_overrides(p, {"glasses": "yes", "hair": "short", "hair_colour": "blue"}))
        heads.append(with_overrides(p, {"hat": "yes", "hat_colour": "red", "glasses": "no"}))
    images = []
    for params in heads:
        out = render_head(params, head_cameras(15.0, 10.0, 64), named_light("front"), supersample=2)
        images.append(out["rgb"][0].permute(2, 0, 1))
    seen = seen_attributes(parts, torch.stack(images))
    glasses = [s.glasses for s in seen[0::2]]
    hats = [(s.hat, s.hat_colour) for s in seen[1::2]]
    assert sum(glasses) >= 5 and not any(s.glasses for s in seen[1::2])
    assert sum(h == (True, "red") for h in hats) >= 5
    assert sum(s.hair_colour == "blue" for s in seen[0::2]) >= 5


def test_nearest_colour_ignores_shading():
    assert nearest_colour(torch.tensor([0.85, 0.12, 0.10]) * 0.5) == "red"
    assert nearest_colour(torch.tensor([0.12, 0.25, 0.85]) * 1.2) == "blue"


# ---------------------------------------------------------------------------- inputs
def test_the_edit_truth_is_the_head_with_the_prompt_applied():
    truth = edited_head(203, "a person with glasses and a red hat")
    assert truth.glasses and truth.hat and truth.hat_colour == "red"
    assert truth.skull_width == head_params(203).skull_width
    assert wanted_attributes("a person with blue hair", head_params(203)) == {
        "hair_colour": "blue",
        **({"hair": "short"} if head_params(203).hair == "none" else {}),
    }


def test_lights_are_checked_and_read_from_names_values_and_files(tmp_path):
    assert parse_light("left", None, None) == named_light("left").sh
    assert parse_light(None, "1,0,0,0,0,0,0,0,0", None)[0] == 1.0
    (tmp_path / "sh.txt").write_text("1 0 0 0 0 0 0 0 0.5\n")
    (tmp_path / "sh.json").write_text("[1, 0, 0, 0, 0, 0, 0, 0, 0.25]")
    assert parse_light(None, None, tmp_path / "sh.txt")[-1] == 0.5
    assert parse_light(None, None, tmp_path / "sh.json")[-1] == 0.25
    with pytest.raises(ConfigError, match="9 SH coefficients"):
        parse_light(None, "1,2,3", None)
    with pytest.raises(ConfigError, match="finite"):
        parse_light(None, "1,2,3,4,5,6,7,8,inf", None)
    with pytest.raises(ConfigError, match="unknown light"):
        parse_light("sideways", None, None)
    with pytest.raises(ConfigError, match="one of"):
        parse_light("left", "1,2", None)
    with pytest.raises(DataError, match="does not exist"):
        parse_light(None, None, tmp_path / "missing.txt")


def test_bad_requests_fail_before_anything_loads():
    with pytest.raises(ConfigError, match="nothing to do"):
        FaceRequest()
    with pytest.raises(CaptionError, match="empty"):
        FaceRequest(head=203, prompt=" ")
    with pytest.raises(CaptionError, match="unknown word"):
        FaceRequest(head=203, prompt="a person with wings")
    with pytest.raises(ConfigError, match="not both"):
        FaceRequest(image="x.png", head=203)
    with pytest.raises(ConfigError, match="input's camera"):
        FaceRequest(prompt="a person with glasses", yaw=10.0)


def test_an_image_without_a_face_is_refused_and_held_out_heads_are_not():
    from dreamlift.world.head_datasets import HeadDataset, HeadDatasetConfig

    parts = load_head_net("toy-parts")
    red_square = torch.ones(1, 3, 64, 64)
    red_square[..., 16:48, 16:48] = torch.tensor([0.85, 0.12, 0.1])[:, None, None]
    noise = torch.ones(1, 3, 64, 64)
    noise[..., 4:60, 4:60] = torch.rand(3, 56, 56, generator=torch.Generator().manual_seed(0))
    for name, image in (("white", torch.ones(1, 3, 64, 64)), ("red", red_square), ("noise", noise)):
        with pytest.raises(DataError, match="no face found"):
            check_face(parts, image, name)
    heads = HeadDataset(HeadDatasetConfig(split="held_out", seed=3), 12)  # random pose, light
    for i in range(len(heads)):
        check_face(parts, heads[i]["image"][None], f"head {i}")


# ---------------------------------------------------------------------------- the objective
def test_each_term_is_on_only_when_it_has_its_input(head_prior, tiny_generator_folder):
    from dreamlift.priors import DiffusionPrior

    cfg = tiny_config(head_prior, tiny_generator_folder)
    image = render_world_head(203, [Pose(0.0, 10.0)], 32)["rgb"]
    target = Target(image, Pose(0.0, 10.0).camera(32))
    models = FaceModels(
        prior=DiffusionPrior.load(head_prior, device="cpu"),
        identity=load_head_net("toy-id"),
        light=load_head_net("toy-light"),
    )
    gen = load_generator(tiny_generator_folder)
    ws = gen.broadcast(gen.w_avg()[None]).clone().requires_grad_(True)
    sh = torch.tensor(named_light("left").sh)
    cases = {
        ("rec", "identity"): FaceGoal(target),
        ("rec", "identity", "diffusion"): FaceGoal(target, "a person with glasses"),
        ("rec", "identity", "illumination"): FaceGoal(target, light=sh),
        ("diffusion", "latent"): FaceGoal(None, "a person with glasses"),
    }
    for terms, goal in cases.items():
        objective = FaceObjective(cfg, goal, models)
        loss, info = objective(gen, ws, 0, 10, gen.w_avg())
        assert tuple(sorted(info)) == tuple(sorted(terms)), terms
        (grad,) = torch.autograd.grad(loss, ws)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_side_cameras_stay_in_the_paper_range_and_replay_per_stage(
    head_prior, tiny_generator_folder
):
    cfg = tiny_config(head_prior, tiny_generator_folder)
    objective = FaceObjective(cfg, FaceGoal(None, "a person"), FaceModels())
    objective.begin("pti")
    first = [objective.side_camera().c2w for _ in range(20)]
    objective.begin("wplus")
    objective.begin("pti")
    again = [objective.side_camera().c2w for _ in range(20)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    eye = torch.stack([c[0, :3, 3] for c in first])
    yaw = torch.rad2deg(torch.atan2(eye[:, 1], eye[:, 0])).abs()
    assert yaw.max() <= 11.46 + 1e-3  # 0.2 rad, the code's side range


def test_the_illumination_term_moves_the_face_towards_the_light():
    """On the zoo's generator: stage A with the illumination term alone brings toy-light's
    estimate of the render closer to the asked-for light than where it started."""
    gen = load_generator("toy-eg3d")
    light_net = load_head_net("toy-light")
    cfg = preset_config("fast", weights=replace(preset_config("fast").weights, rec=0, identity=0))
    cfg = replace(cfg, w_noise=0.0, resolution=32)  # 32 px side views keep the test short
    target_sh = torch.tensor(named_light("left").sh, dtype=torch.float32)
    objective = FaceObjective(cfg, FaceGoal(None, None, target_sh), FaceModels(light=light_net))
    objective.cfg = replace(cfg, weights=replace(cfg.weights, latent=0.0))
    start = gen.broadcast(gen.w_avg()[None]).clone()
    ws = fit_wplus(gen, start, objective, 15, History())
    cam = head_cameras(0.0, 10.0, 64)

    def error(latent):
        with torch.no_grad():
            est = light_net(gen.render(gen.synthesis(latent), cam).rgb)[0]
        return float((est - target_sh).norm())

    assert error(ws) < 0.7 * error(start)
    assert w_spread(gen) > 0


# ---------------------------------------------------------------------------- the run
@pytest.fixture(scope="module")
def world_run(head_prior, tiny_generator_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("face") / "run"
    request = FaceRequest(
        head=203,
        yaw=20.0,
        prompt="a person with glasses",
        light=named_light("top").sh,
        config=tiny_config(head_prior, tiny_generator_folder),
    )
    return out, request, run_face(request, out)


def test_a_world_run_writes_every_output_and_scores_against_the_truth(world_run):
    out, _, summary = world_run
    for name in ("input", "result", "compare", "turntable_gif", "mesh", "latent", "generator"):
        assert (out / summary["outputs"][name]).is_file(), name
    assert Image.open(out / "compare.png").size == (5 * 32, 2 * 32)
    frame = np.asarray(Image.open(out / "turntable.gif"))
    assert frame.shape[1] == 2 * 32  # reconstruction | result
    scores = summary["metrics"]["scores"]
    for key in ("psnr", "identity_kept", "edit_views", "light_error", "light_error_truth"):
        assert np.isfinite(scores[key]), key
    assert summary["metrics"]["wanted"] == {"glasses": True}
    assert scores["edit_views_truth"] >= 7  # the judge sees the truth's glasses
    stages = [r["stage"] for r in summary["history"]]
    assert stages[0] == "wplus" and stages[-1] == "pti"
    assert {"rec", "identity", "diffusion", "illumination"} <= set(summary["history"][0])
    split = summary["timings"]
    assert split["wplus_s"] > 0 and split["pti_s"] > 0
    assert 0 < summary["metrics"]["prior_share"] < 1


def test_resume_skips_the_finished_stages_and_gives_the_same_face(world_run, tmp_path):
    out, request, first = world_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "stages" / "generator")
    for name in ("summary.json", "latent.safetensors"):
        (copy / name).unlink()
    again = run_face(request, copy, resume=True)
    assert again["resumed_phases"] == ["w", "wplus"]
    from safetensors.torch import load_file

    a = load_file(str(out / "generator" / "model.safetensors"))
    b = load_file(str(copy / "generator" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again["metrics"]["scores"]["psnr"] == first["metrics"]["scores"]["psnr"]


def test_text_only_generation_starts_from_the_mean_and_tunes_nothing(
    head_prior, tiny_generator_folder, tmp_path
):
    request = FaceRequest(
        prompt="a person with a red hat", config=tiny_config(head_prior, tiny_generator_folder)
    )
    summary = run_face(request, tmp_path / "text")
    assert "generator" not in summary["outputs"] and "input" not in summary["outputs"]
    assert {r["stage"] for r in summary["history"]} == {"wplus"}
    assert {"diffusion", "latent"} <= set(summary["history"][0])


def test_cli_bad_input_exits_2_with_one_line(capsys, tmp_path, head_prior):
    white = tmp_path / "white.png"
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(white)
    cases = [
        (["face", "--head", "203", "--sh", "1,2"], "9 SH coefficients"),
        (["face", "--prompt", "a person with wings"], "unknown word"),
        (["face", str(white), "--yaw", "0", "--pitch", "10"], "no face found"),
        (["face", "--head", "203", "--generator", "toy-id"], "not a tri-plane generator"),
        (["face", "--head", "203", "--prior", "toy-sd", "--prompt", "a person"], "head captions"),
    ]
    for argv, message in cases:
        code, err = run_main(capsys, *argv, "--out", str(tmp_path / "o"), "--quiet")
        assert code == 2 and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- baselines
def test_the_latent_direction_separates_heads_with_the_attribute_from_those_without():
    from safetensors.torch import load_file

    from dreamlift.methods.face.baselines import attribute_direction, latent_edit
    from dreamlift.zoo.registry import resolve

    stored = load_file(str(resolve("toy-eg3d") / "latents.safetensors"))
    w, seeds = stored["w"], stored["seeds"].tolist()
    direction, positive = attribute_direction(w, seeds, {"glasses": True})
    has = torch.tensor([head_params(s).glasses for s in seeds])
    score = w @ direction
    assert score[has].mean() > score[~has].mean() + 2 * score.std() / 4
    ws = w[~has][:3, None, :].expand(-1, 5, -1)
    moved = latent_edit(ws, direction, positive)
    assert torch.allclose(moved[:, 0] @ direction, positive @ direction, atol=1e-4)
    assert attribute_direction(w, seeds, {"hair_colour": "blue"}) is None  # no head has it


def test_the_light_directions_are_recovered_from_latents_of_one_head_under_several_lights():
    from dreamlift.methods.face.baselines import latent_relight, light_directions

    g = torch.Generator().manual_seed(0)
    heads, variants, w_dim = 12, 3, 16
    truth = torch.randn(9, w_dim, generator=g)
    identity = torch.randn(heads, w_dim, generator=g).repeat(variants, 1)
    sh = torch.randn(heads * variants, 9, generator=g)
    scale = 1 + 0.1 * torch.randn(heads * variants, generator=g)
    size = torch.randn(w_dim, generator=g)  # a scale direction the fit must not mistake
    w = identity + sh @ truth + scale[:, None] * size
    seeds = list(range(heads)) * variants
    found = light_directions(w, seeds, sh, scale, ridge=1e-6)
    assert torch.allclose(found, truth, atol=1e-3)
    ws = w[:1, None].expand(1, 3, w_dim)
    moved = latent_relight(ws, found, sh[0], sh[heads])  # head 0 to its variant's light
    assert torch.allclose(moved[0, 0], w[heads] - (scale[heads] - scale[0]) * size, atol=1e-3)
    # One light per head (each seed once): no direction to find.
    assert light_directions(w[:heads], seeds[:heads], sh[:heads], scale[:heads]) is None


def test_sdedit_keeps_the_image_at_low_strength_and_changes_it_at_high(head_prior):
    from dreamlift.methods.face.baselines import sdedit
    from dreamlift.priors import DiffusionPrior

    prior = DiffusionPrior.load(head_prior, device="cpu")
    image = render_world_head(203, [Pose(0.0, 10.0)], 32)["rgb"]
    low = sdedit(prior, image, "a person with glasses", strength=0.05, steps=20)
    high = sdedit(prior, image, "a person with glasses", strength=1.0, steps=20)
    assert low.shape == image.shape
    # the tiny random VAE does not reproduce images: compare with its own round trip
    with torch.no_grad():
        round_trip = prior.decode(prior.encode(image))
    assert (low - round_trip).abs().mean() < 0.85 * (high - round_trip).abs().mean()
    with pytest.raises(ConfigError, match="strength"):
        sdedit(prior, image, "a person", strength=0.0)


def test_the_face_benchmark_runs_again_a_run_older_than_a_model_it_used(tmp_path):
    """A finished benchmark run is read back only while every model it used is older than it:
    a retrained generator must not leave runs of the old one in the table."""
    import os
    from types import SimpleNamespace

    from benchmark_modules import load_benchmark

    bench = load_benchmark("face")
    models = {}
    for name in ("generator", "prior", "pose", "id", "light", "parts"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"0")
        os.utime(folder / "model.safetensors", (1_000, 1_000))
        models[name] = folder
    cfg = SimpleNamespace(
        generator=models["generator"],
        prior=models["prior"],
        pose_estimator=models["pose"],
        identity_net=models["id"],
        light_net=models["light"],
        parts_net=models["parts"],
    )
    done = tmp_path / "run" / "summary.json"
    done.parent.mkdir()
    done.write_text("{}")
    os.utime(done, (2_000, 2_000))
    assert not bench._older_than_its_models(done, cfg)
    os.utime(models["parts"] / "model.safetensors", (3_000, 3_000))  # the scorer retrained
    assert bench._older_than_its_models(done, cfg)
    os.utime(models["parts"] / "model.safetensors", (1_000, 1_000))
    os.utime(models["generator"] / "model.safetensors", (3_000, 3_000))  # retrained
    assert bench._older_than_its_models(done, cfg)
