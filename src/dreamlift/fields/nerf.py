"""A DVGO-style voxel-grid NeRF in pure PyTorch, fast enough to train on a laptop CPU.

Density and colour live on dense grids inside [-bound, bound]^3 and are read with trilinear
``grid_sample``; there is no large MLP to evaluate per sample. Speed comes from three things:
a coarse-to-fine resolution schedule, an occupancy mask that skips samples in cells whose
density cannot matter, and evaluating colour only at samples whose rendering weight is
non-negligible (gather → evaluate → scatter). The settings are in
:mod:`~dreamlift.fields.nerf_config`, the grid operations in :mod:`~dreamlift.fields.voxel_grid`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamlift.cameras import Cameras
from dreamlift.fields.base import Densification, Field, ParamGroup, RenderOutput
from dreamlift.fields.nerf_config import NerfConfig
from dreamlift.fields.optimizer_state import carry_optimizer_state
from dreamlift.fields.volume import (
    composite_weights,
    expected_depth,
    ray_aabb,
    stratified_samples,
    total_variation,
)
from dreamlift.fields.voxel_grid import (
    central_gradient,
    inverse_softplus,
    occupancy_mask,
    occupied_box,
    occupied_samples,
    resize_grid,
    sample_grid,
)

__all__ = ["GridUpsampling", "NerfConfig", "NerfField"]

_CHECKPOINT_NAMES = {"density_grid": "density", "color_grid": "color"}
"""Attribute → checkpoint name of the grids (checkpoints keep the names they always had)."""


class NerfField(Field):
    """Dense density + colour grids rendered by stratified ray marching."""

    kind = "nerf"

    def __init__(self, config: NerfConfig | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else NerfConfig()
        self.generator = generator if generator is not None else torch.Generator()
        if generator is None:
            self.generator.manual_seed(cfg.seed)
        self._jitter_generator: torch.Generator | None = None
        res = cfg.resolution_at(0)
        channels = 3 if cfg.color_mode == "rgb" else cfg.color_features
        self.density_grid = nn.Parameter(torch.zeros(1, 1, res, res, res))
        self.color_grid = nn.Parameter(torch.zeros(1, channels, res, res, res))
        self.register_buffer("occupancy", torch.ones(res - 1, res - 1, res - 1, dtype=torch.bool))
        self.register_buffer("occupied_box", torch.tensor([[-cfg.bound] * 3, [cfg.bound] * 3]))
        self.mlp: nn.Sequential | None = None
        if cfg.color_mode == "mlp":
            # Initialised from the field's generator, not torch's global stream.
            seed = int(torch.randint(0, 2**62, (), generator=self.generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                n_in = channels + (3 + 6 * cfg.view_frequencies if cfg.view_dependent else 0)
                self.mlp = nn.Sequential(
                    nn.Linear(n_in, cfg.mlp_hidden),
                    nn.ReLU(inplace=True),
                    nn.Linear(cfg.mlp_hidden, cfg.mlp_hidden),
                    nn.ReLU(inplace=True),
                    nn.Linear(cfg.mlp_hidden, 3),
                )
        self.densification = GridUpsampling()
        # Reference step: sigma * step = softplus(raw + shift) * step * density_scale.
        step = 2.0 * cfg.bound / cfg.samples_per_ray
        init_sigma = -math.log(1.0 - cfg.init_alpha) / step
        self.shift = float(inverse_softplus(torch.tensor(init_sigma / cfg.density_scale)))
        empty_sigma = -math.log(1.0 - cfg.occupancy_alpha) / step
        self._occupancy_raw = (
            float(inverse_softplus(torch.tensor(empty_sigma / cfg.density_scale))) - self.shift
        )

    # ---- grid access -------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        return self.density_grid.shape[-1]

    def sigma(self, points: Tensor) -> Tensor:
        """Density (P,) per world unit at points (P, 3), ignoring the occupancy mask."""
        raw = sample_grid(self.density_grid, points, self.config.bound)[:, 0]
        sigma = self.config.density_scale * F.softplus(raw + self.shift)
        radius = self.config.sphere_radius
        return sigma if radius is None else sigma * (points.norm(dim=-1) < radius)

    def rgb(self, points: Tensor, dirs: Tensor | None = None) -> Tensor:
        """Colour (P, 3) in [0, 1] at points (P, 3) seen along unit ``dirs`` (P, 3)."""
        feats = sample_grid(self.color_grid, points, self.config.bound)
        if self.mlp is None:
            return torch.sigmoid(feats)
        if self.config.view_dependent:
            if dirs is None:
                dirs = -F.normalize(points, dim=-1)  # seen from outside, looking inwards
            feats = torch.cat([feats, self._encode_dirs(dirs)], dim=-1)
        return torch.sigmoid(self.mlp(feats))

    def _encode_dirs(self, dirs: Tensor) -> Tensor:
        freqs = 2.0 ** torch.arange(self.config.view_frequencies, device=dirs.device)
        angles = (dirs[:, None, :] * freqs[:, None]).flatten(1)
        return torch.cat([dirs, torch.sin(angles), torch.cos(angles)], dim=-1)

    def _density_gradient_grid(self) -> Tensor:
        """d sigma / d(x, y, z) at the grid points (1, 3, Z, Y, X), central differences."""
        sig = self.config.density_scale * F.softplus(self.density_grid + self.shift)
        return central_gradient(sig, self.config.bound)

    @torch.no_grad()
    def update_occupancy(self) -> None:
        """Mark cells empty where all 8 corner densities are below the occupancy level.

        Density is trilinear in raw value then monotone, so a cell whose corners are all low
        is low everywhere: skipping it changes no rendering weight above occupancy_alpha.
        """
        self.occupancy = occupancy_mask(self.density_grid, self._occupancy_raw)
        self.occupied_box = occupied_box(self.occupancy, self.config.bound)

    # ---- rendering ---------------------------------------------------------------------

    def render_rays(
        self,
        origins: Tensor,
        dirs: Tensor,
        z_per_t: Tensor,
        background: Tensor | None = None,
        normals: bool = False,
        train: bool = True,
    ) -> RenderOutput:
        """Render flat rays: origins (R, 3), unit dirs (R, 3), z_per_t (R, 1).

        ``background`` is (3,) or (R, 3) (white when None). ``train`` jitters the samples
        with the field's generator. Returns rgb (R, 3), opacity (R, 1), depth (R, 1) and
        optionally normals (R, 3).

        Rays are clipped to the bounding box of the occupied cells (the whole cube before the
        first occupancy update), rays missing it are dropped, and the density is read only
        at samples in occupied cells; colour only at samples of non-negligible weight.
        """
        cfg = self.config
        n_rays, n = origins.shape[0], cfg.samples_per_ray
        dev, dt = origins.device, origins.dtype
        box = self.occupied_box.to(dt)
        near, far, hit = ray_aabb(origins, dirs, box[0], box[1])
        rays = hit.nonzero().squeeze(1)  # the R' rays that can meet any density
        o, d = origins[rays], dirs[rays]
        jitter = self._jitter(rays.shape[0], n, dev, dt) if train else None
        t, step = stratified_samples(near[rays], far[rays], n, jitter)  # (R', N), (R', 1)

        if cfg.occupancy:
            keep = occupied_samples(self.occupancy, cfg.bound, o, d, t).reshape(-1)
            sel = keep.nonzero().squeeze(1)
        else:
            sel = torch.arange(t.numel(), device=dev)
        ray_of = torch.div(sel, n, rounding_mode="floor")
        points = torch.addcmul(o[ray_of], d[ray_of], t.reshape(-1, 1)[sel])
        sigma = torch.zeros(t.numel(), dtype=dt, device=dev)
        sigma = sigma.index_put((sel,), self.sigma(points))
        weights = composite_weights(sigma.reshape(t.shape), step)  # (R', N)

        # Colour only where it shows: a few samples per ray near the surface.
        csel = (weights.detach().reshape(-1) > cfg.weight_eps).nonzero().squeeze(1)
        ray_of = torch.div(csel, n, rounding_mode="floor")
        cpoints = torch.addcmul(o[ray_of], d[ray_of], t.reshape(-1, 1)[csel])
        w = weights.reshape(-1)[csel][:, None]
        color = self.rgb(cpoints, d[ray_of])
        ray_of = rays[ray_of]  # back to indices into all R rays

        def scatter(values: Tensor, width: int) -> Tensor:
            zeros = torch.zeros(n_rays, width, dtype=dt, device=dev)
            return zeros.index_put((rays,), values)

        opacity = scatter(weights.sum(dim=-1, keepdim=True), 1)
        depth = scatter(expected_depth(weights, t, z_per_t[rays], weights.sum(-1, keepdim=True)), 1)
        rgb = torch.zeros(n_rays, 3, dtype=dt, device=dev).index_add(0, ray_of, w * color)
        bg = torch.ones(3, dtype=dt, device=dev) if background is None else background.to(origins)
        out = {"rgb": rgb + (1.0 - opacity) * bg, "opacity": opacity, "depth": depth}
        if normals:
            grad = sample_grid(self._density_gradient_grid(), cpoints, cfg.bound)
            n_sum = torch.zeros(n_rays, 3, dtype=dt, device=dev)
            n_sum = n_sum.index_add(0, ray_of, w * -F.normalize(grad, dim=-1))
            out["normals"] = F.normalize(n_sum, dim=-1)
        return out

    def _jitter(self, n_rays: int, n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Uniform sample jitter (n_rays, n), drawn on the render device.

        The field's generator (checkpointed, so ``--resume`` continues exactly) only draws a
        seed per call; the values come from a generator on the render device. Drawing them on
        the CPU generator and copying them over was 67 M values and 268 MB a step for the
        paper preset's 4 views of 512² at 64 samples.
        """
        seed = int(torch.randint(0, 2**62, (), generator=self.generator))
        if self._jitter_generator is None or self._jitter_generator.device != device:
            self._jitter_generator = torch.Generator(device=device)
        self._jitter_generator.manual_seed(seed)
        return torch.rand(n_rays, n, generator=self._jitter_generator, device=device, dtype=dtype)

    def render(
        self, cameras: Cameras, background: Tensor | None = None, normals: bool = False
    ) -> RenderOutput:
        """Render whole images in chunks of ``config.chunk`` rays (``chunk_accelerator`` off the
        CPU); jitters samples only in training mode (``field.train()``), so call
        ``field.eval()`` for evaluation renders.

        ``background``: (3,) or (B, H, W, 3); white when None.
        """
        origins, dirs, z_per_t = cameras.rays()
        shape = origins.shape[:-1]
        origins, dirs, z_per_t = (x.reshape(-1, x.shape[-1]) for x in (origins, dirs, z_per_t))
        bg = None
        if background is not None:
            bg = background.to(origins)
            bg = bg.expand(*shape, 3).reshape(-1, 3) if bg.ndim > 1 else bg
        chunk = self.config.chunk if origins.device.type == "cpu" else self.config.chunk_accelerator
        parts: list[RenderOutput] = []
        for i in range(0, origins.shape[0], chunk):
            part_bg = bg[i : i + chunk] if bg is not None and bg.ndim > 1 else bg
            parts.append(
                self.render_rays(
                    origins[i : i + chunk],
                    dirs[i : i + chunk],
                    z_per_t[i : i + chunk],
                    part_bg,
                    normals,
                    train=self.training,
                )
            )
        return {k: torch.cat([p[k] for p in parts]).reshape(*shape, -1) for k in parts[0]}

    # ---- optimisation ------------------------------------------------------------------

    def regularizer(self) -> Tensor:
        """Weighted priors to add to the photometric loss: total variation of the grids and the
        density sparsity prior (the one on by default)."""
        loss = self.density_grid.new_zeros(())
        if self.config.tv_density > 0:
            loss = loss + self.config.tv_density * total_variation(self.density_grid)
        if self.config.tv_color > 0:
            loss = loss + self.config.tv_color * total_variation(self.color_grid)
        if self.config.sparsity > 0:
            # L1 on the raw value, floored just below the occupancy level: a constant push
            # (Adam keeps stepping at its full rate, unlike a prior on softplus whose gradient
            # fades with the density) that stops once the cell can be skipped.
            floor = self._occupancy_raw - 1.0
            loss = loss + self.config.sparsity * self.density_grid.clamp(min=floor).mean()
        return loss

    def param_groups(self) -> list[ParamGroup]:
        """The density grid is geometry; the colour grid (and its MLP) appearance."""
        cfg = self.config
        groups = [
            ParamGroup("density", "geometry", [self.density_grid], cfg.lr_density),
            ParamGroup("color", "appearance", [self.color_grid], cfg.lr_color),
        ]
        if self.mlp is not None:
            groups.append(ParamGroup("mlp", "appearance", list(self.mlp.parameters()), cfg.lr_mlp))
        return groups

    def optimizer_options(self) -> dict:
        fused = self.density_grid.device.type in ("cpu", "cuda")
        return {"betas": (0.9, 0.99), "eps": 1e-15, "fused": fused}

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier for ``step`` (exponential decay over ``train_steps``)."""
        frac = min(max(step, 0) / max(self.config.train_steps, 1), 1.0)
        return self.config.lr_final_factor**frac

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Let the densification policy upsample the grids (returning a rebuilt optimiser),
        refresh the occupancy mask every ``occupancy_every`` steps and set the next step's
        learning rates."""
        cfg = self.config
        nxt = step + 1
        before = self.resolution
        optimizer = super().after_step(step, optimizer)
        if self.resolution == before and cfg.occupancy and nxt % cfg.occupancy_every == 0:
            self.update_occupancy()
        base = {g.name: g.lr for g in self.param_groups()}
        factor = self.lr_factor(nxt)
        for group in optimizer.param_groups:
            if group.get("name") in base:
                group["lr"] = base[group["name"]] * factor
        return optimizer

    def density(self, points: Tensor) -> Tensor:
        return self.sigma(points)

    def fresh_like(self, generator: torch.Generator | None = None) -> NerfField:
        """The default initialisation (uniform thin fog, grey) at this field's resolution."""
        fresh = NerfField(self.config, generator).to(self.density_grid.device)
        if fresh.resolution != self.resolution:
            fresh.resize(self.resolution)
        return fresh

    @torch.no_grad()
    def resize(self, res: int) -> None:
        """Resample both grids to ``res`` points per side (occupancy reset to all occupied)."""
        for name in ("density_grid", "color_grid"):
            setattr(self, name, nn.Parameter(resize_grid(getattr(self, name).detach(), res)))
        self.occupancy = torch.ones(
            res - 1, res - 1, res - 1, dtype=torch.bool, device=self.density_grid.device
        )
        self.occupied_box = occupied_box(self.occupancy, self.config.bound)

    @torch.no_grad()
    def upsample(self, res: int, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Resample both grids to ``res`` and carry Adam moments over, resampled alike."""
        previous = {g["name"]: list(g["params"]) for g in optimizer.param_groups}
        self.resize(res)
        return carry_optimizer_state(
            optimizer,
            self.rebuild_optimizer(optimizer),
            previous,
            lambda value, _: resize_grid(value, res),
        )

    # ---- checkpoints and export --------------------------------------------------------

    def state_tensors(self) -> dict[str, Tensor]:
        """The grids under their checkpoint names ``density`` / ``color`` (the attributes are
        ``density_grid`` / ``color_grid``, since ``density(points)`` is the field's query)."""
        out = {
            _CHECKPOINT_NAMES.get(k, k): v.detach().clone() for k, v in self.state_dict().items()
        }
        out["generator_state"] = self.generator.get_state().clone()
        return out

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        stored = {v: k for k, v in _CHECKPOINT_NAMES.items()}
        tensors = {stored.get(k, k): v for k, v in tensors.items()}
        generator_state = tensors.pop("generator_state", None)
        dev = self.density_grid.device
        for name in _CHECKPOINT_NAMES:
            if tensors[name].shape != getattr(self, name).shape:
                setattr(self, name, nn.Parameter(torch.empty_like(tensors[name], device=dev)))
        if tensors["occupancy"].shape != self.occupancy.shape:
            self.occupancy = torch.empty_like(tensors["occupancy"], device=dev)
        self.load_state_dict(tensors)
        if generator_state is not None:
            self.generator.set_state(generator_state.cpu())

    @torch.no_grad()
    def export(self, out_dir: Path) -> dict[str, Path]:
        """Marching-cubes mesh with vertex colours as ``mesh.glb`` (glTF +y up)."""
        from dreamlift.io.mesh import extract_mesh, write_mesh

        dev = self.density_grid.device
        verts, faces, colors = extract_mesh(
            lambda p: self.sigma(p.to(dev)),
            lambda p: self.rgb(p.to(dev)),
            self.config.bound,
            self.config.mesh_resolution,
            self.config.mesh_threshold,
        )
        path = write_mesh(Path(out_dir) / "mesh.glb", verts, faces, colors, y_up=True)
        return {"mesh": path}

    @torch.no_grad()
    def set_from_functions(
        self, sigma_fn: Callable[[Tensor], Tensor], rgb_fn: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        """Fill the grids from world-space functions (for tests and synthetic scenes):
        ``sigma_fn`` maps points (P, 3) to density (P,), ``rgb_fn`` to colour (P, 3) (rgb mode).
        """
        res, b = self.resolution, self.config.bound
        axis = torch.linspace(-b, b, res, device=self.density_grid.device)
        zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
        pts = torch.stack([xx, yy, zz], dim=-1).reshape(-1, 3)
        sig = sigma_fn(pts).reshape(1, 1, res, res, res) / self.config.density_scale
        self.density_grid.copy_(inverse_softplus(sig.clamp(min=1e-30)) - self.shift)
        if rgb_fn is not None:
            if self.mlp is not None:
                raise ValueError("set_from_functions can set colours only in 'rgb' mode")
            rgb = rgb_fn(pts).clamp(1e-4, 1 - 1e-4).t().reshape(1, 3, res, res, res)
            self.color_grid.copy_(torch.logit(rgb))
        if self.config.occupancy:
            self.update_occupancy()


class GridUpsampling(Densification):
    """Coarse-to-fine: the grids grow on ``config.resolutions``' schedule (DVGO's progressive
    scaling, arXiv:2111.11215 §5). A grid is never resampled *down*: a trained field that
    starts a new stage at step 0 keeps its resolution."""

    def after_step(  # type: ignore[override]
        self, field: NerfField, step: int, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        res = field.config.resolution_at(step + 1)
        if res > field.resolution:
            optimizer = field.upsample(res, optimizer)
            if field.config.occupancy:
                field.update_occupancy()
        return optimizer
