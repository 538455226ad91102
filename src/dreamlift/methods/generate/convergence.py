"""Stop a run once its shape has stopped changing: a convergence test that needs no ground
truth, so it works for any prompt.

Why: a fixed step count is set for the slowest captions. On the fast set (GE3D on Gaussians,
600 steps) a sphere's silhouette is settled by step 300 while a cone's tip still grows at
step 550; a run that stops when its own silhouettes stop moving spends the steps where they
change and no others (docs/benchmarks.md, "Stopping at convergence").

The test: every ``every`` steps the field is rendered at ``views`` fixed cameras around the
object (evenly spaced azimuths at one elevation, white background, no gradient); its
silhouettes (opacity > 0.5) and its mean colour inside them are compared with those of the
previous check. A check passes when the silhouette IoU is at least ``threshold`` and no
channel of the mean colour moved more than ``colour_change``; the run is converged once
``patience`` checks in a row have passed, and not before ``min_fraction`` of the planned
steps. The colour matters: a blue sphere's silhouette had settled at step 300 while its blue
was still too grey to be named. The previous silhouettes, colour and the count live in the
loop's checkpointed ``state``, so a resumed run stops where the uninterrupted one does.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dreamlift.cameras import DEFAULT_ORBIT, orbit_cameras
from dreamlift.errors import ConfigError
from dreamlift.fields.base import Field

STATE_KEY = "convergence"
"""The test's entry in the loop's checkpointed ``state``."""


@dataclass
class ConvergenceConfig:
    """When a run counts as converged (off by default; the ``fast`` preset turns it on)."""

    enabled: bool = False
    every: int = 50
    """Steps between checks (a multiple of ``log_every`` is not needed: checks run after any
    step)."""
    threshold: float = 0.98
    """Silhouette IoU between two consecutive checks that counts as "not moving"."""
    colour_change: float = 0.025
    """Most a channel of the mean colour inside the silhouettes may move between checks."""
    patience: int = 2
    """Checks in a row that must pass."""
    min_fraction: float = 0.4
    """No stop before this fraction of the planned steps (densification and the resolution
    warm-up of the fast preset end by then)."""
    views: int = 8
    elevation: float = 20.0
    size: int = 64


def check_convergence_config(cfg: ConvergenceConfig) -> None:
    if cfg.every < 1 or cfg.patience < 1 or cfg.views < 1 or not 8 <= cfg.size <= 512:
        raise ConfigError(
            f"convergence needs every, patience, views >= 1 and size in [8, 512], got "
            f"every={cfg.every}, patience={cfg.patience}, views={cfg.views}, size={cfg.size}"
        )
    if (
        not 0.0 < cfg.threshold <= 1.0
        or not 0.0 <= cfg.min_fraction <= 1.0
        or not 0.0 < cfg.colour_change <= 1.0
    ):
        raise ConfigError(
            f"convergence threshold and colour_change must be in (0, 1] and min_fraction in "
            f"[0, 1], got {cfg.threshold}, {cfg.colour_change} and {cfg.min_fraction}"
        )


def pack_mask(mask: Tensor) -> str:
    """A boolean mask as base64 bits (JSON-able, 4 KB for 8 views of 64²)."""
    return base64.b64encode(np.packbits(mask.cpu().numpy().reshape(-1)).tobytes()).decode()


def unpack_mask(text: str, shape: tuple[int, ...]) -> Tensor:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    count = int(np.prod(shape))
    return torch.from_numpy(bits[:count].astype(bool).reshape(shape))


class ConvergenceStop:
    """``stop(done)`` after each step: True once the run has converged (then at every later
    call). Its record is ``state[STATE_KEY]``: the step of the last check, its silhouettes,
    their mean colour, the passing checks in a row, the history (step, silhouette IoU, colour
    change) and the step it converged at."""

    def __init__(self, cfg: ConvergenceConfig, fld: Field, total_steps: int, state: dict):
        self.cfg, self.field, self.total = cfg, fld, total_steps
        self.state = state
        self.seconds = 0.0
        az = torch.arange(cfg.views, dtype=torch.float32) * (360.0 / cfg.views)
        el = torch.full((cfg.views,), cfg.elevation)
        self.cameras = orbit_cameras(az, el, DEFAULT_ORBIT.radius, DEFAULT_ORBIT.fov_deg, cfg.size)
        self.shape = (cfg.views, cfg.size, cfg.size)

    @property
    def record(self) -> dict:
        return self.state.setdefault(STATE_KEY, {"step": 0, "streak": 0, "history": []})

    @property
    def converged_at(self) -> int | None:
        return self.record.get("converged_at")

    def __call__(self, done: int) -> bool:
        rec = self.record
        if rec.get("converged_at") is not None:
            return True
        if done % self.cfg.every or done == rec["step"]:
            return False
        t0 = time.perf_counter()
        mask, colour = self.silhouettes()
        if "mask" in rec:
            iou = mask_iou(mask, unpack_mask(rec["mask"], self.shape))
            moved = max(abs(a - b) for a, b in zip(colour, rec["colour"], strict=True))
            rec["history"].append([done, round(iou, 5), round(moved, 5)])
            still = iou >= self.cfg.threshold and moved <= self.cfg.colour_change
            rec["streak"] = rec["streak"] + 1 if still else 0
        rec.update(step=done, mask=pack_mask(mask), colour=colour)
        if rec["streak"] >= self.cfg.patience and done >= self.cfg.min_fraction * self.total:
            rec["converged_at"] = done
        self.seconds += time.perf_counter() - t0
        return rec.get("converged_at") is not None

    @torch.no_grad()
    def silhouettes(self) -> tuple[Tensor, list[float]]:
        """The silhouettes at the fixed views and the mean colour inside them (white where
        there are none)."""
        fld = self.field
        device = next(fld.parameters()).device
        was_training = fld.training
        fld.eval()
        try:
            out = fld.render(self.cameras.to(device), torch.ones(3, device=device))
        finally:
            fld.train(was_training)
        mask = (out["opacity"][..., 0] > 0.5).cpu()
        rgb = out["rgb"].cpu()[mask]
        colour = rgb.mean(0) if len(rgb) else torch.ones(3)
        return mask, [float(c) for c in colour]


def mask_iou(a: Tensor, b: Tensor) -> float:
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0
