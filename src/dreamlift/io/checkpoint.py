"""Checkpoints: one safetensors file, written atomically, holding everything to resume exactly.

A checkpoint carries the field's tensors, kind and configuration (so another method can load
the field without knowing which method trained it), the optimiser's moments, random-generator
states, the step, the stage of a staged run and the method's extra state (a chosen η, a
transform: small JSON-able values that must survive ``--resume``). Writing goes to a temporary
file in the same folder, is flushed to disk, then renamed over the old one, so a crash (even
SIGKILL) leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from dreamlift.errors import CheckpointError

FORMAT = "dreamlift-checkpoint-1"


@dataclass
class Checkpoint:
    step: int
    """Steps completed (of the stage, in a staged run)."""
    kind: str  # e.g. "reconstruct/gaussians": a checkpoint only resumes the same kind of run
    field: dict[str, Tensor]
    optimizer: dict
    generators: dict[str, Tensor]
    extra: dict  # small JSON-able state of the method (e.g. best metric so far)
    field_kind: str = ""
    """The field's registry name ("gaussians", "nerf"); empty in checkpoints before it."""
    field_config: dict | None = None
    """The field's configuration as plain values; None in checkpoints before it."""
    stage: str = ""
    """The stage this checkpoint belongs to ("" for a single-stage run)."""
    stage_index: int = 0


def _flatten_optimizer(state: dict) -> tuple[dict[str, Tensor], str]:
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{pid}/{key}"] = value.detach().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, json.dumps({"param_groups": state["param_groups"], "scalars": scalars})


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: str) -> dict:
    info = json.loads(meta)
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, pid, key = name.split("/", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in info["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Atomically write ``ckpt`` to ``path``."""
    optim_tensors, optim_meta = _flatten_optimizer(ckpt.optimizer)
    tensors = {f"field/{k}": v.detach().contiguous().cpu() for k, v in ckpt.field.items()}
    tensors.update({k: v.cpu() for k, v in optim_tensors.items()})
    tensors.update({f"rng/{k}": v.cpu() for k, v in ckpt.generators.items()})
    metadata = {
        "format": FORMAT,
        "step": str(ckpt.step),
        "kind": ckpt.kind,
        "optimizer": optim_meta,
        "extra": json.dumps(ckpt.extra),
        "field_kind": ckpt.field_kind,
        "field_config": json.dumps(ckpt.field_config),
        "stage": ckpt.stage,
        "stage_index": str(ckpt.stage_index),
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except SafetensorError as exc:  # safetensors' own word for a failed write
        tmp.unlink(missing_ok=True)
        raise OSError(str(exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves the last checkpoint, not a torn one
        raise


def read_metadata(path: Path) -> dict[str, str]:
    """The checkpoint's metadata alone (no tensors are read); CheckpointError as
    :func:`load_checkpoint`."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _corrupt(path, exc) from None


def _corrupt(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is corrupt or truncated ({str(exc).splitlines()[0][:80]})",
        "delete it to start over, or restore a copy",
    )


def load_checkpoint(path: Path, expected_kind: str | None = None) -> Checkpoint:
    """Read a checkpoint; a missing, corrupt, truncated or foreign file raises CheckpointError."""
    metadata = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _corrupt(path, exc) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a dreamlift checkpoint (format {metadata.get('format')!r})"
        )
    kind = metadata.get("kind", "")
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(f"{path} holds a {kind!r} run, not {expected_kind!r}")
    groups: dict[str, dict[str, Tensor]] = {"field": {}, "optim": {}, "rng": {}}
    for name, value in tensors.items():
        head, _, rest = name.partition("/")
        if head == "optim":
            groups["optim"][name] = value
        elif head in groups:
            groups[head][rest] = value
    return Checkpoint(
        step=int(metadata["step"]),
        kind=kind,
        field=groups["field"],
        optimizer=_unflatten_optimizer(groups["optim"], metadata["optimizer"]),
        generators=groups["rng"],
        extra=json.loads(metadata.get("extra", "{}")),
        field_kind=metadata.get("field_kind", ""),
        field_config=json.loads(metadata.get("field_config", "null")),
        stage=metadata.get("stage", ""),
        stage_index=int(metadata.get("stage_index", "0")),
    )
