"""Carrying the object along the 3D edit's flow into the guided pass (not in the paper; an
option).

Diffusion Handles starts its guided pass from the inverted noise x_T, which still holds the
object where it was, and relies on the energy guidance to move it (arXiv:2312.02190 §5.2).
At 64 px with a 16² latent grid the toy prior follows x_T more than the energy or the edited
depth: the edited object comes back near its old place and size (docs/benchmarks.md,
Diffusion Handles). Here the object is moved in pixels before diffusion, along the edit's
own flow (the z-buffer's source → target pixels, the paper's Eq. 5):

- the *carried image*: the input with the object removed (its pixels and edge re-solved
  harmonically from the background around them, channel by channel) and its pixels pasted
  back at their targets; pixels of the moved mask that no point reached (a rotation's
  revealed side) are filled harmonically from their neighbours;
- the latents entering the first ``carry_steps`` + 1 DDIM steps hold, in the latent cells
  of both the old and the new object, the carried image's latents noised to the step's
  level (SDEdit's forward process, arXiv:2108.01073, with seeded fresh noise: the inverted
  noise there encodes the old object); the prior's output in those cells is discarded until
  then. Blended Latent Diffusion (arXiv:2206.02779) blends latents the same way;
  Go-with-the-Flow (arXiv:2501.08331) also samples fresh noise where moved content leaves a
  gap.

So during the carried steps the energy guidance only acts outside those cells (with
``keep_background``, only in the margin around them): the object's placement is the carry's,
not the guidance's, and the steps after ``carry_steps`` are where the prior redraws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.methods.handles.depth_edit import DepthEdit, touched_cells
from dreamlift.methods.handles.laplace import poisson_fill
from dreamlift.methods.handles.morphology import dilate

EDGE = 1
"""Pixels around the old object also refilled: its silhouette's pixels blend it with the
background and would leave a coloured outline where it left."""


def fill_harmonically(image: Tensor, region: Tensor) -> Tensor:
    """(H, W, 3) float: ``image`` with the (H, W) ``region`` re-solved from the pixels around
    it, channel by channel (:func:`~dreamlift.methods.handles.laplace.poisson_fill`)."""
    return torch.stack([poisson_fill(image[..., c].float(), region) for c in range(3)], dim=-1)


def remove_object(image: Tensor, mask: Tensor, dilation: int) -> Tensor:
    """The image with the object's (dilated) region filled harmonically, channel by channel:
    the background plate the object is pasted on (also the 2D baselines')."""
    return fill_harmonically(image, dilate(mask.bool(), dilation)).clamp(0, 1)


def carried_image(plate: Tensor, image: Tensor, geometry: DepthEdit) -> Tensor:
    """(H, W, 3): ``image``'s object pixels pasted on ``plate`` (:func:`remove_object` of
    ``image`` with ``EDGE``) where the edit's flow moves them.

    The plate is filled from the background alone before the object is pasted, so no object
    colour bleeds into the place it left.
    """
    out = plate.float().clone()
    src, tgt = geometry.source, geometry.target
    out[tgt[:, 0], tgt[:, 1]] = image.float()[src[:, 0], src[:, 1]]
    holes = geometry.mask & ~geometry.splat_mask  # the targets are the splat's pixels kept
    if bool(holes.any()):
        out = fill_harmonically(out, holes)
    return out.clamp(0, 1)


@dataclass
class ObjectCarry:
    """The carried image's latents and the cells they are written into."""

    latents: Tensor
    """(1, C, h, w) the carried image, encoded."""
    cells: Tensor
    """(1, 1, h, w) bool: cells the old or the moved object touches."""
    noise: Tensor
    """(1, C, h, w) fresh noise the carried latents are noised with."""

    def to(self, device: torch.device | str) -> ObjectCarry:
        """The same carry on ``device``."""
        return ObjectCarry(self.latents.to(device), self.cells.to(device), self.noise.to(device))

    def blend(self, latents: Tensor, noised: Tensor) -> Tensor:
        """``latents`` with the object's cells replaced by ``noised`` (the carried latents
        at the same noise level)."""
        return torch.where(self.cells, noised.to(latents.dtype), latents)


def object_carry(
    latents: Tensor, mask: Tensor, geometry: DepthEdit, factor: int, seed: int
) -> ObjectCarry:
    """Where and what to carry: ``latents`` are the carried image's (encoded by the caller)."""
    cells = touched_cells(dilate(mask.bool(), EDGE) | geometry.mask, factor)[None, None]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    return ObjectCarry(latents, cells.to(latents.device), noise)
