"""``dreamlift world render``: world assets and heads as posed images.

The settings are in :mod:`.config`, the run in :mod:`.run`.
"""

from dreamlift.methods.world_render.config import (
    RANDOM_ELEVATION,
    HeadRequest,
    WorldRender,
    WorldViews,
)
from dreamlift.methods.world_render.run import render_world, requested_head

__all__ = [
    "HeadRequest",
    "RANDOM_ELEVATION",
    "WorldRender",
    "WorldViews",
    "render_world",
    "requested_head",
]
