"""A perceptual distance without downloaded weights (inversion, identity-preserving edits).

LPIPS (arXiv:1801.03924, §3) compares unit-normalised deep features position by position. It
needs VGG or AlexNet weights, which this project never downloads; the zoo's own image encoder
stands in: the vision transformer of ``toy-clip``, trained on world renders. Its patch tokens
after the first and second transformer layers are unit-normalised per token and compared by
squared distance, averaged — LPIPS's recipe with uniform layer weights (LPIPS's learned
weights need human judgements we do not have).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.zoo.recipes.clip import load_clip, pixel_values

if TYPE_CHECKING:
    from dreamlift.metrics.lpips import LPIPSDistance


class FeatureDistance:
    """``distance(images, target_features)`` → scalar; images (B, 3, H, W) in [0, 1]."""

    name = "toy-clip ViT layers 1–2 (LPIPS-style, uniform weights)"

    def __init__(self, clip_folder: Path, layers: tuple[int, ...] = (1, 2)) -> None:
        from dreamlift.zoo.recipes.common import quiet_libraries

        with quiet_libraries():
            model, _ = load_clip(Path(clip_folder))
        self.vision = model.vision_model.eval().requires_grad_(False)
        self.size = int(model.config.vision_config.image_size)
        self.layers = layers

    def features(self, images: Tensor) -> list[Tensor]:
        if images.shape[-1] != self.size:
            images = F.interpolate(
                images,
                size=(self.size, self.size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        out = self.vision(pixel_values=pixel_values(images), output_hidden_states=True)
        return [F.normalize(out.hidden_states[i][:, 1:], dim=-1) for i in self.layers]

    def between(self, images: Tensor, reference: Tensor) -> Tensor:
        """Distance of ``images`` to ``reference`` images (no gradient through the reference)."""
        with torch.no_grad():
            target = self.features(reference)
        return self.distance(images, target)

    def distance(self, images: Tensor, target: list[Tensor]) -> Tensor:
        feats = self.features(images)
        return sum(
            (f - t).square().sum(-1).mean() for f, t in zip(feats, target, strict=False)
        ) / len(feats)


def load_feature_distance(
    clip: str | Path = "toy-clip", *, lpips: str | Path | None = None
) -> FeatureDistance | LPIPSDistance:
    """toy-clip's stand-in; with ``lpips`` (a folder of local weight files, see
    :mod:`dreamlift.metrics.lpips`) the real LPIPS-VGG instead."""
    if lpips is not None:
        from dreamlift.metrics.lpips import load_lpips

        return load_lpips(lpips)
    from dreamlift.metrics.clip import resolve_clip_folder

    return FeatureDistance(resolve_clip_folder(clip))
