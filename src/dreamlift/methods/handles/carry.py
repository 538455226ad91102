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
- for the first ``carry_steps`` DDIM steps, the latent cells of both the old and the new
  object take the carried image's latents noised to the step's level (SDEdit's forward
  process, arXiv:2108.01073, with seeded fresh noise: the inverted noise there encodes the
  old object), while the rest of the pass runs as before. Blended Latent Diffusion
  (arXiv:2206.02779) blends latents the same way; Go-with-the-Flow (arXiv:2501.08331)
  also samples fresh noise where moved content leaves a gap.

The energy guidance still runs on every guided step, and the steps after ``carry_steps``
let the prior redraw the object's shading and its contact with the ground.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.methods.handles.depth_edit import DepthEdit
from dreamlift.methods.handles.laplace import poisson_fill
from dreamlift.methods.handles.morphology import dilate

EDGE = 1
"""Pixels around the old object also refilled: its silhouette's pixels blend it with the
background and would leave a coloured outline where it left."""


def carried_image(image: Tensor, mask: Tensor, geometry: DepthEdit) -> Tensor:
    """(H, W, 3): ``image`` with the object's pixels moved along the edit's flow.

    The background plate is filled from the background alone (the old object and its edge
    re-solved from the pixels around them) before the object is pasted, so no object colour
    bleeds into the place it left.
    """
    old = dilate(mask.bool(), EDGE)
    plate = image.float()
    if not bool(old.all()):
        plate = torch.stack([poisson_fill(plate[..., c], old) for c in range(3)], -1)
    out = plate.clone()
    src, tgt = geometry.source, geometry.target
    out[tgt[:, 0], tgt[:, 1]] = image.float()[src[:, 0], src[:, 1]]
    reached = torch.zeros_like(geometry.mask)
    reached[tgt[:, 0], tgt[:, 1]] = True
    holes = geometry.mask & ~reached
    if bool(holes.any()):
        out = torch.stack([poisson_fill(out[..., c], holes) for c in range(3)], -1)
    return out.clamp(0, 1)


def touched_cells(pixels: Tensor, factor: int) -> Tensor:
    """(1, 1, h, w) bool: latent cells with at least one pixel of the (H, W) mask."""
    h, w = pixels.shape
    x = pixels.float()[None, None, : h // factor * factor, : w // factor * factor]
    return F.max_pool2d(x, factor) > 0.5


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
        return ObjectCarry(self.latents.to(device), self.cells.to(device), self.noise.to(device))

    def blend(self, latents: Tensor, noised: Tensor) -> Tensor:
        """``latents`` with the object's cells replaced by ``noised`` (the carried latents
        at the same noise level)."""
        return torch.where(self.cells, noised.to(latents.dtype), latents)


def object_carry(
    latents: Tensor, mask: Tensor, geometry: DepthEdit, factor: int, seed: int
) -> ObjectCarry:
    """Where and what to carry: ``latents`` are the carried image's (encoded by the caller)."""
    cells = touched_cells(dilate(mask.bool(), EDGE) | geometry.mask, factor)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    return ObjectCarry(latents, cells.to(latents.device), noise)
