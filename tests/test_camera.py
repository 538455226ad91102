"""Camera conditioning: a prior folder with ``camera/`` is told each view's azimuth."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from dreamlift.errors import ModelError  # noqa: E402
from dreamlift.guidance import GuidanceInput, make_guidance  # noqa: E402
from dreamlift.priors import DiffusionPrior  # noqa: E402
from dreamlift.priors.camera import (  # noqa: E402
    CAMERA_FOLDER,
    CameraEmbedding,
    CameraEmbeddingConfig,
    camera_code,
)
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402

PROMPT = "a red cube, front view"


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory) -> Path:
    config = TinySDConfig(unet_channels=(8, 16, 16), unet_out_scale=0.1)
    return save_tiny_sd(tmp_path_factory.mktemp("cam") / "sd", sample_size=8, config=config)


def _with_camera(plain: Path, dest: Path, trained: bool) -> Path:
    shutil.copytree(plain, dest)
    width = DiffusionPrior.load(plain, device="cpu").text_encoder.config.hidden_size
    with torch.random.fork_rng(devices=[]):  # the same module whatever ran before
        torch.manual_seed(0)
        module = CameraEmbedding(CameraEmbeddingConfig(width=width))
        if trained:  # stands in for a fine-tuned embedding: any non-zero last layer
            torch.nn.init.normal_(module.net[-1].weight, std=1.0)
    module.save(dest / CAMERA_FOLDER)
    return dest


def test_camera_code_has_the_cube_period_and_tells_elevation():
    code = camera_code(torch.tensor([0.0, 90.0, 45.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 30.0]))
    assert code.shape == (4, 8)
    # The 4x harmonic is the same a quarter turn on, and opposite at 45 degrees.
    assert torch.allclose(code[0, 4:6], code[1, 4:6], atol=1e-6)
    assert torch.allclose(code[2, 5], -code[0, 5], atol=1e-6)
    assert not torch.allclose(code[0], code[3])


def test_a_fresh_embedding_leaves_the_prior_unchanged(plain_folder, tmp_path):
    prior = DiffusionPrior.load(_with_camera(plain_folder, tmp_path / "c", False), device="cpu")
    assert prior.camera_conditioned
    text = prior.embed_text([PROMPT, PROMPT])
    told = prior.with_camera(text, torch.tensor([0.0, 45.0]), torch.tensor([10.0, 10.0]))
    assert torch.equal(told.cond, text.cond) and torch.equal(told.uncond, text.uncond)


def test_a_trained_embedding_shifts_both_branches_by_the_camera(plain_folder, tmp_path):
    prior = DiffusionPrior.load(_with_camera(plain_folder, tmp_path / "c", True), device="cpu")
    text = prior.embed_text([PROMPT] * 3)
    told = prior.with_camera(text, torch.tensor([0.0, 45.0, 90.0]), torch.zeros(3))
    shift_cond, shift_uncond = told.cond - text.cond, told.uncond - text.uncond
    assert torch.allclose(shift_cond, shift_uncond)  # the same offset on both CFG branches
    assert torch.allclose(shift_cond[:, :1], shift_cond[:, -1:])  # on every token
    assert not torch.allclose(shift_cond[0], shift_cond[1])  # face-on and corner-on differ
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    eps = prior.predict_eps(z, 500, told, 7.5)
    assert not torch.allclose(eps, prior.predict_eps(z, 500, text, 7.5))


def test_guidance_tells_a_camera_prior_the_views_and_leaves_others_alone(plain_folder, tmp_path):
    camera_prior = DiffusionPrior.load(_with_camera(plain_folder, tmp_path / "c", True), "cpu")
    plain_prior = DiffusionPrior.load(plain_folder, device="cpu")
    sds = make_guidance("sds")
    azimuths, elevations = torch.tensor([0.0, 45.0]), torch.tensor([5.0, 20.0])
    inp = GuidanceInput(prompts=[PROMPT] * 2, azimuths=azimuths, elevations=elevations)
    for prior in (camera_prior, plain_prior):
        expected = prior.with_camera(prior.embed_text([PROMPT] * 2), azimuths, elevations)
        got = sds.text(prior, inp, "")
        assert torch.equal(got.cond, expected.cond) and torch.equal(got.uncond, expected.uncond)
    plain = plain_prior.embed_text([PROMPT] * 2)
    assert torch.equal(sds.text(plain_prior, inp, "").cond, plain.cond)
    no_cameras = GuidanceInput(prompts=[PROMPT] * 2)
    assert torch.equal(
        sds.text(camera_prior, no_cameras, "").cond, camera_prior.embed_text([PROMPT] * 2).cond
    )


def test_a_corrupt_camera_embedding_is_a_model_error(plain_folder, tmp_path):
    folder = _with_camera(plain_folder, tmp_path / "c", True)
    (folder / CAMERA_FOLDER / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="camera embedding") as info:
        DiffusionPrior.load(folder, device="cpu")
    assert "\n" not in str(info.value)
