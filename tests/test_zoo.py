"""The zoo: held-out data, registry, resumable trainer, and every recipe end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from dreamlift.errors import ModelError, TrainingError
from dreamlift.world.captions import caption, parse
from dreamlift.world.datasets import WorldDataset
from dreamlift.zoo.heldout import (
    HELDOUT_COMPOSITIONS,
    HELDOUT_PAIRS,
    mentions_heldout,
    training_dataset,
)
from dreamlift.zoo.trainer import Trainer, TrainerConfig


# ---------------------------------------------------------------- held-out data
def test_heldout_lists_are_large_enough_and_valid():
    assert len(set(HELDOUT_PAIRS)) >= 5 and len(set(HELDOUT_COMPOSITIONS)) >= 3
    for text in HELDOUT_COMPOSITIONS:
        assert mentions_heldout(text) and mentions_heldout(text + ", side view")


def test_heldout_pairs_never_in_training_descriptions():
    from dreamlift.zoo.data import RenderCache
    from dreamlift.zoo.recipes.common import training_subset

    ds = WorldDataset(training_dataset(), 3000)
    descs = [ds.describe(i)[0] for i in range(len(ds))]
    for d in descs:
        if len(d.objects) == 1:
            assert (d.objects[0].colour, d.objects[0].shape) not in HELDOUT_PAIRS
        assert caption(d) not in HELDOUT_COMPOSITIONS
    # Compositions may mention a held-out pair; the trainers' subset drops them.
    captions = [caption(d, "front") for d in descs]
    empty = torch.zeros(len(captions), 1)
    cache = RenderCache(empty, empty, empty, empty, empty, empty, empty, captions)
    kept = [captions[i] for i in training_subset(cache).tolist()]
    assert len(kept) > 0.8 * len(captions)
    for text in kept:
        d = parse(text)
        assert all((o.colour, o.shape) not in HELDOUT_PAIRS for o in d.objects)


# ---------------------------------------------------------------- registry
def test_resolve_names_the_train_command(tmp_path, monkeypatch):
    from dreamlift.priors import DiffusionPrior
    from dreamlift.zoo.registry import resolve

    monkeypatch.setenv("DREAMLIFT_ZOO_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="dreamlift zoo train toy-sd"):
        resolve("toy-sd")
    (tmp_path / "toy-sd").mkdir()
    with pytest.raises(ModelError, match="incomplete.*dreamlift zoo train toy-sd"):
        resolve("toy-sd")
    with pytest.raises(ModelError, match="dreamlift zoo train toy-sd-depth"):
        DiffusionPrior.load("toy-sd-depth")
    with pytest.raises(ModelError, match="unknown model"):
        resolve("toy-nothing")


# ---------------------------------------------------------------- trainer
class _Toy:
    """A tiny regression task whose batches and noise come from the trainer's generator."""

    kind = "test/toy"

    def __init__(self, nan_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
        self.nan_at = nan_at

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        x = torch.randn(16, 4, generator=gen)
        y = torch.stack([x.sum(1), x[:, 0] * x[:, 1]], 1) + 0.1 * torch.randn(16, 2, generator=gen)
        loss = ((self.net(x) - y) ** 2).mean()
        if self.nan_at is not None and step == self.nan_at:
            loss = loss * float("nan")
        return loss, {}


def _config(**kw) -> TrainerConfig:
    return TrainerConfig(**{"steps": 8, "warmup": 3, "checkpoint_every": 2, "log_every": 1, **kw})


def _weights(trainer: Trainer) -> dict[str, Tensor]:
    state = {f"w/{k}": v.clone() for k, v in trainer.modules["net"].state_dict().items()}
    state.update({f"ema/{k}": v.clone() for k, v in trainer.ema.shadow.items()})
    return state


def test_resume_is_bit_exact(tmp_path):
    whole = Trainer(_Toy(), _config(), tmp_path / "whole", quiet=True)
    whole.run()
    first = Trainer(_Toy(), _config(), tmp_path / "split", quiet=True)
    first.run(steps=4)
    second = Trainer(_Toy(), _config(), tmp_path / "split", quiet=True)  # a new process, say
    result = second.run()
    assert result.resumed_from == 4 and second.step == 8
    a, b = _weights(whole), _weights(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8


class _TwoPart(_Toy):
    """_Toy whose output is scaled by a second module, as a camera embedding beside a UNet."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Linear(1, 1, bias=False)
        nn.init.ones_(self.gain.weight)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net, "gain": self.gain}

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        x = torch.randn(16, 4, generator=gen)
        out = self.gain(self.net(x).unsqueeze(-1)).squeeze(-1)
        return ((out - 2.0 * x[:, :2]) ** 2).mean(), {}


def test_lr_scale_gives_a_module_its_own_rate_and_resumes_exactly(tmp_path):
    config = _config(lr_scale=(("gain", 10.0),))
    trainer = Trainer(_TwoPart(), config, tmp_path / "a", quiet=True)
    trainer.run(steps=4)
    rates = {g["lr_scale"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert rates == {1.0: pytest.approx(config.lr), 10.0: pytest.approx(10 * config.lr)}
    whole = Trainer(_TwoPart(), config, tmp_path / "b", quiet=True)
    whole.run()
    resumed = Trainer(_TwoPart(), config, tmp_path / "a", quiet=True)
    resumed.run()
    a, b = whole.modules["gain"].weight, resumed.modules["gain"].weight
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown module"):
        Trainer(_TwoPart(), _config(lr_scale=(("camera", 2.0),)), tmp_path / "c", quiet=True)


def test_the_cosine_schedule_warms_up_then_anneals_to_its_floor_and_resumes_exactly(tmp_path):
    config = _config(schedule="cosine", final_lr=0.1)
    rates = [config.lr_at(step) for step in range(config.steps + 1)]
    assert rates[:3] == pytest.approx([config.lr / 3, 2 * config.lr / 3, config.lr])
    after = rates[config.warmup :]
    assert all(a > b for a, b in zip(after, after[1:], strict=False))  # falls every step
    assert rates[-1] == pytest.approx(0.1 * config.lr)  # the floor, once the schedule is done
    longer = _config(steps=13, schedule="cosine", final_lr=0.1)  # 10 steps after warm-up
    assert longer.lr_at(3 + 5) == pytest.approx(0.55 * longer.lr)  # halfway: half the drop
    # The constant schedule is the one every earlier training ran.
    constant = _config()
    assert [constant.lr_at(s) for s in range(6)] == [
        constant.lr * min(1.0, (s + 1) / constant.warmup) for s in range(6)
    ]
    with pytest.raises(ValueError, match="unknown lr schedule"):
        _config(schedule="linear")
    whole = Trainer(_Toy(), config, tmp_path / "whole", quiet=True)
    whole.run()
    Trainer(_Toy(), config, tmp_path / "split", quiet=True).run(steps=5)
    resumed = Trainer(_Toy(), config, tmp_path / "split", quiet=True)
    resumed.run()
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    logged = [json.loads(line)["lr"] for line in (tmp_path / "split" / "metrics.jsonl").open()]
    assert logged == rates[: config.steps]


def test_nan_loss_keeps_the_last_checkpoint(tmp_path):
    from dreamlift.io.checkpoint import load_checkpoint

    good = Trainer(_Toy(), _config(), tmp_path / "good", quiet=True)
    good.run(steps=4)
    bad = Trainer(_Toy(nan_at=5), _config(), tmp_path / "bad", quiet=True)
    with pytest.raises(TrainingError, match="non-finite loss.*step 4 is kept"):
        bad.run()
    ckpt = load_checkpoint(tmp_path / "bad" / "checkpoint.safetensors", "test/toy")
    assert ckpt.step == 4
    reference = good.modules["net"].state_dict()
    assert all(torch.equal(ckpt.field[f"net.{k}"], v) for k, v in reference.items())


def test_sigint_checkpoints_at_the_end_of_the_step(tmp_path):
    import os
    import signal

    from dreamlift.loop import Interrupted

    class _Stopped(_Toy):
        def loss(self, step, gen):
            if step == 2:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of step 2
            return super().loss(step, gen)

    stopped = Trainer(_Stopped(), _config(checkpoint_every=100), tmp_path, quiet=True)
    with pytest.raises(Interrupted, match="stopped at step 3"):
        stopped.run()
    resumed = Trainer(_Toy(), _config(), tmp_path, quiet=True)
    assert resumed.restore() and resumed.step == 3


def test_cli_list_and_export_without_checkpoint(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dreamlift.cli.zoo import zoo_app

    monkeypatch.setenv("DREAMLIFT_ZOO_DIR", str(tmp_path / "models"))
    result = CliRunner().invoke(zoo_app, ["list"])
    assert result.exit_code == 0 and "toy-clip" in result.output
    result = CliRunner().invoke(
        zoo_app, ["train", "toy-clip", "--export-only", "--workdir", str(tmp_path / "w")]
    )
    assert isinstance(result.exception, TrainingError) and "no checkpoint" in str(result.exception)
    result = CliRunner().invoke(zoo_app, ["train", "toy-sd", "--eval-only", "--no-eval"])
    assert "--eval-only measures only" in str(result.exception)


# ---------------------------------------------------------------- recipes end to end
@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """Every stage, tiny, 2 steps: toy-clip first so toy-sd's evaluation can use it."""
    from dreamlift.zoo.recipes import run_stage

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("zoo")
    root, work = base / "models", base / "work"
    try:
        for model, stage in (
            ("toy-clip", "clip"),
            ("toy-sd", "vae"),
            ("toy-sd", "unet"),
            ("toy-sd-depth", "unet"),
            ("toy-sd-camera", "unet"),
        ):
            report = run_stage(model, stage, work / model, size="tiny", root=root, quiet=True)
            assert report.steps == 2
    finally:
        torch.set_num_threads(threads)
    return root


def test_export_without_evaluation_clears_stale_figures_and_keeps_training_time(zoo):
    from dreamlift.zoo.recipes import run_stage
    from dreamlift.zoo.recipes.common import read_zoo_json

    folder, work = zoo / "toy-sd-depth", zoo.parent / "work" / "toy-sd-depth"
    trained = read_zoo_json(folder)["stages"]["unet"]
    assert trained["figures"]  # measured at the end of training
    run_stage(
        "toy-sd-depth",
        "unet",
        work,
        size="tiny",
        root=zoo,
        export_only=True,
        evaluate=False,
        quiet=True,
    )
    exported = read_zoo_json(folder)
    assert exported["stages"]["unet"]["figures"] == {}
    assert not any(k.startswith("unet.") for k in exported["figures"])
    assert exported["stages"]["unet"]["seconds_this_run"] == trained["seconds_this_run"]
    assert exported["stages"]["unet"]["steps"] == 2


def test_toy_sd_loads_with_stock_pipeline_and_prior(zoo):
    from diffusers import StableDiffusionPipeline

    from dreamlift.priors import DiffusionPrior

    folder = zoo / "toy-sd"
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a red cube, side view",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    assert pipe.scheduler.config.steps_offset == 1 and not pipe.scheduler.config.clip_sample
    prior = DiffusionPrior.load(folder, device="cpu")
    assert prior.latent_size == 16 and not prior.depth_conditioned
    assert not prior.camera_conditioned
    camera_prior = DiffusionPrior.load(zoo / "toy-sd-camera", device="cpu")
    assert camera_prior.camera_conditioned
    # It shares toy-sd's prompt space: the same text encoder weights.
    text = prior.embed_text("a red cube").cond
    assert torch.equal(camera_prior.embed_text("a red cube").cond, text)
    assert prior.encode(torch.rand(1, 3, 64, 64)).shape == (1, 4, 16, 16)


def _stock_depth_sample(folder: Path, prompt: str) -> Tensor:
    """Two steps of stock StableDiffusionDepth2ImgPipeline from ``folder`` (1, 3, 64, 64)."""
    from diffusers import StableDiffusionDepth2ImgPipeline

    pipe = StableDiffusionDepth2ImgPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        prompt,
        image=torch.rand(1, 3, 64, 64),
        depth_map=torch.rand(1, 64, 64),
        strength=1.0,
        num_inference_steps=2,
        output_type="pt",
    ).images


def test_toy_sd_depth_loads_with_depth_pipeline(zoo):
    from dreamlift.priors import DiffusionPrior

    folder = zoo / "toy-sd-depth"
    out = _stock_depth_sample(folder, "a red cube, side view")
    assert out.shape == (1, 3, 64, 64)
    assert DiffusionPrior.load(folder, device="cpu").depth_conditioned


def test_depth_refine_stage_trains_on_from_the_unet_stages_export(zoo, tmp_path):
    import shutil

    from diffusers import UNet2DConditionModel

    from dreamlift.zoo.recipes import make_recipe, run_stage
    from dreamlift.zoo.recipes.common import read_zoo_json

    root = tmp_path / "models"
    for name in ("toy-sd", "toy-sd-depth", "toy-clip"):
        shutil.copytree(zoo / name, root / name)
    unet_dir = root / "toy-sd-depth" / "unet"
    exported = UNet2DConditionModel.from_pretrained(unet_dir).state_dict()
    work = tmp_path / "work" / "toy-sd-depth"
    start = make_recipe("toy-sd-depth", "refine", work / "refine", size="tiny", root=root)
    assert all(torch.equal(start.unet.state_dict()[k], v) for k, v in exported.items())

    report = run_stage("toy-sd-depth", "refine", work, size="tiny", root=root, quiet=True)
    assert report.steps == 2
    assert read_zoo_json(root / "toy-sd-depth")["training_steps"] == {"unet": 2, "refine": 2}
    refined = UNet2DConditionModel.from_pretrained(unet_dir).state_dict()
    assert any(not torch.equal(refined[k], v) for k, v in exported.items())

    shutil.rmtree(unet_dir)  # nothing to refine: says which stage to run first
    with pytest.raises(ModelError, match="--stage unet"):
        make_recipe("toy-sd-depth", "refine", work / "again", size="tiny", root=root)


def test_toy_clip_loads_and_zero_shot_runs(zoo):
    from transformers import CLIPModel, CLIPTokenizer

    from dreamlift.zoo.recipes.clip import zero_shot

    model = CLIPModel.from_pretrained(zoo / "toy-clip", local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(zoo / "toy-clip")
    for attribute in ("shape", "colour", "view"):
        assert len(zero_shot(model, tokenizer, torch.rand(3, 3, 64, 64), attribute)) == 3


def test_zoo_json_and_listing(zoo, monkeypatch):
    from dreamlift.zoo.registry import list_models, resolve

    monkeypatch.setenv("DREAMLIFT_ZOO_DIR", str(zoo))
    rows = {r.name: r for r in list_models()}
    trained_here = ("toy-sd", "toy-sd-depth", "toy-sd-camera", "toy-clip")  # by the fixture
    assert all(
        rows[n].trained and rows[n].parameters > 0 and rows[n].size_bytes > 0 for n in trained_here
    )
    assert not any(r.trained for n, r in rows.items() if n not in trained_here)
    assert rows["toy-sd"].training_steps == {"vae": 2, "unet": 2}
    assert "vae.psnr_db" in rows["toy-sd"].figures
    assert "clip.shape_accuracy" in rows["toy-clip"].figures
    assert "unet.shape_colour_agreement" in rows["toy-sd"].figures
    assert 0.0 <= rows["toy-sd-camera"].figures["unet.yaw_agreement"] <= 1.0
    assert resolve("toy-clip") == zoo / "toy-clip"


def _vae_weights(folder: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "vae" / "diffusion_pytorch_model.safetensors"))


def test_decoder_fine_tune_keeps_the_encoder_and_reaches_the_siblings(zoo, tmp_path):
    """The decoder stage changes only the decoder, so every latent (and every UNet trained on
    them) stays valid; the models carrying toy-sd's VAE get the new one, a model with another
    encoder or a decoder of its own (toy-sd-heads') keeps its own."""
    import shutil

    from dreamlift.zoo.recipes import run_stage
    from dreamlift.zoo.recipes.common import read_zoo_json

    root = tmp_path / "models"
    shutil.copytree(zoo, root)
    stranger = _vae_weights(root / "toy-sd-depth")
    stranger["encoder.conv_in.bias"] += 1.0  # pretend toy-sd-depth was trained on another VAE
    from safetensors.torch import save_file

    save_file(stranger, str(root / "toy-sd-depth" / "vae" / "diffusion_pytorch_model.safetensors"))
    shutil.copytree(root / "toy-sd" / "vae", root / "toy-sd-heads" / "vae")
    own_decoder = _vae_weights(root / "toy-sd-heads")
    own_decoder["decoder.conv_out.bias"] += 0.5  # a decoder fine-tuned on heads
    heads_file = root / "toy-sd-heads" / "vae" / "diffusion_pytorch_model.safetensors"
    save_file(own_decoder, str(heads_file))
    before = _vae_weights(root / "toy-sd")

    report = run_stage("toy-sd", "decoder", tmp_path / "work", size="tiny", root=root, quiet=True)

    after = _vae_weights(root / "toy-sd")
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    trained = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    camera = _vae_weights(root / "toy-sd-camera")
    assert all(torch.equal(camera[k], after[k]) for k in after)
    depth = _vae_weights(root / "toy-sd-depth")
    assert all(torch.equal(depth[k], stranger[k]) for k in stranger)
    heads = _vae_weights(root / "toy-sd-heads")
    assert all(torch.equal(heads[k], own_decoder[k]) for k in own_decoder)
    record = read_zoo_json(root / "toy-sd")
    assert record["training_steps"]["decoder"] == report.steps == 2
    assert "decoder.colour_shift_worst" in record["figures"]

    # The camera model's figures were measured through the old decoder: re-measure as it is.
    stale = read_zoo_json(root / "toy-sd-camera")["stages"]["unet"]
    stale_figures = {**stale["figures"], "yaw_agreement": -1.0}
    from dreamlift.zoo.recipes.common import record_stage

    record_stage(root / "toy-sd-camera", "toy-sd-camera", "unet", figures=stale_figures)
    again = run_stage(
        "toy-sd-camera", "unet", tmp_path / "cam", size="tiny", root=root, evaluate_only=True,
        quiet=True,
    )  # fmt: skip
    fresh = read_zoo_json(root / "toy-sd-camera")["stages"]["unet"]
    assert again.steps == fresh["steps"] == stale["steps"] == 2  # no training happened
    assert 0.0 <= fresh["figures"]["yaw_agreement"] <= 1.0 and fresh["updated"]
    assert not (tmp_path / "cam").exists()  # no checkpoint was needed or written


def test_scene_decoder_trains_on_scenes_keeps_the_encoder_and_measures_scenes(zoo, tmp_path):
    """The scene stage is the decoder fine-tune again, from the exported VAE, on a mix that
    is half ground scenes; the encoder (so every UNet's latents) is untouched, and the
    record carries the scene figures next to the standard ones."""
    import shutil

    from dreamlift.world.datasets import WorldDataset
    from dreamlift.zoo.recipes import make_recipe, run_stage
    from dreamlift.zoo.recipes.common import read_zoo_json

    root = tmp_path / "models"
    shutil.copytree(zoo, root)
    recipe = make_recipe("toy-sd", "scene-decoder", tmp_path / "w" / "x", "tiny", root)
    data = WorldDataset(recipe.config.dataset, 200)
    on_ground = sum(data.describe(i)[1] for i in range(len(data)))
    assert 70 <= on_ground <= 130  # half of the mix, drawn
    assert recipe.stage == "scene-decoder" and recipe.kind == "zoo/toy-sd/scene-decoder"

    before = _vae_weights(root / "toy-sd")
    report = run_stage(
        "toy-sd", "scene-decoder", tmp_path / "work", size="tiny", root=root, quiet=True
    )
    after = _vae_weights(root / "toy-sd")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    record = read_zoo_json(root / "toy-sd")
    assert record["training_steps"]["scene-decoder"] == report.steps == 2
    figures = record["stages"]["scene-decoder"]["figures"]
    assert figures["scenes_psnr_db"] > 0 and figures["psnr_db"] > 0


def test_colour_shift_by_colour_names_the_hue_that_drifted():
    from dreamlift.zoo.recipes.vae import colour_shift_by_colour

    captions = [
        "a purple cube",
        "a green sphere",
        "a purple cone",
        "a red cube next to a cyan cube",
    ]
    target = torch.zeros(4, 3, 8, 8)
    mask = torch.zeros(4, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    recon = target.clone()
    recon[0, 1] += 0.2  # the purple objects come back greener, nothing else moves
    recon[2, 1] += 0.1
    recon[3] += 0.5  # a composition does not count toward any colour
    shifts = colour_shift_by_colour(recon, target, mask, captions)
    assert shifts == pytest.approx({"purple": 0.15, "green": 0.0})


# ------------------------------------------------------------- the shipped models


def _shipped(name: str) -> Path:
    from dreamlift.zoo.registry import PACKAGE_MODELS, entry

    folder = PACKAGE_MODELS / entry(name).name
    if not all((folder / f).is_file() for f in entry(name).required):
        pytest.skip(f"{name} is not shipped in this checkout")
    return folder


def test_shipped_toy_sd_samples_the_same_in_the_stock_pipeline():
    """Interop: the committed toy-sd folder is an ordinary SD checkpoint for diffusers."""
    from diffusers import StableDiffusionPipeline

    from dreamlift.priors import DiffusionPrior

    folder = _shipped("toy-sd")
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    prior = DiffusionPrior.load(folder, device="cpu")
    prompt = "a red cube, side view"
    latents = prior.initial_latents(1, torch.Generator().manual_seed(7))
    stock = pipe(
        prompt, num_inference_steps=10, guidance_scale=7.5, latents=latents.clone(),
        output_type="latent",
    ).images  # fmt: skip
    ours = prior.sample(prior.embed_text(prompt), num_steps=10, guidance_scale=7.5, latents=latents)
    torch.testing.assert_close(ours, stock, atol=1e-4, rtol=1e-4)


def test_shipped_toy_sd_depth_loads_in_the_stock_depth_pipeline():
    folder = _shipped("toy-sd-depth")
    out = _stock_depth_sample(folder, "a red cube")
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()


def test_shipped_toy_sd_camera_draws_the_yaw_it_is_told():
    """Cubes and pyramids told azimuth 0 look face-on and told 45 corner-on: their silhouettes
    are nearer the world's render from their own camera than from the camera 45 degrees on."""
    from dreamlift.zoo.recipes.camera import yaw_agreement
    from dreamlift.zoo.recipes.sd import SDConfig

    folder = _shipped("toy-sd-camera")
    assert yaw_agreement(folder, SDConfig(eval_steps=20), seed=3) >= 0.85
