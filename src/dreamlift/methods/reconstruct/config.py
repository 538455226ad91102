"""Settings of ``dreamlift reconstruct``: the typed config and its presets.

Values come from a preset, then a ``--config`` file, ``--set KEY=VALUE`` and the named
flags, and are checked against the config's types by :mod:`dreamlift.methods.common.config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from dreamlift.devices import resolve_device
from dreamlift.errors import DreamliftError
from dreamlift.fields.gaussians import GaussiansConfig
from dreamlift.fields.nerf import NerfConfig
from dreamlift.fields.registry import check_field_name
from dreamlift.methods.common import config as settings
from dreamlift.methods.common.config import check_turntable_size
from dreamlift.methods.common.folders import resume_config as resumed
from dreamlift.world import parse


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
    A resumed run keeps the saved device unless the resuming command names another."""
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
    turntable_size: int = 256
    """Pixels per side of the turntable videos, rendered from the final field (not the
    training size): 256 people can see; the renders cost seconds (docs/benchmarks.md)."""
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
    """Preset, then the values of ``config_file`` (YAML), then the non-None ``overrides``,
    merged key by key into nested settings."""
    if preset not in PRESETS:
        raise DreamliftError(f"unknown preset {preset!r}", f"choose one of: {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset])
    if config_file is not None:
        values = settings.merge(values, settings.read_config_file(config_file))
    values = settings.merge(values, {k: v for k, v in overrides.items() if v is not None})
    values["preset"] = preset
    cfg = check_config(config_from_dict(values))
    if preset == "quality" and "steps" not in values:
        cfg.steps = 2 * cfg.total_steps()
    return cfg


def check_config(cfg: ReconstructConfig) -> ReconstructConfig:
    """Names, the device and the caption, before any work."""
    check_field_name(cfg.field)
    resolve_device(cfg.device)  # an unusable device fails now, before any work
    if (cfg.asset is None) == (cfg.data is None):
        raise DreamliftError("give exactly one of --asset CAPTION or --data PATH")
    if cfg.asset is not None:
        parse(cfg.asset)
    check_turntable_size(cfg.turntable_size)
    return cfg


def resume_config(out_dir: Path, **overrides: Any) -> ReconstructConfig:
    """The config saved in ``out_dir`` with ``overrides`` laid over it, for ``--resume``."""
    return check_config(resumed(ReconstructConfig, Path(out_dir), overrides))


def config_from_dict(values: dict[str, Any]) -> ReconstructConfig:
    """Rebuild a config from plain values (a preset, a saved ``config.yaml``)."""
    return settings.config_from_values(ReconstructConfig, values)


def config_fields() -> list[str]:
    return settings.config_fields(ReconstructConfig)
