"""Reconstruct: fit a NeRF or 3D Gaussians to posed views (world renders or transforms.json).

``config`` (settings, presets), ``views`` (training and held-out views, evaluation),
``step`` (:class:`FitViews`, the loop body) and ``run`` (:func:`reconstruct`).
"""

from dreamlift.methods.reconstruct.config import (
    PRESETS,
    ReconstructConfig,
    build_config,
    config_fields,
    config_from_dict,
    resume_config,
)
from dreamlift.methods.reconstruct.run import reconstruct
from dreamlift.methods.reconstruct.step import FitViews
from dreamlift.methods.reconstruct.views import data_views, evaluate, world_views

__all__ = [
    "PRESETS",
    "FitViews",
    "ReconstructConfig",
    "build_config",
    "config_fields",
    "config_from_dict",
    "data_views",
    "evaluate",
    "reconstruct",
    "resume_config",
    "world_views",
]
