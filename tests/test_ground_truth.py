"""Similarity-aligned ground-truth scores against world assets."""

import math
from dataclasses import replace

import pytest
import torch

from dreamlift.cameras import orbit_cameras
from dreamlift.metrics.ground_truth import (
    Alignment,
    GroundTruthSettings,
    asset_renderer,
    ground_truth_scores,
    neighbour_view_iou,
    part_frame_alignment,
    result_hull,
    scoring_cameras,
    shape_ranking,
    silhouette_scores,
)
from dreamlift.world import RenderSettings, asset_from_caption, render
from dreamlift.world.assets import Asset


def _similar_copy(asset: Asset, scale: float, yaw: float, shift: tuple) -> Asset:
    """The asset moved by x ↦ scale R(yaw) x + shift (parts turn with it)."""
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    parts = []
    for p in asset.parts:
        x, y, z = (scale * v for v in p.center)
        center = (c * x - s * y + shift[0], s * x + c * y + shift[1], z + shift[2])
        parts.append(replace(p, center=center, scale=p.scale * scale, yaw_deg=p.yaw_deg + yaw))
    return replace(asset, parts=tuple(parts))


def test_alignment_cameras_are_exact_for_a_known_similarity():
    """Rendering the moved copy through the inverse-moved cameras reproduces the original."""
    asset = asset_from_caption("a green cone")
    moved = _similar_copy(asset, 0.7, 33.0, (0.15, -0.1, 0.05))
    scale, yaw = 1 / 0.7, -33.0
    rot = Alignment(scale, yaw).rotation()
    t = -(rot @ torch.tensor([0.15, -0.1, 0.05])) * scale
    exact = Alignment(scale, yaw, tuple(t.tolist()))
    cams = scoring_cameras(GroundTruthSettings())
    truth = asset_renderer(asset, 3)(cams)
    pred = asset_renderer(moved, 3)(exact.cameras_for_result(cams))
    iou, colour = silhouette_scores(pred, truth)
    assert iou > 0.99
    assert colour is not None and colour < 0.1  # shading turns with the part, light does not


@pytest.mark.parametrize("caption", ["a red cube", "a purple torus"])
def test_the_true_asset_scores_one(caption):
    asset = asset_from_caption(caption)
    scores = ground_truth_scores(asset_renderer(asset, 3), asset)
    assert scores["silhouette_iou"] > 0.98
    assert scores["colour_error"] < 0.03
    assert scores["align_scale"] == pytest.approx(1.0, abs=0.03)
    truth = scores["neighbour_view_iou_truth"]
    assert scores["neighbour_view_iou"] == pytest.approx(truth, abs=0.02)


def test_neighbour_view_iou_tells_a_cube_from_a_solid_of_revolution():
    """Face-on and corner-on views of a cube differ; a cone looks the same from every azimuth,
    and so does a result that repeats one silhouette in every view (a cube "spun" about z)."""
    cams = scoring_cameras(GroundTruthSettings())

    def masks(caption):
        return asset_renderer(asset_from_caption(caption), 3)(cams)["opacity"][..., 0] > 0.5

    cube, cone = masks("a red cube"), masks("a green cone")
    assert neighbour_view_iou(cube) < 0.85
    assert neighbour_view_iou(cone) > 0.97
    spun = cube[1:2].expand_as(cube)  # the corner-on silhouette from every azimuth
    assert neighbour_view_iou(spun) == 1.0


@pytest.mark.parametrize(
    ("caption", "scale", "yaw", "shift"),
    [
        ("a green cone", 0.7, 33.0, (0.15, -0.1, 0.05)),
        ("a purple torus", 1.2, 80.0, (-0.1, 0.05, -0.1)),
        ("a red cube with a blue sphere on top", 0.8, 10.0, (0.0, 0.1, 0.1)),
    ],
)
def test_a_moved_scaled_turned_copy_is_realigned(caption, scale, yaw, shift):
    asset = asset_from_caption(caption)
    moved = _similar_copy(asset, scale, yaw, shift)
    unaligned = silhouette_scores(
        asset_renderer(moved)(scoring_cameras(GroundTruthSettings())),
        asset_renderer(asset)(scoring_cameras(GroundTruthSettings())),
    )[0]
    scores = ground_truth_scores(asset_renderer(moved, 3), asset)
    assert scores["silhouette_iou"] > 0.95 > unaligned
    assert scores["align_scale"] == pytest.approx(1 / scale, rel=0.08)


def test_an_empty_result_scores_zero():
    asset = asset_from_caption("a red cube")

    def empty(cameras):
        b, h, w = len(cameras), cameras.height, cameras.width
        return {"rgb": torch.ones(b, h, w, 3), "opacity": torch.zeros(b, h, w, 1)}

    scores = ground_truth_scores(empty, asset)
    assert scores["silhouette_iou"] == 0.0 and scores["colour_error"] is None


def test_wrong_shape_scores_lower_and_ranking_names_the_true_shape():
    cone = asset_from_caption("a green cone")
    sphere = asset_from_caption("a green sphere")
    assert ground_truth_scores(asset_renderer(sphere), cone)["silhouette_iou"] < 0.9
    ranking = shape_ranking(asset_renderer(cone), cone.description)
    assert ranking["winner"] == "cone" and ranking["described_wins"]
    assert ranking["margin"] > 0.05
    assert set(ranking["ious"]) >= {"cube", "sphere", "cylinder", "cone", "torus"}


def test_ranking_of_a_composition_varies_each_object():
    asset = asset_from_caption("a red cube with a blue sphere on top")
    settings = GroundTruthSettings(render_evaluations=8)
    ranking = shape_ranking(asset_renderer(asset), asset.description, settings)
    assert ranking["described"] == ["0:cube", "1:sphere"]
    assert ranking["described_wins"]
    carved = result_hull(asset_renderer(asset), settings)  # handed in: the same ranking
    assert shape_ranking(asset_renderer(asset), asset.description, settings, carved) == ranking


def test_orbit_cameras_helper_is_consistent_with_scoring_views():
    cams = scoring_cameras(GroundTruthSettings(views=4, resolution=32))
    ref = orbit_cameras(
        torch.tensor([0.0, 90.0, 180.0, 270.0]), torch.full((4,), 20.0), 2.7, 40, 32
    )
    assert torch.allclose(cams.c2w, ref.c2w, atol=1e-5)


def test_toy_clip_scores_on_a_tiny_random_clip(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("torchmetrics")
    from test_metrics_clip import save_tiny_clip

    from dreamlift.metrics.ground_truth import toy_clip_scores

    folder = save_tiny_clip(tmp_path / "clip")
    asset = asset_from_caption("a red cube with a blue sphere on top")
    settings = GroundTruthSettings(views=4)
    scores = toy_clip_scores(str(folder), asset_renderer(asset), asset.description, settings)
    assert -1.0 <= scores["clip_similarity"] <= 1.0
    assert 0.0 <= scores["clip_r_precision"] <= 1.0


def test_similarities_compose_and_invert_as_maps_of_points():
    a = Alignment(1.3, 40.0, (0.1, -0.2, 0.3))
    b = Alignment(0.8, -75.0, (-0.05, 0.4, 0.0))
    x = torch.tensor([0.3, -0.7, 0.2])

    def apply(al: Alignment, p: torch.Tensor) -> torch.Tensor:
        return al.scale * (al.rotation() @ p) + torch.tensor(al.translation)

    assert torch.allclose(apply(a.then(b), x), apply(b, apply(a, x)), atol=1e-6)
    assert torch.allclose(apply(a.inverse(), apply(a, x)), x, atol=1e-6)
    identity = a.then(a.inverse())
    assert identity.scale == pytest.approx(1.0) and torch.allclose(
        torch.tensor(identity.translation), torch.zeros(3), atol=1e-6
    )


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("a red cube", "a red cube with a yellow cone on top"),
        ("a red cube with a blue sphere on top", "a red cube"),
        ("a green cube", "a green cube next to a red sphere"),
    ],
)
def test_the_kept_object_is_seen_in_its_source_frame_through_the_part_alignment(source, target):
    """The world lays a composition out anew; undoing the kept part's placement change puts
    the target's object exactly where the source has it (the pixels neither asset covers with
    another object agree)."""
    src, tgt = asset_from_caption(source), asset_from_caption(target)
    cams = scoring_cameras(GroundTruthSettings())
    to_source = part_frame_alignment(Alignment(), tgt.parts[0], src.parts[0])
    seen = render(src, cams, RenderSettings())
    moved = render(tgt, to_source.cameras_for_result(cams), RenderSettings())
    plain = render(tgt, cams, RenderSettings())
    both = (seen["instance"] == 0) & (moved["instance"] == 0)
    assert float(both.sum()) > 0.8 * float((seen["instance"] == 0).sum())
    error = (moved["rgb"] - seen["rgb"]).abs().amax(-1)[both]
    assert float(error.mean()) < 1e-3
    assert float((plain["instance"] == 0)[seen["instance"] == 0].float().mean()) < 0.8  # moved
