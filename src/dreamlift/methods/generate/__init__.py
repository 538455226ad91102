"""Generate: text-to-3D by score distillation (GE3D, SDS, ISM) into Gaussians or a NeRF.

``config`` (settings, presets, schedules), ``prompts``, ``step`` (:class:`TextTo3D`, the
loop body), ``run`` (:func:`generate`), ``outputs``, ``scoring`` and ``timing``.
"""

from dreamlift.methods.generate.config import (
    FAST_GAUSSIANS,
    PRESETS,
    GenerateConfig,
    azimuth_half_range,
    build_config,
    config_fields,
    config_from_dict,
    render_scale,
    resume_config,
)
from dreamlift.methods.generate.outputs import write_outputs
from dreamlift.methods.generate.prompts import resolve_prompt, world_description
from dreamlift.methods.generate.run import backend_warnings, generate, initial_field, load_prior
from dreamlift.methods.generate.scoring import world_scores
from dreamlift.methods.generate.step import TextTo3D, image_total_variation, render_views
from dreamlift.methods.generate.timing import PRIOR_PARTS, SPLIT_PARTS, iteration_split

__all__ = [
    "FAST_GAUSSIANS",
    "GenerateConfig",
    "PRESETS",
    "PRIOR_PARTS",
    "SPLIT_PARTS",
    "TextTo3D",
    "azimuth_half_range",
    "backend_warnings",
    "build_config",
    "config_fields",
    "config_from_dict",
    "generate",
    "image_total_variation",
    "initial_field",
    "iteration_split",
    "load_prior",
    "render_scale",
    "render_views",
    "resolve_prompt",
    "resume_config",
    "world_description",
    "world_scores",
    "write_outputs",
]
