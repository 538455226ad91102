"""The shipped shape hulls are the hulls the world's shapes carve to, bit for bit."""

from __future__ import annotations

import dataclasses

import torch

from dreamlift.metrics.ground_truth import GroundTruthSettings, _hull, asset_renderer
from dreamlift.metrics.shape_hulls import (
    _shipped,
    asset_hull,
    carve_shape_hull,
    carving_key,
    shape_hull,
)
from dreamlift.world import asset_from_caption
from dreamlift.world.shapes import SHAPES


def _assert_same_hull(a, b) -> None:
    assert torch.equal(a.occupancy, b.occupancy)
    assert torch.equal(a.center, b.center) and a.half == b.half
    assert torch.equal(a.points, b.points)
    assert a.volume == b.volume and torch.equal(a.centroid, b.centroid)


def test_shipped_hulls_equal_a_fresh_carving_of_every_world_shape() -> None:
    """Fails when the world's shapes or the hull carving change without re-shipping:
    ``python -m dreamlift.metrics.shape_hulls`` writes the file again."""
    settings = GroundTruthSettings()
    key, hulls = _shipped()
    assert key == carving_key(settings)
    assert sorted(hulls) == sorted(SHAPES)
    for shape in SHAPES:
        _assert_same_hull(hulls[shape], carve_shape_hull(shape, settings))


def test_a_single_object_caption_uses_its_shape_hull_whatever_its_colour() -> None:
    settings = GroundTruthSettings()
    asset = asset_from_caption("a green cone")
    assert asset_hull(asset, settings) is shape_hull("cone", settings)
    _assert_same_hull(asset_hull(asset, settings), _hull(asset_renderer(asset), settings))


def test_other_settings_and_compositions_are_carved() -> None:
    quick = dataclasses.replace(GroundTruthSettings(), hull_resolution=24)
    assert shape_hull("cube", quick).occupancy.shape == (24, 24, 24)
    scene = asset_from_caption("a blue sphere on top of a red cube")
    settings = GroundTruthSettings()
    _assert_same_hull(asset_hull(scene, settings), _hull(asset_renderer(scene), settings))
