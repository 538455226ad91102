"""``dreamlift list``: what the registries and the world's grammar hold."""

from __future__ import annotations

import json

import typer


def list_command() -> None:
    """List fields, guidances, methods, presets, shapes and colours."""
    from dreamlift.fields.registry import FIELDS
    from dreamlift.guidance import GUIDANCES
    from dreamlift.methods.blend.config import ICP_REGIONS
    from dreamlift.methods.blend.config import PRESETS as BLEND_PRESETS
    from dreamlift.methods.blend.masks import PART_REGIONS
    from dreamlift.methods.face.config import PRESETS as FACE_PRESETS
    from dreamlift.methods.generate import PRESETS as GENERATE_PRESETS
    from dreamlift.methods.handles.config import PRESETS as HANDLES_PRESETS
    from dreamlift.methods.handles.registry import EDITORS
    from dreamlift.methods.reconstruct import PRESETS as RECONSTRUCT_PRESETS
    from dreamlift.world import vocabulary
    from dreamlift.world.captions import head_vocabulary
    from dreamlift.world.lighting import LIGHT_DIRECTIONS

    listing = {
        "fields": list(FIELDS),
        "reconstruct presets": list(RECONSTRUCT_PRESETS),
        "guidances": list(GUIDANCES),
        "generate presets": list(GENERATE_PRESETS),
        "handles methods": list(EDITORS),
        "handles presets": list(HANDLES_PRESETS),
        "blend parts": list(PART_REGIONS),
        "blend presets": list(BLEND_PRESETS),
        "blend ICP regions": list(ICP_REGIONS),
        "face presets": list(FACE_PRESETS),
        "face lights": list(LIGHT_DIRECTIONS),
        **vocabulary(),
        **head_vocabulary(),
    }
    typer.echo(json.dumps(listing, indent=1))
