"""Field registry: name → (class, config class). Adding a field is one file plus one line here."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import yaml

from dreamlift.errors import CheckpointError, DreamliftError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.fields.nerf import NerfConfig, NerfField
from dreamlift.io.checkpoint import Checkpoint

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


def config_from_plain(config_cls: type, values: dict | None) -> Any:
    """A field config from plain values (a checkpoint's or a config.yaml's); keys the class
    does not know are refused, missing ones take their defaults."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"unknown {config_cls.__name__} setting(s): {', '.join(unknown)}",
            "was the run written by a newer dreamlift?",
        )
    return config_cls(**values)


def field_from_checkpoint(ckpt: Checkpoint, config_yaml: Path | None = None) -> Field:
    """The field a checkpoint holds. Checkpoints carry their field's kind and configuration;
    older ones are read by the kind's suffix ("generate/nerf") and the ``<kind>:`` section
    of the run's config.yaml, if it has one."""
    kind = ckpt.field_kind or ckpt.kind.rsplit("/", 1)[-1]
    if kind not in FIELDS:
        raise CheckpointError(f"checkpoint of a {ckpt.kind!r} run holds no known field")
    cls, config_cls = FIELDS[kind]
    values = ckpt.field_config
    if values is None and config_yaml is not None and config_yaml.is_file():
        try:
            section = (yaml.safe_load(config_yaml.read_text()) or {}).get(kind)
        except (yaml.YAMLError, AttributeError) as exc:
            raise CheckpointError(f"{config_yaml} is not a readable run config ({exc})") from None
        values = section if isinstance(section, dict) else None
    fld = cls(config_from_plain(config_cls, values), torch.Generator().manual_seed(0))
    try:
        fld.load_state_tensors(ckpt.field)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the checkpoint's {kind} tensors do not load ({exc})") from None
    return fld
