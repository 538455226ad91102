"""The caption scorer (metrics/composition.py) on the world's own renders: the true asset of a
composition is judged right object by object, whatever the shapes, and one scoring ranks
a result against variants of its caption with one object different."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dreamlift.metrics.composition import agreement, score_caption
from dreamlift.metrics.ground_truth import asset_renderer
from dreamlift.world import asset_from_caption, named_light, parse
from dreamlift.world.assets import ObjectSpec


@pytest.mark.parametrize(
    "text",
    [
        "a yellow torus with a green pyramid on top",
        "a red sphere on top of a blue cylinder",
        "a purple cone next to an orange cube",
        "a white torus next to a black sphere",
        "a red cube, a blue sphere and a green cone",
    ],
)
def test_true_compositions_are_judged_right_object_by_object(text):
    desc = parse(text)
    scores = score_caption(asset_renderer(asset_from_caption(text)), desc)
    assert scores["caption_correct"], scores["objects"]
    for judged, obj in zip(scores["objects"], desc.objects, strict=True):
        assert judged["meant"] == judged["looks_like"] == f"{obj.colour} {obj.shape}"


def test_the_light_is_taken_into_account():
    text = "a white cube with a grey sphere on top"
    light = named_light("left")
    scores = score_caption(
        asset_renderer(asset_from_caption(text), lighting=light), parse(text), lighting=light
    )
    assert scores["caption_correct"], scores["objects"]


def test_one_scoring_ranks_a_result_against_one_object_different_variants():
    text = "a pink pyramid next to a cyan torus"
    desc = parse(text)
    scores = score_caption(asset_renderer(asset_from_caption(text)), desc)
    variants = [desc]
    for i, obj in enumerate(desc.objects):
        for other in (ObjectSpec("green", obj.shape), ObjectSpec(obj.colour, "cube")):
            objects = list(desc.objects)
            objects[i] = other
            variants.append(replace(desc, objects=tuple(objects)))
    ranked = sorted(variants, key=lambda d: -agreement(scores, d))
    assert ranked[0] == desc
    assert agreement(scores, desc) == 4 > max(agreement(scores, d) for d in variants[1:])
    assert agreement(scores, replace(desc, relation="on_top")) == 0


def test_a_render_without_depth_is_refused():
    fn = asset_renderer(asset_from_caption("a red cube"))
    with pytest.raises(ValueError, match="depth"):
        score_caption(
            lambda cams: {k: v for k, v in fn(cams).items() if k != "depth"}, parse("a red cube")
        )


def test_a_hull_carved_once_scores_both_ways_as_each_would_alone():
    """``result_hull`` handed to both scorers gives what each carves for itself, bit for bit,
    and a hull that is not the result's changes the verdict (so the argument is used)."""
    import json

    from dreamlift.metrics.ground_truth import (
        GroundTruthSettings,
        ground_truth_scores,
        result_hull,
    )

    text = "a purple cone next to an orange cube"
    asset, desc = asset_from_caption(text), parse(text)
    render = asset_renderer(asset)
    settings = GroundTruthSettings(render_evaluations=4)
    hull = result_hull(render, settings)
    shared = ground_truth_scores(render, asset, settings, hull=hull)
    alone = ground_truth_scores(render, asset, settings)
    assert json.dumps(shared, sort_keys=True) == json.dumps(alone, sort_keys=True)
    caption_shared = score_caption(render, desc, settings, hull=hull)
    assert json.dumps(caption_shared, sort_keys=True) == json.dumps(
        score_caption(render, desc, settings), sort_keys=True
    )
    assert caption_shared["caption_correct"]
    other = result_hull(asset_renderer(asset_from_caption("a purple cone")), settings)
    assert not score_caption(render, desc, settings, hull=other)["caption_correct"]
