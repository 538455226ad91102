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
from dreamlift.methods.invert.inputs import Pose, world_head_light
from dreamlift.methods.invert.scores import head_pixels, identity_similarity
from dreamlift.metrics.head_attributes import seen_attributes
from dreamlift.metrics.image import masked_psnr
from dreamlift.world.heads import HeadParams, head_cameras, head_params
from dreamlift.world.heads_geometry import render_head
from dreamlift.world.lighting import Lighting

EVAL_POSES = tuple(Pose(float(y), 10.0) for y in (-60, -45, -30, -15, 15, 30, 45, 60))
SUCCESS_VIEWS = 7
"""An edit succeeds when every asked-for attribute shows in at least this many of the 8."""


@dataclass
class FaceScoreNets:
    identity: nn.Module | None
    parts: nn.Module | None
    light: nn.Module | None


def pose_cameras(poses: tuple[Pose, ...], resolution: int):  # noqa: ANN201
    return head_cameras(
        torch.tensor([p.yaw for p in poses]), torch.tensor([p.pitch for p in poses]), resolution
    )


def true_views(
    params: HeadParams, sh: tuple[float, ...], resolution: int, poses=EVAL_POSES
) -> dict[str, Tensor]:  # noqa: ANN001
    out = render_head(params, pose_cameras(poses, resolution), Lighting(sh=sh), supersample=2)
    return {"rgb": out["rgb"].permute(0, 3, 1, 2), "alpha": out["alpha"].permute(0, 3, 1, 2)}


@torch.no_grad()
def result_views(gen: Generator3D, ws: Tensor, resolution: int, poses=EVAL_POSES) -> Tensor:  # noqa: ANN001
    planes = gen.synthesis(ws)
    return gen.render(planes, pose_cameras(poses, resolution).to(planes.device)).rgb.cpu()


def view_scores(
    views: Tensor,
    head: int,
    truth_params: HeadParams,
    sh: tuple[float, ...] | None,
    wanted: dict[str, object],
    nets: FaceScoreNets,
) -> dict[str, float | None]:
    """Every score of rendered ``views`` (8, 3, H, W) at :data:`EVAL_POSES`."""
    resolution = views.shape[-1]
    light = sh if sh is not None else world_head_light(head)
    truth = true_views(truth_params, light, resolution)
    mask = head_pixels(truth["alpha"])
    psnr = [masked_psnr(views[i], truth["rgb"][i]) for i in range(len(views))]
    psnr_head = [masked_psnr(views[i], truth["rgb"][i], mask[i]) for i in range(len(views))]
    scores: dict[str, float | None] = {
        "psnr": sum(psnr) / len(psnr),
        "psnr_head": sum(psnr_head) / len(psnr_head),
        "psnr_spread": float(torch.tensor(psnr).std()),
    }
    if nets.identity is not None:
        original = true_views(head_params(head), world_head_light(head), resolution)
        scores["identity_truth"] = float(
            identity_similarity(nets.identity, views, truth["rgb"]).mean()
        )
        scores["identity_kept"] = float(
            identity_similarity(nets.identity, views, original["rgb"]).mean()
        )
        # the same for the truth itself: toy-id never saw hair colours change, so a perfect
        # hair edit scores below 1 too
        scores["identity_kept_truth"] = float(
            identity_similarity(nets.identity, truth["rgb"], original["rgb"]).mean()
        )
    if nets.parts is not None and wanted:
        seen = seen_attributes(nets.parts, views)
        shown = sum(s.agrees(wanted) for s in seen)
        scores["edit_views"] = float(shown)
        scores["edit_success"] = float(shown >= SUCCESS_VIEWS)
        truth_seen = seen_attributes(nets.parts, truth["rgb"])
        scores["edit_views_truth"] = float(sum(s.agrees(wanted) for s in truth_seen))
    if nets.light is not None and sh is not None:
        target = torch.tensor(sh, dtype=torch.float32)
        with torch.no_grad():
            mine = nets.light(views.float())
            ref = nets.light(truth["rgb"].float())
        err = (mine - target).norm(dim=1) / target.norm()
        scores["light_error"] = float(err.mean())
        scores["light_error_spread"] = float(err.std())
        scores["light_error_truth"] = float(((ref - target).norm(dim=1) / target.norm()).mean())
    return scores


__all__ = ["EVAL_POSES", "SUCCESS_VIEWS", "FaceScoreNets", "result_views", "view_scores"]
