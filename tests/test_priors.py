"""DiffusionPrior on tiny random pipelines of the real SD architectures.

Every pipeline is written by ``dreamlift.zoo.tiny`` and loaded through ``DiffusionPrior.load``,
the same code path real SD 1.x / 2.x / 2-depth weights take.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    StableDiffusionDepth2ImgPipeline,
    StableDiffusionPipeline,
)

from dreamlift.errors import ModelError  # noqa: E402
from dreamlift.priors import (  # noqa: E402
    PREFIX_TEMPLATE,
    DiffusionPrior,
    EpsParts,
    NoiseSchedule,
    TextEmbeddings,
)
from dreamlift.priors import camera as camera_module  # noqa: E402
from dreamlift.priors.camera import (  # noqa: E402
    CAMERA_FOLDER,
    CameraEmbedding,
    CameraEmbeddingConfig,
)
from dreamlift.priors.loading import resolve_dtype  # noqa: E402
from dreamlift.world.captions import parse  # noqa: E402
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402
from dreamlift.zoo.tokenizer import (  # noqa: E402
    build_tokenizer,
    caption_words,
    reuse_or_build_tokenizer,
)

LATENT = 8  # latent side: 16 x 16 images through a 2-level VAE
PROMPT = "a red cube, front view"
# Narrow UNet for speed; a shrunken output conv makes the random eps smooth enough for DDIM
# inversion to close (see TinySDConfig).
CONFIG = TinySDConfig(unet_channels=(16, 32, 32), unet_out_scale=0.1)


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_sd")
    return {
        "sd": save_tiny_sd(root / "sd", sample_size=LATENT, config=CONFIG, seed=0),
        "v": save_tiny_sd(
            root / "v", sample_size=LATENT, config=CONFIG, prediction_type="v_prediction", seed=1
        ),
        "depth": save_tiny_sd(root / "depth", sample_size=LATENT, config=CONFIG, depth=True),
    }


@pytest.fixture(scope="session")
def prior(folders) -> DiffusionPrior:
    return DiffusionPrior.load(folders["sd"], device="cpu")


@pytest.fixture(scope="session")
def depth_prior(folders) -> DiffusionPrior:
    return DiffusionPrior.load(folders["depth"], device="cpu")


def _latents(seed: int, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, LATENT, LATENT, generator=g)


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_maps_every_caption_word_to_one_token(tmp_path):
    words = caption_words()
    assert "," in words and "." in words
    tok = build_tokenizer(words, tmp_path, max_length=20)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    ids = set()
    for word in words:
        enc = tok(word).input_ids
        assert len(enc) == 3 and enc[0] == bos and enc[2] == eos, (word, enc)
        assert enc[1] != tok.unk_token_id
        ids.add(enc[1])
    assert len(ids) == len(words)
    # The saved folder reloads as CLIP's tokenizer with the same ids and max length.
    again = type(tok).from_pretrained(tmp_path)
    caption = "a red cube with a blue sphere on top, side view."
    enc = again(caption, padding="max_length", max_length=again.model_max_length).input_ids
    assert again.model_max_length == 20 and len(enc) == 20
    tokens = again.convert_ids_to_tokens(enc)[1 : 1 + 13]
    assert [t.removesuffix("</w>") for t in tokens] == caption.replace(",", " ,").replace(
        ".", " ."
    ).split()
    decoded = again.decode(enc, skip_special_tokens=True).strip()
    assert decoded.replace(" ,", ",").replace(" .", ".") == caption


def test_tokenizer_files_are_the_same_in_every_process(tmp_path):
    """The ``tokenizers`` trainer broke ties in per-process hash order, so word ids changed
    between runs; two fresh interpreters must now write identical files."""
    script = (
        "import sys; from dreamlift.zoo.tokenizer import build_tokenizer, caption_words; "
        "build_tokenizer(caption_words(), sys.argv[1], 20)"
    )
    for name in ("one", "two"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], check=True)
    for file in ("vocab.json", "merges.txt"):
        assert (tmp_path / "one" / file).read_bytes() == (tmp_path / "two" / file).read_bytes()


def test_a_resumed_trainer_keeps_the_word_ids_of_its_folder(tmp_path):
    words = ["red", "cube"]
    older = build_tokenizer([*words, "cubes", "rest"], tmp_path / "run", max_length=8)
    fresh = build_tokenizer(words, tmp_path / "fresh", max_length=8)
    assert older("red").input_ids != fresh("red").input_ids  # the two builds disagree
    kept = reuse_or_build_tokenizer(words, tmp_path / "run", max_length=8)
    assert kept("red cube").input_ids == older("red cube").input_ids
    grown = reuse_or_build_tokenizer([*words, "torus"], tmp_path / "run", max_length=8)
    assert len(grown("torus").input_ids) == 3 and grown("torus").input_ids[1] != grown.unk_token_id


# ---------------------------------------------------------------- loading and basics


def test_loads_the_tiny_folder_with_the_right_shapes_and_dtypes(prior):
    assert prior.device.type == "cpu" and prior.dtype == torch.float32
    assert not prior.depth_conditioned and prior.prediction_type == "epsilon"
    assert prior.latent_size == LATENT and prior.image_size == 2 * LATENT
    assert prior.alphas_cumprod.dtype == torch.float32 and prior.num_train_timesteps == 1000
    assert all(not p.requires_grad for p in prior.unet.parameters())
    text = prior.embed_text([PROMPT, "a blue cone, back view"], negative="a green torus")
    assert text.cond.shape == text.uncond.shape == (2, 20, 32)
    assert not torch.allclose(text.cond[0], text.cond[1])
    assert torch.equal(text.uncond[0], text.uncond[1])
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    z = prior.encode(images)
    assert z.shape == (2, 4, LATENT, LATENT) and z.dtype == torch.float32
    z.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    out = prior.decode(z.detach())
    assert out.shape == (2, 3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert resolve_dtype(None, torch.device("cuda")) == torch.float16


def test_predict_eps_batches_cfg_and_equals_the_manual_combination(prior):
    z = _latents(0, batch=2)
    t = torch.tensor([700, 300])
    text = prior.embed_text(PROMPT)  # batch 1 broadcasts over the latents
    calls = []
    handle = prior.unet.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        parts = prior.predict_eps(z, t, text, 7.5, return_parts=True)
    finally:
        handle.remove()
    assert calls == [4]  # both branches in one UNet call
    assert isinstance(parts, EpsParts)
    cond = prior.unet_eps(z, t, text.cond)
    uncond = prior.unet_eps(z, t, text.uncond)
    torch.testing.assert_close(parts.cond, cond, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(parts.uncond, uncond, atol=1e-5, rtol=1e-4)
    manual = uncond + 7.5 * (cond - uncond)
    torch.testing.assert_close(prior.predict_eps(z, t, text, 7.5), manual, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(prior.predict_eps(z, t, text, 1.0), cond, atol=1e-5, rtol=1e-4)


def test_v_prediction_output_is_converted_to_eps(folders):
    vp = DiffusionPrior.load(folders["v"], device="cpu")
    assert vp.prediction_type == "v_prediction"
    # The analytic relation: v = sqrt(a) eps - sqrt(1-a) x0 gives back eps from (v, x_t).
    x0, eps, t = _latents(1), _latents(2), 400
    a = vp.alphas_cumprod[t]
    x_t = vp.add_noise(x0, eps, t)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(vp.schedule.eps_from_output(v, x_t, t), eps, atol=1e-5, rtol=1e-4)
    # And predict_eps applies it to the UNet's raw output.
    text = vp.embed_text(PROMPT)
    raw = vp.unet(x_t, t, encoder_hidden_states=text.cond).sample
    expected = a.sqrt() * raw + (1 - a).sqrt() * x_t
    torch.testing.assert_close(vp.predict_eps(x_t, t, text, 1.0), expected, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- schedule and DDIM


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_match_diffusers_ddim(spacing):
    config = {
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "steps_offset": 1,
        "set_alpha_to_one": False,
        "timestep_spacing": spacing,
        "skip_prk_steps": True,  # a PNDM key: ignored
    }
    schedule = NoiseSchedule.from_scheduler_config(config, torch.device("cpu"))
    reference = DDIMScheduler(**{k: v for k, v in config.items() if k != "skip_prk_steps"})
    torch.testing.assert_close(schedule.alphas_cumprod, reference.alphas_cumprod)
    for n in (7, 10, 50):
        reference.set_timesteps(n)
        assert torch.equal(schedule.timesteps(n), reference.timesteps)


def test_ddim_step_matches_diffusers_and_inverts_exactly(prior):
    reference = DDIMScheduler.from_pretrained(prior.folder, subfolder="scheduler")
    reference.set_timesteps(10)
    z, eps = _latents(3), _latents(4)
    for t in (901, 1):  # the last step lands on the clean end (t = -99)
        prev = prior.previous_timestep(t, 10)
        expected = reference.step(eps, t, z).prev_sample
        torch.testing.assert_close(prior.ddim_step(z, t, prev, eps), expected, atol=1e-5, rtol=1e-4)
    for t, t_next in ((-19, 1), (1, 21), (481, 501), (961, 981), (-1, 999)):
        up = prior.ddim_step(z, t, t_next, eps)
        back = prior.ddim_step(up, t_next, t, eps)
        torch.testing.assert_close(back, z, atol=1e-4, rtol=1e-4)
    assert float(prior.schedule.alpha(-1)) == pytest.approx(float(prior.alphas_cumprod[0]))
    half = prior.ddim_step(z.half(), 501, 481, eps.half())
    assert half.dtype == torch.float16


def test_ddim_inversion_reconstructs_at_guidance_one(prior):
    z0 = _latents(5)
    text = prior.embed_text(PROMPT)
    trajectory = prior.ddim_invert(z0, text, num_steps=20)
    assert len(trajectory) == 21 and torch.equal(trajectory[0], z0)
    recon = prior.sample(text, num_steps=20, guidance_scale=1.0, latents=trajectory[-1])
    assert float((recon - z0).norm() / z0.norm()) < 0.1


def test_null_text_inversion_beats_plain_inversion_at_cfg_7_5(prior):
    z0 = _latents(6)
    text = prior.embed_text(PROMPT)
    n = 10
    plain = prior.sample(text, n, 7.5, latents=prior.ddim_invert(z0, text, n)[-1])
    z_t, phis = prior.null_text_inversion(z0, text, num_steps=n, inner_steps=10)
    assert len(phis) == n and phis[0].shape == text.uncond.shape
    assert not torch.equal(phis[0], phis[-1])  # one embedding per step, none aliased
    seen = []
    nti = prior.sample(
        text, n, 7.5, latents=z_t, null_embeddings=phis, callback=lambda i, t, z: seen.append(i)
    )
    assert seen == list(range(n))
    plain_mse, nti_mse = F.mse_loss(plain, z0), F.mse_loss(nti, z0)
    assert nti_mse < 0.5 * plain_mse, (float(nti_mse), float(plain_mse))


# ---------------------------------------------------------------- depth


def test_depth_preparation_matches_the_diffusers_pipeline(folders, depth_prior):
    pipe = StableDiffusionDepth2ImgPipeline.from_pretrained(folders["depth"], local_files_only=True)
    depth = torch.rand(2, 1, 16, 16) * 3.0 + 0.5
    image = torch.rand(2, 3, 16, 16)
    expected = pipe.prepare_depth_map(image, depth[:, 0], 2, False, torch.float32, "cpu")
    ours = depth_prior.prepare_depth(depth)
    assert ours.shape == (2, 1, LATENT, LATENT)
    torch.testing.assert_close(ours, expected)
    assert float(ours.amin()) == -1.0 and float(ours.amax()) == pytest.approx(1.0)


def test_depth_conditioning_reaches_both_branches(depth_prior, prior):
    assert depth_prior.depth_conditioned
    z, text = _latents(7), depth_prior.embed_text(PROMPT)
    d1 = torch.rand(1, 1, 16, 16)
    d2 = torch.rand(1, 1, 16, 16)
    parts = depth_prior.predict_eps(z, 500, text, 7.5, depth=d1, return_parts=True)
    cond = depth_prior.unet_eps(z, 500, text.cond, depth=d1)
    uncond = depth_prior.unet_eps(z, 500, text.uncond, depth=d1)
    torch.testing.assert_close(parts.guided, uncond + 7.5 * (cond - uncond), atol=1e-5, rtol=1e-4)
    other = depth_prior.unet_eps(z, 500, text.uncond, depth=d2)
    assert not torch.allclose(uncond, other)
    recon = depth_prior.sample(text, 3, 7.5, latents=z, depth=d1)
    assert recon.shape == z.shape
    with pytest.raises(ModelError, match="depth"):
        depth_prior.predict_eps(z, 500, text, 7.5)
    with pytest.raises(ModelError, match="depth"):
        prior.predict_eps(z, 500, text, 7.5, depth=d1)


# ---------------------------------------------------------------- features


def test_capture_records_named_blocks_per_unet_call(prior):
    layers = ["down_blocks.0", "up_blocks.1", "up_blocks.2.attentions.0"]
    z, text = _latents(8, batch=2), prior.embed_text(PROMPT)
    with prior.capture(layers) as cap:
        prior.predict_eps(z, 500, text, 7.5)
        prior.predict_eps(z, 400, text, 1.0)
    assert len(cap.calls) == 2 and set(cap.calls[0]) == set(layers)
    assert cap.calls[0]["down_blocks.0"].shape == (4, 16, LATENT // 2, LATENT // 2)
    assert cap.calls[0]["up_blocks.1"].shape == (4, 32, LATENT, LATENT)
    assert cap.calls[0]["up_blocks.2.attentions.0"].shape == (4, 16, LATENT, LATENT)
    assert cap.last["up_blocks.1"].shape == (2, 32, LATENT, LATENT)  # cond-only call
    prior.predict_eps(z, 300, text, 7.5)
    assert len(cap.calls) == 2  # hooks are gone after the block
    with pytest.raises(ModelError, match="unknown UNet layer"):
        prior.capture(["up_blocks.9"])


def test_guided_step_lowers_the_feature_energy(prior):
    layer = "up_blocks.2"
    text = prior.embed_text(PROMPT)
    z, z_goal = _latents(9), _latents(10)
    t, t_next = 501, 401
    goal = prior.features(z_goal, t, text, [layer])[layer]
    with torch.no_grad():
        goal_next_latents = prior.ddim_step(z_goal, t, t_next, prior.predict_eps(z_goal, t, text))
    goal_next = prior.features(goal_next_latents, t_next, text, [layer])[layer]

    def energy(features: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        return (features[layer] - goal).abs().mean()

    def energy_at(latents: torch.Tensor, timestep: int, target: torch.Tensor) -> float:
        features = prior.features(latents, timestep, text, [layer])[layer]
        return float((features - target).abs().mean())

    with torch.no_grad():
        unguided = prior.ddim_step(z, t, t_next, prior.predict_eps(z, t, text, 7.5))
    for mode in ("latent", "eps"):
        step = prior.guided_step(
            z, t, t_next, text, 7.5, energy, [layer], weight=10.0, opt_steps=3, mode=mode
        )
        assert step.latents.shape == z.shape
        assert energy_at(step.latents, t_next, goal_next) < energy_at(unguided, t_next, goal_next)
        if mode == "latent":
            assert step.energies[-1] < step.energies[0]
            assert energy_at(step.guided_latents, t, goal) < energy_at(z, t, goal)


# ---------------------------------------------------------------- stock pipeline agreement


def test_stock_pipeline_loads_the_folder_and_samples_the_same(folders, prior):
    pipe = StableDiffusionPipeline.from_pretrained(
        folders["sd"], local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    latents = prior.initial_latents(1, torch.Generator().manual_seed(42))
    stock = pipe(
        PROMPT,
        num_inference_steps=10,
        guidance_scale=7.5,
        latents=latents.clone(),
        output_type="latent",
    ).images
    ours = prior.sample(prior.embed_text(PROMPT), num_steps=10, guidance_scale=7.5, latents=latents)
    torch.testing.assert_close(ours, stock, atol=1e-4, rtol=1e-4)
    image = pipe.vae.decode(stock / pipe.vae.config.scaling_factor).sample
    torch.testing.assert_close(prior.decode(ours), (image / 2 + 0.5).clamp(0, 1), atol=1e-4, rtol=0)


def test_sampling_from_a_middle_step_continues_the_chain(prior):
    """``start=k`` (SDEdit's entry point) picks the chain up where step k−1 left it."""
    text = prior.embed_text(PROMPT)
    latents = prior.initial_latents(1, torch.Generator().manual_seed(3))
    seen: dict[int, torch.Tensor] = {}
    full = prior.sample(
        text, 10, 7.5, latents=latents, callback=lambda i, t, z: seen.setdefault(i, z.clone())
    )
    rest = prior.sample(text, 10, 7.5, latents=seen[3], start=4)
    assert torch.equal(rest, full)


# ---------------------------------------------------------------- errors


def _one_line_model_error(path, match: str) -> ModelError:
    with pytest.raises(ModelError, match=match) as info:
        DiffusionPrior.load(path, device="cpu")
    assert "\n" not in str(info.value)
    return info.value


def test_missing_or_malformed_folders_raise_one_line_model_errors(folders, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    assert str(missing) in str(_one_line_model_error(missing, "not found"))
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_model_error(empty, "no model_index.json")
    (empty / "model_index.json").write_text("{not json")
    _one_line_model_error(empty, "unreadable model_index.json")

    broken = tmp_path / "broken"
    shutil.copytree(folders["sd"], broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(broken / "unet" / "diffusion_pytorch_model.bin")
    err = _one_line_model_error(broken, "non-safetensors")
    assert str(broken / "unet") in str(err)
    (broken / "unet" / "diffusion_pytorch_model.bin").unlink()
    _one_line_model_error(broken, "missing weights")

    # A zoo name with no registry installed points at the command that makes the model.
    monkeypatch.setitem(sys.modules, "dreamlift.zoo.registry", None)
    _one_line_model_error("toy-sd", "toy-sd")
    with pytest.raises(ModelError) as info:
        DiffusionPrior.load("toy-sd")
    assert "dreamlift zoo train toy-sd" in str(info.value)


def _copy(folders, tmp_path, name: str) -> Path:
    return Path(shutil.copytree(folders["sd"], tmp_path / name))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_malformed_component_files_raise_one_line_model_errors(folders, tmp_path):
    """What diffusers, transformers and safetensors raise for a broken folder (OSError,
    ValueError, SafetensorError, transformers' size-mismatch RuntimeError) is a user error."""
    unet = _copy(folders, tmp_path, "unet_weights")
    _truncate(unet / "unet" / "diffusion_pytorch_model.safetensors")  # diffusers: OSError
    assert str(unet / "unet") in str(_one_line_model_error(unet, "cannot load unet"))
    text = _copy(folders, tmp_path, "text_weights")
    _truncate(text / "text_encoder" / "model.safetensors")  # transformers: SafetensorError
    _one_line_model_error(text, "cannot load text_encoder")
    config = _copy(folders, tmp_path, "unet_config")
    (config / "unet" / "config.json").write_text("{not json")
    _one_line_model_error(config, "unreadable .*config.json")
    listed = _copy(folders, tmp_path, "text_config")
    (listed / "text_encoder" / "config.json").write_text("[1, 2]")  # transformers: TypeError
    _one_line_model_error(listed, "not a JSON object")
    wider = _copy(folders, tmp_path, "unet_shapes")  # diffusers: ValueError
    cfg = json.loads((wider / "unet" / "config.json").read_text())
    _edit_json(
        wider / "unet" / "config.json",
        block_out_channels=[2 * c for c in cfg["block_out_channels"]],
    )
    _one_line_model_error(wider, "cannot load unet")
    mismatch = _copy(folders, tmp_path, "text_shapes")  # transformers: RuntimeError
    _edit_json(mismatch / "text_encoder" / "config.json", hidden_size=64, intermediate_size=256)
    _one_line_model_error(mismatch, "do not fit its config.json")
    tokenizer = _copy(folders, tmp_path, "tokenizer")
    (tokenizer / "tokenizer" / "tokenizer_config.json").write_text("{not json")
    _one_line_model_error(tokenizer, "unreadable .*tokenizer_config.json")


def _component_class(folder: Path, name: str) -> type:
    library, class_name = json.loads((folder / "model_index.json").read_text())[name]
    return getattr(importlib.import_module(library), class_name)


@pytest.mark.parametrize("component", ["unet", "text_encoder", "tokenizer"])
@pytest.mark.parametrize(
    "error",
    [
        ZeroDivisionError("a bug"),
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        TypeError("unexpected keyword argument"),
    ],
    ids=["bug", "cpu-oom", "cuda-oom", "type-error"],
)
def test_bugs_and_out_of_memory_while_loading_propagate_unchanged(
    folders, monkeypatch, component, error
):
    def fail(cls, *args, **kwargs):
        raise error

    cls = _component_class(folders["sd"], component)
    monkeypatch.setattr(cls, "from_pretrained", classmethod(fail))
    with pytest.raises(type(error)) as info:
        DiffusionPrior.load(folders["sd"], device="cpu")
    assert info.value is error and not isinstance(info.value, ModelError)


def _camera_folder(folders, tmp_path) -> Path:
    folder = _copy(folders, tmp_path, "camera")
    width = json.loads((folder / "text_encoder" / "config.json").read_text())["hidden_size"]
    CameraEmbedding(CameraEmbeddingConfig(width=width)).save(folder / CAMERA_FOLDER)
    return folder


def test_malformed_camera_embeddings_are_one_line_model_errors(folders, tmp_path):
    folder = _camera_folder(folders, tmp_path)
    assert DiffusionPrior.load(folder, device="cpu").camera_conditioned
    config = folder / CAMERA_FOLDER / "config.json"
    good = config.read_text()
    for bad in ("{not json", "[32]", '{"width": 32, "depth": 2}', '{"width": "wide"}', "{}"):
        config.write_text(bad)
        _one_line_model_error(folder, "camera embedding")
    config.write_text(json.dumps({**json.loads(good), "hidden": 64}))  # weights do not fit
    _one_line_model_error(folder, "does not fit config.json")
    config.write_text(good)
    _truncate(folder / CAMERA_FOLDER / "model.safetensors")
    _one_line_model_error(folder, "camera embedding")


def test_bugs_while_loading_a_camera_embedding_propagate_unchanged(folders, tmp_path, monkeypatch):
    folder = _camera_folder(folders, tmp_path)
    error = RuntimeError("out of memory")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(camera_module, "load_file", fail)
    with pytest.raises(RuntimeError) as info:
        DiffusionPrior.load(folder, device="cpu")
    assert info.value is error


def test_zoo_names_resolve_through_the_registry(folders, monkeypatch):
    fake = types.SimpleNamespace(resolve=lambda name: folders["sd"])
    monkeypatch.setitem(sys.modules, "dreamlift.zoo.registry", fake)
    assert DiffusionPrior.load("toy-sd", device="cpu").folder == folders["sd"]


# ---------------------------------------------------------------- prompts


def test_view_prompts_follow_the_caption_grammar_and_the_dreamfusion_template():
    prompts = DiffusionPrior.view_prompts("a red cube", [0.0, 90.0, 180.0, -100.0, 30.0])
    assert prompts == [
        "a red cube, front view",
        "a red cube, side view",
        "a red cube, back view",
        "a red cube, side view",
        "a red cube, front view",
    ]
    assert all(parse(p).view for p in prompts)
    assert DiffusionPrior.view_prompts("a red cube", 0.0, 70.0) == ["a red cube, overhead view"]
    assert DiffusionPrior.view_prompts("a corgi", [180.0], template=PREFIX_TEMPLATE) == [
        "back view of a corgi"
    ]


def test_text_embeddings_broadcast_slice_and_swap_the_null_branch(prior):
    text = prior.embed_text([PROMPT, "a blue cone"])
    assert len(text) == 2 and len(text[1]) == 1
    both = TextEmbeddings.cat([text[0], text[1]])
    torch.testing.assert_close(both.cond, text.cond)
    phi = torch.zeros(1, 20, 32)
    swapped = text.with_uncond(phi).expand(2)
    assert torch.equal(swapped.uncond[1], phi[0]) and torch.equal(swapped.cond, text.cond)
    with pytest.raises(ValueError):
        text.expand(3)
