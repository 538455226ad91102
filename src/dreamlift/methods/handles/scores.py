"""Ground-truth scores of an edit of a world scene (shared with the benchmark).

The world gives the true edited render, so an edit is scored directly (the paper needs a
SAM mask and cycle consistency instead, arXiv:2312.02190 §6):

- ``object_iou`` — edit adherence: IoU of the edited object's mask with the true one. The
  edited image has no instance ids, so its object mask is found by colour: each pixel takes
  the label (object or not) of the reference pixel nearest in RGB (1-nearest-neighbour over
  the reference's pixels, labelled by the input mask). The reference is the method's own
  reconstruction of the input when it has one (the same model, the same colour drift: a
  toy prior that renders a red cube orange-red still finds its cube), else the input. It
  holds the object under all its shadings, so the shading of a moved or turned object is
  still recognised. Objects that share the edited object's colour, or a grey object on the
  grey ground, confuse it.
- ``geometry_iou`` — IoU of the method's own transformed-object mask (from the edited
  depth) with the truth: how right the 3D edit of the depth is, before any diffusion.
- ``background_psnr`` — identity of the rest: PSNR against the true render outside the
  union of the object's old and new regions (the world casts no shadows, so this part
  of the true render is the input's).
- ``object_l1`` — object appearance: mean absolute colour error against the true render
  over the true object region.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dreamlift.methods.handles.result import HandlesResult
from dreamlift.methods.handles.scene import SceneCase

MAX_REFERENCE = 8192  # input pixels kept as colour references (a random subset beyond that)
OBJECT_IOU_RIGHT = 0.5
"""An edit puts the object where it belongs when its object IoU reaches this (more of the
found object inside the true region than outside it)."""
BACKGROUND_PSNR_RIGHT = 25.0
"""...and keeps the rest when the background PSNR reaches this (dB): the toy prior's own
reconstruction of an input holds 27–36 dB (docs/benchmarks.md, Diffusion Handles)."""


def mask_iou(a: Tensor, b: Tensor) -> float:
    """Intersection over union of two bool masks (1 when both are empty)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def psnr(a: Tensor, b: Tensor, region: Tensor | None = None) -> float:
    """PSNR in dB of images in [0, 1] over ``region`` (H, W) (all pixels by default)."""
    diff = (a.float() - b.float()) ** 2
    if region is not None:
        diff = diff[region]
    mse = float(diff.mean()) if diff.numel() else 0.0
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def object_mask_by_colour(
    image: Tensor, reference: Tensor, reference_mask: Tensor, seed: int = 0
) -> Tensor:
    """(H, W) bool: pixels of ``image`` whose nearest reference colour is an object pixel."""
    colours = reference.reshape(-1, 3).float()
    labels = reference_mask.reshape(-1)
    if colours.shape[0] > MAX_REFERENCE:
        keep = torch.randperm(colours.shape[0], generator=torch.Generator().manual_seed(seed))
        keep = keep[:MAX_REFERENCE]
        colours, labels = colours[keep], labels[keep]
    query = image.reshape(-1, 3).float()
    nearest = torch.cat([torch.cdist(q, colours).argmin(1) for q in query.split(4096)])
    return labels[nearest].reshape(image.shape[:2])


def score_edit(
    result: HandlesResult, case: SceneCase, reference: Tensor | None = None
) -> dict[str, float]:
    """The four scores of the module doc for a result on a world scene case.

    ``reference`` overrides the colour reference of ``object_iou`` (a benchmark passes the
    reconstruction of a shared inversion to a method that records none, e.g. depth-only).
    """
    if reference is None:
        reference = result.reconstruction if result.reconstruction is not None else case.image
    edited_mask = object_mask_by_colour(result.image, reference, case.mask)
    outside = ~(case.mask | case.target_mask)
    target = case.target_mask
    object_l1 = float((result.image - case.target_image).abs()[target].mean())
    return {
        "object_iou": mask_iou(edited_mask, target),
        "geometry_iou": mask_iou(result.mask, target),
        "background_psnr": psnr(result.image, case.target_image, outside),
        "object_l1": object_l1,
    }


def edit_verdicts(scores: dict[str, float]) -> dict[str, bool]:
    """Whether an edit's object and background are right (``OBJECT_IOU_RIGHT``,
    ``BACKGROUND_PSNR_RIGHT``), from :func:`score_edit`'s scores."""
    return {
        "object_right": scores["object_iou"] >= OBJECT_IOU_RIGHT,
        "background_right": scores["background_psnr"] >= BACKGROUND_PSNR_RIGHT,
    }
