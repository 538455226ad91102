"""One step of fitting a field to posed views: a batch of rays (ray-based fields such as a
NeRF) or of whole views (Gaussians), rendered and compared::

    batch ← random rays or views of the training set            (the batch generator)
    x ← render(field, batch)
    L ← ‖x − target‖² + mask_weight · ‖opacity − alpha‖² + the field's regulariser
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.fields.base import Field
from dreamlift.io.transforms import PosedImages
from dreamlift.methods.common.losses import LossTerms
from dreamlift.methods.reconstruct.config import ReconstructConfig


class FitViews:
    """``step_loss(τ) -> (L, logs, render)`` against the training views.

    The views live on the field's device; batches are drawn by a CPU generator (the same
    stream on every device, checkpointed by the loop) and their indices moved over.
    ``render_s`` accumulates the forward rendering time, to split it from the loss terms.
    """

    def __init__(
        self, cfg: ReconstructConfig, fld: Field, train: PosedImages, gen: torch.Generator
    ):
        self.cfg, self.field, self.train, self.gen = cfg, fld, train, gen
        self.device = next(fld.parameters()).device
        self.by_rays = hasattr(fld, "render_rays")
        self.render_s = 0.0
        self.background = torch.ones(3, device=self.device)
        if self.by_rays:
            origins, dirs, zpt = train.cameras.rays()
            rays = (origins.reshape(-1, 3), dirs.reshape(-1, 3), zpt.reshape(-1, 1))
            self.rays = tuple(r.to(self.device) for r in rays)
            self.rgb = train.images.reshape(-1, 3).to(self.device)
            alpha = None if train.alphas is None else train.alphas.reshape(-1, 1)
            self.alpha = None if alpha is None else alpha.to(self.device)
            self.n_rays = cfg.rays_per_step or int(cfg.field_config().train_rays)
        else:
            self.cameras = train.cameras.to(self.device)
            self.images = train.images.to(self.device)
            self.alphas = None if train.alphas is None else train.alphas.to(self.device)

    def __call__(self, step: int) -> tuple[Tensor, dict[str, float], dict[str, Tensor]]:
        # 1. a batch of the training set, rendered
        started = time.perf_counter()
        out, target, alpha = self.render_rays() if self.by_rays else self.render_views()
        self.render_s += time.perf_counter() - started
        # 2. the photometric loss, the silhouette when the views have alpha, the regulariser
        terms = LossTerms()
        terms.add("loss_rgb", 1.0, F.mse_loss(out["rgb"], target))
        if alpha is not None and self.cfg.mask_weight > 0:
            terms.add("loss_mask", self.cfg.mask_weight, F.mse_loss(out["opacity"], alpha))
        regularizer = getattr(self.field, "regularizer", None)
        if regularizer is not None:
            terms.add("loss_reg", 1.0, regularizer())
        loss = terms.total()
        assert loss is not None
        return loss, terms.logs(), out

    def render_rays(self) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        """``n_rays`` random rays of all training pixels: (render, colours, alphas)."""
        idx = torch.randint(0, self.rgb.shape[0], (self.n_rays,), generator=self.gen)
        idx = idx.to(self.device)
        o, d, z = (r[idx] for r in self.rays)
        out = self.field.render_rays(o, d, z, self.background, train=True)
        return out, self.rgb[idx], None if self.alpha is None else self.alpha[idx]

    def render_views(self) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        """``views_per_step`` random whole views: (render, images, alphas)."""
        idx = torch.randint(0, len(self.train), (self.cfg.views_per_step,), generator=self.gen)
        idx = idx.to(self.device)
        out = self.field.render(self.cameras[idx], self.background)
        return out, self.images[idx], None if self.alphas is None else self.alphas[idx]
