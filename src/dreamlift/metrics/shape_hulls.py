"""The visual hulls of the world's six shapes, carved once and shipped with the package.

Scoring a text-to-3D result aligns its hull with each world shape's to rank its shape
(:func:`dreamlift.metrics.composition.rank_shape`), and with its caption's asset, which for
a single object is one of those shapes. Carving the six takes 24 world renders and three
carvings each: 0.7 s of a 20 s fast SDS run, spent again by every run. A shape's hull
depends only on the world's geometry and the hull settings, so ``shape_hulls.safetensors``
holds them (bit-packed, 8 KB a shape) for the default :class:`GroundTruthSettings`; other
settings carve as before. ``tests/test_shape_hulls.py`` carves them afresh and requires the
shipped ones to be equal bit for bit, so a change to the world's shapes that forgets to
re-ship them fails there; ``python -m dreamlift.metrics.shape_hulls`` writes the file again.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dreamlift.metrics.ground_truth import (
    GroundTruthSettings,
    _Hull,
    _hull,
    asset_renderer,
    hull_from_occupancy,
)
from dreamlift.world.assets import Asset, Part
from dreamlift.world.shapes import SHAPES

SHIPPED = Path(__file__).with_name("shape_hulls.safetensors")

_CARVING_FIELDS = (
    "resolution",
    "radius",
    "fov",
    "hull_azimuths",
    "hull_elevations",
    "hull_resolution",
    "bound",
)
"""The settings a hull's carving depends on (the hull cameras and the grid)."""


def carving_key(settings: GroundTruthSettings) -> str:
    """The settings a hull is carved with, as a string to compare with the shipped file's."""
    return json.dumps({name: getattr(settings, name) for name in _CARVING_FIELDS})


def carve_shape_hull(shape: str, settings: GroundTruthSettings) -> _Hull:
    """The hull of the world's ``shape`` at the origin, unit scale, carved from its renders."""
    return _hull(asset_renderer(Asset((Part(shape, "grey", (0.0, 0.0, 0.0)),))), settings)


@lru_cache(maxsize=1)
def _shipped() -> tuple[str, dict[str, _Hull]]:
    if not SHIPPED.exists():
        return "", {}
    tensors = load_file(str(SHIPPED))
    key = bytes(tensors.pop("carving_key").numpy()).decode()
    hulls = {}
    for shape in SHAPES:
        r = int(tensors[f"{shape}.resolution"])
        bits = np.unpackbits(tensors[f"{shape}.occupancy"].numpy())[: r**3]
        occupancy = torch.from_numpy(bits.astype(bool)).reshape(r, r, r)
        center = tensors[f"{shape}.center"]
        hulls[shape] = hull_from_occupancy(occupancy, center, float(tensors[f"{shape}.half"]))
    return key, hulls


@lru_cache(maxsize=32)
def shape_hull(shape: str, settings: GroundTruthSettings) -> _Hull:
    """``shape``'s hull at ``settings``: the shipped one where they match, else carved."""
    key, hulls = _shipped()
    if key == carving_key(settings) and shape in hulls:
        return hulls[shape]
    return carve_shape_hull(shape, settings)


def asset_hull(asset: Asset, settings: GroundTruthSettings) -> _Hull:
    """``asset``'s hull: a shipped shape hull when the asset is one world shape at the origin
    (a single-object caption's; colour does not change a silhouette), else carved."""
    if not asset.ground and len(asset.parts) == 1:
        (part,) = asset.parts
        if part.center == (0.0, 0.0, 0.0) and part.scale == 1.0 and part.yaw_deg == 0.0:
            return shape_hull(part.shape, settings)
    return _hull(asset_renderer(asset), settings)


def write_shape_hulls(path: Path = SHIPPED, settings: GroundTruthSettings | None = None) -> Path:
    """Carve every world shape at ``settings`` (default: the defaults) and write the file."""
    settings = settings or GroundTruthSettings()
    tensors = {"carving_key": torch.tensor(list(carving_key(settings).encode()), dtype=torch.uint8)}
    for shape in SHAPES:
        hull = carve_shape_hull(shape, settings)
        occupancy = hull.occupancy.bool().numpy().reshape(-1)
        tensors[f"{shape}.occupancy"] = torch.from_numpy(np.packbits(occupancy))
        tensors[f"{shape}.resolution"] = torch.tensor(hull.occupancy.shape[0])
        tensors[f"{shape}.center"] = hull.center.clone()
        tensors[f"{shape}.half"] = torch.tensor(hull.half, dtype=torch.float64)
    save_file(tensors, str(path))
    return path


if __name__ == "__main__":
    print(f"wrote {write_shape_hulls()}")
