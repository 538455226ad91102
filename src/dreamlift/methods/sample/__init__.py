"""``dreamlift sample``: text-to-image samples from a prior.

The settings are in :mod:`.config`, the run in :mod:`.run`.
"""

from dreamlift.methods.sample.config import VIEW_AZIMUTH, VIEW_ELEVATION, SampleConfig
from dreamlift.methods.sample.run import caption_depth, check_conditioning, draw, judge, sample

__all__ = [
    "SampleConfig",
    "VIEW_AZIMUTH",
    "VIEW_ELEVATION",
    "caption_depth",
    "check_conditioning",
    "draw",
    "judge",
    "sample",
]
