"""Field registry: name → (class, config class). Adding a field is one file plus one line here."""

from __future__ import annotations

from typing import Any

import torch

from dreamlift.errors import DreamliftError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.fields.nerf import NerfConfig, NerfField

FIELDS: dict[str, tuple[type[Field], type]] = {
    "gaussians": (GaussianField, GaussiansConfig),
    "nerf": (NerfField, NerfConfig),
}


def check_field_name(name: str) -> str:
    if name not in FIELDS:
        raise DreamliftError(f"unknown field {name!r}", f"choose one of: {', '.join(FIELDS)}")
    return name


def make_field(name: str, config: Any, generator: torch.Generator) -> Field:
    cls, _ = FIELDS[check_field_name(name)]
    return cls(config, generator)
