"""FID and KID of two image sets in a CLIP embedding space, through torchmetrics.

Inception weights cannot be downloaded here, and Inception features of 64×64 toy renders say
little anyway, so the feature extractor is the image encoder of a :class:`ClipScorer`
(toy-clip by default, any CLIP folder otherwise). Features are the unit-norm embeddings:
the scale of a CLIP projection is arbitrary, the direction is what the model learnt.
Numbers are therefore comparable between runs with the same CLIP model only.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from dreamlift.errors import DataError
from dreamlift.metrics.clip import ClipScorer, as_channels_first

DEFAULT_KID_SUBSET = 100
BATCH = 128


class ClipImageFeatures(nn.Module):
    """The feature extractor torchmetrics expects: uint8 (B, 3, H, W) → (B, num_features).

    ``num_features`` tells torchmetrics the size without a probing forward pass (its probe
    is a 299×299 image); the uint8 → float conversion happens here because torchmetrics hands
    custom extractors the images unchanged.
    """

    def __init__(self, scorer: ClipScorer) -> None:
        super().__init__()
        self.scorer = scorer
        with torch.no_grad():
            probe = torch.zeros(1, 3, scorer.image_size, scorer.image_size)
            self.num_features = int(scorer.image_embeddings(probe).shape[-1])

    def forward(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            return self.scorer.image_embeddings(as_channels_first(images)).double()


def to_uint8(images: Tensor) -> Tensor:
    """Any accepted layout/range → uint8 (B, 3, H, W): both sets quantised as PNGs would be."""
    if images.dtype == torch.uint8:
        return as_channels_first(images).mul(255).round().to(torch.uint8)
    return (as_channels_first(images).clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def fid_kid(
    real_images: Tensor,
    fake_images: Tensor,
    scorer: ClipScorer,
    kid_subset_size: int | None = None,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """FID, KID mean and KID std between two image sets, in ``scorer``'s embedding space.

    KID's subset size defaults to min(100, smallest set − 1) (torchmetrics needs it below
    the sample count); its subsets are drawn from ``seed``, so the result is reproducible.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(real_images.shape[0], fake_images.shape[0])
    if n < 2:
        raise DataError(f"FID/KID need at least 2 images per set, got {n}")
    subset = min(kid_subset_size or DEFAULT_KID_SUBSET, n - 1)
    features = ClipImageFeatures(scorer)
    fid = FrechetInceptionDistance(feature=features, reset_real_features=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "KID keeps all features in memory": intended here
        kid = KernelInceptionDistance(
            feature=features, subsets=kid_subsets, subset_size=subset, reset_real_features=True
        )
    fid.set_dtype(torch.float64)
    for images, real in ((real_images, True), (fake_images, False)):
        for i in range(0, images.shape[0], BATCH):
            chunk = to_uint8(images[i : i + BATCH])
            fid.update(chunk, real=real)
            kid.update(chunk, real=real)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {
        "fid": float(fid.compute()),
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
        "kid_subset_size": float(subset),
        "n_real": float(real_images.shape[0]),
        "n_fake": float(fake_images.shape[0]),
    }
