"""Score-distillation guidance: renders + prompts → named losses, no UNet Jacobian.

``make_guidance("sds" | "ism" | "ge3d", config)`` builds one; calling it with a prior and a
:class:`GuidanceInput` returns ``{"loss_<name>": ...}``. A new guidance is one module that
registers itself with ``@register_guidance`` plus its import line below.
"""

from dreamlift.guidance.base import (
    GUIDANCES,
    Guidance,
    GuidanceError,
    GuidanceInput,
    GuidanceSpec,
    guidance_names,
    guidance_spec,
    inject_gradient,
    make_guidance,
    register_guidance,
    surrogate_loss,
)
from dreamlift.guidance.ge3d import (
    GE3DConfig,
    GE3DGuidance,
    Trajectory,
    denoising_trajectory,
    ge3d_gradient,
    noising_trajectory,
)
from dreamlift.guidance.ism import ISMConfig, ISMGuidance
from dreamlift.guidance.perpneg import PerpNegConfig
from dreamlift.guidance.sds import SDSConfig, SDSGuidance

__all__ = [
    "GUIDANCES",
    "GE3DConfig",
    "GE3DGuidance",
    "Guidance",
    "GuidanceError",
    "GuidanceInput",
    "GuidanceSpec",
    "ISMConfig",
    "ISMGuidance",
    "PerpNegConfig",
    "SDSConfig",
    "SDSGuidance",
    "Trajectory",
    "denoising_trajectory",
    "ge3d_gradient",
    "guidance_names",
    "guidance_spec",
    "inject_gradient",
    "make_guidance",
    "noising_trajectory",
    "register_guidance",
    "surrogate_loss",
]
