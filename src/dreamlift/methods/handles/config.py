"""Settings of a Diffusion Handles edit, as data (arXiv:2312.02190; the defaults of
the authors' released code, ``diffhandles/config/default.yaml``).

Three groups: the 3D edit of the depth (:class:`GeometryConfig`), the guidance schedule
(:class:`GuidanceSchedule`, arXiv:2312.02190 §5.2) and the diffusion passes
(:class:`HandlesConfig`). Everything is a frozen dataclass with the paper code's values as
defaults, so a run folder's ``config.yaml`` says exactly what ran. Presets are objects in
:data:`PRESETS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LayerWeights = tuple[float, float, float]


@dataclass(frozen=True)
class GeometryConfig:
    """Lifting, splatting and cleaning of the edited depth (arXiv:2312.02190 §5.1).

    Kernel sizes are radii in pixels (a square ``2r+1`` max-pool window; 0 = no close, no
    open or no dilation). ``None`` follows the code's integer rule for kernel widths, close
    ``res // 50`` and open ``res // 250`` (10 and 2 px at 512), as the radius of the nearest
    window, ``width // 2``: at 512 px close 5 and open 1. The close keeps at least 1 px, as
    splatting leaves pinholes at any size; the open vanishes below 500 px (64 // 250 = 0),
    as the code's does. The background dilation is 15 px at 512, scaled, at least 1 px.
    """

    fov_deg: float = 55.0
    """Horizontal field of view assumed for images without a camera (ZoeDepth's training FoV)."""
    close_radius: int | None = None
    open_radius: int | None = None
    background_dilation: int | None = None
    """How far beyond the object mask the background depth is re-solved (Poisson/Laplace)."""

    def __post_init__(self) -> None:
        for name in ("close_radius", "open_radius", "background_dilation"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be non-negative (0 turns it off), got {value}")

    def radii(self, resolution: int) -> tuple[int, int, int]:
        """(close, open, dilation) radii in pixels for an image ``resolution`` pixels wide."""
        close = self.close_radius
        opening = self.open_radius
        dilation = self.background_dilation
        if close is None:
            close = max(1, (resolution // 50) // 2)
        if opening is None:
            opening = (resolution // 250) // 2
        if dilation is None:
            dilation = max(1, round(resolution * 15 / 512))
        return close, opening, dilation


@dataclass(frozen=True)
class GuidanceSchedule:
    """Energy weights per denoising step, layer and inner step (arXiv:2312.02190 §5.2, in the
    released code's form).

    The weight of layer index i at step t and inner gradient step k is
    ``base · scale · cycle[t mod 3][i] · inner[k]``: layer 3 only, then layer 2 only, then
    both, repeating; the first inner step leans on the foreground, the second on the
    background. Guidance runs for the first ``guided_fraction`` of the steps (38 of 50), so
    the model can add shadows and contact effects unguided at the end.
    """

    fg_weight: float = 1.5
    bg_weight: float = 1.25
    weight_scale: float = 30.0
    fg_cycle: tuple[LayerWeights, ...] = ((0.0, 0.0, 7.5), (0.0, 5.0, 0.0), (0.0, 5.0, 7.5))
    bg_cycle: tuple[LayerWeights, ...] = ((0.0, 0.0, 1.5), (0.0, 1.5, 0.0), (0.0, 1.5, 1.5))
    fg_inner: tuple[float, ...] = (2.5, 1.25, 1.25)
    bg_inner: tuple[float, ...] = (1.25, 2.5, 1.25)
    guided_fraction: float = 38 / 50

    def guided_steps(self, num_steps: int) -> int:
        """How many of ``num_steps`` denoising steps are guided (38 of 50, scaled)."""
        return min(num_steps, round(num_steps * self.guided_fraction))

    def weights(self, step: int, inner: int, num_steps: int) -> tuple[LayerWeights, LayerWeights]:
        """(foreground, background) weight of each layer index at ``step``, inner step ``inner``.

        Zero from :meth:`guided_steps` on. An inner step beyond the multiplier lists takes
        the last multiplier.
        """
        if step >= self.guided_steps(num_steps):
            return (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
        fg_k = self.fg_inner[min(inner, len(self.fg_inner) - 1)]
        bg_k = self.bg_inner[min(inner, len(self.bg_inner) - 1)]
        fg_base = self.fg_weight * self.weight_scale * fg_k
        bg_base = self.bg_weight * self.weight_scale * bg_k
        fg = self.fg_cycle[step % len(self.fg_cycle)]
        bg = self.bg_cycle[step % len(self.bg_cycle)]
        return (
            tuple(fg_base * w for w in fg),  # type: ignore[return-value]
            tuple(bg_base * w for w in bg),
        )

    def active_layers(self) -> tuple[bool, bool, bool]:
        """Which layer indices some foreground or background cycle entry weights; only these
        are recorded and guided (the code's cycles never weight index 0)."""
        return tuple(  # type: ignore[return-value]
            any(c[i] != 0 for c in (*self.fg_cycle, *self.bg_cycle)) for i in range(3)
        )


@dataclass(frozen=True)
class HandlesConfig:
    """One Diffusion Handles edit. Defaults are the paper code's (``default.yaml``)."""

    steps: int = 50
    """DDIM steps of inversion, recording and guided generation."""
    guidance_scale: float = 7.5
    """Classifier-free guidance of the NTI and both generation passes."""
    inversion_inner_steps: int = 5
    """Null-text inversion Adam steps per timestep (NTI's default is 10; DH uses 5)."""
    inversion_early_stop: float = 1e-5
    opt_steps: int = 3
    """Latent gradient steps on the energy before each guided DDIM step."""
    step_size: float = 0.1
    """x_t ← x_t − step_size · ∇G (the code's explicit latent descent, not the paper's Eq. 3)."""
    layers: tuple[str, ...] | None = None
    """UNet blocks for activation indices 0, 1, 2; None = the last three up blocks."""
    schedule: GuidanceSchedule = field(default_factory=GuidanceSchedule)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    offload_recording: bool = False
    """Keep recorded activations on the CPU (SD2 at 512 px: ~0.6 GB, layers 2 and 3 of the
    38 guided steps)."""
    keep_background: bool = False
    """Not the paper's: after every guided-pass step, copy the reconstruction pass's latents
    back into the latent cells that neither the original nor the moved object touches, less a
    margin of ``background_margin`` cells (Blended Latent Diffusion's latent blending,
    arXiv:2206.02779), so the background comes back as the inversion reconstructs it."""
    background_margin: int = 1
    """Latent cells around both objects left free to change (revealed ground, shadows)."""
    carry_steps: int = 0
    """Not the paper's: the latents entering the first ``carry_steps`` + 1 DDIM steps of the
    generation pass hold, in the latent cells either object touches, the *carried image*
    (the input with the object's pixels moved along the 3D edit's flow), encoded and noised
    to the step's level (:mod:`dreamlift.methods.handles.carry`); the prior's output there is
    discarded until then, so the energy guidance only acts outside those cells. 0 = off; at
    most ``steps`` (38 of 50 are the guided steps; the fast preset's 20 steps guide 15)."""
    carry_seed: int = 2773
    """Seed of the fresh noise the carried latents are noised with (the paper code's seed)."""
    redraw_guidance_scale: float = 1.0
    """Classifier-free guidance of every step after ``carry_steps`` (when carrying), where
    the prior redraws the carried object; guided steps among them too, when the carry ends
    before the guidance does (measured only at ``carry_steps`` = the 38 guided steps). The
    null-text embeddings phi_t were fitted so that CFG at ``guidance_scale`` retraces the
    *input's* trajectory; against the carried latents their difference to the conditional
    branch points back to the object's old place and size, and CFG 7.5 amplifies it
    (docs/benchmarks.md, "The redraw after the carry"). 1 = the conditional branch alone."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.opt_steps < 0:
            raise ValueError("opt_steps must be non-negative")
        if not 0 <= self.carry_steps <= self.steps:
            raise ValueError(
                f"carry_steps must be between 0 (off) and the {self.steps} steps, got "
                f"{self.carry_steps}"
            )
        if self.redraw_guidance_scale < 0:
            raise ValueError(
                f"redraw_guidance_scale must be non-negative, got {self.redraw_guidance_scale}"
            )
        if self.background_margin < 0:
            raise ValueError("background_margin must be non-negative")
        if self.layers is not None and len(self.layers) != 3:
            raise ValueError("layers must name three UNet blocks (activation indices 0, 1, 2)")
        if not any(self.schedule.active_layers()):
            raise ValueError("the guidance schedule weights no layer (all cycle weights are 0)")


PRESETS: dict[str, HandlesConfig] = {
    "paper": HandlesConfig(),
    "fast": HandlesConfig(steps=20, inversion_inner_steps=2),
}
"""``paper``: DH's settings. ``fast``: fewer steps for CPU previews (same schedule, scaled)."""
