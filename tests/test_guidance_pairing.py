"""Paired guidance calls: draws given through GuidanceInput, recorded in ``last_draws``.

Two calls that share t and eps (GE3D: nodes and eps) must give the same gradient for the
same renders, whatever their generators; replaying a default call's ``last_draws`` must
reproduce it exactly. The default (nothing given) is pinned by the formula tests of
tests/test_guidance.py, which replay the raw generator draws in the documented order.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamlift.errors import DreamliftError  # noqa: E402
from dreamlift.guidance import (  # noqa: E402
    GE3DConfig,
    GuidanceDraws,
    GuidanceInput,
    ISMConfig,
    PerpNegConfig,
    SDSConfig,
    make_guidance,
)
from dreamlift.priors import DiffusionPrior  # noqa: E402
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402

LATENT = 8  # 16 x 16 images
PROMPTS = ["a red cube, front view", "a red cube, side view"]
CONFIG = TinySDConfig(unet_channels=(16, 32, 32), unet_out_scale=0.1)

CASES = [
    ("sds", SDSConfig()),
    ("sds", SDSConfig(form="x0")),
    ("sds", SDSConfig(form="latent_x0", recon_std_rescale=0.5, std_group=2)),
    ("ism", ISMConfig(warmup_steps=10, noise_offset=0.1)),
    ("ge3d", GE3DConfig(n=3)),
    ("ge3d", GE3DConfig(n=2, clean_target="image", image_weight=2.0)),
    ("ge3d", GE3DConfig(n=2, perpneg=PerpNegConfig(enabled=True))),
]
IDS = ["sds", "sds-x0", "sds-latent_x0", "ism", "ge3d", "ge3d-image", "ge3d-perpneg"]


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> DiffusionPrior:
    folder = save_tiny_sd(
        tmp_path_factory.mktemp("pairing") / "sd", sample_size=LATENT, config=CONFIG, seed=3
    )
    return DiffusionPrior.load(folder, device="cpu")


def _images(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 16, 16, generator=g).requires_grad_(True)


def _input(images: torch.Tensor, generator: torch.Generator | None, **draws) -> GuidanceInput:
    return GuidanceInput(
        images=images,
        prompts=PROMPTS,
        prompt="a red cube",
        azimuths=torch.tensor([10.0, 120.0]),
        step=2,
        total_steps=10,
        generator=generator,
        **draws,
    )


def _grad(guidance, prior, inp: GuidanceInput) -> torch.Tensor:
    loss = sum(guidance(prior, inp).values())
    (g,) = torch.autograd.grad(loss, inp.images)
    return g


def _given(name: str, seed: int) -> dict:
    """A draw for ``name``: t and eps (SDS, ISM) or nodes and eps (GE3D)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(2, 4, LATENT, LATENT, generator=g)
    if name == "ge3d":
        return {"nodes": [0, 70, 150], "noise": noise}
    t = torch.tensor([300, 300]) if name == "ism" else torch.tensor([250, 640])
    return {"t": t, "noise": noise}


@pytest.mark.parametrize(("name", "config"), CASES, ids=IDS)
def test_paired_calls_with_given_draws_give_identical_gradients(prior, name, config):
    images = _images(1)
    given = _given(name, seed=7)
    guidance = make_guidance(name, config)
    grads = [
        _grad(guidance, prior, _input(images, gen, **given))
        for gen in (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2), None)
    ]
    assert float(grads[0].abs().sum()) > 0
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])
    assert torch.equal(guidance.last_draws.noise, given["noise"])
    if name == "ge3d":
        assert guidance.last_draws.nodes == given["nodes"] == guidance.last_nodes
        assert guidance.last_draws.t is None
    else:
        assert torch.equal(guidance.last_draws.t, given["t"]) and guidance.last_draws.nodes is None
        assert guidance.last_info["t"] == pytest.approx(float(given["t"].float().mean()))
    # The draws are what the gradient depends on: other ones give another gradient.
    other = _grad(guidance, prior, _input(images, None, **_given(name, seed=8)))
    assert not torch.allclose(other, grads[0])


@pytest.mark.parametrize(("name", "config"), CASES, ids=IDS)
def test_replaying_last_draws_reproduces_a_default_call(prior, name, config):
    images = _images(2)
    guidance = make_guidance(name, config)
    first = _grad(guidance, prior, _input(images, torch.Generator().manual_seed(3)))
    draws = guidance.last_draws
    assert isinstance(draws, GuidanceDraws) and draws.noise is not None
    assert (draws.nodes is not None) == (name == "ge3d") and (draws.t is None) == (name == "ge3d")
    replay = _input(images, torch.Generator().manual_seed(99)).with_draws(draws)
    again = make_guidance(name, config)
    assert torch.equal(_grad(again, prior, replay), first)
    # A fresh draw from another seed is a different gradient: the replay is not a no-op.
    fresh = _grad(again, prior, _input(images, torch.Generator().manual_seed(99)))
    assert not torch.equal(fresh, first)


def test_a_given_draw_is_not_drawn_and_the_rest_keep_their_order(prior):
    """SDS draws t, then eps. With t given only eps is drawn: the generator's first draw."""
    images = _images(3)
    guidance = make_guidance("sds", SDSConfig())
    guidance(prior, _input(images, torch.Generator().manual_seed(5), t=torch.tensor([400])))
    want = torch.randn(2, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(5))
    assert torch.equal(guidance.last_draws.noise, want)
    assert guidance.last_draws.t.tolist() == [400, 400]  # one value serves every view
    # With every draw given the generator does not move at all.
    gen = torch.Generator().manual_seed(6)
    before = gen.get_state()
    guidance(prior, _input(images, gen, t=torch.tensor([400, 500]), noise=want))
    assert torch.equal(gen.get_state(), before)
    # Given noise only: t is the default call's t (drawn first), the noise is the given one.
    default = make_guidance("sds", SDSConfig())
    default(prior, _input(images, torch.Generator().manual_seed(4)))
    guidance(prior, _input(images, torch.Generator().manual_seed(4), noise=want))
    assert torch.equal(guidance.last_draws.t, default.last_draws.t)


def test_ism_and_ge3d_record_their_draws_in_the_shape_they_are_given_back(prior):
    images = _images(4)
    ism = make_guidance("ism", ISMConfig(warmup_steps=10))
    ism(prior, _input(images, torch.Generator().manual_seed(0)))
    t = ism.last_draws.t
    assert t.shape == (2,) and t.dtype == torch.long and int(t[0]) == int(t[1])
    assert int(t[0]) == ism.last_info["t"]
    ge3d = make_guidance("ge3d", GE3DConfig(max_step=(50, 50)))  # no room for a node
    loss = ge3d(prior, _input(images, torch.Generator().manual_seed(0)))["loss_ge3d"]
    assert ge3d.last_draws.nodes == [0] and ge3d.last_draws.noise is None
    assert float(loss.detach()) == 0.0


@pytest.mark.parametrize(
    ("name", "draws", "match"),
    [
        ("sds", {"t": torch.tensor([0.5, 0.5])}, "dtype"),
        ("sds", {"t": torch.tensor([100, 200, 300])}, "3 timesteps for 2 views"),
        ("sds", {"t": torch.tensor([100, 1000])}, "outside"),
        ("sds", {"noise": torch.zeros(2, 4, 4, 4)}, "noise of shape"),
        ("sds", {"nodes": [0, 60]}, "does not draw nodes"),
        ("ism", {"t": torch.tensor([300, 400])}, "one t for all views"),
        ("ism", {"nodes": [0, 60]}, "does not draw nodes"),
        ("ge3d", {"t": torch.tensor([300, 300])}, "does not draw t"),
        ("ge3d", {"nodes": [0, 80, 80]}, "nodes"),
        ("ge3d", {"nodes": [0, 80, 1000]}, "nodes"),
        ("ge3d", {"nodes": []}, "nodes"),
    ],
)
def test_malformed_given_draws_are_guidance_errors(prior, name, draws, match):
    with pytest.raises(DreamliftError, match=match) as info:
        make_guidance(name)(prior, _input(_images(5), None, **draws))
    assert "\n" not in str(info.value)
