"""Image-quality metrics against ground truth: PSNR, SSIM, mask IoU.

Images are (B, H, W, C) in [0, 1]; every function returns one value per image so a caller
can average over views itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    mse = ((pred - target) ** 2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp(min=1e-10))


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """One PSNR in dB over all of ``pred``'s values (any layout), or over ``mask``'s pixels
    only (broadcast to the images): on a white background most pixels are easy, and the
    object's own pixels say more."""
    err = (pred - target).square()
    if mask is None:
        mse = float(err.mean())
    else:
        m = mask.expand_as(err)
        mse = float((err * m).sum() / m.sum().clamp(min=1))
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Wang et al. 2004) with an 11×11 Gaussian window, valid region."""
    x, y = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    c = x.shape[1]
    win = _gaussian_window(window, sigma, c, x)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, win, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return s.flatten(1).mean(1)


def mask_iou(pred: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of binarised masks (B, H, W[, 1]); 1 when both are empty."""
    a, b = (pred > threshold).flatten(1), (target > threshold).flatten(1)
    inter = (a & b).sum(1).float()
    union = (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
