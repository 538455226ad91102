"""The small interface every 3D-aware generator offers to inversion and the face methods."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.errors import ModelError

RayWarp = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""Maps ray origins and directions (B, R, 3) before sampling: every sample point is warped
by the same affine map, BlendNeRF's query-point warp (arXiv:2302.06608 App. C)."""


class GeneratorError(ModelError):
    """A generator folder or latent that cannot be used (missing files, wrong sizes)."""


@dataclass
class PlaneRender:
    """What :meth:`Generator3D.render` returns, every image (B, C, H, W) in [0, 1]."""

    rgb: Tensor  # (B, 3, H, W), composited over the background colour
    alpha: Tensor  # (B, 1, H, W) accumulated opacity
    depth: Tensor  # (B, 1, H, W) z-depth, 0 where nothing was hit


@runtime_checkable
class Generator3D(Protocol):
    """EG3D's pipeline cut at its seams: z → w (mapping), w → planes (synthesis), planes →
    images (rendering) and planes → raw density (meshing, locality regularisers).

    ``ws`` are always W+ latents (B, num_ws, w_dim): a W latent is one w repeated, which
    :meth:`broadcast` makes.
    """

    num_ws: int
    w_dim: int
    z_dim: int

    def mapping(self, z: Tensor, truncation: float = 1.0) -> Tensor:
        """z (B, z_dim) → ws (B, num_ws, w_dim); ``truncation`` < 1 pulls toward w_avg."""
        ...

    def w_avg(self) -> Tensor:
        """The mean latent (w_dim,), the start of every inversion."""
        ...

    def broadcast(self, w: Tensor) -> Tensor:
        """w (B, w_dim) → ws (B, num_ws, w_dim)."""
        ...

    def synthesis(self, ws: Tensor) -> Tensor:
        """ws → tri-planes (B, 3, C, R, R)."""
        ...

    def render(
        self,
        planes: Tensor,
        cameras: Cameras,
        samples: tuple[int, int] | None = None,
        warp: RayWarp | None = None,
    ) -> PlaneRender:
        """Volume-render the planes at ``cameras`` (one camera per latent, or one latent);
        ``samples`` (coarse, importance) per ray overrides the generator's own; ``warp`` maps
        the rays' origins and directions (B, R, 3) first, so every query point moves with
        them (BlendNeRF's local alignment)."""
        ...

    def render_rays(
        self,
        planes: Tensor,
        origins: Tensor,
        dirs: Tensor,
        jitter: bool = False,
        gen: object = None,
        samples: tuple[int, int] | None = None,
    ) -> dict[str, Tensor]:
        """Render rays (B, R, 3) of each latent: ``rgb`` (B, R, 3), ``alpha`` (B, R, 1) and
        ``t`` (B, R, 1), the expected ray length (training renders a subset of rays)."""
        ...

    def sigma(self, planes: Tensor, points: Tensor) -> Tensor:
        """Density (B, N) at world points (B, N, 3); differentiable."""
        ...

    def raw_sigma(self, planes: Tensor, points: Tensor) -> Tensor:
        """The density before its activation (B, N) at world points (B, N, 3)."""
        ...
