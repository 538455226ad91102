"""Score-distillation guidance: renders + prompts → named losses, no UNet Jacobian.

``make_guidance("sds" | "ism" | "ge3d", config)`` builds one; calling it with a prior and a
:class:`GuidanceInput` returns ``{"loss_<name>": ...}``. A new guidance is one module that
registers itself with ``@register_guidance`` plus its import line below.

Paired calls give ``GuidanceInput.t`` / ``.noise`` / ``.nodes`` (or replay another call's
``guidance.last_draws`` with ``inp.with_draws``); :class:`NonFiniteGuard` stops a run whose
guidance gradient stays non-finite (``guidance.last_info["nonfinite_grad"]``).
"""

from dreamlift.guidance.base import (
    GUIDANCES,
    Guidance,
    GuidanceDraws,
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
from dreamlift.guidance.guard import NonFiniteGuard
from dreamlift.guidance.ism import ISMConfig, ISMGuidance
from dreamlift.guidance.mvsds import MVSDSConfig, MVSDSGuidance
from dreamlift.guidance.perpneg import PerpNegConfig
from dreamlift.guidance.sds import SDSConfig, SDSGuidance

__all__ = [
    "GUIDANCES",
    "GE3DConfig",
    "GE3DGuidance",
    "Guidance",
    "GuidanceDraws",
    "GuidanceError",
    "GuidanceInput",
    "GuidanceSpec",
    "ISMConfig",
    "ISMGuidance",
    "MVSDSConfig",
    "MVSDSGuidance",
    "NonFiniteGuard",
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
