"""The loop's checkpoints: what one member's checkpoint holds, how it is restored, and how the
checkpoints of several members trained together are committed as one.

A run of one field saves its checkpoint directly (:class:`DirectCommit`; the file itself is
written atomically, :mod:`dreamlift.io.checkpoint`). Fields trained in lockstep
(``generate --batch``) share random draws, so a resumed batch is only the uninterrupted one
if every member resumes from the same step: :class:`TwoPhaseCommit` writes every member's
checkpoint beside the old one, then a manifest naming the step (the commit point), then
renames them into place; a SIGKILL anywhere leaves the old step or the new one for all.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from dreamlift.errors import CheckpointError, TrainingError
from dreamlift.fields.base import Field
from dreamlift.io.checkpoint import Checkpoint, load_checkpoint, read_metadata, save_checkpoint
from dreamlift.io.run import RunDir, atomic_write_text, to_plain

CHECKPOINT_NAME = "checkpoint.safetensors"
PENDING_SUFFIX = ".pending"
"""A member checkpoint written but not yet committed: ``checkpoint.safetensors.pending``."""


def checkpoint_path(run: RunDir, name: str = CHECKPOINT_NAME) -> Path:
    return run.path / name


def field_config_plain(fld: Field) -> dict | None:
    """The field's configuration as plain values, for the checkpoint's metadata."""
    config = getattr(fld, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    return to_plain(config)


@dataclass
class SaveRequest:
    """One member's state to checkpoint at ``step``."""

    run: RunDir
    name: str
    """The checkpoint's file name in the run folder."""
    kind: str
    field: Field
    optimizer: torch.optim.Optimizer
    generators: dict[str, torch.Generator]
    step: int
    extra: dict
    stage: str = ""
    stage_index: int = 0

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            step=self.step,
            kind=self.kind,
            field=self.field.state_tensors(),
            optimizer=self.optimizer.state_dict(),
            generators={k: g.get_state() for k, g in self.generators.items()},
            extra=self.extra,
            field_kind=self.field.kind,
            field_config=field_config_plain(self.field),
            stage=self.stage,
            stage_index=self.stage_index,
        )

    @property
    def path(self) -> Path:
        return checkpoint_path(self.run, self.name)


def restore(
    path: Path,
    kind: str,
    fld: Field,
    generators: dict[str, torch.Generator],
    make_optimizer: Callable[[], torch.optim.Optimizer] | None = None,
) -> tuple[torch.optim.Optimizer, int, dict]:
    """Load the checkpoint at ``path`` into ``fld`` and ``generators``.

    Returns (optimiser, step, extra)."""
    ckpt = load_checkpoint(path, expected_kind=kind)
    load_state(ckpt, path, fld, generators)
    try:
        opt = make_optimizer() if make_optimizer is not None else fld.make_optimizer()
        opt.load_state_dict(ckpt.optimizer)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TrainingError(
            f"checkpoint {path} does not match this run's settings ({exc})"
        ) from None
    return opt, ckpt.step, ckpt.extra


def load_state(
    ckpt: Checkpoint, path: Path, fld: Field, generators: dict[str, torch.Generator]
) -> None:
    """Load a checkpoint's field and generator states; a mismatch is a one-line error."""
    try:
        fld.load_state_tensors(ckpt.field)
        for name, gen in generators.items():
            gen.set_state(ckpt.generators[name])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TrainingError(
            f"checkpoint {path} does not match this run's settings ({exc})"
        ) from None


class Commit(Protocol):
    """How the loop's checkpoints reach the disk."""

    def recover(self, paths: Sequence[Path]) -> None:
        """Before anything is restored: finish or undo a commit a crash interrupted."""

    def restored(self) -> None:
        """After every member is restored: the state the members share."""

    def save(self, requests: Sequence[SaveRequest]) -> None:
        """Write the requests' checkpoints so that a crash leaves all of them or none."""


class DirectCommit:
    """One checkpoint file per request, each atomic on its own (a run of one field)."""

    def recover(self, paths: Sequence[Path]) -> None:
        return None

    def restored(self) -> None:
        return None

    def save(self, requests: Sequence[SaveRequest]) -> None:
        for request in requests:
            save_checkpoint(request.path, request.checkpoint())


def _pending(path: Path) -> Path:
    return path.with_name(path.name + PENDING_SUFFIX)


class TwoPhaseCommit:
    """All members' checkpoints at one step, or none, and the generators they share.

    ``manifest`` (a JSON file) is the commit point: the step of every member and the state
    of the ``shared`` generators (the batch's guidance draws). Members keep the shared
    generators among their own too, so each checkpoint also resumes its run alone; but a
    member that stopped early holds an older state, so the batch's comes from the manifest
    (:meth:`restored`). :meth:`recover` rolls a commit forward when its manifest was written,
    back when it was not, and refuses members whose checkpoints are not at the manifest's
    step (a member resumed on its own since).
    """

    def __init__(self, manifest: Path, shared: dict[str, torch.Generator]) -> None:
        self.manifest = Path(manifest)
        self.shared = shared

    def save(self, requests: Sequence[SaveRequest]) -> None:
        for request in requests:
            save_checkpoint(_pending(request.path), request.checkpoint())
        record = self._read() if self.manifest.exists() else {"members": {}}
        record["members"].update({self._key(r.path): r.step for r in requests})
        record["shared"] = {
            name: base64.b64encode(gen.get_state().numpy().tobytes()).decode()
            for name, gen in self.shared.items()
        }
        atomic_write_text(self.manifest, json.dumps(record, indent=1) + "\n")
        for request in requests:
            self.promote(request.path)

    @staticmethod
    def promote(path: Path) -> None:
        """The committed checkpoint of ``path`` into place (after the manifest only)."""
        os.replace(_pending(path), path)

    def recover(self, paths: Sequence[Path]) -> None:
        if not self.manifest.exists():
            for path in paths:
                _pending(path).unlink(missing_ok=True)
                if path.exists():
                    raise TrainingError(
                        f"{path} has a checkpoint but the batch has no manifest "
                        f"({self.manifest.name})",
                        "resume that run on its own (generate --resume), or choose another --out",
                    )
            return
        record = self._read()
        steps: dict[str, int] = record["members"]
        for path in paths:
            committed = steps.get(self._key(path))
            pending = _pending(path)
            if pending.exists():
                if committed is not None and _step(pending) == committed:
                    self.promote(path)  # the commit reached its manifest: roll forward
                else:
                    pending.unlink()
            found = _step(path) if path.exists() else None
            if found != committed:
                raise TrainingError(
                    f"{path} is at step {found}, but the batch committed step {committed}",
                    "the run was changed outside the batch; resume it on its own "
                    "(generate --resume), or start the batch in another --out",
                )

    def restored(self) -> None:
        if not self.manifest.exists():
            return
        record = self._read()
        for name, gen in self.shared.items():
            encoded = record.get("shared", {}).get(name)
            if encoded is None:
                raise CheckpointError(f"batch manifest {self.manifest} lacks generator {name!r}")
            state = base64.b64decode(encoded)
            gen.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8).clone())

    def _key(self, path: Path) -> str:
        """A member's checkpoint relative to the manifest (the batch's folder may move)."""
        return os.path.relpath(path, self.manifest.parent)

    def _read(self) -> dict:
        try:
            record = json.loads(self.manifest.read_text())
            if not isinstance(record.get("members"), dict):
                raise ValueError("no members")
        except (OSError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"batch manifest {self.manifest} is unreadable ({exc})") from None
        return record


def _step(path: Path) -> int:
    try:
        return int(read_metadata(path)["step"])
    except (KeyError, ValueError):
        raise CheckpointError(f"checkpoint {path} has no step") from None
