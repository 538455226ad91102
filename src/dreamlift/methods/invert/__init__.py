"""Inversion of an image into a 3D-aware generator: W → W+ → pivotal tuning (PTI).

Shared by the face methods; ``dreamlift invert`` runs it alone. See
:mod:`dreamlift.methods.invert.run` for the outputs and :class:`InvertConfig` for the stages.
"""

from dreamlift.methods.invert.config import InvertConfig, preset_config
from dreamlift.methods.invert.inputs import Pose
from dreamlift.methods.invert.optimize import Target, invert_target
from dreamlift.methods.invert.run import InvertRequest, invert, load_generator

__all__ = [
    "InvertConfig",
    "InvertRequest",
    "Pose",
    "Target",
    "invert",
    "invert_target",
    "load_generator",
    "preset_config",
]
