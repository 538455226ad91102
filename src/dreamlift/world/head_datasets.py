"""Deterministic datasets of head renders for the face models' training and evaluation.

Item ``i`` of a dataset with seed ``s`` depends only on (s, i): its head (drawn from the
split's seeds, so the held-out heads of :data:`~dreamlift.world.heads.HELD_OUT_HEADS` never
reach a training set), its camera (yaw and pitch uniform in the configured ranges, EG3D's
camera) and its light (2nd-order SH: ambient plus one clamped-cosine light from a random
direction of the front hemisphere, the kind of lighting DPR-style estimators are trained on).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dreamlift.world.captions import head_caption
from dreamlift.world.heads import (
    HELD_OUT_HEADS,
    eg3d_camera_vector,
    head_cameras,
    head_params,
    training_head_seeds,
)
from dreamlift.world.heads_geometry import render_head
from dreamlift.world.lighting import Lighting, sh_from_directional

Split = Literal["train", "held_out"]


@dataclass(frozen=True)
class HeadDatasetConfig:
    """What to draw: the split's heads at random yaw, pitch and light."""

    split: Split = "train"
    resolution: int = 64
    seed: int = 0
    yaw_deg: tuple[float, float] = (-45.0, 45.0)
    """Azimuth range (0 = facing the camera); EG3D's FFHQ poses mostly lie within ±45°."""
    pitch_deg: tuple[float, float] = (-10.0, 25.0)
    ambient: tuple[float, float] = (0.2, 0.5)
    diffuse: tuple[float, float] = (0.4, 0.9)
    supersample: int = 2

    def __post_init__(self) -> None:
        if self.split not in ("train", "held_out"):
            raise ValueError(f"split must be 'train' or 'held_out', got {self.split!r}")


def split_seeds(split: Split) -> tuple[int, ...]:
    """The head seeds of a split (training: every seed not held out)."""
    return training_head_seeds() if split == "train" else tuple(HELD_OUT_HEADS)


def random_light(rng: random.Random, config: HeadDatasetConfig) -> tuple[float, ...]:
    """9 SH coefficients: ambient plus a light from the front hemisphere (x > 0 faces the
    head's front in world coordinates)."""
    theta = rng.uniform(-math.pi / 2, math.pi / 2)  # around the vertical, 0 = front
    phi = rng.uniform(-math.pi / 4, math.pi / 3)  # below to above
    return light_from_angles(rng, config, theta, phi)


def light_from_angles(
    rng: random.Random, config: HeadDatasetConfig, theta: float, phi: float
) -> tuple[float, ...]:
    """9 SH coefficients: ambient and diffuse strengths drawn from ``config``'s ranges, the
    light from ``theta`` around the vertical (0 = the head's front) and ``phi`` above the
    horizon, in radians."""
    direction = (math.cos(phi) * math.cos(theta), math.cos(phi) * math.sin(theta), math.sin(phi))
    return sh_from_directional(
        rng.uniform(*config.ambient), rng.uniform(*config.diffuse), direction
    )


class HeadDataset(Dataset):
    """``length`` items, each a dict: ``image`` (3, H, W), ``depth`` (1, H, W), ``mask``
    (1, H, W), ``labels`` (H, W) part labels, ``camera`` (25,) EG3D's camera vector,
    ``yaw`` / ``pitch`` in degrees, ``sh`` (9,), ``head`` (the seed) and ``caption``."""

    def __init__(self, config: HeadDatasetConfig, length: int) -> None:
        self.config = config
        self.length = length
        self.seeds = split_seeds(config.split)

    def __len__(self) -> int:
        return self.length

    def draw(self, index: int) -> tuple[int, float, float, tuple[float, ...]]:
        """(head seed, yaw, pitch, SH light) of item ``index``, without rendering."""
        cfg = self.config
        rng = random.Random(cfg.seed * 1_000_003 + index)
        head = rng.choice(self.seeds)
        yaw, pitch = rng.uniform(*cfg.yaw_deg), rng.uniform(*cfg.pitch_deg)
        return head, yaw, pitch, random_light(rng, cfg)

    def __getitem__(self, index: int) -> dict[str, Tensor | str | int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        cfg = self.config
        head, yaw, pitch, sh = self.draw(index)
        params = head_params(head)
        cams = head_cameras(yaw, pitch, cfg.resolution)
        out = render_head(params, cams, Lighting(sh=sh), supersample=cfg.supersample)
        return {
            "image": out["rgb"][0].permute(2, 0, 1),
            "depth": out["depth"][0].permute(2, 0, 1),
            "mask": out["alpha"][0].permute(2, 0, 1),
            "labels": out["labels"][0],
            "camera": eg3d_camera_vector(cams)[0],
            "yaw": torch.tensor(yaw),
            "pitch": torch.tensor(pitch),
            "sh": torch.tensor(sh, dtype=torch.float32),
            "head": head,
            "caption": head_caption(params),
        }
