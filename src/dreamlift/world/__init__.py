"""The embedded procedural world: assets with ground truth, a renderer, captions, datasets."""

from dreamlift.world.assets import COLOURS, Asset, Description, ObjectSpec, Part, layout
from dreamlift.world.captions import (
    VIEWS,
    HeadDescription,
    caption,
    head_caption,
    head_vocabulary,
    is_head_caption,
    parse,
    parse_head,
    vocabulary,
)
from dreamlift.world.heads import (
    HEAD_ORBIT,
    HEAD_SEEDS,
    HELD_OUT_HEADS,
    HeadParams,
    cameras_from_eg3d,
    compose_heads,
    eg3d_camera_vector,
    head_cameras,
    head_params,
    training_head_seeds,
    with_overrides,
)
from dreamlift.world.heads_geometry import PART_LABELS, HeadAsset, head_asset, render_head
from dreamlift.world.lighting import (
    LIGHT_DIRECTIONS,
    Lighting,
    named_light,
    sh_basis,
    sh_from_directional,
)
from dreamlift.world.render import RenderSettings, render
from dreamlift.world.shapes import SHAPES


def asset_from_caption(text: str, ground: bool = False) -> Asset:
    """Parse a caption and lay out its asset (the view word, if any, is kept in the description)."""
    return layout(parse(text), ground=ground)


__all__ = [
    "COLOURS",
    "HEAD_ORBIT",
    "HEAD_SEEDS",
    "HELD_OUT_HEADS",
    "LIGHT_DIRECTIONS",
    "PART_LABELS",
    "SHAPES",
    "VIEWS",
    "Asset",
    "Description",
    "HeadAsset",
    "HeadDescription",
    "HeadParams",
    "Lighting",
    "ObjectSpec",
    "Part",
    "RenderSettings",
    "asset_from_caption",
    "cameras_from_eg3d",
    "caption",
    "compose_heads",
    "eg3d_camera_vector",
    "head_asset",
    "head_cameras",
    "head_caption",
    "head_params",
    "head_vocabulary",
    "is_head_caption",
    "layout",
    "named_light",
    "parse",
    "parse_head",
    "render",
    "render_head",
    "sh_basis",
    "sh_from_directional",
    "training_head_seeds",
    "vocabulary",
    "with_overrides",
]
