"""Does a generated object have the described colour? Its mean foreground colour against the
described object rendered in every colour of the world.

Comparing with renders rather than with the palette values keeps shading out of the
question: a red cube's lit and shadowed faces average to a darker red than its albedo, and
the reference renders average the same way.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from dreamlift.metrics.ground_truth import (
    GroundTruthSettings,
    RenderFn,
    asset_renderer,
    scoring_cameras,
)
from dreamlift.world import COLOURS, layout
from dreamlift.world.assets import Description, ObjectSpec


def mean_foreground_colour(out: dict[str, Tensor]) -> Tensor | None:
    """Mean rgb (3,) over the pixels of every view with opacity > 0.5; None when empty."""
    mask = out["opacity"][..., 0].cpu() > 0.5
    if not bool(mask.any()):
        return None
    return out["rgb"].cpu().clamp(0, 1)[mask].mean(0)


def colour_ranking(
    render_fn: RenderFn, description: Description, settings: GroundTruthSettings | None = None
) -> dict[str, object]:
    """Distance (RGB, L2) of the result's mean foreground colour over the scoring views to the
    described object's in each world colour, for single-object captions.

    Returns ``mean_colour``, ``colour_distances`` {colour: distance}, ``colour_winner`` (the
    nearest) and ``colour_correct`` (whether it is the described colour); an empty result has
    no winner.
    """
    if len(description.objects) != 1:
        raise ValueError("colour ranking needs a single-object description")
    settings = settings or GroundTruthSettings()
    cams = scoring_cameras(settings)
    with torch.no_grad():
        mine = mean_foreground_colour(render_fn(cams))
    described = description.objects[0]
    if mine is None:
        return {"mean_colour": None, "colour_winner": None, "colour_correct": False}
    distances = {}
    for colour in COLOURS:
        other = replace(description, objects=(ObjectSpec(colour, described.shape),), view=None)
        reference = mean_foreground_colour(asset_renderer(layout(other))(cams))
        distances[colour] = float("inf") if reference is None else float((mine - reference).norm())
    winner = min(distances, key=distances.__getitem__)
    return {
        "mean_colour": [float(x) for x in mine],
        "colour_distances": distances,
        "colour_winner": winner,
        "colour_correct": winner == described.colour,
    }
