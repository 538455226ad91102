"""How a face run on a world head did, against the renderer's truth of the same head.

At 8 novel views around the front (yaw −60°…60°, pitch 10°): PSNR (whole image and head
pixels) against the true renders of the head with the edit under the target light; toy-id
similarity to those renders; the edit's success (every attribute the prompt asks for read
by toy-parts in ≥ 7 of the 8 views); identity kept (toy-id similarity to the true *unedited*
head; ``identity_kept_truth`` is the same of the true edited head, the most an edit can
keep); and, when a light was asked for, the light's consistency over views: toy-light's
estimate of each view against the target (its error on the true renders is given beside it,
the estimator's own floor).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dreamlift.generators.base import Generator3D
from dreamlift.methods.invert.inputs import Pose, pose_cameras, render_params, world_head_light
from dreamlift.methods.invert.scores import head_pixels, identity_similarity
from dreamlift.metrics.head_attributes import seen_attributes
from dreamlift.metrics.image import masked_psnr
from dreamlift.world.heads import HeadParams, head_params

EVAL_POSES = tuple(Pose(float(y), 10.0) for y in (-60, -45, -30, -15, 15, 30, 45, 60))
SUCCESS_VIEWS = 7
"""An edit succeeds when every asked-for attribute shows in at least this many of the 8."""


@dataclass
class FaceScoreNets:
    identity: nn.Module | None
    parts: nn.Module | None
    light: nn.Module | None


@dataclass
class TrueViews:
    """The renderer's truth at :data:`EVAL_POSES`, rendered once and shared by every result
    scored against it: the head as it should come out (edited, under the target light) and
    the unedited head under its own light."""

    rgb: Tensor
    alpha: Tensor
    original: Tensor
    sh: tuple[float, ...] | None
    """The asked-for light, None when the head keeps its own."""


def true_views(
    head: int, params: HeadParams, sh: tuple[float, ...] | None, resolution: int
) -> TrueViews:
    """World head ``head`` as ``params`` (the edit's truth) under ``sh`` (default its own
    light), and as it is."""
    own = world_head_light(head)
    edited = render_params(params, sh if sh is not None else own, EVAL_POSES, resolution)
    original = render_params(head_params(head), own, EVAL_POSES, resolution)["rgb"]
    return TrueViews(edited["rgb"], edited["alpha"], original, sh)


@torch.no_grad()
def result_views(gen: Generator3D, ws: Tensor, resolution: int) -> Tensor:
    planes = gen.synthesis(ws)
    return gen.render(planes, pose_cameras(EVAL_POSES, resolution).to(planes.device)).rgb.cpu()


def view_scores(
    views: Tensor, truth: TrueViews, wanted: dict[str, object], nets: FaceScoreNets
) -> dict[str, float | None]:
    """Every score of rendered ``views`` (8, 3, H, W) at :data:`EVAL_POSES`."""
    mask = head_pixels(truth.alpha)
    psnr = [masked_psnr(views[i], truth.rgb[i]) for i in range(len(views))]
    psnr_head = [masked_psnr(views[i], truth.rgb[i], mask[i]) for i in range(len(views))]
    scores: dict[str, float | None] = {
        "psnr": sum(psnr) / len(psnr),
        "psnr_head": sum(psnr_head) / len(psnr_head),
        "psnr_spread": float(torch.tensor(psnr).std()),
    }
    if nets.identity is not None:
        scores["identity_truth"] = float(
            identity_similarity(nets.identity, views, truth.rgb).mean()
        )
        scores["identity_kept"] = float(
            identity_similarity(nets.identity, views, truth.original).mean()
        )
        # the same for the truth itself: toy-id never saw hair colours change, so a perfect
        # hair edit scores below 1 too
        scores["identity_kept_truth"] = float(
            identity_similarity(nets.identity, truth.rgb, truth.original).mean()
        )
    if nets.parts is not None and wanted:
        seen = seen_attributes(nets.parts, views)
        shown = sum(s.agrees(wanted) for s in seen)
        scores["edit_views"] = float(shown)
        scores["edit_success"] = float(shown >= SUCCESS_VIEWS)
        truth_seen = seen_attributes(nets.parts, truth.rgb)
        scores["edit_views_truth"] = float(sum(s.agrees(wanted) for s in truth_seen))
    if nets.light is not None and truth.sh is not None:
        target = torch.tensor(truth.sh, dtype=torch.float32)
        with torch.no_grad():
            mine = nets.light(views.float())
            ref = nets.light(truth.rgb.float())
        err = (mine - target).norm(dim=1) / target.norm()
        scores["light_error"] = float(err.mean())
        scores["light_error_spread"] = float(err.std())
        scores["light_error_truth"] = float(((ref - target).norm(dim=1) / target.norm()).mean())
    return scores


__all__ = [
    "EVAL_POSES",
    "SUCCESS_VIEWS",
    "FaceScoreNets",
    "TrueViews",
    "result_views",
    "true_views",
    "view_scores",
]
