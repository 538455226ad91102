"""Adaptive density control of 3D Gaussians (3DGS, Kerbl et al. 2023, Sec. 5.2).

Gaussians whose mean screen-space gradient is large are cloned when small (under-
reconstruction) or split in two when large (over-reconstruction); nearly transparent ones,
and after the first opacity reset those too large on screen or in the world, are pruned.
A pure function of tensors: the field swaps in the result and carries its Adam moments over.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dreamlift.fields.splat_projection import quat_to_rotmat

if TYPE_CHECKING:
    from dreamlift.fields.gaussians import GaussiansConfig

SPLIT_SHRINK = 1.6
"""Scale divisor of the two Gaussians a split one becomes (3DGS)."""


@torch.no_grad()
def densify_and_prune(
    params: dict[str, Tensor],
    grads: Tensor,
    max_radii: Tensor,
    config: GaussiansConfig,
    step: int,
    generator: torch.Generator,
) -> tuple[dict[str, Tensor], Tensor]:
    """One densify-and-prune of the Gaussians in ``params`` (3DGS layout, N rows each).

    ``grads`` (N,) are mean screen-space gradient norms, ``max_radii`` (N,) the largest screen
    radius seen (fraction of the image size); split positions are drawn from ``generator``.
    Returns the new parameter tensors and, for each new row, the old row it continues (-1 for
    clones and split halves, which start with fresh optimiser moments).
    """
    c = config
    means, log_scales = params["means"], params["log_scales"]
    n, dev = means.shape[0], means.device
    scales = torch.exp(log_scales)
    big = scales.amax(-1) > c.percent_dense * c.bound
    candidates = torch.nonzero(grads >= c.grad_threshold).squeeze(-1)
    room = max(c.max_gaussians - n, 0)
    if candidates.numel() > room:  # keep the largest gradients (stable, deterministic)
        order = torch.argsort(grads[candidates], descending=True, stable=True)
        candidates = torch.sort(candidates[order[:room]]).values
    clone = candidates[~big[candidates]]
    split = candidates[big[candidates]]

    # Split: two samples from each big Gaussian's own distribution, shrunk.
    samples = torch.randn(2 * split.numel(), 3, generator=generator).to(dev)
    src2 = split.repeat(2)
    rot = quat_to_rotmat(params["quats"][src2])
    offsets = (rot @ (samples * scales[src2])[..., None])[..., 0]
    split_log_scales = log_scales[src2] - math.log(SPLIT_SHRINK)

    keep = torch.ones(n, dtype=torch.bool, device=dev)
    keep[split] = False
    kept = torch.nonzero(keep).squeeze(-1)
    tensors = {name: torch.cat([t[kept], t[clone], t[src2]]) for name, t in params.items()}
    tensors["means"][kept.numel() + clone.numel() :] += offsets
    tensors["log_scales"][kept.numel() + clone.numel() :] = split_log_scales
    source = torch.cat([kept, torch.full((clone.numel() + src2.numel(),), -1, device=dev)])
    new_max_radii = torch.cat([max_radii[kept], max_radii.new_zeros(clone.numel() + src2.numel())])

    prune = torch.sigmoid(tensors["opacity_logits"]) < c.prune_opacity
    if c.opacity_reset_every > 0 and step > c.opacity_reset_every:
        prune |= new_max_radii > c.prune_screen_fraction
        prune |= tensors["log_scales"].amax(-1) > math.log(c.prune_world_fraction * c.bound)
    survivors = torch.nonzero(~prune).squeeze(-1)
    return {name: t[survivors] for name, t in tensors.items()}, source[survivors]


def rows_from_source(source: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """How an optimiser moment follows :func:`densify_and_prune`: row i takes the old row
    ``source[i]``; new rows (-1) start at zero."""
    has = source >= 0

    def move(value: Tensor, new_param: Tensor) -> Tensor:
        fresh = torch.zeros_like(new_param)
        fresh[has] = value[source[has]]
        return fresh

    return move
