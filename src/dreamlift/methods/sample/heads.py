"""Samples of a 3D-aware generator (``dreamlift sample --prior toy-eg3d``): random latents,
each rendered from several views, so a grid row shows one head turning."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dreamlift.errors import ConfigError
from dreamlift.io.media import image_grid, save_image
from dreamlift.io.run import RunDir
from dreamlift.utils.numerics import flush_denormals
from dreamlift.world.heads import head_cameras

GENERATORS = ("toy-eg3d",)


@dataclass(frozen=True)
class GeneratorSampleConfig:
    """``n`` latents z ~ N(0, I) from ``seed``, truncated toward w_avg by ``truncation``
    (StyleGAN's ψ), each rendered at ``views`` yaws evenly spread over ±``yaw_range``."""

    generator: str = "toy-eg3d"
    n: int = 8
    views: int = 4
    truncation: float = 0.7
    yaw_range: float = 45.0
    pitch: float = 10.0
    resolution: int = 64
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.n < 1 or self.views < 1:
            raise ConfigError("--n and --views must be at least 1")
        if not 0.0 <= self.truncation <= 1.0:
            raise ConfigError(f"truncation must be in [0, 1], got {self.truncation}")


def is_generator(name: str) -> bool:
    """Whether ``name`` names a 3D-aware generator (a zoo name or a folder with its config)."""
    if name in GENERATORS:
        return True
    config = Path(name) / "config.json"
    return config.is_file() and '"TriplaneGenerator"' in config.read_text()


def sample_generator(cfg: GeneratorSampleConfig, out: Path) -> dict[str, Any]:
    with flush_denormals():  # subnormals are ~20x slower on CPUs (utils/numerics.py)
        return _sample_generator(cfg, out)


def _sample_generator(cfg: GeneratorSampleConfig, out: Path) -> dict[str, Any]:
    from dreamlift.methods.invert.run import load_generator

    run = RunDir(out)
    t0 = time.perf_counter()
    gen = load_generator(cfg.generator, cfg.device)
    run.prepare()
    run.write_config(cfg)
    timings = {"load_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    z = torch.randn(cfg.n, gen.z_dim, generator=torch.Generator().manual_seed(cfg.seed))
    ws = gen.mapping(z, cfg.truncation)
    yaws = (
        torch.linspace(-cfg.yaw_range, cfg.yaw_range, cfg.views)
        if cfg.views > 1
        else torch.zeros(1)
    )
    cams = head_cameras(yaws, torch.full_like(yaws, cfg.pitch), cfg.resolution)
    rows = []
    with torch.no_grad():
        for i in range(cfg.n):
            rows.append(gen.render(gen.synthesis(ws[i : i + 1]), cams).rgb)
    images = torch.stack(rows)  # (n, views, 3, H, W)
    timings["sample_s"] = time.perf_counter() - t0
    timings["seconds_per_sample"] = timings["sample_s"] / cfg.n
    samples = run.path / "samples"
    samples.mkdir(exist_ok=True)
    for i in range(cfg.n):
        for v in range(cfg.views):
            save_image(samples / f"sample_{i:03d}_view_{v}.png", images[i, v].permute(1, 2, 0))
    hwc = images.flatten(0, 1).permute(0, 2, 3, 1)
    outputs = {
        "grid": save_image(run.path / "grid.png", image_grid(hwc, cfg.views)),
        "samples": samples,
        "latents": run.path / "latents.safetensors",
    }
    save_file({"z": z, "ws": ws.contiguous()}, str(outputs["latents"]))
    command = (
        f"dreamlift sample --prior {cfg.generator} --n {cfg.n} --views {cfg.views} "
        f"--truncation {cfg.truncation} --seed {cfg.seed}"
    )
    notes = ["each grid row is one sample, turning from left to right"]
    run.write_summary(command, cfg, {}, timings, outputs, notes=notes)
    return {"metrics": {}, "notes": notes, "timings": timings, "outputs": outputs}
