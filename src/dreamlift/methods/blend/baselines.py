"""2D blending without 3D alignment, the baselines of BlendNeRF's comparison
(arXiv:2302.06608 §4.2): the reference's pixels pasted into the original over the region,
and Poisson blending of them. Both see the reference as it was photographed, at its own
pose: what the 3D-aware alignment is meant to fix."""

from __future__ import annotations

import torch
from torch import Tensor

from dreamlift.methods.blend.masks import labels_to_mask, parse_labels
from dreamlift.methods.blend.poisson import seamless_clone


def region_2d(parser: torch.nn.Module, original: Tensor, reference: Tensor, part: str) -> Tensor:
    """(H, W) bool: the part in the original or in the unaligned reference."""
    return labels_to_mask(parse_labels(parser, original), part) | labels_to_mask(
        parse_labels(parser, reference), part
    )


def paste_2d(original: Tensor, reference: Tensor, mask: Tensor) -> Tensor:
    """(1, 3, H, W): the reference's pixels inside ``mask``, the original's elsewhere."""
    return torch.where(mask, reference, original)


def poisson_2d(original: Tensor, reference: Tensor, mask: Tensor) -> Tensor:
    """(1, 3, H, W): the reference Poisson-blended into the original over ``mask``."""
    return seamless_clone(reference[0].double(), original[0].double(), mask)[None].float()
