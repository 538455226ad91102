"""A caption judged object by object: what each described object looks like in the result.

A silhouette IoU over the whole result cannot tell two pink pyramids from "a pink pyramid
next to a cyan torus", nor a cone on a grey cylinder from "an orange cone on top of a white
cube". So :func:`score_caption`:

1. **Finds each object's region** by its place, as the grammar lays the objects out
   (``world/captions.py``): along the vertical for "on top" (bottom, then top) and along
   the front view's left-to-right axis (world +y) for "next to", in the result's own frame
   (its front is the front view its view words trained). The result's visual hull
   (:mod:`dreamlift.metrics.ground_truth`) is cut by planes across that axis where the
   described layout puts the boundaries (as shares of the hull's extent), moved to the
   thinnest slice of the hull within ``WINDOW`` of it when that slice is a gap or a neck
   (the space between side-by-side objects, where a sphere meets a cube).
2. **Ranks each object's shape** among the world's shapes: the 3D IoU of its part of the hull
   with each shape's own hull after the best similarity (the alignment of
   :func:`~dreamlift.metrics.ground_truth.align`). Cutting the whole result's hull, rather
   than re-carving each object from its own pixels, keeps an object hidden behind another
   in some views from being carved away.
3. **Names each object's colour** with :func:`~dreamlift.metrics.colour.judge_colour` over
   the pixels of the scoring views whose surface point (from the rendered depth) lies in
   the object's region.
4. **Checks the relation**: every region holds at least ``MIN_SHARE`` of the hull; objects
   next to each other are apart (an empty slice at each cut); objects on top of each other
   are stacked, not side by side (no region falls apart into pieces across the ground).

The caption is right when every object has the described shape and colour and the relation
holds. :func:`agreement` re-uses one scoring to rank a result against other descriptions
(the edit method's "one object different" variants) without rendering again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from dreamlift.metrics.colour import judge_colour
from dreamlift.metrics.ground_truth import (
    GroundTruthSettings,
    RenderFn,
    _align_hulls,
    _Hull,
    _hull,
    scoring_cameras,
)
from dreamlift.metrics.shape_hulls import shape_hull
from dreamlift.world import Lighting, layout
from dreamlift.world.assets import Description
from dreamlift.world.shapes import SHAPES

WINDOW = 0.12
"""How far (share of the hull's extent along the axis) a cut may move from the layout's."""
MIN_SHARE = 0.08
"""Least share of the hull's volume an object's region must hold."""
GAP_SHARE = 0.15
"""A slice is empty (a gap) when it holds at most this share of the median slice's voxels."""
RANK_REFINE_ITERATIONS = 10
"""Pattern-search rounds (×10 evaluations) of each shape's alignment when ranking shapes."""
NECK_SHARE = 0.5
"""A cut moves to the thinnest slice only when it holds at most this share of the median."""
ROLES = {"single": ("object",), "on_top": ("bottom", "top"), "next_to": ("left", "right")}


@dataclass(frozen=True)
class Regions:
    """Cuts across one axis of the result's frame; object k lies between cut k-1 and cut k."""

    axis: int  # 1: y (left to right from the front), 2: z (up)
    cuts: tuple[float, ...]

    def index(self, points: Tensor) -> Tensor:
        """Object index (long, shape of ``points[..., 0]``) of world points (..., 3)."""
        cuts = torch.tensor(self.cuts, dtype=points.dtype)
        return torch.bucketize(points[..., self.axis].contiguous(), cuts)


def _roles(description: Description) -> tuple[str, ...]:
    n = len(description.objects)
    if description.relation == "next_to" and n == 3:
        return ("left", "middle", "right")
    return ROLES[description.relation][:n]


def _layout_shares(description: Description, axis: int) -> list[float]:
    """Where the described layout puts the boundaries between objects, as shares of its
    extent along ``axis``."""
    asset = layout(replace(description, view=None))
    spans = []
    for part in asset.parts:
        spec = SHAPES[part.shape]
        half = (spec.half_height if axis == 2 else spec.half_width) * part.scale
        spans.append((part.center[axis] - half, part.center[axis] + half))
    lo, hi = spans[0][0], spans[-1][1]
    return [((a[1] + b[0]) / 2 - lo) / (hi - lo) for a, b in zip(spans, spans[1:], strict=False)]


def _profile(points: Tensor, axis: int, lo: float, step: float, bins: int) -> Tensor:
    index = ((points[:, axis] - lo) / step).round().long().clamp(0, bins - 1)
    return torch.bincount(index, minlength=bins).float()


def find_regions(hull: _Hull, description: Description) -> tuple[Regions, list[bool]]:
    """The cuts between the described objects in the result's hull, and whether each cut
    falls in an empty slice (a gap)."""
    axis = 2 if description.relation == "on_top" else 1
    if len(description.objects) == 1 or not len(hull.points):
        return Regions(axis, ()), []
    coords = hull.points[:, axis]
    lo, hi = float(coords.min()), float(coords.max())
    step = 2 * hull.half / hull.occupancy.shape[0]
    bins = max(int(round((hi - lo) / step)) + 1, 1)
    profile = _profile(hull.points, axis, lo, step, bins)
    median = float(profile[profile > 0].median())
    centres = lo + torch.arange(bins) * step
    cuts, gaps = [], []
    for share in _layout_shares(description, axis):
        planned = lo + share * (hi - lo)
        near = ((centres - planned).abs() <= WINDOW * (hi - lo)).nonzero().squeeze(-1)
        if not len(near):
            cuts.append(planned)
            gaps.append(False)
            continue
        # the thinnest slice when it is a neck or a gap (among slices within 5 % of it, the
        # one nearest the plan); else the plan (a cone standing on a narrower cylinder)
        counts = profile[near]
        thin = near[counts <= counts.min() + 0.05 * median]
        best = thin[(centres[thin] - planned).abs().argmin()]
        neck = float(profile[best]) <= NECK_SHARE * median
        cuts.append(float(centres[best]) if neck else planned)
        gaps.append(float(profile[best]) <= GAP_SHARE * median)
    return Regions(axis, tuple(cuts)), gaps


def _sub_hull(hull: _Hull, regions: Regions, k: int) -> _Hull:
    r = hull.occupancy.shape[0]
    axis_values = (torch.arange(r, dtype=torch.float32) + 0.5) * (2 * hull.half / r) - hull.half
    zz, yy, xx = torch.meshgrid(axis_values, axis_values, axis_values, indexing="ij")
    grid = torch.stack([xx, yy, zz], dim=-1) + hull.center
    keep = (regions.index(grid) == k) & (hull.occupancy > 0.5)
    points = grid[keep]
    voxel = (2 * hull.half / r) ** 3
    centroid = points.mean(0) if len(points) else torch.zeros(3)
    return _Hull(keep.float(), hull.center, hull.half, points, len(points) * voxel, centroid)


def _interior_gap(points: Tensor, axis: int, step: float) -> bool:
    """Whether the points fall apart into pieces along ``axis`` (an empty slice between two
    runs of slices that each hold at least 10 % of them)."""
    if len(points) < 2:
        return False
    lo = float(points[:, axis].min())
    bins = max(int(round((float(points[:, axis].max()) - lo) / step)) + 1, 1)
    profile = _profile(points, axis, lo, step, bins)
    before = profile.cumsum(0)
    total = float(before[-1])
    empty = profile == 0
    return bool((empty & (before >= 0.1 * total) & (total - before >= 0.1 * total)).any())


def rank_shape(hull: _Hull, settings: GroundTruthSettings) -> dict[str, float]:
    """Aligned 3D hull IoU {shape: IoU} of an object's hull with each world shape's (a
    shorter pattern search than a score's alignment: ``RANK_REFINE_ITERATIONS``)."""
    quick = replace(settings, refine_iterations=RANK_REFINE_ITERATIONS)
    return {
        shape: _align_hulls(hull, shape_hull(shape, settings), quick).hull_iou for shape in SHAPES
    }


def _unproject(out: dict[str, Tensor], settings: GroundTruthSettings) -> Tensor:
    origins, dirs, z_per_t = scoring_cameras(settings).rays()
    depth = out["depth"].detach().cpu()
    return origins + dirs * (depth / z_per_t)


def score_caption(
    render_fn: RenderFn,
    description: Description,
    settings: GroundTruthSettings | None = None,
    lighting: Lighting | None = None,
    hull: _Hull | None = None,
) -> dict[str, object]:
    """Judge a result against a caption object by object (the module doc's steps).

    ``render_fn`` must return ``depth`` besides ``rgb`` and ``opacity``; ``hull`` is the
    result's ``result_hull`` at these ``settings``, if already carved. Returns
    ``objects`` (per object: ``role``, ``meant``, ``looks_like``, ``shape_winner``,
    ``shape_ious``, ``shape_correct``, ``colour_verdict``, ``colour_named``,
    ``colour_nearest``, ``colour_correct``, ``region_share``), ``relation``,
    ``relation_correct``, ``relation_checks`` and ``caption_correct``.
    """
    settings = settings or GroundTruthSettings()
    hull = hull if hull is not None else _hull(render_fn, settings)
    regions, gaps = find_regions(hull, description)
    with torch.no_grad():
        out = render_fn(scoring_cameras(settings))
    if "depth" not in out:
        raise ValueError("score_caption needs a render function that returns depth")
    visible = out["opacity"][..., 0].detach().cpu() > 0.5
    owner = regions.index(_unproject(out, settings))
    step = 2 * hull.half / hull.occupancy.shape[0]
    objects, checks = [], {"found": True, "apart": True, "stacked": True}
    for k, (obj, role) in enumerate(zip(description.objects, _roles(description), strict=True)):
        part = _sub_hull(hull, regions, k)
        share = part.volume / hull.volume if hull.volume else 0.0
        ious = rank_shape(part, settings) if part.volume else dict.fromkeys(SHAPES, 0.0)
        winner = max(ious, key=ious.__getitem__)
        colour = judge_colour(
            out["rgb"], visible & (owner == k), obj.shape, obj.colour, lighting, settings
        )
        named = (
            colour["named"] or f"unnamed ({colour['verdict']}, nearest {colour['colour_winner']})"
        )
        found = share >= MIN_SHARE
        objects.append(
            {
                "role": role,
                "meant": f"{obj.colour} {obj.shape}",
                "looks_like": f"{named} {winner}" if found else "nothing",
                "shape_winner": winner,
                "shape_ious": ious,
                "shape_correct": winner == obj.shape and found,
                "colour_verdict": colour["verdict"],
                "colour_named": colour["named"],
                "colour_nearest": colour.get("colour_winner"),
                "colour_correct": bool(colour["colour_correct"]),
                "region_share": share,
            }
        )
        checks["found"] &= found
        if description.relation == "on_top" and len(part.points):
            checks["stacked"] &= not any(_interior_gap(part.points, a, step) for a in (0, 1))
    if description.relation == "next_to":
        checks["apart"] = all(gaps)
    relation_correct = all(checks.values())
    return {
        "relation": description.relation,
        "objects": objects,
        "relation_checks": checks,
        "relation_correct": relation_correct,
        "caption_correct": relation_correct
        and all(o["shape_correct"] and o["colour_correct"] for o in objects),
    }


def agreement(scores: dict[str, object], description: Description) -> int:
    """How many of ``description``'s object shapes and colours a scored result shows, in its
    regions' order (0 when the relation differs or does not hold): ranks a result against
    variants of its caption with one scoring."""
    objects = scores["objects"]
    assert isinstance(objects, list)
    if description.relation != scores["relation"] or len(objects) != len(description.objects):
        return 0
    if not scores["relation_correct"]:
        return 0
    return sum(
        (o["shape_winner"] == d.shape) + (o["colour_named"] == d.colour)
        for o, d in zip(objects, description.objects, strict=True)
    )
