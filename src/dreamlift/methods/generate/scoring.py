"""Scores of a generated field against the world asset its caption describes.

``world_scores`` is the end-of-run report (aligned silhouette IoU and colour error over 8
views, the shape and colour rankings, the caption judged object by object — ``caption``:
per object what it was meant to be and what it looks like, and ``caption_correct`` —
toy-clip similarity and R-precision); ``quick_iou`` is
the cheap periodic evaluation (4 views, a coarser hull, few refinements) that traces
quality against training time, in an :class:`EvalCurve`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from dreamlift.errors import DreamliftError
from dreamlift.fields.base import Field
from dreamlift.methods.common.outputs import field_renderer
from dreamlift.methods.generate.config import GenerateConfig
from dreamlift.world import asset_from_caption, caption
from dreamlift.world.assets import Description

QUICK_SETTINGS = {
    "views": 4,
    "hull_azimuths": 4,
    "hull_resolution": 32,
    "azimuth_step": 30.0,
    "refine_iterations": 10,
    "render_evaluations": 6,
}
"""Ground-truth settings of :func:`quick_iou`: 4 scoring views, a 32³ hull from 12 views,
a coarser search."""


def described_asset(desc: Description):
    return asset_from_caption(caption(dataclasses.replace(desc, view=None)))


def world_scores(
    cfg: GenerateConfig, fld: Field, desc: Description, warnings: list[str]
) -> dict[str, Any]:
    """Ground truth (aligned silhouette IoU, colour error, shape and colour rankings, the
    caption judged object by object) and toy-clip similarity and R-precision."""
    from dreamlift.metrics.colour import colour_ranking
    from dreamlift.metrics.composition import score_caption
    from dreamlift.metrics.ground_truth import (
        GroundTruthSettings,
        ground_truth_scores,
        result_hull,
        toy_clip_scores,
    )
    from dreamlift.metrics.shape_hulls import asset_hull

    render_fn = field_renderer(fld)
    settings = GroundTruthSettings(render_evaluations=cfg.score_refinements)
    hull = result_hull(render_fn, settings)
    asset = described_asset(desc)
    target = asset_hull(asset, settings)
    scores: dict[str, Any] = dict(
        ground_truth_scores(render_fn, asset, settings, hull=hull, target_hull=target)
    )
    if len(desc.objects) == 1:
        scores.update(colour_ranking(render_fn, desc, settings))
    caption_scores = score_caption(render_fn, desc, settings, hull=hull)
    scores["caption"] = caption_scores
    scores["caption_correct"] = caption_scores["caption_correct"]
    if cfg.rank_shapes and len(desc.objects) == 1:
        # the object's aligned hull IoU with every world shape (metrics/composition.py): the
        # silhouette ranking of metrics/ground_truth.py asks the same in twice the time
        (judged,) = caption_scores["objects"]
        ious = judged["shape_ious"]
        others = [v for k, v in ious.items() if k != desc.objects[0].shape]
        scores["shape_ious"] = ious
        scores["shape_winner"] = judged["shape_winner"]
        scores["shape_margin"] = ious[desc.objects[0].shape] - max(others)
        scores["shape_correct"] = judged["shape_correct"]
    try:
        scores.update(toy_clip_scores(cfg.judge, render_fn, desc))
    except DreamliftError as exc:
        warnings.append(f"no CLIP scores: {exc}")
    return scores


def quick_iou(fld: Field, desc: Description) -> float:
    """The aligned silhouette IoU on 4 views with a coarse alignment (about a second on a
    CPU for a toy-sized field): the periodic ``eval_iou`` of a run."""
    from dreamlift.metrics.ground_truth import GroundTruthSettings, ground_truth_scores

    settings = GroundTruthSettings(**QUICK_SETTINGS)
    was_training = fld.training
    fld.eval()
    try:
        scores = ground_truth_scores(field_renderer(fld), described_asset(desc), settings)
    finally:
        fld.train(was_training)
    return float(scores["silhouette_iou"] or 0.0)


class EvalCurve:
    """The periodic ``eval_iou`` of a run (every ``every`` steps) against its training time,
    the time spent evaluating left out."""

    def __init__(self, fld: Field, desc: Description, every: int) -> None:
        self.fld, self.desc, self.every = fld, desc, every
        self.points: list[dict[str, float]] = []
        self.started, self.evaluating = time.perf_counter(), 0.0

    def on_log(self, done: int) -> dict[str, float]:
        """The loop's ``on_log``: ``done`` steps have completed."""
        if done % self.every:
            return {}
        t = time.perf_counter()
        iou = quick_iou(self.fld, self.desc)
        self.points.append({"step": done, "time_s": t - self.started - self.evaluating, "iou": iou})
        self.evaluating += time.perf_counter() - t
        return {"eval_iou": iou}

    def finish(self, steps_done: int, loop_s: float) -> float:
        """Evaluate the end state unless the last point already did; the seconds it took."""
        if self.points and self.points[-1]["step"] == steps_done:
            return 0.0
        t = time.perf_counter()
        iou = quick_iou(self.fld, self.desc)
        self.points.append({"step": steps_done, "time_s": loop_s, "iou": iou})
        return time.perf_counter() - t
