"""The settings of ``dreamlift sample``."""

from __future__ import annotations

from dataclasses import dataclass

# Camera of the depth rendered for --depth-from-caption, by the caption's view word (front
# when it has none), on the world's orbit; the elevations sit inside the training orbits.
VIEW_AZIMUTH = {"front": 0.0, "side": 90.0, "back": 180.0, "overhead": 0.0}
VIEW_ELEVATION = {"front": 20.0, "side": 20.0, "back": 20.0, "overhead": 75.0}


@dataclass(frozen=True)
class SampleConfig:
    """One sampling run. Defaults are Stable Diffusion's usual DDIM 50 steps at CFG 7.5."""

    prompt: str
    prior: str = "toy-sd"  # zoo name or diffusers folder
    n: int = 8
    steps: int = 50
    guidance_scale: float = 7.5
    seed: int = 0  # the initial noise of all n samples comes from this one seed
    negative: str = ""  # the unconditional branch's prompt ("" as the models were trained)
    depth_from_caption: bool = False  # condition a depth prior on the caption's world asset
    azimuth: float | None = None  # camera-conditioned priors (toy-sd-camera): camera azimuth
    elevation: float = 15.0  # ... and elevation, degrees; used only with ``azimuth``
    judge: str | None = "toy-clip"  # CLIP judging world captions; None skips judging
    batch: int = 8  # samples per UNet call (memory, not results: noise is drawn up front)
    device: str = "auto"
