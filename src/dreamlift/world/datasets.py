"""Deterministic datasets of world renders: (image, depth, mask, camera, caption).

Item ``i`` of a dataset with seed ``s`` depends only on (s, i), never on the order of access,
so workers, resumed trainers and benchmarks all see the same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dreamlift.cameras import OrbitRange, sample_orbit, view_word
from dreamlift.world.assets import COLOURS, Description, ObjectSpec, layout
from dreamlift.world.captions import caption
from dreamlift.world.render import RenderSettings, render
from dreamlift.world.shapes import SHAPES

SCENE_LOOK_HEIGHT = 0.35


@dataclass(frozen=True)
class DatasetConfig:
    """What to draw. ``kinds`` weights single objects, compositions and ground scenes."""

    resolution: int = 64
    seed: int = 0
    kinds: dict[str, float] = field(
        default_factory=lambda: {"single": 0.6, "on_top": 0.15, "next_to": 0.15, "scene": 0.1}
    )
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = tuple(SHAPES)
    # Colour–shape pairs never drawn as single objects (held out to measure generalisation).
    exclude_pairs: tuple[tuple[str, str], ...] = ()
    # Whole descriptions (canonical captions without view) never drawn.
    exclude_captions: tuple[str, ...] = ()
    orbit: OrbitRange = OrbitRange()
    supersample: int = 2


class WorldDataset(Dataset):
    """``len`` items; each a dict of tensors plus its caption (with the view word)."""

    def __init__(self, config: DatasetConfig, length: int) -> None:
        self.config = config
        self.length = length

    def __len__(self) -> int:
        return self.length

    def describe(self, index: int) -> tuple[Description, bool]:
        """The description of item ``index`` and whether it stands on the ground (no rendering)."""
        rng = random.Random(self.config.seed * 1_000_003 + index)
        cfg = self.config
        kinds, weights = zip(*cfg.kinds.items(), strict=True)
        for _ in range(1000):
            kind = rng.choices(kinds, weights)[0]
            n = {"single": 1, "on_top": 2, "next_to": rng.choice([2, 3])}.get(kind)
            n = n if n is not None else rng.choice([1, 2, 3])
            objects = tuple(
                ObjectSpec(rng.choice(cfg.colours), rng.choice(cfg.shapes)) for _ in range(n)
            )
            relation = "single" if n == 1 else ("on_top" if kind == "on_top" else "next_to")
            desc = Description(objects, relation)  # type: ignore[arg-type]
            if n == 1 and (objects[0].colour, objects[0].shape) in cfg.exclude_pairs:
                continue
            if caption(desc) in cfg.exclude_captions:
                continue
            return desc, kind == "scene"
        raise ValueError("the dataset's exclusions leave nothing to draw")

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        cfg = self.config
        desc, on_ground = self.describe(index)
        asset = layout(desc, ground=on_ground)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
        cams, azimuth, elevation = sample_orbit(1, cfg.resolution, cfg.orbit, gen)
        if on_ground:
            cams.c2w[:, 2, 3] += SCENE_LOOK_HEIGHT  # look at the objects, not at the floor
        out = render(asset, cams, RenderSettings(supersample=cfg.supersample))
        view = view_word(float(azimuth[0]), float(elevation[0]))
        return {
            "image": out["rgb"][0].permute(2, 0, 1),
            "depth": out["depth"][0].permute(2, 0, 1),
            "mask": out["alpha"][0].permute(2, 0, 1),
            "instance": out["instance"][0],
            "c2w": cams.c2w[0],
            "intrinsics": cams.intrinsics()[0],
            "azimuth": azimuth[0],
            "elevation": elevation[0],
            "caption": caption(desc, view),
        }
