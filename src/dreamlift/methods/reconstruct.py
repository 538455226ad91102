"""Reconstruct: fit a field to posed images (world renders or a ``transforms.json`` folder).

The shared base of editing, tests and benchmarks. With ``--asset`` the world renders the
training views and held-out test views, so the summary says how close the fit came (PSNR,
SSIM, mask IoU on views never trained on).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from dreamlift.cameras import OrbitRange, sample_orbit, turntable
from dreamlift.devices import resolve_device
from dreamlift.errors import DataError, DreamliftError, OutputError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussiansConfig
from dreamlift.fields.nerf import NerfConfig
from dreamlift.fields.registry import check_field_name, make_field
from dreamlift.io.media import image_grid, save_image, save_turntable
from dreamlift.io.run import RunDir
from dreamlift.io.transforms import PosedImages, normalize_scene, read_transforms
from dreamlift.loop import LoopSettings, checkpoint_path, optimize
from dreamlift.metrics import mask_iou, psnr, ssim
from dreamlift.world import RenderSettings, asset_from_caption, render


@dataclass
class ReconstructConfig:
    """Settings of ``dreamlift reconstruct``; presets are in :data:`PRESETS`."""

    field: str = "gaussians"
    """Representation to fit: ``gaussians`` or ``nerf``."""
    asset: str | None = None
    """World caption to render training and test views from (ground truth known)."""
    data: str | None = None
    """Folder or file in the nerfstudio/instant-ngp ``transforms.json`` format."""
    preset: str = "fast"
    resolution: int = 64
    """Image size of world views (``--asset`` only; ``--data`` keeps its own size)."""
    train_views: int = 48
    test_views: int = 8
    """Held-out views, never trained on (world: other random cameras; data: every k-th)."""
    holdout_every: int = 8
    """With ``--data``: every k-th frame is a test view."""
    elevation: tuple[float, float] = (-10.0, 60.0)
    """Elevation range of world training and test cameras, degrees."""
    steps: int | None = None
    """Optimisation steps; None takes the field's recommendation (``train_steps``)."""
    seed: int = 0
    device: str = "auto"
    """Where to fit: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
    On ``--resume`` the device of the resuming command is used, not the saved one."""
    mask_weight: float = 0.1
    """Weight of the opacity-vs-alpha loss when the views have alpha (world, RGBA images)."""
    views_per_step: int = 1
    """Whole images per step for fields that render images (Gaussians)."""
    rays_per_step: int | None = None
    """Random rays per step for ray-based fields (NeRF); None takes the field's ``train_rays``."""
    checkpoint_every: int = 200
    log_every: int = 25
    eval_every: int = 0
    """Also log held-out PSNR every k steps (0: only at the end)."""
    supersample: int = 3
    """Anti-aliasing of the ground-truth renders; odd, so no pixel is exactly half covered
    and the alpha > 0.5 masks behind mask IoU are not biased small."""
    turntable_frames: int = 36
    nerf: NerfConfig = dataclass_field(default_factory=NerfConfig)
    gaussians: GaussiansConfig = dataclass_field(default_factory=GaussiansConfig)

    def field_config(self) -> Any:
        return getattr(self, self.field)

    def total_steps(self) -> int:
        return self.steps if self.steps is not None else int(self.field_config().train_steps)


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {},
    "quality": {"train_views": 64},
}


def build_config(
    preset: str = "fast", config_file: Path | None = None, **overrides: Any
) -> ReconstructConfig:
    """Preset, then the values of ``config_file`` (YAML), then non-None ``overrides``."""
    if preset not in PRESETS:
        raise DreamliftError(f"unknown preset {preset!r}", f"choose one of: {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset])
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["preset"] = preset
    cfg = config_from_dict(values)
    check_field_name(cfg.field)
    resolve_device(cfg.device)  # an unusable device fails now, before any work
    if (cfg.asset is None) == (cfg.data is None):
        raise DreamliftError("give exactly one of --asset CAPTION or --data PATH")
    if preset == "quality" and "steps" not in values:
        cfg.steps = 2 * cfg.total_steps()
    return cfg


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DreamliftError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(values, dict):
        raise DreamliftError(f"config file {path} must hold a mapping of settings")
    return values


def config_from_dict(values: dict[str, Any]) -> ReconstructConfig:
    """Rebuild a config saved in a run's ``config.yaml`` (used by ``--resume``)."""
    values = dict(values)
    try:
        nerf = NerfConfig(**_tuples(values.pop("nerf", None) or {}))
        gaussians = GaussiansConfig(**_tuples(values.pop("gaussians", None) or {}))
        return ReconstructConfig(**_tuples(values), nerf=nerf, gaussians=gaussians)
    except TypeError as exc:
        known = ", ".join(config_fields())
        raise DreamliftError(f"bad setting: {exc}", f"settings are: {known}") from None
    except ValueError as exc:
        raise DreamliftError(f"bad setting: {exc}") from None


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """YAML gives lists where the dataclasses hold tuples."""

    def conv(v: Any) -> Any:
        return tuple(conv(x) for x in v) if isinstance(v, list) else v

    return {k: conv(v) for k, v in values.items()}


def world_views(cfg: ReconstructConfig) -> tuple[PosedImages, PosedImages]:
    """Training and held-out views of ``cfg.asset`` rendered by the world (ground truth)."""
    asset = asset_from_caption(cfg.asset or "")
    ranges = OrbitRange(elevation=cfg.elevation)
    settings = RenderSettings(supersample=cfg.supersample)
    out = []
    for n, seed in ((cfg.train_views, cfg.seed), (cfg.test_views, cfg.seed + 10_007)):
        cams, _, _ = sample_orbit(n, cfg.resolution, ranges, torch.Generator().manual_seed(seed))
        r = render(asset, cams, settings)
        out.append(PosedImages(r["rgb"], cams, r["alpha"], r["depth"]))
    return out[0], out[1]


def data_views(cfg: ReconstructConfig) -> tuple[PosedImages, PosedImages]:
    data = read_transforms(Path(cfg.data or ""))
    cams, _, _ = normalize_scene(data.cameras)
    data = PosedImages(data.images, cams, data.alphas, data.depths, data.names)
    n = len(data)
    test = [i for i in range(n) if cfg.holdout_every > 0 and i % cfg.holdout_every == 0 and n > 1]
    train = [i for i in range(n) if i not in test]
    if not train:
        raise DreamliftError(f"{cfg.data} has too few frames ({n}) to train on")
    return data.subset(train), data.subset(test or train[:1])


class _Supervision:
    """Per-step losses against the training views, by rays or by whole images.

    The views live on the field's device; batches are drawn by a CPU generator (the same
    stream on every device) and their indices moved over."""

    def __init__(
        self, cfg: ReconstructConfig, fld: Field, train: PosedImages, gen: torch.Generator
    ):
        self.cfg, self.field, self.train, self.gen = cfg, fld, train, gen
        self.device = _device_of(fld)
        self.by_rays = hasattr(fld, "render_rays")
        self.render_s = 0.0  # forward rendering time, to split it from the loss terms
        self.background = torch.ones(3, device=self.device)
        if self.by_rays:
            origins, dirs, zpt = train.cameras.rays()
            rays = (origins.reshape(-1, 3), dirs.reshape(-1, 3), zpt.reshape(-1, 1))
            self.rays = tuple(r.to(self.device) for r in rays)
            self.rgb = train.images.reshape(-1, 3).to(self.device)
            alpha = None if train.alphas is None else train.alphas.reshape(-1, 1)
            self.alpha = None if alpha is None else alpha.to(self.device)
            self.n_rays = cfg.rays_per_step or int(cfg.field_config().train_rays)
        else:
            self.cameras = train.cameras.to(self.device)
            self.images = train.images.to(self.device)
            self.alphas = None if train.alphas is None else train.alphas.to(self.device)

    def __call__(self, step: int) -> tuple[Tensor, dict[str, float], dict[str, Tensor]]:
        started = time.perf_counter()
        if self.by_rays:
            idx = torch.randint(0, self.rgb.shape[0], (self.n_rays,), generator=self.gen)
            idx = idx.to(self.device)
            o, d, z = (r[idx] for r in self.rays)
            out = self.field.render_rays(o, d, z, self.background, train=True)
            target, alpha = self.rgb[idx], None if self.alpha is None else self.alpha[idx]
        else:
            idx = torch.randint(0, len(self.train), (self.cfg.views_per_step,), generator=self.gen)
            idx = idx.to(self.device)
            out = self.field.render(self.cameras[idx], self.background)
            target = self.images[idx]
            alpha = None if self.alphas is None else self.alphas[idx]
        self.render_s += time.perf_counter() - started
        rgb_loss = F.mse_loss(out["rgb"], target)
        loss = rgb_loss
        logs = {"loss_rgb": float(rgb_loss.detach())}
        if alpha is not None and self.cfg.mask_weight > 0:
            mask_loss = F.mse_loss(out["opacity"], alpha)
            loss = loss + self.cfg.mask_weight * mask_loss
            logs["loss_mask"] = float(mask_loss.detach())
        regularizer = getattr(self.field, "regularizer", None)
        if regularizer is not None:
            reg = regularizer()
            loss = loss + reg
            logs["loss_reg"] = float(reg.detach())
        return loss, logs, out


def _device_of(fld: Field) -> torch.device:
    return next(fld.parameters()).device


@torch.no_grad()
def evaluate(fld: Field, views: PosedImages) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Held-out metrics of ``fld`` against ``views`` (mask IoU when alphas are known); the
    renders come back on the CPU, like ``views``."""
    was_training = fld.training
    fld.eval()
    device = _device_of(fld)
    out = fld.render(views.cameras.to(device), torch.ones(3, device=device))
    out = {k: v.detach().cpu() for k, v in out.items()}
    fld.train(was_training)
    pred = out["rgb"].clamp(0, 1)
    metrics = {
        "psnr": float(psnr(pred, views.images).mean()),
        "ssim": float(ssim(pred, views.images).mean()),
    }
    if views.alphas is not None:
        metrics["mask_iou"] = float(mask_iou(out["opacity"], views.alphas).mean())
    return metrics, out


def _check_out(run: RunDir, resume: bool) -> None:
    if not resume and checkpoint_path(run).exists():
        raise OutputError(
            f"{run.path} already holds a run (checkpoint.safetensors)",
            "pass --resume to continue it, or choose another --out",
        )


def reconstruct(
    cfg: ReconstructConfig, out_dir: Path, resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Fit ``cfg.field`` to the views and write the run folder; returns the summary dict."""
    device = resolve_device(cfg.device)
    run = RunDir(out_dir).prepare()
    if resume and (run.path / "config.yaml").exists():
        steps, device_name = cfg.steps, cfg.device
        cfg = config_from_dict(run.read_config())
        cfg.steps = steps if steps is not None else cfg.steps
        cfg.device = device_name
    _check_out(run, resume)
    t0 = time.perf_counter()
    train, test = world_views(cfg) if cfg.asset is not None else data_views(cfg)
    t_data = time.perf_counter() - t0
    run.write_config(cfg)

    torch.manual_seed(cfg.seed)
    field_gen = torch.Generator().manual_seed(cfg.seed)
    batch_gen = torch.Generator().manual_seed(cfg.seed + 1)
    fld = make_field(cfg.field, cfg.field_config(), field_gen).to(device)
    supervision = _Supervision(cfg, fld, train, batch_gen)

    def on_log(step: int) -> dict[str, float]:
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            return {f"test_{k}": v for k, v in evaluate(fld, test)[0].items()}
        return {}

    settings = LoopSettings(
        steps=cfg.total_steps(),
        kind=f"reconstruct/{cfg.field}",
        checkpoint_every=cfg.checkpoint_every,
        log_every=cfg.log_every,
        quiet=quiet,
    )
    result = optimize(
        fld,
        supervision,
        run,
        settings,
        {"batch": batch_gen},
        resume,
        description=f"reconstruct {cfg.field}",
        on_log=on_log,
    )
    t_eval = time.perf_counter()
    metrics, test_out = evaluate(fld, test)
    eval_s = time.perf_counter() - t_eval
    warnings: list[str] = []
    outputs = _write_outputs(run, cfg, fld, train, test, test_out, warnings)
    metrics.update({"train_views": len(train), "test_views": len(test)})
    timings = {
        "data_s": t_data,
        "eval_s": eval_s,
        "train_s": result.timings.get("step_s", 0.0),
        **{k: v for k, v in result.timings.items() if k != "step_s"},
    }
    if "loss_s" in timings:  # the loop's "loss" time includes the forward render
        timings["render_s"] = supervision.render_s
        timings["loss_s"] -= supervision.render_s
    command = f"reconstruct --field {cfg.field} " + (
        f"--asset {cfg.asset!r}" if cfg.asset is not None else f"--data {cfg.data}"
    )
    run.write_summary(
        command, cfg, metrics, timings, outputs, resumed_from=result.resumed_from, warnings=warnings
    )
    return {"metrics": metrics, "timings": timings, "outputs": outputs, "warnings": warnings}


def _write_outputs(
    run: RunDir,
    cfg: ReconstructConfig,
    fld: Field,
    train: PosedImages,
    test: PosedImages,
    test_out: dict[str, Tensor],
    warnings: list[str],
) -> dict[str, Path]:
    outputs: dict[str, Path] = {
        "config": run.path / "config.yaml",
        "metrics": run.metrics_path,
        "checkpoint": checkpoint_path(run),
    }
    outputs["test_views"] = save_image(
        run.path / "test_views.png",
        image_grid(torch.cat([test.images, test_out["rgb"].clamp(0, 1)]), columns=len(test)),
    )
    radius = float(train.cameras.centers.norm(dim=-1).mean())
    fov = float(torch.rad2deg(2 * torch.atan(train.cameras.width / (2 * train.cameras.fx))).mean())
    size = max(train.cameras.width, 64)
    cams = turntable(cfg.turntable_frames, size, elevation_deg=20.0, radius=radius, fov_deg=fov)
    fld.eval()
    device = _device_of(fld)
    with torch.no_grad():
        frames = fld.render(cams.to(device), torch.ones(3, device=device))["rgb"].clamp(0, 1)
    frames = frames.cpu()
    outputs.update(save_turntable(run.path, frames))
    try:
        outputs.update(fld.export(run.path))
    except DataError as exc:
        # An under-trained field can be empty; the run's other results are still worth keeping.
        warnings.append(f"no 3D file exported: {exc}")
    return outputs


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(ReconstructConfig)]
