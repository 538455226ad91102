"""The colour judge names colours as a person would: every palette colour rendered by the world
under every named light is named right, colours half-way between two palette colours are not
claimed as either, and the two pyramids of the olive-versus-grey report are told apart."""

from __future__ import annotations

import itertools

import pytest
import torch

from dreamlift.metrics.colour import (
    ciede2000,
    colour_ranking,
    colour_verdict,
    judge_colour,
    lab_to_srgb,
    srgb_to_lab,
)
from dreamlift.metrics.ground_truth import GroundTruthSettings, asset_renderer, scoring_cameras
from dreamlift.world import COLOURS, LIGHT_DIRECTIONS, SHAPES, RenderSettings, named_light, render
from dreamlift.world.assets import Asset, Part

SETTINGS = GroundTruthSettings()


def render_albedo(
    monkeypatch: pytest.MonkeyPatch, shape: str, rgb, lighting=None, yaw: float = 20.0
) -> dict[str, torch.Tensor]:
    """The world's render of ``shape`` with any albedo (a palette entry added while it renders)."""
    asset = Asset((Part(shape, "_albedo", (0.0, 0.0, 0.0), 1.0, yaw),))
    world = RenderSettings(lighting=lighting) if lighting is not None else RenderSettings()
    with monkeypatch.context() as patch:
        patch.setitem(COLOURS, "_albedo", tuple(float(x) for x in rgb))
        return render(asset, scoring_cameras(SETTINGS), world)


def judged(out, shape: str, described: str, lighting=None) -> dict:
    return judge_colour(out["rgb"], out["alpha"][..., 0] > 0.5, shape, described, lighting)


def test_ciede2000_matches_sharma_test_data():
    # Pairs 1, 7, 20 and 32 of Sharma, Wu & Dalal (2005), table 1.
    lab1 = torch.tensor(
        [[50, 2.6772, -79.7751], [50, 0, 0], [50, 2.5, 0], [63.0109, -31.0961, -5.8663]]
    )
    lab2 = torch.tensor(
        [[50, 0, -82.7485], [50, -1, 2], [56, -27, -3], [62.8187, -29.7946, -4.0864]]
    )
    expected = torch.tensor([2.0425, 2.3669, 31.9030, 1.2630], dtype=torch.float64)
    assert torch.allclose(ciede2000(lab1, lab2)["de"], expected, atol=1e-4)


def test_lab_round_trip():
    rgb = torch.tensor(list(COLOURS.values()))
    assert torch.allclose(lab_to_srgb(srgb_to_lab(rgb)).float(), rgb, atol=1e-5)


@pytest.mark.parametrize("light", [None, *LIGHT_DIRECTIONS])
def test_every_palette_colour_under_every_light_is_named_right(monkeypatch, light):
    lighting = named_light(light) if light else None
    for shape, colour in itertools.product(SHAPES, COLOURS):
        out = render_albedo(monkeypatch, shape, COLOURS[colour], lighting)
        verdict = judged(out, shape, colour, lighting)
        assert verdict["colour_correct"], (shape, light, colour, verdict["verdict"])


def _half_way(a: str, b: str) -> torch.Tensor:
    """The point of the CIELAB segment from a to b equally far (ΔE00) from both."""
    lab_a, lab_b = srgb_to_lab(torch.tensor(COLOURS[a])), srgb_to_lab(torch.tensor(COLOURS[b]))
    lo, hi = 0.0, 1.0
    for _ in range(40):
        t = (lo + hi) / 2
        x = lab_a + t * (lab_b - lab_a)
        if float(ciede2000(x, lab_a)["de"]) < float(ciede2000(x, lab_b)["de"]):
            lo = t
        else:
            hi = t
    return lab_to_srgb(lab_a + lo * (lab_b - lab_a)).float()


def test_colours_half_way_between_two_palette_colours_are_claimed_as_neither(monkeypatch):
    for a, b in itertools.combinations(COLOURS, 2):
        out = render_albedo(monkeypatch, "sphere", _half_way(a, b))
        verdict = judged(out, "sphere", a)
        assert verdict["named"] not in (a, b), (a, b, verdict["verdict"], verdict["named"])


def _pyramid_with_mean_colour(monkeypatch, mean) -> dict[str, torch.Tensor]:
    """A pyramid whose mean foreground colour over the scoring views is ``mean`` (the figure
    a run's old summary reported): its albedo is ``mean`` over the grey pyramid's mean
    shading."""
    grey = asset_renderer(Asset((Part("pyramid", "grey", (0.0, 0.0, 0.0), 1.0, 20.0),)))
    out = grey(scoring_cameras(SETTINGS))
    shading = out["rgb"][out["opacity"][..., 0] > 0.5].mean(0) / torch.tensor(COLOURS["grey"])
    result = render_albedo(monkeypatch, "pyramid", torch.tensor(mean) / shading)
    covered = result["alpha"][..., 0] > 0.5
    assert torch.allclose(result["rgb"][covered].mean(0), torch.tensor(mean), atol=0.01)
    return result


def test_an_olive_pyramid_is_not_grey_and_a_grey_one_is(monkeypatch):
    olive = judged(_pyramid_with_mean_colour(monkeypatch, (0.35, 0.44, 0.27)), "pyramid", "grey")
    grey = judged(_pyramid_with_mean_colour(monkeypatch, (0.34, 0.36, 0.33)), "pyramid", "grey")
    assert not olive["colour_correct"] and olive["named"] != "grey"
    assert grey["colour_correct"] and grey["named"] == "grey"


def test_verdict_on_palette_albedos_and_far_colours():
    for colour, rgb in COLOURS.items():
        assert colour_verdict(torch.tensor(rgb))["named"] == colour
    assert colour_verdict(torch.tensor((0.45, 0.42, 0.15)))["named"] is None  # khaki


def test_colour_ranking_names_the_colour_of_a_world_asset():
    from dreamlift.world import asset_from_caption, parse

    ranking = colour_ranking(
        asset_renderer(asset_from_caption("a brown torus")), parse("a brown torus")
    )
    assert ranking["colour_named"] == "brown" and ranking["colour_correct"]
    assert ranking["colour_distances"]["brown"] < 3.0
