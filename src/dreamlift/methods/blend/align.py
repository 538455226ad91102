"""3D-aware alignment of the reference to the original (BlendNeRF, arXiv:2302.06608 §3.2).

Global alignment needs no code of its own: the reference's latent rendered at the original's
camera is the reference turned to the original's pose. Local alignment (App. C) fits what
a turn cannot, a difference in size and placement: surface points where rays through the
masked pixels first reach the density level, on both latents, then ICP from the reference's
points to the original's estimating a uniform scale and a translation only (no rotation: the
global alignment did that), the scale clamped to [0.75, 1.25], and the identity when ICP has
too few points or does not converge to finite numbers.

The result warps the reference's *query points*, ``x' = (x − t) / s``, never its image
(the paper's pitfall): :meth:`Warp.rays` moves ray origins and directions so every sample
point moves, which is what the code does to its coarse and fine samples and directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.fields.volume import ray_aabb
from dreamlift.generators.base import Generator3D
from dreamlift.methods.blend.config import AlignConfig


@dataclass(frozen=True)
class Warp:
    """``x_original = scale · x_reference + translation``, and how ICP got there."""

    scale: float = 1.0
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fell_back: bool = False
    """ICP failed and this is the identity."""
    reason: str = ""
    iterations: int = 0
    rmse: float | None = None
    """Root mean squared distance of the matched points at the end (world units)."""
    clamped: bool = False
    """The fitted scale lay outside the allowed range and was clamped."""
    points: tuple[int, int] = (0, 0)
    """Surface points of the reference and of the original that ICP used."""

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.translation == (0.0, 0.0, 0.0)

    def to_reference(self, x: Tensor) -> Tensor:
        """World points (…, 3) in the reference's frame: ``(x − T) / s``."""
        return (x - x.new_tensor(self.translation)) / self.scale

    def rays(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """Rays in the reference's frame: a point ``o + t d`` maps to ``(o + t d − T) / s``, so
        the ray parameter t (and every interval along the ray) keeps its world meaning."""
        return self.to_reference(origins), dirs / self.scale

    def to_json(self) -> dict:
        return {
            "scale": self.scale,
            "translation": list(self.translation),
            "fell_back": self.fell_back,
            "reason": self.reason,
            "iterations": self.iterations,
            "rmse": self.rmse,
            "clamped": self.clamped,
            "points": list(self.points),
        }

    @classmethod
    def from_json(cls, values: dict) -> Warp:
        return cls(
            scale=float(values["scale"]),
            translation=tuple(float(v) for v in values["translation"]),  # type: ignore[arg-type]
            fell_back=bool(values["fell_back"]),
            reason=str(values.get("reason", "")),
            iterations=int(values.get("iterations", 0)),
            rmse=values.get("rmse"),
            clamped=bool(values.get("clamped", False)),
            points=tuple(values.get("points", (0, 0))),  # type: ignore[arg-type]
        )


@torch.no_grad()
def surface_points(
    gen: Generator3D,
    planes: Tensor,
    camera: Cameras,
    mask: Tensor,
    cfg: AlignConfig,
    box: float,
) -> Tensor:
    """(N, 3) world points where the rays of ``camera`` through the masked pixels (mask
    (H, W) bool) first reach density ``cfg.surface_level``, interpolated between the two
    samples that straddle it; rays that never reach it give no point. The paper casts the
    same rays at a marching-cubes mesh of that level; this finds the same first crossing
    without building the mesh."""
    origins, dirs, _ = camera.rays()
    o = origins.reshape(-1, 3)[mask.reshape(-1)]
    d = dirs.reshape(-1, 3)[mask.reshape(-1)]
    if o.shape[0] == 0:
        return o
    near, far, hit = ray_aabb(o, d, -box, box)
    o, d, near, far = o[hit], d[hit], near[hit], far[hit]
    steps = torch.linspace(0, 1, cfg.surface_samples, device=o.device)
    t = near[:, None] + (far - near)[:, None] * steps  # (R, S)
    points = o[:, None] + t[..., None] * d[:, None]
    sigma = gen.sigma(planes, points.reshape(1, -1, 3)).reshape(t.shape)
    above = sigma >= cfg.surface_level
    found = above.any(dim=1)
    first = above.float().argmax(dim=1).clamp(min=1)
    rows = torch.arange(t.shape[0], device=t.device)
    s0, s1 = sigma[rows, first - 1], sigma[rows, first]
    frac = ((cfg.surface_level - s0) / (s1 - s0).clamp(min=1e-8)).clamp(0, 1)
    t_hit = t[rows, first - 1] + frac * (t[rows, first] - t[rows, first - 1])
    return (o + t_hit[:, None] * d)[found]


def fit_scale_translation(source: Tensor, target: Tensor) -> tuple[float, Tensor]:
    """The uniform scale s and translation t minimising Σ‖s·source_i + t − target_i‖² over
    matched pairs (closed form: Umeyama's without the rotation)."""
    ps, pt = source.mean(0), target.mean(0)
    cs, ct = source - ps, target - pt
    s = float((cs * ct).sum() / cs.square().sum().clamp(min=1e-12))
    return s, pt - s * ps


def _matches(
    src: Tensor, dst: Tensor, scale: float, shift: Tensor, symmetric: bool, trim: float
) -> tuple[Tensor, Tensor]:
    """Matched pairs under the current transform: each source point with its nearest target
    point, with ``symmetric`` also each target point with its nearest source point, less the
    ``trim`` share of pairs that lie farthest apart (trimmed ICP, Chetverikov et al. 2002)."""
    dist = torch.cdist(scale * src + shift, dst)
    a, b = src, dst[dist.argmin(dim=1)]
    if symmetric:
        a, b = torch.cat([a, src[dist.argmin(dim=0)]]), torch.cat([b, dst])
    if trim > 0:  # keep the closest pairs: the surfaces overlap only in part
        error = (scale * a + shift - b).square().sum(-1)
        keep = error.argsort()[: max(3, int(len(error) * (1 - trim)))]
        a, b = a[keep], b[keep]
    return a, b


def icp_scale_translation(reference: Tensor, original: Tensor, cfg: AlignConfig) -> Warp:
    """ICP from the reference's surface points to the original's (both (N, 3)): match each
    reference point to its nearest original point, refit scale and translation, repeat until
    the mean squared distance settles. The scale is clamped to the configured range (the
    translation refitted for the clamped scale); too few points or a non-finite fit give the
    identity, with the reason."""
    counts = (int(reference.shape[0]), int(original.shape[0]))
    if min(counts) < cfg.min_points:
        return Warp(
            fell_back=True,
            reason=f"too few surface points ({counts[0]} reference, {counts[1]} original; "
            f"at least {cfg.min_points})",
            points=counts,
        )
    src, dst = reference.double(), original.double()
    scale, shift = 1.0, torch.zeros(3, dtype=torch.float64)
    previous, iterations, error = float("inf"), 0, float("inf")
    for iterations in range(1, cfg.iterations + 1):  # noqa: B007 - the count is reported
        a, b = _matches(src, dst, scale, shift, cfg.symmetric, cfg.trim)
        scale, shift = fit_scale_translation(a, b)
        error = float((scale * a + shift - b).square().sum(-1).mean())
        if not (abs(scale) < 1e6 and torch.isfinite(shift).all() and error == error):
            return Warp(fell_back=True, reason="ICP diverged", iterations=iterations, points=counts)
        if abs(previous - error) < cfg.tolerance:
            break
        previous = error
    clamped = not cfg.scale_min <= scale <= cfg.scale_max
    if clamped:
        scale = min(max(scale, cfg.scale_min), cfg.scale_max)
        a, b = _matches(src, dst, scale, shift, cfg.symmetric, cfg.trim)
        shift = (b - scale * a).mean(0)
        error = float((scale * a + shift - b).square().sum(-1).mean())
    return Warp(
        scale=float(scale),
        translation=tuple(float(v) for v in shift),  # type: ignore[arg-type]
        iterations=iterations,
        rmse=error**0.5,
        clamped=clamped,
        points=counts,
    )
