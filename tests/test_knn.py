"""Grid k-nearest neighbours: exactly the brute-force answer on awkward point sets."""

from __future__ import annotations

import math

import pytest
import torch

from dreamlift.fields import knn
from dreamlift.fields.gaussian_init import knn_scale
from dreamlift.fields.knn import knn_sq_distances, knn_sq_distances_reference


def _clustered(n: int, g: torch.Generator) -> torch.Tensor:
    """Tight clusters, sparse background points, and exact duplicates, shuffled."""
    centres = torch.rand(6, 3, generator=g) * 2 - 1
    pts = centres[torch.randint(0, 6, (n,), generator=g)] + 0.01 * torch.randn(n, 3, generator=g)
    background = torch.rand(n // 40, 3, generator=g) * 4 - 2
    pts = torch.cat([pts, background, pts[: n // 10]])
    return pts[torch.randperm(pts.shape[0], generator=g)]


def _point_sets() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    surface = torch.nn.functional.normalize(torch.randn(3000, 3, generator=g), dim=-1)
    line = torch.rand(2500, 1, generator=g) * torch.tensor([[2.0, 0.0, 0.0]]) + 5.0
    return {
        "uniform": torch.rand(3000, 3, generator=g),
        "clustered": _clustered(3000, g),
        "surface": surface,
        "line": line,
        "lattice": torch.randint(0, 6, (2500, 3), generator=g).float() * 0.1,  # ties, duplicates
        "outliers": torch.cat(
            [torch.rand(3000, 3, generator=g) * 1e-3, torch.tensor([[1e3, 1e3, 1e3], [-5.0, 0, 0]])]
        ),
    }


@pytest.mark.parametrize("budget", [None, 500])  # 500 pairs: many blocks and coarser grids
@pytest.mark.parametrize("name", list(_point_sets()))
def test_grid_search_equals_brute_force(name, budget, monkeypatch):
    if budget is not None:
        monkeypatch.setattr(knn, "_MAX_PAIRS", budget)
    points = _point_sets()[name]
    for k in (1, 3, 8):
        got = knn_sq_distances(points, k)
        assert torch.equal(got, knn_sq_distances_reference(points, k)), (name, k)


def test_few_points_duplicates_and_float64():
    g = torch.Generator().manual_seed(1)
    for n in range(2, 6):
        pts = torch.rand(n, 3, generator=g, dtype=torch.float64)
        for k in range(n):
            assert torch.equal(knn_sq_distances(pts, k), knn_sq_distances_reference(pts, k))
    same = torch.full((7, 3), 0.25)
    assert torch.equal(knn_sq_distances(same, 3), torch.zeros(7, 3))
    with pytest.raises(ValueError, match="k must be"):
        knn_sq_distances(torch.rand(3, 3), 3)


def test_initial_scale_uses_the_exact_neighbours():
    """3DGS's initial scale: sqrt of the mean squared distance to the 3 nearest others, with
    fewer neighbours when there are fewer points."""
    pts = _clustered(2000, torch.Generator().manual_seed(2))
    expected = knn_sq_distances_reference(pts, 3).mean(-1).clamp(min=1e-7).sqrt()
    assert torch.equal(knn_scale(pts), expected)
    assert knn_scale(torch.zeros(0, 3)).shape == (0,)
    assert torch.equal(knn_scale(torch.zeros(1, 3)), torch.full((1,), 0.01))
    two = torch.tensor([[0.0, 0.0, 0.0], [0.0, 3.0, 4.0]])
    assert torch.allclose(knn_scale(two), torch.full((2,), 5.0))
    three = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    assert torch.allclose(
        knn_scale(three), torch.tensor([math.sqrt(5), math.sqrt(2.5), math.sqrt(6.5)])
    )
