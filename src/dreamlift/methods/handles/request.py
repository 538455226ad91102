"""One ``dreamlift handles`` run as settings: what to edit and how, saved as ``config.yaml``.

Built like every method's settings (:mod:`dreamlift.methods.common.config`): a preset's
:class:`~dreamlift.methods.handles.config.HandlesConfig`, then a ``--config`` file, ``--set
KEY=VALUE`` (``--set config.steps=20``, ``--set transform.angle_deg=30``) and the named
flags; ``--resume`` reads the request back from the run's ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamlift.errors import DataError
from dreamlift.io.run import to_plain
from dreamlift.methods.common import config as settings
from dreamlift.methods.common.folders import resume_config
from dreamlift.methods.handles.config import PRESETS, HandlesConfig
from dreamlift.methods.handles.registry import EDITORS
from dreamlift.methods.handles.transform import Transform3D


@dataclass(frozen=True)
class HandlesRun:
    """A request of the command line, saved as the run's ``config.yaml``."""

    transform: Transform3D = field(default_factory=Transform3D)
    """The 3D edit of the object, in the handle frame (a scene's: gravity-aligned)."""
    image: str | None = None
    """The image to edit (PNG/JPEG); None with ``scene``."""
    mask: str | None = None
    """The object's mask, an image of the image's size: white (non-zero) pixels are the
    object."""
    depth: str | None = None
    """z-depth of the image: ``.npy``, 16-bit PNG in mm or 8-bit disparity PNG (bright =
    near); None: estimated by ``depth_model``."""
    depth_model: str | None = None
    """A DPT (or SD2-depth) folder estimating the depth when ``depth`` is None."""
    prompt: str | None = None
    """Caption of the image (a scene's own caption when None); a toy prior takes only the
    world's caption grammar."""
    scene: str | None = None
    """A world caption rendered as a ground scene, so the edit is scored against the truth;
    the transform's frame is then gravity-aligned."""
    object_index: int = 0
    """Which object of ``scene`` moves."""
    prior: str = "toy-sd-depth"
    """A zoo name or an SD2-depth diffusers folder."""
    method: str = "handles"
    """``handles`` or one of its baselines (:data:`~dreamlift.methods.handles.EDITORS`)."""
    device: str = "auto"
    """Where the prior runs (``auto``: CUDA when present)."""
    seed: int = 0
    """Recorded only: the edit draws no random numbers (DDIM inversion, deterministic passes)
    except ``config.carry_seed``'s noise when carrying."""
    frames: int = 0
    """Frames from the identity to the edit for ``strip.png`` / ``edit.gif`` (0: two)."""
    resize: bool = False
    """Resize image, mask and depth to the prior's size."""
    preset: str = "paper"
    """The preset ``config`` started from."""
    config: HandlesConfig = field(default_factory=lambda: PRESETS["paper"])

    def __post_init__(self) -> None:
        if self.method not in EDITORS:
            raise DataError(f"unknown method {self.method!r}", f"one of: {', '.join(EDITORS)}")
        if self.frames == 1 or self.frames < 0:
            raise DataError("--frames needs 0 (no interpolation) or at least 2")
        if self.scene is None and (self.image is None or self.mask is None):
            raise DataError(
                "give an IMAGE with --mask, or a world scene with --scene",
                "dreamlift handles photo.png --mask m.png --depth d.npy --prompt '…'",
            )
        if self.scene is not None and self.image is not None:
            raise DataError("give an IMAGE or --scene, not both")
        if self.scene is None and not (self.prompt or "").strip():
            raise DataError("no prompt given", "describe the image with --prompt")


def build_request(preset: str = "paper", **overrides: Any) -> HandlesRun:
    """The preset's edit settings, then the non-None ``overrides`` merged key by key
    (``config={"steps": 20}`` keeps the preset's other settings)."""
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}", f"one of: {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = settings.merge({"preset": preset, "config": to_plain(PRESETS[preset])}, given)
    return settings.config_from_values(HandlesRun, values)


def resume_request(out_dir: Path, **overrides: Any) -> HandlesRun:
    """The request saved in ``out_dir`` with the non-None ``overrides`` laid over it."""
    return resume_config(HandlesRun, Path(out_dir), overrides)
