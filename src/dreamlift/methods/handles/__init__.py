"""Diffusion Handles: 3D edits of objects in 2D images with a depth-conditioned prior.

Public API::

    from dreamlift.methods.handles import Transform3D, edit, scene_case, score_edit

    case = scene_case("a red cube next to a blue sphere", 0, Transform3D(translate=(0.3, 0, 0)))
    result = edit(case.image, case.mask, case.depth, case.transform, case.prompt,
                  prior="toy-sd-depth", intrinsics=case.intrinsics)
    scores = score_edit(result, case)

:data:`EDITORS` maps method names to functions of the same signature (the method and its
two baselines), for benchmarks and ``dreamlift handles --method``.
"""

from dreamlift.methods.handles.baselines import depth_only, warp_paste_2d
from dreamlift.methods.handles.config import (
    PRESETS,
    GeometryConfig,
    GuidanceSchedule,
    HandlesConfig,
)
from dreamlift.methods.handles.depth_edit import (
    DepthEdit,
    LatentTargets,
    edit_depth,
    latent_targets,
)
from dreamlift.methods.handles.edit import edit
from dreamlift.methods.handles.lift import Intrinsics
from dreamlift.methods.handles.registry import EDITORS
from dreamlift.methods.handles.result import HandlesResult
from dreamlift.methods.handles.scene import SceneCase, scene_case
from dreamlift.methods.handles.scores import score_edit
from dreamlift.methods.handles.transform import Transform3D, transform_from_options

__all__ = [
    "EDITORS",
    "PRESETS",
    "DepthEdit",
    "GeometryConfig",
    "GuidanceSchedule",
    "HandlesConfig",
    "HandlesResult",
    "Intrinsics",
    "LatentTargets",
    "SceneCase",
    "Transform3D",
    "depth_only",
    "edit",
    "edit_depth",
    "latent_targets",
    "scene_case",
    "score_edit",
    "transform_from_options",
    "warp_paste_2d",
]
