"""Diffusion priors: one interface over diffusers latent text-to-image models.

``DiffusionPrior.load(folder_or_zoo_name)`` gives encode/decode, prompt embeddings, eps with
classifier-free guidance, DDIM steps, sampling, DDIM and null-text inversion, depth
conditioning, and feature capture with energy guidance. A multi-view folder (toy-mvdream,
MVDream's checkpoint) loads as a :class:`MultiViewPrior` (4 views denoised together).
"""

from dreamlift.priors.depth import prepare_depth
from dreamlift.priors.features import FeatureCapture
from dreamlift.priors.guided import EnergyFn, EnergyGuidance, GuidedStep
from dreamlift.priors.multiview import MultiViewPrior
from dreamlift.priors.prior import DiffusionPrior, EpsParts
from dreamlift.priors.schedule import NoiseSchedule
from dreamlift.priors.text import PREFIX_TEMPLATE, SUFFIX_TEMPLATE, TextEmbeddings, view_prompts

__all__ = [
    "PREFIX_TEMPLATE",
    "SUFFIX_TEMPLATE",
    "DiffusionPrior",
    "EnergyFn",
    "EnergyGuidance",
    "EpsParts",
    "FeatureCapture",
    "GuidedStep",
    "MultiViewPrior",
    "NoiseSchedule",
    "TextEmbeddings",
    "prepare_depth",
    "view_prompts",
]
