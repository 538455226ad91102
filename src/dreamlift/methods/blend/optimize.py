"""Blending by latent optimisation (BlendNeRF, arXiv:2302.06608 §3.3, the code's ``blend.py``).

One W+ latent is optimised so that its render at the original's camera matches the original
outside the mask and the aligned reference inside it (the image term), and so that its raw
density at the coarse samples of those rays matches the original's outside and the aligned
reference's inside (the density term). The weights are the code's:

    L_img = 10 · (L1 + P)((1 − m) I_ori, (1 − m) I) + 10 · 0.1 · λ_ref · v · P(m I_ref, m I)
    L_den = L1((1 − m) σ_ori, (1 − m) σ) + v · L1(m σ_ref, m σ)

with P the perceptual distance, v = pixels / masked pixels (the area compensation), L1 the
mean over all elements, σ raw (before the softplus: the paper's pitfall), and the mask of the
density grid the image mask (our renderer has no super-resolution: one ray per pixel).

The "ours + Poisson" variant starts from the reference's latent rendered with the warp and
replaces the outside terms by L1 and P on a contour band just outside the mask; the result is
then Poisson-blended into the original (:mod:`dreamlift.methods.blend.poisson`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.errors import TrainingError
from dreamlift.fields.volume import ray_aabb, stratified_samples
from dreamlift.generators.base import Generator3D
from dreamlift.methods.blend.align import Warp
from dreamlift.methods.blend.config import BlendConfig

Progress = Callable[[str, int, int, float], None]


@dataclass
class BlendTargets:
    """Everything the blending loss compares against, at the original's camera."""

    camera: Cameras
    original: Tensor  # (1, 3, H, W) the original image
    reference: Tensor  # (1, 3, H, W) the aligned reference's render
    mask: Tensor  # (1, 1, H, W) float, 1 = take the reference
    band: Tensor | None = None  # (1, 1, H, W) float: the Poisson variant's contour band


def coarse_points(camera: Cameras, box: float, samples: int) -> tuple[Tensor, Tensor]:
    """Points (1, H·W·samples, 3) at the centres of ``samples`` equal bins along every
    pixel's ray inside the generator's box (the density term's grid), and which rays hit the
    box (H·W,) bool."""
    origins, dirs, _ = camera.rays()
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    near, far, hit = ray_aabb(o, d, -box, box)
    t, _ = stratified_samples(near, far, samples, None)
    return (o[:, None] + t[..., None] * d[:, None]).reshape(1, -1, 3), hit


def render_warp(warp: Warp, cfg: BlendConfig) -> Warp | None:
    """The warp the blended latent is rendered with: the Poisson variant's latent starts from
    the reference's and stays in its frame; ours starts from the original's and needs none."""
    return warp if cfg.variant == "poisson" else None


class BlendLoss:
    """The code's blending objective for one (original, aligned reference, mask)."""

    def __init__(
        self,
        gen: Generator3D,
        targets: BlendTargets,
        ws_original: Tensor,
        ws_reference: Tensor,
        warp: Warp,
        cfg: BlendConfig,
        distance: object,
    ) -> None:
        self.gen, self.targets, self.cfg, self.distance = gen, targets, cfg, distance
        m = targets.mask
        self.area = float(m.numel() / m.sum().clamp(min=1))
        self.warp = render_warp(warp, cfg)
        box = gen.cfg.box  # type: ignore[attr-defined]
        points, _ = coarse_points(targets.camera, box, cfg.density_samples)
        self.points = points
        self.points_reference = warp.to_reference(points)
        self.grid_mask = m.reshape(-1, 1).expand(-1, cfg.density_samples).reshape(1, -1)
        with torch.no_grad():
            self.sigma_original = gen.raw_sigma(gen.synthesis(ws_original), points)
            self.sigma_reference = gen.raw_sigma(gen.synthesis(ws_reference), self.points_reference)
            keep = targets.band if targets.band is not None else 1 - m
            self.outside_target = keep * targets.original
            self.outside_features = distance.features(self.outside_target) if distance else None
            self.inside_features = distance.features(m * targets.reference) if distance else None

    def __call__(self, ws: Tensor) -> tuple[Tensor, dict[str, float]]:
        cfg, t, m = self.cfg, self.targets, self.targets.mask
        planes = self.gen.synthesis(ws)
        image = self.gen.render(
            planes, t.camera, warp=self.warp.rays if self.warp is not None else None
        ).rgb
        keep = t.band if t.band is not None else 1 - m
        outside = F.l1_loss(keep * image, self.outside_target)
        inside = image.new_zeros(())
        if self.distance is not None:
            outside = outside + self.distance.distance(keep * image, self.outside_features)
            inside = self.distance.distance(m * image, self.inside_features)
        image_term = cfg.image_weight * (outside + 0.1 * cfg.reference_weight * self.area * inside)
        loss, terms = image_term, {"image": float(image_term.detach())}
        if cfg.density_weight > 0:
            points = self.points_reference if self.warp is not None else self.points
            sigma = self.gen.raw_sigma(planes, points)
            g = self.grid_mask
            density = F.l1_loss((1 - g) * sigma, (1 - g) * self.sigma_original) + self.area * (
                F.l1_loss(g * sigma, g * self.sigma_reference)
            )
            loss = loss + cfg.density_weight * density
            terms["density"] = float(density.detach())
        return loss, terms


def blend_latent(
    loss_fn: BlendLoss, ws_start: Tensor, steps: int, lr: float, progress: Progress | None = None
) -> tuple[Tensor, list[dict[str, float]]]:
    """Adam on the W+ latent from ``ws_start`` (the code: lr 0.01, constant); returns the
    latent and each step's loss terms. A non-finite loss stops with the reason."""
    ws = ws_start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([ws], lr=lr)
    history: list[dict[str, float]] = []
    for step in range(steps):
        loss, terms = loss_fn(ws)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"non-finite blending loss at step {step}", "lower the learning rate (--set lr=…)"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"loss": float(loss.detach()), **terms})
        if progress:
            progress("blend", step + 1, steps, float(loss.detach()))
    return ws.detach(), history
