"""Non-finite guidance gradients: zeroed for the step, counted in ``last_info``, and stopped
by ``NonFiniteGuard`` when they persist — never silently turned into zero gradient."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamlift.errors import TrainingError  # noqa: E402
from dreamlift.guidance import (  # noqa: E402
    GE3DConfig,
    GuidanceInput,
    ISMConfig,
    NonFiniteGuard,
    SDSConfig,
    make_guidance,
)
from dreamlift.priors import DiffusionPrior  # noqa: E402
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402

LATENT = 8
PROMPTS = ["a red cube, front view", "a red cube, side view"]
CASES = [
    ("sds", SDSConfig()),
    ("sds", SDSConfig(form="x0")),
    ("ism", ISMConfig(warmup_steps=10)),
    ("ge3d", GE3DConfig(n=2)),
    ("ge3d", GE3DConfig(n=2, clean_target="image")),
]
IDS = ["sds", "sds-x0", "ism", "ge3d", "ge3d-image"]


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> DiffusionPrior:
    config = TinySDConfig(unet_channels=(16, 32, 32), unet_out_scale=0.1)
    folder = save_tiny_sd(
        tmp_path_factory.mktemp("nonfinite") / "sd", sample_size=LATENT, config=config, seed=3
    )
    return DiffusionPrior.load(folder, device="cpu")


def _nan_unet(monkeypatch, prior: DiffusionPrior, everywhere: bool) -> None:
    """Every UNet pass returns NaN everywhere, or at one entry of its first sample."""
    real = prior._eps

    def eps(*args, **kwargs):
        out = real(*args, **kwargs)
        if everywhere:
            return torch.full_like(out, float("nan"))
        out = out.clone()
        out[0, 0, 0, 0] = float("nan")
        return out

    monkeypatch.setattr(prior, "_eps", eps)


def _step(guidance, prior, step: int) -> torch.Tensor:
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(step))
    images.requires_grad_(True)
    inp = GuidanceInput(
        images=images,
        prompts=PROMPTS,
        step=step,
        total_steps=10,
        generator=torch.Generator().manual_seed(step),
    )
    (grad,) = torch.autograd.grad(sum(guidance(prior, inp).values()), images)
    return grad


@pytest.mark.parametrize(("name", "config"), CASES, ids=IDS)
def test_an_all_nan_prior_is_counted_and_stops_the_guard_at_once(prior, monkeypatch, name, config):
    _nan_unet(monkeypatch, prior, everywhere=True)
    guidance = make_guidance(name, config)
    grad = _step(guidance, prior, 0)
    assert torch.isfinite(grad).all()  # zeroed for the step
    info = guidance.last_info
    assert info["grad_numel"] > 0 and info["nonfinite_grad"] == info["grad_numel"]
    with pytest.raises(TrainingError, match="all of it") as err:
        NonFiniteGuard(patience=3).check_info(info, step=0)
    message = str(err.value)
    assert "\n" not in message and "at step 0; stopped" in message
    assert "last good checkpoint is kept" in message


def test_persistent_nonfinite_entries_stop_after_patience_steps(prior, monkeypatch):
    _nan_unet(monkeypatch, prior, everywhere=False)
    guidance = make_guidance("sds", SDSConfig())
    guard = NonFiniteGuard(patience=3)
    for step in (0, 1):
        grad = _step(guidance, prior, step)
        assert torch.isfinite(grad).all()
        assert guidance.last_info["nonfinite_grad"] == 1.0  # one bad entry, the rest kept
        assert float(grad.abs().sum()) > 0
        guard.check_info(guidance.last_info, step)
    _step(guidance, prior, 2)
    with pytest.raises(TrainingError) as err:
        guard.check_info(guidance.last_info, 2)
    assert str(err.value).startswith(
        "guidance gradient had 1 non-finite entries for 3 consecutive step(s) at step 2; stopped"
    )


@pytest.mark.parametrize(("name", "config"), CASES, ids=IDS)
def test_a_finite_run_never_fires_the_guard(prior, name, config):
    guidance = make_guidance(name, config)
    guard = NonFiniteGuard(patience=1)
    for step in range(3):
        _step(guidance, prior, step)
        assert guidance.last_info["nonfinite_grad"] == 0.0
        assert guidance.last_info["grad_numel"] > 0
        guard.check_info(guidance.last_info, step)
    assert guard.streak == 0


def test_the_guard_counts_consecutive_steps_only():
    guard = NonFiniteGuard(patience=3)
    for step, count in enumerate([2, 5, 0, 1, 1, 0, 4, 4]):
        guard.check(count, step, numel=100)
    assert guard.streak == 2
    with pytest.raises(TrainingError, match="4 non-finite entries for 3 consecutive"):
        guard.check(4, 8, numel=100)
    with pytest.raises(TrainingError, match="all of it"):
        NonFiniteGuard(patience=5).check(100, 0, numel=100)
    NonFiniteGuard().check(0, 0, numel=0)  # a step that injected nothing
    with pytest.raises(ValueError):
        NonFiniteGuard(patience=0)
