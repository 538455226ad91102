"""The region to blend: a head part parsed by ``toy-parts`` (BiSeNet's role), or a mask file.

BlendNeRF recomputes the mask once the reference is aligned: the union of the part's pixels
in the original and in the aligned reference (App. B), so that the region covers where the
part is now and where it will be.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.errors import DataError
from dreamlift.world.heads_geometry import PART_LABELS

PART_REGIONS: dict[str, tuple[str, ...]] = {
    "hair": ("hair",),
    "nose": ("nose",),
    "eyes": ("eyes",),
    "lips": ("lips",),
    "ears": ("ears",),
    "glasses": ("glasses",),
    "hat": ("hat",),
    "beard": ("beard",),
    "face": ("skin", "nose", "eyes", "lips", "ears", "beard"),
}
"""The parser's labels that make each part's region (``face``: the face and its features,
hair excluded, as the paper's face blends exclude it)."""

ANATOMY = ("skin", "nose", "eyes", "lips", "ears")
"""The labels every head has, whatever it wears: ICP's ``rest`` region is these, minus the
part being blended (hair, hats, glasses and beards differ between heads in shape, not size)."""
MIN_MASK_PIXELS = 4
"""A region this small is empty for blending's purposes."""


def check_part(part: str) -> str:
    if part not in PART_REGIONS:
        raise DataError(f"unknown part {part!r}", f"parts: {', '.join(PART_REGIONS)}")
    return part


def labels_to_mask(labels: Tensor, part: str) -> Tensor:
    """(…, H, W) bool: the pixels whose label belongs to ``part``'s region (``head``: every
    label but the background)."""
    if part == "head":
        return labels > 0
    ids = torch.tensor([PART_LABELS.index(name) for name in PART_REGIONS[check_part(part)]])
    return torch.isin(labels, ids.to(labels.device))


@torch.no_grad()
def parse_labels(parser: torch.nn.Module, image: Tensor) -> Tensor:
    """(H, W) part labels of one image (1, 3, H, W), parsed at the parser's resolution."""
    size = parser.cfg.resolution  # type: ignore[union-attr]
    h, w = image.shape[-2:]
    x = image if (h, w) == (size, size) else F.interpolate(image, (size, size), mode="bilinear")
    logits = parser(x.float().cpu())
    if (h, w) != (size, size):
        logits = F.interpolate(logits, (h, w), mode="bilinear")
    return logits.argmax(dim=1)[0]


def icp_region(labels: Tensor, part: str | None, region: str, given: Tensor | None) -> Tensor:
    """(H, W) bool: the pixels whose surface ICP matches (see ``AlignConfig.region``); a
    given mask stands for the part. ``rest`` falls back to the whole head when the part covers
    the whole anatomy (``face``)."""
    inside = given if given is not None else labels_to_mask(labels, str(part))
    if region == "part":
        return inside
    head = labels > 0
    if region == "head":
        return head
    anatomy = torch.isin(labels, torch.tensor([PART_LABELS.index(n) for n in ANATOMY]))
    rest = anatomy & ~inside
    return rest if int(rest.sum()) >= MIN_MASK_PIXELS else head


def check_region(mask: Tensor, what: str) -> Tensor:
    """``mask`` (H, W) bool, or a one-line error when it is empty or covers everything."""
    n, total = int(mask.sum()), mask.numel()
    if n < MIN_MASK_PIXELS:
        raise DataError(
            f"the {what} is empty ({n} pixels)",
            "choose another --part (or draw the region white in --mask)",
        )
    if n == total:
        raise DataError(
            f"the {what} covers the whole image: nothing of the original would be kept",
            "give a mask of the region to replace only",
        )
    return mask


def read_mask(path: Path, size: int) -> Tensor:
    """(size, size) bool from a mask image (white or any non-zero pixel = the region); a
    square mask of another size is resized (nearest), a non-square one refused."""
    from dreamlift.methods.handles.files import read_image

    image = read_image(Path(path))
    h, w, _ = image.shape
    if h != w:
        raise DataError(
            f"mask {path} is {w}×{h}; it must be square like the images",
            f"give a mask of the original's size (it is resized to {size}×{size})",
        )
    mask = image.mean(dim=-1) > 0.5
    if h != size:
        mask = F.interpolate(mask[None, None].float(), (size, size), mode="nearest")[0, 0] > 0.5
    return check_region(mask, f"mask {path}")


def icp_masks(original: Tensor, reference: Tensor, min_points: int) -> tuple[Tensor, Tensor]:
    """The pixels whose surface points ICP matches: each image's own part, or, where one
    image lacks the part (a bald original given a reference's hair), the union for both, so
    that ICP matches the surfaces under the same pixels."""
    if min(int(original.sum()), int(reference.sum())) >= min_points:
        return original, reference
    union = original | reference
    return union, union
