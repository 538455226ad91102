"""The settings of ``dreamlift invert`` and its two presets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from dreamlift.errors import ConfigError

Anchor = Literal["none", "views", "locality"]
PRESETS = ("fast", "paper")


@dataclass(frozen=True)
class InvertConfig:
    """One image → a W latent → a W+ latent → pivotal tuning (PTI, arXiv:2106.05744).

    ``anchor`` chooses what keeps PTI from overfitting the single input view:

    * ``none``: plain PTI (pivot frozen, every generator weight tuned to the one view). It
      sharpens the input view and, measured on held-out heads, damages the others.
    * ``views`` (default): each PTI step also renders one random orbit view at the pivot and
      keeps it close to what the untuned generator rendered there.
    * ``locality``: BlendNeRF's regulariser (arXiv:2312.03584, §3.2): random latents
      ``w_r = w_p + α (w_s − w_p)/‖w_s − w_p‖`` must render as the untuned generator did, at
      the input camera.
    """

    generator: str = "toy-eg3d"
    pose_estimator: str = "toy-pose"
    """Zoo name or folder of the pose network that gives a photo's camera when no --yaw /
    --pitch is given."""
    identity_scores: bool = True
    """World heads: also score each stage's novel views by toy-id's identity similarity."""
    preset: str = "fast"
    w_restarts: int = 1
    """W runs from w_avg and again from each of the ``w_restarts`` mapped samples that render
    closest to the input, and keeps the run that fits the input best
    (:func:`~dreamlift.methods.invert.optimize.fit_w`); 0: from w_avg alone, as the projectors
    of PTI and FaceDNeRF do."""
    w_candidates: int = 16
    """How many mapped samples (truncation 0.7) are ranked for the restarts."""
    w_steps: int = 100
    wplus_steps: int = 50
    pti_steps: int = 40
    latent_lr: float = 0.01
    """Adam, with FaceDNeRF's ramp (linear up over 5 %, cosine down over the last 25 %)."""
    pti_lr: float = 3e-4
    pti_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's betas for PTI (BlendNeRF's code: (0, 0.9))."""
    perceptual_weight: float = 0.5
    """Weight of the feature distance (see :mod:`dreamlift.metrics.perceptual`)."""
    lpips: str | None = None
    """Folder with LPIPS-VGG's weights (:mod:`dreamlift.metrics.lpips`) for the perceptual
    term, as PTI and FaceDNeRF use; None: the toy-clip feature distance."""
    latent_prior: float = 1e-3
    """‖w − w_avg‖² keeps the latent where the generator was trained (FaceDNeRF Eq. 9)."""
    wplus_delta: float = 0.1
    """Weight of ‖w_i − w‖², each W+ layer's distance from the W solution it starts from
    (e4e's delta regulariser, arXiv:2102.02766 §3.3): W+ fits the input view better than W
    and can lose novel views for it. On validation heads 0.1 gave anchored PTI its best novel
    views and never a PTI below its W+ (docs/benchmarks.md, "W restarts")."""
    anchor: Anchor = "views"
    anchor_weight: float = 1.0
    locality_alpha: float = 30.0
    locality_weight: float = 0.1
    samples: tuple[int, int] = (0, 0)
    """Coarse and importance samples per ray while optimising; (0, 0): the generator's own."""
    resolution: int = 64
    turntable_frames: int = 24
    turntable_resolution: int = 64
    mesh_resolution: int = 96
    mesh_threshold: float = 10.0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}", f"presets: {', '.join(PRESETS)}")
        if self.anchor not in ("none", "views", "locality"):
            raise ConfigError(
                f"unknown PTI anchor {self.anchor!r}", "anchors: none, views, locality"
            )
        for name in ("w_restarts", "w_candidates", "w_steps", "wplus_steps", "pti_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be ≥ 0, got {getattr(self, name)}")

    @property
    def render_samples(self) -> tuple[int, int] | None:
        """``samples`` as the generator's render takes it: None for its own counts."""
        return self.samples if self.samples[0] else None


def preset_config(preset: str, **overrides: object) -> InvertConfig:
    """``fast`` (the defaults: W 100, W+ 50, PTI 40 steps; 150/100/60 took 99 s at two threads
    on head 203, so these aim at one minute) or ``paper`` (FaceDNeRF's projector:
    1000 W+ steps and 400 PTI steps, arXiv:2312.00224 App. A, with the generator's full
    sampling; W from w_avg alone and W+ unconstrained, as that projector does)."""
    if preset == "paper":
        base = InvertConfig(
            preset="paper",
            w_restarts=0,
            w_steps=300,
            wplus_delta=0.0,
            wplus_steps=1000,
            pti_steps=400,
        )
    else:
        base = InvertConfig(preset=preset)
    return replace(base, **overrides)  # type: ignore[arg-type]
