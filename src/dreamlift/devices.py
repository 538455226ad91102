"""The torch device a run computes on, from a user's ``--device`` (auto, cpu, cuda, cuda:1, ...)."""

from __future__ import annotations

import torch

from dreamlift.errors import DreamliftError

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
"""Kinds of device a run may name; ``auto`` picks CUDA when present, else the CPU."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The device ``name`` stands for; one that is unknown or that this machine (or this torch
    build) does not have is a one-line :class:`DreamliftError`."""
    text = str(name)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise DreamliftError(f"unknown device {text!r}", "use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DreamliftError(
                f"device {text!r} is not available: this torch has no CUDA or sees no GPU",
                "use --device cpu or auto",
            )
        if (device.index or 0) >= count:
            raise DreamliftError(
                f"device {text!r} is not available: {count} GPU(s) visible",
                "use --device cuda:0 or auto",
            )
    elif device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError):
            raise DreamliftError(
                f"device {text!r} is not available in this torch build or on this machine",
                "use --device cpu or auto",
            ) from None
    return device
