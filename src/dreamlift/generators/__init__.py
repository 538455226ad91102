"""3D-aware generators: a latent → tri-planes → a radiance field (EG3D's design).

The face methods and inversion talk only to :class:`~dreamlift.generators.base.Generator3D`
(map, synthesise planes, render at cameras, raw density at points), so a port of the real
EG3D with its official weights can stand in for ``toy-eg3d`` without touching them.
"""

from dreamlift.generators.base import Generator3D, GeneratorError, PlaneRender
from dreamlift.generators.triplane import TriplaneConfig, TriplaneGenerator

__all__ = ["Generator3D", "GeneratorError", "PlaneRender", "TriplaneConfig", "TriplaneGenerator"]
