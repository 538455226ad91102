"""Which head attributes an image shows, read by a face parser (``toy-parts``, BiSeNet's role).

FaceDNeRF's edits and the head-caption prior are judged by what a parser finds in the image,
not by the caption the image was asked for: glasses, a hat and a beard are present when
their part covers enough of the head, and a colour is the palette colour nearest to the
part's mean colour up to a shading factor (the renders are lit, so a red hat in shadow is a
darker red; black and grey stay hard to tell apart for the same reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dreamlift.world.assets import COLOURS
from dreamlift.world.heads_geometry import PART_LABELS

PRESENT_SHARE = {"glasses": 0.01, "hat": 0.03, "beard": 0.02}
"""A part is present when its pixels make up at least this share of the head's pixels
(glasses are thin: at 64 px a frame covers 2–4 % of the head)."""
SHADING = (0.35, 1.6)
"""The range of shading factors a colour is matched under."""


@dataclass(frozen=True)
class SeenAttributes:
    """What the parser found in one image (colours are palette names or None)."""

    glasses: bool
    hat: bool
    beard: bool
    hair: bool
    hair_colour: str | None
    hat_colour: str | None
    beard_colour: str | None

    def agrees(self, wanted: dict[str, object]) -> bool:
        """Whether every attribute in ``wanted`` (HeadParams names) is what was seen."""
        for name, value in wanted.items():
            if name == "hair":
                if (value != "none") != self.hair:
                    return False
            elif getattr(self, name, value) != value:
                return False
        return True


def nearest_colour(rgb: Tensor) -> str:
    """The palette colour c minimising ‖rgb − k·c‖ over shading factors k in :data:`SHADING`."""
    best, best_err = "grey", float("inf")
    for name, colour in COLOURS.items():
        c = torch.tensor(colour, dtype=rgb.dtype)
        k = float((rgb @ c) / (c @ c))
        k = min(max(k, SHADING[0]), SHADING[1])
        err = float((rgb - k * c).norm())
        if err < best_err:
            best, best_err = name, err
    return best


@torch.no_grad()
def seen_attributes(parts_net: nn.Module, images: Tensor) -> list[SeenAttributes]:
    """Parse ``images`` (B, 3, H, W) in [0, 1] and read each one's attributes."""
    size = parts_net.cfg.resolution
    x = images.float()
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
    labels = torch.cat([parts_net(x[i : i + 64]).argmax(1) for i in range(0, len(x), 64)])
    index = {name: i for i, name in enumerate(PART_LABELS)}
    out = []
    for image, lab in zip(x, labels, strict=True):
        head = (lab != index["background"]).sum().clamp(min=1).float()

        def share(part: str, lab: Tensor = lab, head: Tensor = head) -> float:
            return float((lab == index[part]).sum() / head)

        def colour(part: str, image: Tensor = image, lab: Tensor = lab) -> str | None:
            pixels = image[:, lab == index[part]]
            return nearest_colour(pixels.mean(dim=1)) if pixels.shape[1] >= 4 else None

        present = {part: share(part) >= t for part, t in PRESENT_SHARE.items()}
        out.append(
            SeenAttributes(
                glasses=present["glasses"],
                hat=present["hat"],
                beard=present["beard"],
                hair=share("hair") >= 0.03,
                hair_colour=colour("hair"),
                hat_colour=colour("hat") if present["hat"] else None,
                beard_colour=colour("beard") if present["beard"] else None,
            )
        )
    return out


__all__ = ["PRESENT_SHARE", "SeenAttributes", "nearest_colour", "seen_attributes"]
