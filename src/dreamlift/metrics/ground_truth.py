"""Ground-truth scores of a generated object against the world asset its caption describes.

A text-to-3D result has no fixed pose or size: the prior decides where the object sits and
how big it is. So the result is first brought onto the asset by the best **similarity**
(scale s, translation t, rotation θ about the vertical axis, the orbit axis of every camera),
and only then scored over ``views`` (8) orbit views: silhouette IoU and the mean absolute
colour error over the pixels both silhouettes cover.

How the alignment is found (:func:`align`):

1. **Visual hulls.** Result and asset are rendered from the same ring of hull cameras
   (several elevations, so the hole of a torus is seen); voxels of a grid over the scene
   whose projections fall inside every silhouette are occupied. Both hulls are built the same
   way, so a perfect result has the asset's hull exactly.
2. **Moments.** The volume ratio gives the scale ``s = (V_asset / V_result)^(1/3)``; for each
   candidate θ the centroids give ``t = c_asset - s R(θ) c_result``.
3. **Grid over θ**, scored by the 3D IoU of the hulls (the asset's occupied voxels mapped into
   the result's frame and read from its hull by trilinear interpolation: no re-rendering).
4. **Refinement.** Pattern search around the best candidate: each of θ, log s, t_x, t_y, t_z
   is stepped up and down, a step is kept when the IoU rises, and step sizes halve when no
   move helps.

The scores themselves re-render the result from the asset's cameras moved by the inverse
similarity (exact for a pinhole camera: the projection of ``s R x + t`` from a camera equals
the projection of ``x`` from the transformed camera), so they are true 2D silhouette scores.

:func:`shape_ranking` asks the question ground truth is for: does the result match the
described shape better than any other shape of the same colour?
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.cameras import DEFAULT_ORBIT, Cameras, orbit_cameras
from dreamlift.metrics.image import mask_iou
from dreamlift.world import Lighting, RenderSettings, layout, render
from dreamlift.world.assets import Asset, Description, ObjectSpec, Part
from dreamlift.world.shapes import SHAPES

RenderFn = Callable[[Cameras], dict[str, Tensor]]
"""Renders the result: cameras → ``rgb`` (B, H, W, 3) on white and ``opacity`` (B, H, W, 1),
and ``depth`` (B, H, W, 1) z-depth where the scorer needs surface points
(:mod:`dreamlift.metrics.composition`)."""


@dataclass(frozen=True)
class GroundTruthSettings:
    """Views scored, hull cameras and search grid. Defaults match the toy prior's orbits."""

    views: int = 8
    """Scoring views, evenly spaced in azimuth from the front."""
    resolution: int = 64
    elevation: float = 20.0
    radius: float = DEFAULT_ORBIT.radius
    fov: float = DEFAULT_ORBIT.fov_deg
    supersample: int = 3
    """Anti-aliasing of the asset's scoring renders (odd: unbiased alpha > 0.5 masks)."""
    hull_azimuths: int = 8
    hull_elevations: tuple[float, ...] = (5.0, 35.0, 70.0)
    hull_resolution: int = 40
    """Voxels per side of the hull grid, a cube fitted around each object."""
    bound: float = 1.1
    """Half-size of the first, scene-wide carving cube."""
    azimuth_step: float = 15.0
    """Spacing of the θ grid in degrees (refinement goes below it)."""
    refine_iterations: int = 40
    """Pattern-search rounds on the hull IoU."""
    render_evaluations: int = 32
    """Re-renders of the scoring views spent refining on the silhouette IoU itself (the hull
    IoU is only a proxy: hulls of a moved object are carved from other relative views)."""
    scale_range: tuple[float, float] = (0.3, 3.0)


@dataclass(frozen=True)
class Alignment:
    """A similarity x ↦ s R(θ) x + t, θ about the vertical (+z) axis: the one taking a
    result onto its asset (:func:`align`), or a placement of one frame in another
    (:func:`placement`, :func:`part_frame_alignment`)."""

    scale: float = 1.0
    azimuth_deg: float = 0.0
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hull_iou: float = 0.0
    """3D IoU of the visual hulls after alignment (the quantity the search maximised)."""

    @classmethod
    def from_scores(cls, scores: object) -> Alignment | None:
        """The alignment :func:`ground_truth_scores` reported (``align_*``); None when the
        scores hold none or a malformed one (a summary.json edited by hand)."""
        if not isinstance(scores, dict):
            return None
        try:
            x, y, z = (float(v) for v in scores["align_translation"])
            scale, azimuth = float(scores["align_scale"]), float(scores["align_azimuth_deg"])
        except (KeyError, TypeError, ValueError):
            return None
        if not all(math.isfinite(v) for v in (x, y, z, azimuth)) or not scale > 0:
            return None
        return cls(scale, azimuth, (x, y, z))

    def apply(self, points: Tensor) -> Tensor:
        """The similarity applied to points (..., 3)."""
        rot = self.rotation().to(points)
        return self.scale * points @ rot.T + torch.tensor(self.translation).to(points)

    def rotation(self) -> Tensor:
        c, s = math.cos(math.radians(self.azimuth_deg)), math.sin(math.radians(self.azimuth_deg))
        return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def then(self, other: Alignment) -> Alignment:
        """The similarity ``other ∘ self`` (this one first): s₂s₁ R(θ₁+θ₂) x + s₂R(θ₂)t₁ + t₂."""
        mine, theirs = (torch.tensor(a.translation, dtype=torch.float32) for a in (self, other))
        t = other.scale * (other.rotation() @ mine) + theirs
        return Alignment(
            self.scale * other.scale,
            (self.azimuth_deg + other.azimuth_deg) % 360.0,
            (float(t[0]), float(t[1]), float(t[2])),
        )

    def inverse(self) -> Alignment:
        """The similarity undoing this one: x ↦ R(−θ)(x − t) / s."""
        t = -(self.rotation().T @ torch.tensor(self.translation, dtype=torch.float32)) / self.scale
        return Alignment(
            1.0 / self.scale, (-self.azimuth_deg) % 360.0, (float(t[0]), float(t[1]), float(t[2]))
        )

    def cameras_for_result(self, cameras: Cameras) -> Cameras:
        """Cameras that see the *unaligned* result as ``cameras`` see the aligned one.

        Camera rotation R_c and centre c become Rᵀ R_c and Rᵀ (c - t) / s.
        """
        rot = self.rotation().to(cameras.c2w)
        t = torch.tensor(self.translation).to(cameras.c2w)
        c2w = cameras.c2w.clone()
        c2w[:, :3, :3] = rot.T @ cameras.c2w[:, :3, :3]
        c2w[:, :3, 3] = ((cameras.centers - t) @ rot) / self.scale
        return Cameras(
            c2w, cameras.fx, cameras.fy, cameras.cx, cameras.cy, cameras.width, cameras.height
        )


def placement(part: Part) -> Alignment:
    """The similarity placing an object's unit-scale model at the origin as ``part`` places it
    (:meth:`Part.sdf`: scale, yaw about +z, then the centre)."""
    return Alignment(part.scale, part.yaw_deg % 360.0, part.center)


def part_frame_alignment(result_to_target: Alignment, target: Part, source: Part) -> Alignment:
    """Result → source frame, through one object the two assets share.

    The world lays a composition out anew (a cube under a cone sits lower and smaller than
    the cube alone), so an edit matching its target has moved the kept object by exactly the
    similarity between its ``target`` and ``source`` placements; undoing it lets the edited
    result be compared with the source where that object is.
    """
    return result_to_target.then(placement(target).inverse()).then(placement(source))


# ---------------------------------------------------------------------- cameras and hulls
def scoring_cameras(settings: GroundTruthSettings) -> Cameras:
    azimuth = torch.arange(settings.views, dtype=torch.float32) * 360.0 / settings.views
    elevation = torch.full_like(azimuth, settings.elevation)
    return orbit_cameras(azimuth, elevation, settings.radius, settings.fov, settings.resolution)


def hull_cameras(settings: GroundTruthSettings) -> Cameras:
    n = settings.hull_azimuths
    az, el = [], []
    for i, e in enumerate(settings.hull_elevations):
        offset = (i % 2) * 180.0 / n  # stagger the rings so silhouettes differ
        az += [offset + k * 360.0 / n for k in range(n)]
        el += [e] * n
    return orbit_cameras(
        torch.tensor(az), torch.tensor(el), settings.radius, settings.fov, settings.resolution
    )


def _grid_points(center: Tensor, half: float, resolution: int) -> Tensor:
    """Voxel centres (R, R, R, 3) of the cube ``center ± half``, indexed [z, y, x]."""
    axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) * (2 * half / resolution) - half
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([xx, yy, zz], dim=-1) + center


def visual_hull(masks: Tensor, cameras: Cameras, points: Tensor) -> Tensor:
    """Occupancy (bool, shape of ``points[..., 0]``): points inside every silhouette.

    ``masks`` (B, H, W) bool; a point projecting outside an image is outside that silhouette.
    """
    flat_points = points.reshape(1, -1, 3).expand(len(cameras), -1, -1)
    pix, depth = cameras.project(flat_points)
    h, w = masks.shape[1:3]
    u, v = pix[..., 0].floor().long(), pix[..., 1].floor().long()
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h) & (depth > 0)
    flat = v.clamp(0, h - 1) * w + u.clamp(0, w - 1)
    seen = torch.gather(masks.reshape(len(cameras), -1), 1, flat) & inside
    return seen.all(dim=0).reshape(points.shape[:-1])


def _silhouettes(render_fn: RenderFn, cameras: Cameras) -> Tensor:
    with torch.no_grad():
        return render_fn(cameras)["opacity"][..., 0].detach().cpu() > 0.5


def asset_renderer(
    asset: Asset, supersample: int = 1, lighting: Lighting | None = None
) -> RenderFn:
    """The world renderer as a :data:`RenderFn` (``alpha`` reported as ``opacity``)."""
    settings = RenderSettings(supersample=supersample)
    if lighting is not None:
        settings = replace(settings, lighting=lighting)

    def fn(cameras: Cameras) -> dict[str, Tensor]:
        out = render(asset, cameras, settings)
        return {"rgb": out["rgb"], "opacity": out["alpha"], "depth": out["depth"]}

    return fn


# ---------------------------------------------------------------------- alignment
@dataclass
class _Hull:
    """A visual hull on a cubic grid fitted around the object (so small objects keep detail)."""

    occupancy: Tensor  # (R, R, R) float, [z, y, x]
    center: Tensor  # (3,) centre of the grid's cube
    half: float  # half-size of the grid's cube
    points: Tensor  # (P, 3) occupied voxel centres
    volume: float  # world units³
    centroid: Tensor  # (3,)


def _hull(render_fn: RenderFn, settings: GroundTruthSettings) -> _Hull:
    """Carve over the whole scene, then again on a cube fitted to the first hull."""
    cams = hull_cameras(settings)
    masks = _silhouettes(render_fn, cams)
    r = settings.hull_resolution
    center, half = torch.zeros(3), settings.bound
    for _ in range(2):
        grid = _grid_points(center, half, r)
        occ = visual_hull(masks, cams, grid)
        points = grid[occ]
        if not len(points):
            return _Hull(occ.float(), center, half, points, 0.0, torch.zeros(3))
        lo, hi = points.amin(0), points.amax(0)
        voxel = 2 * half / r
        center, half = (lo + hi) / 2, float((hi - lo).max()) / 2 + 2 * voxel
    occupancy = visual_hull(masks, cams, _grid_points(center, half, r))
    return hull_from_occupancy(occupancy, center, half)


def hull_from_occupancy(occupancy: Tensor, center: Tensor, half: float) -> _Hull:
    """The hull whose (R, R, R) bool ``occupancy`` [z, y, x] fills the cube ``center ± half``."""
    r = occupancy.shape[0]
    points = _grid_points(center, half, r)[occupancy]
    volume = len(points) * (2 * half / r) ** 3
    return _Hull(occupancy.float(), center, half, points, volume, points.mean(0))


def _hull_iou(result: _Hull, target: _Hull, a: Alignment) -> float:
    """3D IoU of ``target`` and the aligned ``result``, in the target's frame."""
    if target.volume == 0 or result.volume == 0:
        return 0.0
    rot, t = a.rotation(), torch.tensor(a.translation)
    local = ((target.points - t) @ rot) / a.scale  # Rᵀ (x - t) / s, row-vector form
    coords = ((local - result.center) / result.half).reshape(1, 1, 1, -1, 3)
    occ = result.occupancy[None, None]
    hits = F.grid_sample(occ, coords, align_corners=False, padding_mode="zeros").sum()
    inter = float(hits) * target.volume / len(target.points)
    union = target.volume + result.volume * a.scale**3 - inter
    return inter / max(union, 1e-12)


def _moment_alignment(result: _Hull, target: _Hull, azimuth: float, scale: float) -> Alignment:
    probe = Alignment(scale, azimuth)
    t = target.centroid - scale * (probe.rotation() @ result.centroid)
    return Alignment(scale, azimuth, tuple(float(x) for x in t))


def _align_hulls(result: _Hull, target: _Hull, settings: GroundTruthSettings) -> Alignment:
    if result.volume == 0 or target.volume == 0:
        return Alignment()
    lo, hi = settings.scale_range
    scale = min(max((target.volume / result.volume) ** (1 / 3), lo), hi)

    def scored(a: Alignment) -> Alignment:
        return replace(a, hull_iou=_hull_iou(result, target, a))

    steps = int(round(360.0 / settings.azimuth_step))
    best = max(
        (
            scored(_moment_alignment(result, target, k * settings.azimuth_step, scale))
            for k in range(steps)
        ),
        key=lambda a: a.hull_iou,
    )
    voxel = 2 * target.half / settings.hull_resolution
    sizes = [settings.azimuth_step / 2, 0.1, 2 * voxel, 2 * voxel, 2 * voxel]
    best, _ = _pattern_search(
        best,
        lambda a: _hull_iou(result, target, a),
        sizes,
        settings.scale_range,
        settings.refine_iterations * 10,
    )
    return replace(best, hull_iou=_hull_iou(result, target, best))


def _pattern_search(
    start: Alignment,
    score: Callable[[Alignment], float],
    sizes: list[float],
    scale_range: tuple[float, float],
    budget: int,
) -> tuple[Alignment, float]:
    """Step each of (θ, log s, t_x, t_y, t_z) up or down while the score rises; halve the
    steps when no move helps; stop after ``budget`` evaluations."""
    best, best_score, used = start, score(start), 1
    sizes = list(sizes)
    while used < budget:
        improved = False
        for dim in range(5):
            for sign in (1.0, -1.0):
                cand = _moved(best, dim, sign * sizes[dim], scale_range)
                value = score(cand)
                used += 1
                if value > best_score + 1e-6:
                    best, best_score, improved = cand, value, True
                    break
                if used >= budget:
                    return best, best_score
            if improved:
                break
        if not improved:
            sizes = [x / 2 for x in sizes]
    return best, best_score


def _moved(a: Alignment, dim: int, delta: float, scale_range: tuple[float, float]) -> Alignment:
    if dim == 0:
        return replace(a, azimuth_deg=(a.azimuth_deg + delta) % 360.0)
    if dim == 1:
        lo, hi = scale_range
        return replace(a, scale=min(max(a.scale * math.exp(delta), lo), hi))
    t = list(a.translation)
    t[dim - 2] += delta
    return replace(a, translation=(t[0], t[1], t[2]))


def align(
    render_fn: RenderFn, asset: Asset, settings: GroundTruthSettings | None = None
) -> Alignment:
    """The similarity (scale, translation, azimuth) best taking the result onto ``asset``."""
    settings = settings or GroundTruthSettings()
    return _align_hulls(
        _hull(render_fn, settings), _hull(asset_renderer(asset), settings), settings
    )


# ---------------------------------------------------------------------- scores
def silhouette_scores(
    pred: dict[str, Tensor], truth: dict[str, Tensor]
) -> tuple[float, float | None]:
    """(mean silhouette IoU, mean |rgb error| over pixels covered in both; None if none)."""
    a = pred["opacity"][..., 0].cpu() > 0.5
    b = truth["opacity"][..., 0].cpu() > 0.5
    iou = mask_iou(a.float(), b.float())
    both = a & b
    if not bool(both.any()):
        return float(iou.mean()), None
    diff = (pred["rgb"].cpu().clamp(0, 1) - truth["rgb"].cpu()).abs().mean(-1)
    return float(iou.mean()), float(diff[both].mean())


def neighbour_view_iou(masks: Tensor) -> float:
    """Mean silhouette IoU between each view and the next of an evenly spaced orbit ring.

    1.0 for a solid of revolution seen from any elevation; the world's cube scores 0.79 on
    the 8 scoring views (45° apart: face-on against corner-on). A result scoring near 1 where
    its asset scores lower has averaged its shape over azimuth, which is what per-view
    guidance does when the prior cannot tell the object's yaw from the view words.
    """
    views = masks.float()
    return float(mask_iou(views, views.roll(-1, dims=0)).mean())


def _score(
    render_fn: RenderFn,
    result: _Hull,
    asset: Asset,
    settings: GroundTruthSettings,
    target: _Hull | None = None,
) -> dict[str, float | None]:
    target = target if target is not None else _hull(asset_renderer(asset), settings)
    alignment = _align_hulls(result, target, settings)
    cams = scoring_cameras(settings)
    truth = asset_renderer(asset, settings.supersample)(cams)
    truth_masks = truth["opacity"][..., 0] > 0.5

    def silhouette_iou(a: Alignment) -> float:
        masks = _silhouettes(render_fn, a.cameras_for_result(cams))
        inter = (masks & truth_masks).flatten(1).sum(1).float()
        union = (masks | truth_masks).flatten(1).sum(1).float().clamp(min=1)
        return float((inter / union).mean())

    if settings.render_evaluations > 1 and result.volume > 0:
        pixel = 2 * settings.radius * math.tan(math.radians(settings.fov / 2)) / settings.resolution
        sizes = [settings.azimuth_step / 4, 0.04, 2 * pixel, 2 * pixel, 2 * pixel]
        alignment, _ = _pattern_search(
            alignment, silhouette_iou, sizes, settings.scale_range, settings.render_evaluations
        )
    with torch.no_grad():
        pred = render_fn(alignment.cameras_for_result(cams))
    iou, colour = silhouette_scores(pred, truth)
    return {
        "silhouette_iou": iou,
        "colour_error": colour,
        "neighbour_view_iou": neighbour_view_iou(pred["opacity"][..., 0].cpu() > 0.5),
        "neighbour_view_iou_truth": neighbour_view_iou(truth_masks.cpu()),
        "hull_iou": alignment.hull_iou,
        "align_scale": alignment.scale,
        "align_azimuth_deg": alignment.azimuth_deg,
        "align_translation": list(alignment.translation),  # type: ignore[dict-item]
    }


def result_hull(render_fn: RenderFn, settings: GroundTruthSettings) -> _Hull:
    """The visual hull a result is scored by. :func:`ground_truth_scores` and
    ``metrics.composition.score_caption`` each carve it from the same renders unless given
    it: a caller scoring both ways carves it once (24 renders and three carvings, about
    0.2 s of a toy run's scoring)."""
    return _hull(render_fn, settings)


def ground_truth_scores(
    render_fn: RenderFn,
    asset: Asset,
    settings: GroundTruthSettings | None = None,
    hull: _Hull | None = None,
    target_hull: _Hull | None = None,
) -> dict[str, float | None]:
    """Silhouette IoU and foreground colour error over the scoring views after alignment.

    Also returns the alignment (``align_*``), the hull IoU it reached, and how much the
    result's and the asset's silhouettes change between neighbouring scoring views
    (:func:`neighbour_view_iou`). ``hull``: the result's :func:`result_hull` at these
    ``settings``, if already carved; ``target_hull``: the asset's (e.g. the shipped one of
    :func:`dreamlift.metrics.shape_hulls.asset_hull`), else carved here.
    """
    settings = settings or GroundTruthSettings()
    result = hull if hull is not None else _hull(render_fn, settings)
    return _score(render_fn, result, asset, settings, target_hull)


def shape_ranking(
    render_fn: RenderFn,
    description: Description,
    settings: GroundTruthSettings | None = None,
    hull: _Hull | None = None,
) -> dict[str, object]:
    """Aligned silhouette IoU of the result against every world shape in the described colour.

    Only single-object captions have one shape to rank; for compositions the ranking varies
    each object's shape in turn with the others as described, keyed ``"<i>:<shape>"``.
    Returns ``ious`` {candidate: IoU}, ``winner``, ``described`` and ``margin`` (described
    shape's IoU minus the best other one; > 0 means the described shape wins). ``hull``:
    the result's :func:`result_hull` at these ``settings``, if already carved.
    """
    settings = settings or GroundTruthSettings()
    result = hull if hull is not None else _hull(render_fn, settings)
    ious: dict[str, float] = {}
    described: list[str] = []
    for i, obj in enumerate(description.objects):
        key = obj.shape if len(description.objects) == 1 else f"{i}:{obj.shape}"
        described.append(key)
        for shape in SHAPES:
            objects = list(description.objects)
            objects[i] = ObjectSpec(obj.colour, shape)
            asset = layout(replace(description, objects=tuple(objects), view=None))
            name = shape if len(description.objects) == 1 else f"{i}:{shape}"
            ious[name] = float(_score(render_fn, result, asset, settings)["silhouette_iou"] or 0)
    margins = []
    for key in described:
        prefix = key.split(":")[0] + ":" if ":" in key else ""
        others = [v for k, v in ious.items() if k != key and k.startswith(prefix)]
        margins.append(ious[key] - max(others))
    winner = max(ious, key=ious.__getitem__)
    return {
        "ious": ious,
        "described": described[0] if len(described) == 1 else described,
        "winner": winner,
        "margin": min(margins),
        "described_wins": min(margins) > 0,
    }


def toy_clip_scores(
    judge: str,
    render_fn: RenderFn,
    description: Description,
    settings: GroundTruthSettings | None = None,
) -> dict[str, float]:
    """CLIP similarity of the scoring views to the caption (with each view's view word) and
    R-precision against the same caption with one object's shape or colour swapped.

    The views are not aligned: a CLIP model judges any pose. Raises ModelError when the
    ``judge`` model (a folder or zoo name, e.g. ``toy-clip``) is missing.
    """
    from dreamlift.cameras import view_word
    from dreamlift.metrics.clip import ClipScorer
    from dreamlift.world import COLOURS, caption

    settings = settings or GroundTruthSettings()
    scorer = ClipScorer.load(judge)
    cams = scoring_cameras(settings)
    with torch.no_grad():
        images = render_fn(cams)["rgb"].clamp(0, 1)
    azimuths = torch.arange(settings.views, dtype=torch.float32) * 360.0 / settings.views
    views = [view_word(float(a), settings.elevation) for a in azimuths]
    base = replace(description, view=None)
    truths = [caption(base, view) for view in views]
    distractors: list[list[str]] = [[] for _ in views]
    for i, obj in enumerate(description.objects):
        swaps = [ObjectSpec(obj.colour, s) for s in SHAPES if s != obj.shape]
        swaps += [ObjectSpec(c, obj.shape) for c in COLOURS if c != obj.colour]
        for swap in swaps:
            objects = list(description.objects)
            objects[i] = swap
            other = replace(base, objects=tuple(objects))
            for k, view in enumerate(views):
                distractors[k].append(caption(other, view))
    return {
        "clip_similarity": float(scorer.clip_similarity(images, truths).mean()),
        "clip_r_precision": scorer.r_precision(images, truths, distractors),
    }
