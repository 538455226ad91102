"""LPIPS-VGG on random weights written in the real files' layouts (torchvision's VGG16 keys,
the lpips package's v0.1 ``lin`` keys).

Random weights give meaningless scores, so the tests check what does not depend on them:
the files load strictly, the distance is a distance (zero to itself, positive, symmetric),
gradients reach the images, bad files fail at load time naming the key, and the first layer
matches a hand computation of the paper's formula.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dreamlift.errors import DataError, ModelError
from dreamlift.metrics.lpips import LPIPSDistance, load_lpips

# torchvision's vgg16().features, written out from its documented layer list (not from our
# module): (index of the conv in ``features``, in channels, out channels).
CONVS = [
    (0, 3, 64), (2, 64, 64),
    (5, 64, 128), (7, 128, 128),
    (10, 128, 256), (12, 256, 256), (14, 256, 256),
    (17, 256, 512), (19, 512, 512), (21, 512, 512),
    (24, 512, 512), (26, 512, 512), (28, 512, 512),
]  # fmt: skip
LIN_CHANNELS = (64, 128, 256, 512, 512)


def vgg_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Full-width VGG16 trunk (14.7 M parameters), He-initialised so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for index, c_in, c_out in CONVS:
        std = math.sqrt(2.0 / (9 * c_in))
        state[f"features.{index}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * std
        state[f"features.{index}.bias"] = torch.randn(c_out, generator=g) * 0.01
    return state


def lin_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """Non-negative per-channel weights, as LPIPS's training keeps them."""
    g = torch.Generator().manual_seed(seed)
    return {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) / c
        for i, c in enumerate(LIN_CHANNELS)
    }


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lpips")
    state = vgg_state()
    # torchvision's file also holds the classifier head; a small stand-in key is enough.
    state["classifier.6.bias"] = torch.zeros(1000)
    torch.save(state, folder / "vgg16.pth")
    torch.save(lin_state(), folder / "lpips_vgg.pth")
    return folder


@pytest.fixture(scope="module")
def lpips(weights) -> LPIPSDistance:
    return load_lpips(weights)


def images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_loads_real_layouts_strictly(lpips):
    assert lpips.name == "LPIPS-VGG (local weights)"
    trunk = lpips.trunk.state_dict()
    assert set(trunk) == {f"features.{i}.{p}" for i, _, _ in CONVS for p in ("weight", "bias")}
    assert torch.equal(trunk["features.28.bias"], vgg_state()["features.28.bias"])
    assert [tuple(w.shape) for w in lpips.lins] == [(1, c, 1, 1) for c in LIN_CHANNELS]


def test_is_a_distance(lpips):
    a, b = images(0), images(1)
    assert lpips.between(a, a).item() == 0.0
    ab, ba = lpips.between(a, b), lpips.between(b, a)
    assert ab.item() > 0
    assert abs(ab.item() - ba.item()) < 1e-6
    # a slightly perturbed image is nearer than an unrelated one
    near = (a + 0.02 * torch.randn(a.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    assert 0 < lpips.between(near, a).item() < ab.item()


def test_gradient_reaches_images(lpips):
    a = images(0).requires_grad_(True)
    lpips.between(a, images(1)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    assert all(p.grad is None for p in lpips.trunk.parameters())


def test_first_layer_matches_the_formula(weights):
    """Only lin0 non-zero: LPIPS is the relu1_2 term, computed here by hand from the files."""
    vgg = vgg_state()
    lins = lin_state()
    for i in range(1, 5):
        lins[f"lin{i}.model.1.weight"].zero_()
    torch.save(lins, weights / "lin0_only.pth")
    lpips = LPIPSDistance(weights / "vgg16.pth", weights / "lin0_only.pth")

    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def relu1_2(x):
        x = (2 * x - 1 - shift) / scale
        x = F.relu(F.conv2d(x, vgg["features.0.weight"], vgg["features.0.bias"], padding=1))
        x = F.relu(F.conv2d(x, vgg["features.2.weight"], vgg["features.2.bias"], padding=1))
        return x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)

    a, b = images(3), images(4)
    diff = (relu1_2(a) - relu1_2(b)).square()
    expected = (diff * lins["lin0.model.1.weight"]).sum(1).mean((1, 2)).mean()
    torch.testing.assert_close(lpips.between(a, b), expected, rtol=1e-4, atol=1e-7)


def test_64px_batch_and_broadcast_target(lpips):
    batch = images(5, n=3, size=64)
    target = lpips.features(images(6, n=1, size=64))
    assert [tuple(t.shape[-2:]) for t in target] == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    d = lpips.per_image(batch, target)
    assert d.shape == (3,) and (d > 0).all()
    assert lpips.distance(batch, target).item() == pytest.approx(d.mean().item())


def test_smallest_size_and_refusal(lpips):
    assert lpips.between(images(0, size=16), images(1, size=16)).item() > 0
    with pytest.raises(DataError, match="16"):
        lpips.between(images(0, size=15), images(1, size=15))


@pytest.mark.parametrize(
    ("file", "edit", "key"),
    [
        ("vgg16.pth", lambda s: s.pop("features.28.bias"), "features.28.bias"),
        ("vgg16.pth", lambda s: s.update({"features.31.weight": torch.zeros(1)}), "features.31"),
        ("lpips_vgg.pth", lambda s: s.pop("lin3.model.1.weight"), "lin3.model.1.weight"),
        (
            "lpips_vgg.pth",
            lambda s: s.update({"lin2.model.1.weight": torch.zeros(1, 255, 1, 1)}),
            "lin2.model.1.weight",
        ),
    ],
)
def test_bad_state_dict_names_file_and_key(weights, tmp_path, file, edit, key):
    for name in ("vgg16.pth", "lpips_vgg.pth"):
        (tmp_path / name).symlink_to(weights / name)
    state = torch.load(weights / file, weights_only=True)
    edit(state)
    (tmp_path / file).unlink()
    torch.save(state, tmp_path / file)
    with pytest.raises(ModelError) as err:
        load_lpips(tmp_path)
    message = str(err.value)
    assert key in message and file in message and "\n" not in message


def test_missing_files(weights, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_lpips(tmp_path / "absent")
    with pytest.raises(ModelError, match="vgg16.pth"):
        load_lpips(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        LPIPSDistance(tmp_path / "vgg16.pth", weights / "lpips_vgg.pth")
    (tmp_path / "vgg16.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="unreadable"):
        LPIPSDistance(tmp_path / "vgg16.pth", weights / "lpips_vgg.pth")


def test_safetensors_files_give_the_same_distance(lpips, tmp_path):
    save_file(vgg_state(), tmp_path / "vgg16.safetensors")
    save_file(lin_state(), tmp_path / "lpips_vgg.safetensors")
    other = load_lpips(tmp_path)
    a, b = images(7), images(8)
    assert torch.equal(other.between(a, b), lpips.between(a, b))


def test_load_feature_distance_lpips(weights):
    pytest.importorskip("transformers")
    from dreamlift.metrics.perceptual import load_feature_distance

    distance = load_feature_distance(lpips=weights)
    assert isinstance(distance, LPIPSDistance)
    assert distance.name == "LPIPS-VGG (local weights)"
    a = images(0)
    assert distance.between(a, a).item() == 0.0
