"""The embedded procedural world: assets with ground truth, a renderer, captions, datasets."""

from dreamlift.world.assets import COLOURS, Asset, Description, ObjectSpec, Part, layout
from dreamlift.world.captions import VIEWS, caption, parse, vocabulary
from dreamlift.world.lighting import Lighting, sh_basis, sh_from_directional
from dreamlift.world.render import RenderSettings, render
from dreamlift.world.shapes import SHAPES


def asset_from_caption(text: str, ground: bool = False) -> Asset:
    """Parse a caption and lay out its asset (the view word, if any, is kept in the description)."""
    return layout(parse(text), ground=ground)


__all__ = [
    "COLOURS",
    "SHAPES",
    "VIEWS",
    "Asset",
    "Description",
    "Lighting",
    "ObjectSpec",
    "Part",
    "RenderSettings",
    "asset_from_caption",
    "caption",
    "layout",
    "parse",
    "render",
    "sh_basis",
    "sh_from_directional",
    "vocabulary",
]
