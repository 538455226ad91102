"""Binary morphology with max-pooling: dilate, erode, close, open.

Splatting lifted points leaves pinholes (a surface turned towards the camera covers more
pixels than it had) and stray pixels (depth noise at silhouettes); Diffusion Handles cleans
the transformed-object mask with a close, then an open (arXiv:2312.02190 §5.1). Max-pooling
does it in torch on any device, with no OpenCV. The structuring element is a square of side
``2r + 1`` (the code's is an ellipse; at the few-pixel radii used the two barely differ).
Beyond the image border nothing is set, and erosion does not eat in from the border.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def dilate(mask: Tensor, radius: int) -> Tensor:
    """(H, W) bool → pixels within ``radius`` (Chebyshev) of the mask."""
    if radius <= 0:
        return mask.clone()
    x = mask.float()[None, None]
    return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0.5


def erode(mask: Tensor, radius: int) -> Tensor:
    """(H, W) bool → pixels whose whole ``radius`` window is in the mask (or off the image)."""
    if radius <= 0:
        return mask.clone()
    x = -mask.float()[None, None]
    return -F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0.5


def close(mask: Tensor, radius: int) -> Tensor:
    """Dilate then erode: fills holes and gaps narrower than the window."""
    return erode(dilate(mask, radius), radius)


def open_(mask: Tensor, radius: int) -> Tensor:
    """Erode then dilate: removes specks and strands thinner than the window."""
    return dilate(erode(mask, radius), radius)


def clean_mask(mask: Tensor, close_radius: int, open_radius: int) -> Tensor:
    """DH's cleaning of a splatted mask: close, then open. An object so small that the open
    removes it entirely keeps its closed mask instead of vanishing."""
    closed = close(mask, close_radius)
    opened = open_(closed, open_radius)
    return opened if bool(opened.any()) else closed
