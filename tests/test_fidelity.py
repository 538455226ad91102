"""An edit's fidelity to its source over the objects it keeps, each in its own frame
(:mod:`dreamlift.metrics.fidelity`), checked with the world's own renders as the fields."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from dreamlift.metrics.fidelity import (
    YAW_SYMMETRY_DEG,
    fidelity_psnr,
    kept_objects,
    kept_region,
)
from dreamlift.metrics.ground_truth import (
    Alignment,
    GroundTruthSettings,
    asset_renderer,
    ground_truth_scores,
    scoring_cameras,
)
from dreamlift.world import RenderSettings, asset_from_caption, parse, render
from dreamlift.world.shapes import SHAPES

EDITS = {
    "add on top": ("a red cube", "a red cube with a yellow cone on top"),
    "add next to": ("a green cube", "a green cube next to a red sphere"),
    "remove": ("a red cube with a blue sphere on top", "a red cube"),
}


def test_kept_objects_are_those_both_captions_name_alike():
    def pairs(source: str, target: str) -> list[tuple[int, int]]:
        return kept_objects(parse(source), parse(target))

    assert pairs("a red cube", "a red cube with a yellow cone on top") == [(0, 0)]
    assert pairs("a red cube with a blue sphere on top", "a red cube") == [(0, 0)]
    assert pairs("a red cube with a blue sphere on top", "a blue sphere") == [(1, 0)]
    assert pairs("a red cube", "a blue cube") == []  # a recolouring keeps nothing
    assert pairs("a red cube", "a red sphere") == []
    assert pairs("a red cube next to a red cube", "a red cube") == [(0, 0)]  # matched once


def _scores(edited, source, target, edit_to_target, **kwargs):  # noqa: ANN001, ANN202
    pairs = kept_objects(parse(source), parse(target))
    src, tgt = asset_from_caption(source), asset_from_caption(target)
    return fidelity_psnr(
        asset_renderer(edited, 3), asset_renderer(src, 3), src, tgt, pairs, edit_to_target,
        **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("edit", list(EDITS))
def test_the_true_target_keeps_the_object_and_an_unedited_source_not_added_to(edit):
    """The world's target, aligned onto itself as a result's scores align it, matches the
    source where the object is kept (compared in the source's frame as it is, the truth
    scores < 10 dB: tests/test_benchmarks_edit.py). The unedited source of an addition,
    aligned onto a target it is not, does not; that of a removal does keep the object (that
    it failed to remove the other is the caption's and the IoU's to say)."""
    source, target = EDITS[edit]
    truth = asset_from_caption(target)
    to_target = Alignment.from_scores(ground_truth_scores(asset_renderer(truth, 3), truth))
    scores = _scores(truth, source, target, to_target)
    assert scores is not None and scores["fidelity_psnr"] >= 30.0

    unedited = asset_from_caption(source)
    fit = Alignment.from_scores(ground_truth_scores(asset_renderer(unedited, 3), truth))
    kept = _scores(unedited, source, target, fit)["fidelity_psnr"]
    assert kept < 25.0 if edit.startswith("add") else kept >= 30.0


def test_the_region_leaves_out_what_an_added_object_covers():
    source, target = (asset_from_caption(c) for c in EDITS["add on top"])
    cams = scoring_cameras(GroundTruthSettings())
    (region,) = kept_region(source, target, [(0, 0)], cams)
    alone = render(source, cams, RenderSettings())["instance"] == 0
    assert bool((region <= alone).all())
    assert 0.7 * float(alone.sum()) < float(region.sum()) < float(alone.sum())  # the cone's base


def test_a_source_in_another_frame_is_brought_onto_its_asset():
    """A source field drawn moved and scaled (as a text-to-3D run is) scores as the one in
    the world's frame once its own alignment is given (not turned: the world's light stays
    put, so a turned copy is shaded otherwise)."""
    source, target = EDITS["add on top"]
    src, tgt = asset_from_caption(source), asset_from_caption(target)
    scale, yaw, shift = 0.8, 0.0, (0.1, -0.05, 0.05)
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    moved = replace(src, parts=tuple(
        replace(p, center=(c * scale * p.center[0] - s * scale * p.center[1] + shift[0],
                           s * scale * p.center[0] + c * scale * p.center[1] + shift[1],
                           scale * p.center[2] + shift[2]),
                scale=p.scale * scale, yaw_deg=p.yaw_deg + yaw)
        for p in src.parts
    ))  # fmt: skip
    placed = Alignment(scale, yaw, shift)  # the asset's frame → the moved field's
    pairs = [(0, 0)]
    common = (src, tgt, pairs, Alignment())
    plain = fidelity_psnr(asset_renderer(tgt, 3), asset_renderer(src, 3), *common)
    frame = fidelity_psnr(
        asset_renderer(tgt, 3), asset_renderer(moved, 3), *common, source_to_asset=placed.inverse()
    )
    wrong = fidelity_psnr(asset_renderer(tgt, 3), asset_renderer(moved, 3), *common)
    assert plain is not None and frame is not None and wrong is not None
    assert frame["fidelity_psnr"] == pytest.approx(plain["fidelity_psnr"], abs=3.0)
    assert wrong["fidelity_psnr"] < frame["fidelity_psnr"] - 10.0


def test_nothing_kept_gives_no_score():
    src, tgt = asset_from_caption("a red cube"), asset_from_caption("a blue cube")
    fn = asset_renderer(src)
    assert fidelity_psnr(fn, fn, src, tgt, [], Alignment()) is None


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_yaw_symmetries_map_each_shape_onto_itself(shape):
    assert set(YAW_SYMMETRY_DEG) == set(SHAPES)
    period = YAW_SYMMETRY_DEG[shape]
    turn = 37.0 if period is None else period  # any angle for a solid of revolution
    asset = asset_from_caption(f"a red {shape}")
    turned = replace(asset, parts=(replace(asset.parts[0], yaw_deg=turn),))
    cams = scoring_cameras(GroundTruthSettings())
    a, b = (render(x, cams, RenderSettings())["alpha"][..., 0] > 0.5 for x in (asset, turned))
    assert float((a ^ b).float().mean()) < 0.003  # the same silhouettes, up to a few edge pixels


@pytest.mark.parametrize("azimuth", [90.0, 180.0, 270.0])
def test_an_alignment_found_at_a_symmetric_turn_scores_as_the_unturned_one(azimuth):
    """The scorer may report any of a symmetric target's equivalent turns; the kept object
    is compared facing as the source does, not a quarter turn off (shading is baked)."""
    source, target = EDITS["add on top"]  # a cube under a cone: symmetric under quarter turns
    straight = _scores(asset_from_caption(target), source, target, Alignment())
    turned = _scores(asset_from_caption(target), source, target, Alignment(1.0, azimuth))
    assert turned["fidelity_psnr"] == pytest.approx(straight["fidelity_psnr"], abs=0.5)
    off = _scores(asset_from_caption(target), source, target, Alignment(1.0, azimuth + 5.0))
    assert off["fidelity_psnr"] < straight["fidelity_psnr"] - 5.0  # a real misalignment counts
