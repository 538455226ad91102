"""The settings of ``dreamlift blend`` (BlendNeRF, arXiv:2302.06608) and its two presets.

The paper preset keeps the official code's numbers (its ``inversion.py`` and ``blend.py``;
the paper's §3 and App. C): W 300 steps at lr 0.01, joint PTI 100 steps at lr 2.5e-3 (Adam
betas 0, 0.9) with the locality regulariser, 200 blending steps at lr 0.01, image weight 10,
reference weight λ_ref 5 (the README's examples), density weight 1 on 48 coarse samples, the
ICP scale clamped to [0.75, 1.25]. The fast preset spends the inversion steps ``dreamlift
invert`` measured (W 100, W+ 50, PTI 40, anchored at other views, which kept novel views
best on held-out heads), 100 blending steps and density weight 0.1 (see ``density_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dreamlift.errors import ConfigError
from dreamlift.methods.invert.config import InvertConfig

PRESETS = ("fast", "paper")
ICP_REGIONS = ("rest", "head", "part")


@dataclass(frozen=True)
class AlignConfig:
    """Local alignment (paper App. C): ICP from the reference's surface points to the
    original's, estimating a uniform scale and a translation only."""

    enabled: bool = True
    """False: global alignment only (the reference rendered at the original's camera)."""
    region: str = "rest"
    """Whose pixels' surface points ICP matches in each image: ``part`` (the paper's, the
    region's pixels), ``head`` (every head pixel) or ``rest`` (the head's pixels outside the
    region: what the two heads share). Matching the part itself measures a difference in
    the part's shape as one of size: on world pairs (long hair onto short) the part's
    points gave the clamped scale 0.75 and the head's 0.84 where the true size ratio was 1
    (both measured on the true surfaces); the rest of the head gives the size."""
    surface_level: float = 10.0
    """Density level of the surface whose first hit along each masked pixel's ray is an ICP
    point: the generator's mesh level (``dreamlift invert``'s mesh threshold). EG3D's code
    uses level 10 on its own raw σ scale."""
    surface_samples: int = 128
    """Samples per ray when searching the first crossing of the level."""
    symmetric: bool = True
    """Match in both directions (each reference point to its nearest original point and each
    original point to its nearest reference point). One-way matching, the code's, lets the
    scale collapse: shrinking the reference brings every one of its points closer to some
    original point, so on partial single-view surfaces ICP drifts to the clamp (0.75)."""
    trim: float = 0.2
    """Share of matched pairs left out of each fit, the farthest apart: two heads' visible
    surfaces overlap only in part (the neck cut by the frame at another height, an ear seen
    in one image only)."""
    iterations: int = 300
    tolerance: float = 1e-10
    """ICP stops when the mean squared distance (world units²) changes by less. The code's
    1e-6 stops ours early: matched distances here are ~0.01, so their mean square is ~1e-4,
    and at 1e-6 the true surfaces of scale pairs came out up to 6 % off, at 1e-10 ≤ 2.6 %."""
    scale_min: float = 0.75
    scale_max: float = 1.25
    min_points: int = 20
    """Fewer surface points on either side and ICP falls back to the identity."""

    def __post_init__(self) -> None:
        if self.region not in ICP_REGIONS:
            raise ConfigError(
                f"unknown ICP region {self.region!r}", f"regions: {', '.join(ICP_REGIONS)}"
            )
        if not 0 < self.scale_min <= 1 <= self.scale_max:
            raise ConfigError(
                f"the ICP scale range [{self.scale_min}, {self.scale_max}] must hold 1 and be "
                "positive"
            )


@dataclass(frozen=True)
class BlendConfig:
    """Inversion of both images, 3D-aware alignment, then blending by latent optimisation."""

    preset: str = "fast"
    generator: str = "toy-eg3d"
    pose_estimator: str = "toy-pose"
    parts_net: str = "toy-parts"
    """Zoo name or folder of the part parser that makes the masks from ``--part``."""
    lpips: str | None = None
    """Folder with LPIPS-VGG weights for every perceptual term; None: toy-clip's feature
    distance (:mod:`dreamlift.metrics.perceptual`)."""
    inversion: InvertConfig = field(
        default_factory=lambda: InvertConfig(w_steps=100, wplus_steps=50, pti_steps=40)
    )
    """How each image is inverted; PTI tunes one generator copy for both (paper §3.1)."""
    align: AlignConfig = field(default_factory=AlignConfig)
    variant: str = "ours"
    """``ours`` (start from the original's latent) or ``poisson`` (start from the
    reference's, fit the contour band, then Poisson-blend: the paper's "ours + Poisson")."""
    steps: int = 100
    lr: float = 0.02
    """Adam's rate on the blended latent (the code: 0.01, which the paper preset keeps). At
    0.01 the latent of the README's hair pair (203 ← 217, short hair to long) sat on a
    plateau at 13.0 dB against the truth for 275 steps before the long hair appeared
    (19.9 dB at step 300); at 0.02 it appeared within 25 steps (20.3 dB at step 100). On
    seven validation pairs that the benchmark does not use (docs/benchmarks.md, "The
    latent's rate") it moved ours by −0.31 … +0.19 dB (mean +0.00), and ours + Poisson
    by −0.01 … +0.11 dB on four of them."""
    image_weight: float = 10.0
    """The code's outer weight of the image term."""
    reference_weight: float = 5.0
    """λ_ref, the weight of the perceptual term inside the mask (README examples: 5)."""
    density_weight: float = 0.1
    """Weight of the density term on raw σ (the code: 1, for EG3D's σ scale); 0 is the
    "without density" ablation. Our decoder's raw σ spans a wider range in empty space, and
    at weight 1 the term outweighed the image term 7 to 1 and drove the latent off the
    generator's manifold: on a world hair pair 14.8 dB against the truth, 18.0 dB at 0.1
    (and at 0); the benchmark's ablation measures it on every pair."""
    density_samples: int = 16
    """Coarse samples per ray at which raw σ is compared (the code: 48)."""
    band: int = 6
    """Width of the Poisson variant's contour band in pixels (the code: 50 of 512; 30 for
    eyes and lips, scaled by 0.6 here)."""
    resolution: int = 64
    turntable_frames: int = 24
    mesh_resolution: int = 96
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}", f"presets: {', '.join(PRESETS)}")
        if self.variant not in ("ours", "poisson"):
            raise ConfigError(f"unknown blend variant {self.variant!r}", "variants: ours, poisson")
        for name in ("steps", "density_samples", "band", "resolution"):
            if getattr(self, name) < (0 if name == "steps" else 1):
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")


def preset_config(preset: str, **overrides: object) -> BlendConfig:
    """``fast`` (the defaults) or ``paper`` (the official code's steps and samples)."""
    if preset == "paper":
        base = BlendConfig(
            preset="paper",
            inversion=InvertConfig(
                preset="paper",
                w_steps=300,
                wplus_steps=0,
                pti_steps=100,
                pti_lr=2.5e-3,
                pti_betas=(0.0, 0.9),
                anchor="locality",
            ),
            steps=200,
            lr=0.01,
            density_weight=1.0,
            density_samples=48,
        )
    elif preset == "fast":
        base = BlendConfig()
    else:
        raise ConfigError(f"unknown preset {preset!r}", f"presets: {', '.join(PRESETS)}")
    return replace(base, **overrides)  # type: ignore[arg-type]
