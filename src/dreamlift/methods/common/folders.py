"""Run folders: an earlier run is never written over, and ``--resume`` continues it as made.

A folder *holds a run* once a run left a checkpoint (training stopped or finished) or a
summary (a finished run) in it; a run that failed before either may be started again.
Resuming reads the run's ``config.yaml``: what the resuming command gives is laid over it
(:func:`resume_config`), and only the settings in :data:`RESUMABLE` may differ from the saved
ones (:func:`open_run`), because anything else would continue another run than the one the
checkpoint holds. CPU threads are not a setting and may change too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from dreamlift.checkpointing import CHECKPOINT_NAME
from dreamlift.errors import OutputError
from dreamlift.io.run import RunDir
from dreamlift.methods.common.config import (
    ConfigError,
    changed_settings,
    config_fields,
    config_from_values,
    merge,
    read_config_file,
)

C = TypeVar("C")

CONFIG_NAME = "config.yaml"
RUN_MARKERS = (CHECKPOINT_NAME, "checkpoint-*.safetensors", "summary.json")
"""Files that show a folder holds a run (a staged run has one checkpoint per stage)."""
RESUMABLE = ("steps", "device", "convergence")
"""Settings a resumed run may change: more (or fewer) steps, another device, when to stop
early (generate's stop at convergence decides where a run ends, never what a step computes:
``--resume --all-steps`` carries a converged run on to its last step)."""


def run_marker(path: Path) -> Path | None:
    """The first file that shows ``path`` holds a run, or None."""
    for pattern in RUN_MARKERS:
        for found in sorted(Path(path).glob(pattern)):
            return found
    return None


def refuse_existing_run(path: Path) -> None:
    """Raise :class:`OutputError` when ``path`` holds a run."""
    found = run_marker(path)
    if found is not None:
        raise OutputError(
            f"{path} already holds a run ({found.name})",
            "pass --resume to continue it, or choose another --out",
        )


def saved_values(path: Path) -> dict[str, Any]:
    """The settings saved in the run folder ``path``."""
    file = Path(path) / CONFIG_NAME
    if not file.is_file():
        raise OutputError(f"nothing to resume in {path} (no {CONFIG_NAME})", "drop --resume")
    return read_config_file(file)


def _maker(path: Path) -> str:
    """The command that made the run in ``path``, as its summary says ("" when unknown)."""
    try:
        return str(json.loads((Path(path) / "summary.json").read_text()).get("command", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def resume_config(cls: type[C], path: Path, overrides: dict[str, Any]) -> C:
    """The run's saved settings with ``overrides`` (the resuming command's; None: not given)
    laid over them. Settings ``cls`` does not have mean another command made the run."""
    saved = saved_values(path)
    foreign = sorted(set(saved) - set(config_fields(cls)))
    if foreign:
        maker = _maker(path)
        made_by = (
            f"a {maker.split()[0]} run" if maker else f"a run of another command ({foreign[0]})"
        )
        raise ConfigError(
            f"{path} holds {made_by}; this command cannot resume it",
            "resume it with the command that made it, or choose another --out",
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    return config_from_values(cls, merge(saved, given))


def open_run(path: Path, config: Any, resume: bool) -> RunDir:
    """The run folder for ``config``: without ``resume`` it must not hold a run; with it,
    ``config`` may differ from the saved settings only in :data:`RESUMABLE`. Nothing is
    written (:meth:`RunDir.prepare` does that once the inputs are checked)."""
    if not resume:
        refuse_existing_run(path)
    elif (Path(path) / CONFIG_NAME).is_file():
        saved = config_from_values(type(config), saved_values(path))
        changed = changed_settings(saved, config)
        fixed = {k: v for k, v in changed.items() if k.split(".")[0] not in RESUMABLE}
        if fixed:
            shown = ", ".join(f"{k} ({old!r} → {new!r})" for k, (old, new) in fixed.items())
            raise ConfigError(
                f"--resume continues the run in {path} as it was made; it cannot change {shown}",
                "leave them out, or start a new run in another --out",
            )
    return RunDir(path)
