"""Typed settings from plain values: ``--config FILE`` / a saved ``config.yaml``, ``--set
KEY=VALUE`` overrides and the named flags, for every method.

A method's settings are a dataclass (nested dataclasses for groups such as ``gaussians``).
Values arrive as YAML (mappings, lists, numbers, text, null); :func:`config_from_values`
builds the dataclass over its defaults, turns lists into the tuples the dataclasses hold and
checks every value against its type hint, so an unknown name or a wrong value is a one-line
:class:`ConfigError` before any work, not a ``TypeError`` deep inside a run.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dreamlift.errors import ConfigError
from dreamlift.io.run import to_plain

C = TypeVar("C")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping of settings in a YAML file (``--config``, a run's ``config.yaml``)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or _one_line(exc)
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {path} is not valid YAML: {_one_line(exc)}",
            "fix or remove the file",
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings (KEY: VALUE)")
    return values


def parse_settings(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--set``) as nested overrides: dots reach into groups of
    settings (``ge3d.max_step=[700,400]``), values are read as YAML (numbers, lists, true)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not KEY=VALUE", "e.g. --set steps=100")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: cannot read the value") from None
        *parents, leaf = key.strip().split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {name} is set twice")
        node[leaf] = value
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, key by key into nested mappings."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_values(cls: type[C], values: Mapping[str, Any]) -> C:
    """``cls`` from plain values over its defaults (nested groups merged key by key), each
    value checked against its type hint; lists become tuples."""
    return _build(cls, values, "")


def config_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def changed_settings(old: Any, new: Any) -> dict[str, tuple[Any, Any]]:
    """Dotted names of the settings that differ between two configs, with both values."""
    a, b = _flatten(to_plain(old)), _flatten(to_plain(new))
    return {k: (a.get(k), b.get(k)) for k in {**a, **b} if a.get(k) != b.get(k)}


# ---------------------------------------------------------------------- building
def _is_group(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _default(f: dataclasses.Field, kind: type) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is not dataclasses.MISSING:
        return f.default
    return kind()


def _build(cls: type[C], values: Any, prefix: str) -> C:
    if not isinstance(values, Mapping):
        group = prefix.rstrip(".")
        raise ConfigError(
            f"bad setting: {group} is a group of settings, not a value",
            f"set its keys, e.g. --set {group}.KEY=VALUE",
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in fields:
            where = f" of {prefix.rstrip('.')}" if prefix else ""
            raise ConfigError(
                f"bad setting: no setting {name!r}", f"settings{where} are: {', '.join(fields)}"
            )
        kind = hints[key]
        if _is_group(kind):
            base = dataclasses.asdict(_default(fields[key], kind))
            value = merge(base, value) if isinstance(value, Mapping) else value
            kwargs[key] = _build(kind, value, f"{name}.")
        else:
            kwargs[key] = _checked(kind, value, name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad setting: {_one_line(exc)}") from None


class _Mismatch(Exception):
    pass


SEEDS = range(2**32)
"""Every config's ``seed``: non-negative, and small enough that ``seed + k`` (the run's
other generators) still seeds torch."""


def _checked(kind: Any, value: Any, name: str) -> Any:
    try:
        value = _convert(kind, value)
    except _Mismatch:
        raise ConfigError(f"bad setting: {name} must be {_describe(kind)}, got {value!r}") from None
    if name.rpartition(".")[2] == "seed" and isinstance(value, int) and value not in SEEDS:
        raise ConfigError(f"bad setting: seed must be in [0, 2^32), got {value}")
    return value


def _convert(kind: Any, value: Any) -> Any:
    """``value`` as the type hint ``kind`` holds it (lists → tuples), or :class:`_Mismatch`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any or kind is object:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _convert(option, value)
            except _Mismatch:
                pass
        raise _Mismatch
    if kind is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                raise _Mismatch from None
        # NaN and infinity are no setting's value: they would only surface as a NaN loss
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value
        raise _Mismatch
    if kind is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    return value  # a type the settings do not use: taken as given


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if kind is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix.rstrip("."): values}
    out: dict[str, Any] = {}
    for key, value in values.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def check_turntable_size(size: int) -> None:
    """The one rule for every command's ``turntable_size``."""
    if not 16 <= size <= 2048:
        raise ConfigError(f"turntable_size must be in [16, 2048], got {size}")
