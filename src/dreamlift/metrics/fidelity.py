"""Fidelity of an edit to its source where the edit should leave the source alone.

Perturb-and-Revise measures fidelity as the distance of the edit's renders to the source's
(arXiv:2412.05279 §5, LPIPS to the source renders). On the world the region to compare is
known: the objects that both captions name alike (colour and shape) are to be kept, and the
renderer's instance masks say where they are.

One more thing has to be undone first: the world lays a composition out anew ("a red cube
with a yellow cone on top" holds a cube 0.75 times the size of "a red cube", lower), and a
prior trained on the world draws it that way too. So a kept object is compared in its own
frame: the edited field is brought onto its target asset by the alignment its scores
found (:mod:`dreamlift.metrics.ground_truth`), then from the target's placement of the
object to the source's (:func:`~dreamlift.metrics.ground_truth.part_frame_alignment`), and
turned by the object's symmetry to face as the source does (:func:`facing_as_source`). The
pixels compared are those where the object is seen in the source and, so moved, in the
target too (an added object covers part of it in some views). The world's true target
scores 33–40 dB this way against its source; compared in the source's frame as it is, the
same truth scores 6–9 dB.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.metrics.ground_truth import (
    Alignment,
    GroundTruthSettings,
    RenderFn,
    part_frame_alignment,
    scoring_cameras,
)
from dreamlift.metrics.image import masked_psnr
from dreamlift.world import RenderSettings, render
from dreamlift.world.assets import Asset, Description, Part

YAW_SYMMETRY_DEG: dict[str, float | None] = {
    "cube": 90.0,
    "pyramid": 90.0,
    "sphere": None,
    "cylinder": None,
    "cone": None,
    "torus": None,
}
"""Turns about its own vertical axis that map a world shape onto itself: multiples of the
value, or any angle (None, a solid of revolution)."""


def kept_objects(source: Description, target: Description) -> list[tuple[int, int]]:
    """(source index, target index) of the objects both captions name alike, in order: an
    object of the source is kept when the target names one of the same colour and shape
    not matched yet (of two alike, the first). A recolouring or a change of shape keeps
    nothing."""
    free = list(range(len(target.objects)))
    pairs = []
    for i, obj in enumerate(source.objects):
        match = next((j for j in free if target.objects[j] == obj), None)
        if match is not None:
            free.remove(match)
            pairs.append((i, match))
    return pairs


def kept_region(
    source: Asset, target: Asset, pairs: list[tuple[int, int]], cameras: Cameras
) -> list[Tensor]:
    """Per kept pair, the (V, H, W) pixels where the source shows the object and the target,
    brought into the source object's frame, shows it too."""
    seen = render(source, cameras, RenderSettings())["instance"]
    regions = []
    for i, j in pairs:
        to_source = part_frame_alignment(Alignment(), target.parts[j], source.parts[i])
        moved = render(target, to_source.cameras_for_result(cameras), RenderSettings())
        regions.append((seen == i) & (moved["instance"] == j))
    return regions


def facing_as_source(frame: Alignment, part: Part, source_to_asset: Alignment) -> Alignment:
    """``frame`` (edit → source asset) turned about the kept object's own axis by the
    symmetry of its shape that leaves the edit facing as the source field does.

    The scorer's alignment is only defined up to the target's symmetries (a cube fits at any
    quarter turn, a cone at any angle), but a field's shading is baked: compared a quarter or
    half turn off, the true target scored 17–20 dB against its source instead of 38. An edit
    starts from the source field, so of the equivalent turns the one nearest the source
    field's own orientation is the one a viewer sees.
    """
    to_field = frame.then(source_to_asset.inverse())  # edit → source field
    period = YAW_SYMMETRY_DEG[part.shape]
    phi = (to_field.azimuth_deg + 180.0) % 360.0 - 180.0
    delta = -phi if period is None else -period * round(phi / period)
    if delta == 0:
        return frame
    centre = source_to_asset.inverse().apply(torch.tensor(part.center, dtype=torch.float32))
    turned = Alignment(1.0, delta % 360.0).apply(centre)
    turn = Alignment(1.0, delta % 360.0, tuple((centre - turned).tolist()))  # about the centre
    return to_field.then(turn).then(source_to_asset)


def fidelity_psnr(
    edited: RenderFn,
    source: RenderFn,
    source_asset: Asset,
    target_asset: Asset,
    pairs: list[tuple[int, int]],
    edit_to_target: Alignment,
    source_to_asset: Alignment | None = None,
    cameras: Cameras | None = None,
) -> dict[str, float | int] | None:
    """PSNR of the edit against the source over the kept objects, each in its own frame.

    ``edit_to_target``: the similarity taking the edited field onto ``target_asset`` (a
    result's ``align_*`` scores); ``source_to_asset``: the source field's onto
    ``source_asset`` (the identity for a field fitted to the world's views). Returns
    ``fidelity_psnr`` and ``fidelity_pixels`` (pixels compared over all views), or None when
    nothing is kept or no kept pixel is seen.
    """
    if not pairs:
        return None
    cams = cameras if cameras is not None else scoring_cameras(GroundTruthSettings())
    source_to_asset = source_to_asset or Alignment()
    with torch.no_grad():
        reference = source(source_to_asset.cameras_for_result(cams))["rgb"].cpu().clamp(0, 1)
    regions = kept_region(source_asset, target_asset, pairs, cams)
    seen_pixels, reference_pixels = [], []
    for (i, j), region in zip(pairs, regions, strict=True):
        if not bool(region.any()):
            continue
        frame = part_frame_alignment(edit_to_target, target_asset.parts[j], source_asset.parts[i])
        frame = facing_as_source(frame, source_asset.parts[i], source_to_asset)
        with torch.no_grad():
            seen = edited(frame.cameras_for_result(cams))["rgb"].cpu().clamp(0, 1)
        seen_pixels.append(seen[region])
        reference_pixels.append(reference[region])
    if not seen_pixels:
        return None
    seen_all, reference_all = torch.cat(seen_pixels), torch.cat(reference_pixels)
    return {
        "fidelity_psnr": masked_psnr(seen_all, reference_all),
        "fidelity_pixels": len(seen_all),
    }
