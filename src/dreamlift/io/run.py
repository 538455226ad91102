"""The run folder contract shared by every command.

``<out>/config.yaml`` (resolved config), ``metrics.jsonl`` (one JSON object per logged step),
``summary.json`` (``command``, ``config``, ``metrics``, ``timings``, ``outputs`` with paths
relative to the folder), plus the command's own files.
"""

from __future__ import annotations

import dataclasses
import json
import os

try:
    import fcntl
except ImportError:  # not on Windows: run folders are not locked there
    fcntl = None  # type: ignore[assignment]
import time
from pathlib import Path
from typing import Any

import yaml

from dreamlift.errors import OutputError


def to_plain(obj: Any) -> Any:
    """Dataclasses, paths and tuples → YAML/JSON-safe builtins."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a sibling ``.tmp`` and a rename: a crash leaves the old file or the new one.
    Missing parent folders are made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


LOCK_NAME = ".lock"
_HELD: dict[Path, int] = {}
"""Run folders this process writes into → the descriptor that holds the folder's lock."""


def _lock(folder: Path) -> None:
    """Hold ``folder``'s lock until :func:`_unlock` or the end of this process (even a
    SIGKILL releases it); another process holding it is an :class:`OutputError`.

    The lock belongs to the process, so one process may run into a folder again (a resume
    after an interruption in the same Python session)."""
    key = folder.resolve()
    if key in _HELD or fcntl is None:
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutputError(
            f"another process is writing a run in {folder}",
            "wait for it to finish, or choose another --out",
        ) from None
    _HELD[key] = fd


def _unlock(folder: Path) -> None:
    fd = _HELD.pop(folder.resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the lock


class RunDir:
    """An output folder of one run; while the run writes into it, no other process can."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.started = time.perf_counter()

    def prepare(self) -> RunDir:
        """Create the folder, prove it is writable and take its lock (fail before any work
        is done)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise OutputError(
                f"cannot write to output folder {self.path}: {exc.strerror or exc}",
                "choose another --out",
            ) from None
        _lock(self.path)
        return self

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, config: Any) -> None:
        atomic_write_text(
            self.path / "config.yaml", yaml.safe_dump(to_plain(config), sort_keys=False)
        )

    def log(self, record: dict[str, Any]) -> None:
        try:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(to_plain(record)) + "\n")
        except OSError as exc:
            raise OutputError(
                f"cannot write {self.metrics_path}: {exc.strerror or exc}",
                "free space on that disk, then rerun with --resume",
            ) from None

    def truncate_metrics(self, after_step: int, stage: str = "") -> None:
        """Drop the records of ``stage`` logged after ``after_step`` steps (they are redone
        when a run resumes); other stages' records are kept."""
        if not self.metrics_path.exists():
            return

        def keep(record: dict) -> bool:
            return record.get("stage", "") != stage or record.get("step", -1) <= after_step

        kept = [
            line
            for line in self.metrics_path.read_text().splitlines()
            if line.strip() and keep(json.loads(line))
        ]
        atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def write_summary(
        self,
        command: str,
        config: Any,
        metrics: dict[str, Any],
        timings: dict[str, float],
        outputs: dict[str, Path],
        **extra: Any,
    ) -> Path:
        summary = {
            "command": command,
            "config": to_plain(config),
            "metrics": to_plain(metrics),
            "timings": {"wall_s": time.perf_counter() - self.started, **timings},
            "outputs": {
                k: str(Path(v).resolve().relative_to(self.path.resolve()))
                for k, v in outputs.items()
            },
            **to_plain(extra),
        }
        path = self.path / "summary.json"
        atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
        _unlock(self.path)  # the run is finished: the folder is free for a --resume
        return path
