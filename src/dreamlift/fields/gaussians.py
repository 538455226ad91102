"""3D Gaussian splatting field: parameters, SH colour, 3DGS densification, .ply export.

Parameters use the standard 3DGS layout (``means``, ``log_scales``, ``quats`` wxyz,
``opacity_logits``, ``features_dc`` (N, 1, 3), ``features_rest`` (N, K, 3)) so that exported
files open in any splat viewer. Everything random (initialisation, split sampling) comes from
torch generators, and the field's own generator state is part of :meth:`state_tensors`, so a
resumed run continues bit for bit. Initialisation (:mod:`~dreamlift.fields.gaussian_init`),
densification (:mod:`~dreamlift.fields.gaussian_densify`) and SH colour
(:mod:`~dreamlift.fields.sh`) live in their own modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from dreamlift.cameras import Cameras
from dreamlift.fields.base import Field, ParamGroup, RenderOutput
from dreamlift.fields.gaussian_control import AdaptiveDensityControl
from dreamlift.fields.gaussian_densify import densify_and_prune, rows_from_source
from dreamlift.fields.gaussian_density import GaussianDensity
from dreamlift.fields.gaussian_init import initial_gaussians
from dreamlift.fields.optimizer_state import carry_optimizer_state
from dreamlift.fields.rasterize import quat_to_rotmat, rasterize_gaussians
from dreamlift.fields.sh import SH_C0, SH_C1, SH_C2, SH_C3, eval_sh, num_sh_rest
from dreamlift.io.ply import GaussianPly, read_gaussians_ply, write_gaussians_ply

__all__ = [
    "PARAM_NAMES",
    "SH_C0",
    "SH_C1",
    "SH_C2",
    "SH_C3",
    "GaussianField",
    "GaussiansConfig",
    "eval_sh",
    "num_sh_rest",
]

PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "features_dc", "features_rest")
_STAT_NAMES = ("grad_accum", "grad_count", "max_radii")


@dataclass
class GaussiansConfig:
    """How Gaussians are initialised, optimised and densified.

    Defaults suit object-centric scenes inside [-bound, bound]³ seen from ~2.7 units away at
    small resolutions (64-256 px) over a few thousand steps.
    """

    num_init: int = 4096
    """Gaussians at initialisation; densification grows the set from there."""
    init_mode: str = "random"
    """``random`` (uniform in a ball) or ``sphere_surface`` (uniform on a sphere)."""
    init_radius: float = 0.6
    """Radius of that ball or sphere: inside the scene with a margin for growth."""
    init_opacity: float = 0.1
    """Low, as in 3DGS, so early gradients reach every Gaussian along a ray."""
    init_grey: float | None = None
    """None: random colours (3DGS from random points). A value: every Gaussian starts this
    grey, so colours a guidance never pushes do not stay as multi-coloured speckle."""
    sh_degree: int = 1
    """SH degree of the colour (0..3); 1 gives mild view dependence without baking lighting."""
    bound: float = 1.0
    """Scene half-extent; the position learning rate and size thresholds scale with it."""
    lr_means: float = 1.6e-3
    """Initial position learning rate (times ``bound``), decayed exponentially as in 3DGS
    (10x the 3DGS value: runs here are ~10x shorter)."""
    lr_means_final: float = 1.6e-5
    lr_means_decay_steps: int = 3000
    """Steps over which the position learning rate decays from initial to final."""
    lr_features_dc: float = 5e-3
    lr_features_rest: float | None = None
    """Defaults to ``lr_features_dc / 20`` (3DGS): view dependence learns more slowly."""
    lr_opacity: float = 0.05
    lr_scaling: float = 5e-3
    lr_rotation: float = 1e-3
    densify_from: int = 100
    """Let the first steps settle positions before statistics drive densification."""
    densify_until: int = 1500
    densify_every: int = 100
    grad_threshold: float = 2e-4
    """Mean screen-space gradient norm above which a Gaussian is cloned or split. Pixel
    gradients are scaled by half the image size (NDC units, as 3DGS and gsplat) and by the
    number of views in the batch, so one threshold works at 64 px and at 512 px."""
    percent_dense: float = 0.03
    """Gaussians with a largest scale above ``percent_dense * bound`` are split, smaller
    ones cloned (3DGS's 0.01 of a camera extent of ~3 for orbits at radius 2.7)."""
    opacity_reset_every: int = 1000
    """Periodically clamp opacities to 0.01 so floaters must earn their opacity back
    (0 disables)."""
    prune_opacity: float = 0.005
    prune_screen_fraction: float = 0.15
    """After the first opacity reset, prune Gaussians whose screen radius exceeded this
    fraction of the image size (gsplat's 0.15, resolution-independent)."""
    prune_world_fraction: float = 0.1
    """... and those whose largest scale exceeds this fraction of ``bound``."""
    max_gaussians: int = 200_000
    """Cap on the number of Gaussians; growth stops (highest gradients first) at the cap."""
    tile_size: int | None = None
    """Rasteriser tile size; None picks 8 for images up to 128 px (shorter per-tile lists,
    faster on CPU at small sizes) and 16 above."""
    backend: str = "auto"
    """Rasteriser backend: ``auto`` uses gsplat on CUDA when installed, else pure torch."""
    train_steps: int = 1500
    """Recommended optimisation steps for reconstruction (the method owns the loop)."""

    def __post_init__(self) -> None:
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"sh_degree must be in 0..3, got {self.sh_degree}")
        if self.init_mode not in ("random", "sphere_surface"):
            raise ValueError(f"unknown init_mode {self.init_mode!r}")


class GaussianField(Field):
    """A set of 3D Gaussians with SH colour, trained with 3DGS densification."""

    kind: ClassVar[str] = "gaussians"

    def __init__(
        self,
        config: GaussiansConfig | None = None,
        generator: torch.Generator | None = None,
        *,
        init: GaussianPly | None = None,
    ) -> None:
        super().__init__()
        self.config = config = config or GaussiansConfig()
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        if init is None:
            init = initial_gaussians(config, generator)
        if init.sh_degree != config.sh_degree:
            raise ValueError(f"init has SH degree {init.sh_degree}, config {config.sh_degree}")
        # The field's own stream (split sampling), seeded from the caller's generator.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        self._gen = torch.Generator().manual_seed(seed)
        for name in PARAM_NAMES:
            setattr(self, name, nn.Parameter(getattr(init, name).detach().float().clone()))
        self._reset_stats()
        self.densification = AdaptiveDensityControl()

    # ------------------------------------------------------------------------------ basics

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[0]

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    def _reset_stats(self) -> None:
        n, dev = self.means.shape[0], self.means.device
        for name in _STAT_NAMES:
            self.register_buffer(name, torch.zeros(n, device=dev))

    def _tile_size(self, cameras: Cameras) -> int:
        if self.config.tile_size is not None:
            return self.config.tile_size
        return 8 if max(cameras.width, cameras.height) <= 128 else 16

    def colors(self, cameras: Cameras) -> Tensor:
        """View-dependent colours (B, N, 3) seen from each camera's centre."""
        dirs = self.means[None] - cameras.centers[:, None, :].to(self.means)
        dirs = torch.nn.functional.normalize(dirs, dim=-1)
        coeffs = torch.cat([self.features_dc, self.features_rest], dim=1)
        return torch.clamp(eval_sh(self.config.sh_degree, coeffs, dirs) + 0.5, min=0.0)

    def render(
        self, cameras: Cameras, background: Tensor | None = None, normals: bool = False
    ) -> RenderOutput:
        """Render; besides the :data:`RenderOutput` keys returns ``means2d`` (B, N, 2) with
        retained grad and ``radii`` (B, N) for densification."""
        cameras = cameras.to(self.means.device)
        if background is None:
            background = torch.zeros(3, device=self.means.device)
        extra = None
        if normals:
            # The normal of a flat Gaussian is its shortest axis, turned toward the camera.
            rot = quat_to_rotmat(self.quats)
            axis = torch.argmin(self.log_scales, dim=-1)
            normal = torch.gather(rot, 2, axis[:, None, None].expand(-1, 3, 1))[..., 0]
            to_cam = cameras.centers[:, None, :].to(self.means) - self.means[None]
            sign = torch.where((to_cam * normal[None]).sum(-1, keepdim=True) < 0, -1.0, 1.0)
            extra = normal[None] * sign
        out = rasterize_gaussians(
            self.means,
            self.quats,
            self.log_scales,
            self.opacities,
            self.colors(cameras),
            cameras,
            background.to(self.means),
            tile_size=self._tile_size(cameras),
            extra=extra,
            backend=self.config.backend,
        )
        if normals:
            n = out.pop("extra")
            hit = (out["opacity"] > 1e-4).to(n)
            out["normals"] = torch.nn.functional.normalize(n, dim=-1) * hit
        return out

    def density(self, points: Tensor, chunk: int = 4096) -> Tensor:
        """Σ_i o_i exp(-½ ‖S_i⁻¹ R_iᵀ (x − μ_i)‖²) at points (P, 3), differentiable; each
        chunk of points sums only the Gaussians within 3 standard deviations of it."""
        density = GaussianDensity(self, differentiable=True)
        points = points.to(self.means)
        parts = [density.density(points[i : i + chunk]) for i in range(0, points.shape[0], chunk)]
        return torch.cat(parts) if parts else points.new_zeros(0)

    def fresh_like(self, generator: torch.Generator | None = None) -> GaussianField:
        """As many Gaussians as this field holds, drawn by the configured initialisation."""
        config = replace(self.config, num_init=self.num_gaussians)
        return GaussianField(config, generator).to(self.means.device)

    # -------------------------------------------------------------------------- optimiser

    def lr_means(self, step: int) -> float:
        """Position learning rate at ``step``: log-linear decay, a pure function of the step."""
        c = self.config
        t = min(max(step / max(c.lr_means_decay_steps, 1), 0.0), 1.0)
        lr = math.exp((1 - t) * math.log(c.lr_means) + t * math.log(c.lr_means_final))
        return lr * c.bound

    def param_groups(self) -> list[ParamGroup]:
        """Positions, scales, rotations and opacities are geometry; SH colour is appearance."""
        c = self.config
        dc = c.lr_features_dc
        lrs = {
            "means": self.lr_means(0),
            "log_scales": c.lr_scaling,
            "quats": c.lr_rotation,
            "opacity_logits": c.lr_opacity,
            "features_dc": dc,
            "features_rest": c.lr_features_rest if c.lr_features_rest is not None else dc / 20,
        }
        return [
            ParamGroup(
                name,
                "appearance" if name.startswith("features") else "geometry",
                [getattr(self, name)],
                lr,
            )
            for name, lr in lrs.items()
        ]

    def optimizer_options(self) -> dict:
        return {"lr": 0.0, "eps": 1e-15}

    def after_backward(
        self, step: int, out: RenderOutput, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        """Set the position learning rate for ``step``, then let the densification policy
        gather its gradient statistics."""
        for group in optimizer.param_groups:
            if group.get("name") == "means":
                group["lr"] = self.lr_means(step)
        return super().after_backward(step, out, optimizer)

    # ------------------------------------------------------------------------ densification

    @torch.no_grad()
    def densify(
        self, step: int, optimizer: torch.optim.Optimizer, force_all: bool = False
    ) -> torch.optim.Optimizer:
        """Run one densify-and-prune now from the accumulated gradient statistics
        (``force_all`` treats every gradient as large)."""
        if force_all:
            self.grad_accum.fill_(1e9)
            self.grad_count.fill_(1.0)
        grads = self.grad_accum / self.grad_count.clamp(min=1.0)
        params = {name: getattr(self, name) for name in PARAM_NAMES}
        tensors, source = densify_and_prune(
            params, grads, self.max_radii, self.config, step, self._gen
        )
        return self._replace_parameters(tensors, source, optimizer)

    def _replace_parameters(
        self, tensors: dict[str, Tensor], source: Tensor, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        """Swap in new parameter tensors; Adam moments follow ``source`` (old row or -1)."""
        previous = {name: [getattr(self, name)] for name in PARAM_NAMES}
        for name in PARAM_NAMES:
            setattr(self, name, nn.Parameter(tensors[name].contiguous()))
        self._reset_stats()
        return carry_optimizer_state(
            optimizer, self.rebuild_optimizer(optimizer), previous, rows_from_source(source)
        )

    @torch.no_grad()
    def reset_opacity(self, optimizer: torch.optim.Optimizer) -> None:
        """Clamp opacities to <= 0.01 (logit space) and zero their Adam moments (3DGS)."""
        cap = math.log(0.01 / 0.99)
        self.opacity_logits.clamp_(max=cap)
        state = optimizer.state.get(self.opacity_logits, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].zero_()

    # ------------------------------------------------------------------------- checkpoints

    def state_tensors(self) -> dict[str, Tensor]:
        out = {k: v.detach().clone() for k, v in self.state_dict().items()}
        out["generator_state"] = self._gen.get_state().clone()
        return out

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        dev = self.means.device
        for name in PARAM_NAMES:
            setattr(self, name, nn.Parameter(tensors[name].detach().to(dev).clone()))
        for name in _STAT_NAMES:
            value = tensors.get(name)
            if value is None:
                value = torch.zeros(self.num_gaussians)
            self.register_buffer(name, value.detach().to(dev).clone())
        if "generator_state" in tensors:
            self._gen.set_state(tensors["generator_state"].cpu())

    # ------------------------------------------------------------------------------ export

    def to_ply_data(self) -> GaussianPly:
        return GaussianPly(**{name: getattr(self, name).detach().cpu() for name in PARAM_NAMES})

    def export(self, out_dir: Path) -> dict[str, Path]:
        path = write_gaussians_ply(Path(out_dir) / "gaussians.ply", self.to_ply_data())
        return {"gaussians": path}

    @classmethod
    def from_ply(cls, path: Path | str, config: GaussiansConfig | None = None) -> GaussianField:
        """A field holding the Gaussians of a 3DGS .ply (its SH degree overrides the config)."""
        data = read_gaussians_ply(path)
        config = replace(
            config or GaussiansConfig(), sh_degree=data.sh_degree, num_init=data.means.shape[0]
        )
        return cls(config, init=data)
