"""BlendNeRF (arXiv:2302.06608): blend a region of a reference image into an original image
through a 3D-aware generator — inversion of both, 3D alignment (global by rendering, local by
scale-and-translation ICP), then latent optimisation with image and raw-density terms.

``dreamlift blend`` runs it; :func:`run_blend` is the Python entry point.
"""

from dreamlift.methods.blend.align import Warp, icp_scale_translation
from dreamlift.methods.blend.config import AlignConfig, BlendConfig, preset_config
from dreamlift.methods.blend.inputs import BlendRequest
from dreamlift.methods.blend.run import run_blend

__all__ = [
    "AlignConfig",
    "BlendConfig",
    "BlendRequest",
    "Warp",
    "icp_scale_translation",
    "preset_config",
    "run_blend",
]
