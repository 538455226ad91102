"""How close a blend of two world heads came to the truth.

The truth is the world's composed head (:func:`~dreamlift.world.heads.compose_heads`): the
original's identity with the reference's part, built to fit the original's skull, under the
original's light. It is rendered at the original's camera and at four novel views. Beside
PSNR against it, the paper's faithfulness scores (arXiv:2302.06608 §4.1): masked L2 and
masked perceptual distance, inside the region against the aligned reference and outside
against the original. For the ICP, the scale the world's own geometry implies: the same ICP
on the true surfaces (the depth of the true original and of the true reference, seen from
the original's camera, under the part's true pixels).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamlift.methods.blend.align import icp_scale_translation
from dreamlift.methods.blend.inputs import BlendImage, BlendRequest
from dreamlift.methods.blend.masks import icp_masks, icp_region
from dreamlift.methods.invert.inputs import Pose, pose_cameras, render_params
from dreamlift.metrics.image import masked_psnr
from dreamlift.world.heads import compose_heads, head_cameras
from dreamlift.world.heads_geometry import render_head
from dreamlift.world.lighting import Lighting

NOVEL_POSES = (Pose(-40.0, 10.0), Pose(40.0, 10.0), Pose(0.0, 45.0), Pose(0.0, -10.0))
"""Four views the blended latent must render right (±40° of yaw, above, below)."""


def composed_params(request: BlendRequest, original: BlendImage):  # noqa: ANN201
    """The true blended head's parameters."""
    return compose_heads(original.params, request.reference_params(), request.part)  # type: ignore[arg-type]


def truth_views(
    request: BlendRequest, original: BlendImage, poses: list[Pose], resolution: int
) -> Tensor:
    """(V, 3, R, R) renders of the true blended head."""
    params = composed_params(request, original)
    return render_params(params, original.light, poses, resolution)["rgb"]  # type: ignore[arg-type]


def masked_errors(
    image: Tensor, original: Tensor, aligned: Tensor, mask: Tensor, distance: object
) -> dict[str, float]:
    """The paper's masked L2 and masked perceptual distance: inside ``mask`` against the
    aligned reference, outside against the original (means over the region's pixels)."""
    m = mask[None, None].float()
    inside = float(((image - aligned).square() * m).sum() / (3 * m.sum()).clamp(min=1))
    outside = float(
        ((image - original).square() * (1 - m)).sum() / (3 * (1 - m).sum()).clamp(min=1)
    )
    scores = {"masked_l2_inside": inside, "masked_l2_outside": outside}
    if distance is not None:
        with torch.no_grad():
            scores["masked_perceptual_inside"] = float(
                distance.between(image * m, aligned * m)  # type: ignore[attr-defined]
            )
            scores["masked_perceptual_outside"] = float(
                distance.between(image * (1 - m), original * (1 - m))  # type: ignore[attr-defined]
            )
    return scores


@torch.no_grad()
def true_surface_scale(request: BlendRequest, original: BlendImage, cfg) -> dict[str, object]:  # noqa: ANN001
    """The scale ICP finds on the world's true surfaces (None where it falls back), and the
    ratio of the heads' ``scale`` attributes (what the world changed)."""
    camera = head_cameras(original.pose.yaw, original.pose.pitch, cfg.resolution)
    origins, dirs, z_per_t = camera.rays()
    points = []
    ref = request.reference_params()
    renders = [render_head(params, camera, Lighting()) for params in (ref, original.params)]  # type: ignore[arg-type]
    regions = icp_masks(
        *(icp_region(out["labels"][0], request.part, cfg.align.region, None) for out in renders),
        cfg.align.min_points,
    )
    for out, region in zip(renders, regions, strict=True):
        t = out["depth"][0, ..., 0] / z_per_t[0, ..., 0]
        p = origins[0] + t[..., None] * dirs[0]
        points.append(p[region & (out["alpha"][0, ..., 0] > 0.5)])
    warp = icp_scale_translation(points[0], points[1], cfg.align)
    return {
        "true_icp_scale": None if warp.fell_back else warp.scale,
        "world_scale_ratio": original.params.scale / ref.scale,  # type: ignore[union-attr]
    }


def score_world_blend(request, pair, original, alignment, result, distance) -> dict[str, object]:  # noqa: ANN001
    """PSNR against the composed truth at the original's view and four novel views, the
    masked errors (with the run's perceptual ``distance``), and the ICP's truth."""
    cfg = request.config
    gen = pair.generator
    scores: dict[str, object] = masked_errors(
        result.image, original.image, alignment.aligned, alignment.mask, distance
    )
    if request.part is None:
        return scores
    poses = [original.pose, *NOVEL_POSES]
    truth = truth_views(request, original, poses, cfg.resolution)
    scores["psnr_view"] = masked_psnr(result.image[0], truth[0])
    cams = pose_cameras(NOVEL_POSES, cfg.resolution).to(result.ws.device)
    with torch.no_grad():
        novel = gen.render(gen.synthesis(result.ws), cams, warp=result.rays).rgb.cpu()
    scores["psnr_novel"] = sum(
        masked_psnr(novel[i], truth[i + 1]) for i in range(len(NOVEL_POSES))
    ) / len(NOVEL_POSES)
    scores.update(true_surface_scale(request, original, cfg))
    return scores
