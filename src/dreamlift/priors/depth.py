"""Depth conditioning as Stable Diffusion 2-depth expects it.

The UNet takes the depth map as a fifth input channel at latent resolution, normalised per
image to [-1, 1]. This reproduces ``StableDiffusionDepth2ImgPipeline.prepare_depth_map`` for
a given ``depth_map`` (bicubic resize, then per-image min-max), so a depth or disparity map
of any scale gives the conditioning the model was trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def prepare_depth(depth: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 1, H, W) or (B, H, W) depth → (B, 1, h, w) float32 in [-1, 1] at latent ``size``.

    A constant map (max == min), where diffusers would divide by zero, gives all -1.
    """
    if depth.ndim == 3:
        depth = depth.unsqueeze(1)
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth must be (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
    d = F.interpolate(depth.float(), size=size, mode="bicubic", align_corners=False)
    lo = torch.amin(d, dim=(1, 2, 3), keepdim=True)
    hi = torch.amax(d, dim=(1, 2, 3), keepdim=True)
    return 2.0 * (d - lo) / (hi - lo).clamp(min=1e-12) - 1.0
