"""Camera conditioning for a latent diffusion prior: the yaw the view words cannot give.

The world's view words ("front", "side", ...) each span 90° of azimuth, so "a red cube,
front view" is a face-on cube and a corner-on one alike. Score distillation seeks one mode in
every view, and a spinning top fits every view of such a prior better than a cube does. Like
MVDream, a camera-conditioned prior is told the camera: here a small MLP maps the camera's
azimuth and elevation to one offset that is added to every text token state, on both CFG
branches. Its last layer starts at zero, so fine-tuning starts from the prior as it was,
and a zero offset (no camera known, as in a stock pipeline) is the unconditioned model
(training drops the camera as it drops captions).

A prior folder carries the module in ``camera/`` (``config.json`` + ``model.safetensors``);
folders without it (every real SD) are simply not camera-conditioned.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dreamlift.errors import ModelError

CAMERA_FOLDER = "camera"
HARMONICS = (1, 2, 4)
"""Azimuth frequencies: 4 gives the 90° period of a cube's or a pyramid's silhouette."""


def camera_code(azimuth_deg: Tensor, elevation_deg: Tensor) -> Tensor:
    """(B,) angles in degrees → (B, 2 · len(HARMONICS) + 2) sines and cosines."""
    az = torch.as_tensor(azimuth_deg, dtype=torch.float32).reshape(-1) * (math.pi / 180.0)
    el = torch.as_tensor(elevation_deg, dtype=torch.float32).reshape(-1) * (math.pi / 180.0)
    parts = [f(k * az) for k in HARMONICS for f in (torch.sin, torch.cos)]
    return torch.stack([*parts, torch.sin(el), torch.cos(el)], dim=-1)


@dataclass(frozen=True)
class CameraEmbeddingConfig:
    width: int
    """The text encoder's hidden size: the offset is added to its token states."""
    hidden: int = 128
    features: int = 2 * len(HARMONICS) + 2


class CameraEmbedding(nn.Module):
    """Camera angles → a (B, 1, width) offset of the text token states."""

    def __init__(self, config: CameraEmbeddingConfig) -> None:
        super().__init__()
        self.config = config
        self.net = nn.Sequential(
            nn.Linear(config.features, config.hidden),
            nn.SiLU(),
            nn.Linear(config.hidden, config.width),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, azimuth_deg: Tensor, elevation_deg: Tensor) -> Tensor:
        code = camera_code(azimuth_deg, elevation_deg).to(self.net[0].weight)
        return self.net(code).unsqueeze(1)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        state = {k: v.detach().float().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))

    @classmethod
    def load(cls, folder: Path) -> CameraEmbedding:
        """The module saved in ``folder``; a missing, unreadable or malformed file is a
        one-line ModelError, anything else (out of memory, a bug) a traceback."""
        folder = Path(folder)
        module = cls(_read_config(folder))
        try:
            state = load_file(str(folder / "model.safetensors"))
        except (OSError, SafetensorError) as exc:
            raise _load_error(folder, exc) from None
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        if {k: tuple(v.shape) for k, v in state.items()} != expected:
            raise _load_error(folder, "model.safetensors does not fit config.json")
        module.load_state_dict(state, strict=True)
        return module.requires_grad_(False).eval()


def _load_error(folder: Path, why: BaseException | str) -> ModelError:
    lines = str(why).strip().splitlines() or [type(why).__name__]
    return ModelError(f"cannot load the camera embedding in {folder}: {lines[0][:200]}")


def _read_config(folder: Path) -> CameraEmbeddingConfig:
    """``config.json``: a JSON object of the config's fields, each a positive integer."""
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise _load_error(folder, exc) from None
    names = {f.name for f in fields(CameraEmbeddingConfig)}
    if (
        not isinstance(data, dict)
        or not set(data) <= names
        or "width" not in data
        or not all(type(v) is int and v > 0 for v in data.values())
    ):
        raise _load_error(folder, f"config.json must give positive integers {sorted(names)}")
    return CameraEmbeddingConfig(**data)


def has_camera(folder: Path) -> bool:
    return (Path(folder) / CAMERA_FOLDER / "model.safetensors").is_file()
