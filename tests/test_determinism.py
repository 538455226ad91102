"""Training is bit-reproducible at a fixed thread count (the README's ``--resume`` promise).

The rasteriser's backward sums each Gaussian's gradient over the tiles it covers. Summed
with advanced indexing's backward (``index_put_(accumulate=True)``), the order of those
sums followed CPU thread scheduling: at 2 threads two identical backward passes differed.
The scenes below have tens of thousands of (tile, Gaussian) pairs, enough for torch to split
the sums across threads.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from dreamlift.cameras import orbit_cameras
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.fields.rasterize import rasterize_gaussians


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _large_gaussians(n: int, seed: int) -> list[torch.Tensor]:
    """Gaussians a few tiles wide, so each one's gradient is a sum over many tiles."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) - 0.5
    quats = torch.randn(n, 4, generator=g)
    log_scales = -2.0 + 0.3 * torch.randn(n, 3, generator=g)
    opacities = 0.05 + 0.5 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return [means, quats, log_scales, opacities, colors]


def test_rasterizer_backward_is_bit_identical_across_runs(two_threads: None) -> None:
    params = _large_gaussians(1000, seed=0)
    cams = orbit_cameras(torch.tensor([30.0]), torch.tensor([20.0]), 2.7, 40.0, 48)
    weight = torch.randn(1, 48, 48, 3, generator=torch.Generator().manual_seed(1))

    def gradients() -> list[torch.Tensor]:
        leaves = [p.clone().requires_grad_() for p in params]
        out = rasterize_gaussians(*leaves, cams, torch.ones(3), tile_size=8)
        ((out["rgb"] * weight).sum() + out["opacity"].sum()).backward()
        return [p.grad for p in leaves]

    names = ("means", "quats", "log_scales", "opacities", "colors")
    first = gradients()
    for _ in range(2):
        for name, a, b in zip(names, first, gradients(), strict=True):
            assert torch.equal(a, b), f"d/d{name} differs between identical backward passes"


def _train(steps: int) -> dict[str, torch.Tensor]:
    config = GaussiansConfig(
        num_init=1500, sh_degree=0, init_radius=0.5, densify_from=2, densify_every=4
    )
    field = GaussianField(config, torch.Generator().manual_seed(0))
    with torch.no_grad():
        field.log_scales.add_(1.0)  # large enough to cover several tiles each
    g = torch.Generator().manual_seed(1)
    target = torch.rand(1, 48, 48, 3, generator=g)
    optimizer = field.make_optimizer()
    for step in range(steps):
        az = float(torch.rand((), generator=g)) * 360.0
        cams = orbit_cameras(torch.tensor([az]), torch.tensor([20.0]), 2.7, 40.0, 48)
        optimizer.zero_grad(set_to_none=True)
        out = field.render(cams, torch.ones(3))
        (out["rgb"] - target).square().mean().backward()
        optimizer = field.after_backward(step, out, optimizer)
        optimizer.step()
        optimizer = field.after_step(step, optimizer)
    state = field.state_tensors()
    for i, group in enumerate(optimizer.param_groups):
        for key, value in optimizer.state[group["params"][0]].items():
            state[f"optim/{i}/{key}"] = value.clone()
    return state


def test_gaussian_training_is_bit_identical_across_runs(two_threads: None) -> None:
    """Six steps with a densification: every parameter, statistic and Adam moment equal."""
    a, b = _train(6), _train(6)
    assert a.keys() == b.keys()
    assert a["means"].shape[0] > 1500  # the densification ran
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"tensors differ between two identical trainings: {differ}"
