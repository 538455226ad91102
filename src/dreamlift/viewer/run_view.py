"""A finished (or stopped) run folder in the viewer: its field from the last checkpoint, the
world's asset of its caption beside it, the turntable's cameras, its summary's metrics and
its loss curve from ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dreamlift.cameras import turntable
from dreamlift.errors import DataError
from dreamlift.stages import load_field
from dreamlift.viewer.server import RunViewer, require_viser
from dreamlift.world.assets import Asset


def run_caption(config: dict[str, Any]) -> str | None:
    """The world caption a run was made for: generate's and edit's prompt, reconstruct's
    asset."""
    for key in ("asset", "prompt"):
        if isinstance(config.get(key), str):
            return config[key]
    return None


def true_asset(caption: str | None) -> Asset | None:
    """The world's asset of ``caption``; None when it is not a world caption."""
    from dreamlift.methods.generate.prompts import world_description
    from dreamlift.methods.generate.scoring import described_asset

    desc = world_description(caption) if caption else None
    return described_asset(desc) if desc is not None else None


def loss_curve(metrics_path: Path) -> tuple[list[float], list[float]]:
    steps, losses = [], []
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if "step" in record and isinstance(record.get("loss"), (int, float)):
                steps.append(float(len(steps) + 1 if record.get("stage") else record["step"]))
                losses.append(float(record["loss"]))
    return steps, losses


def _orbit(config: dict[str, Any]) -> tuple[float, float]:
    """The turntable's radius and field of view (the middle of generate's ranges)."""
    step = config.get("step") if isinstance(config.get("step"), dict) else config

    def middle(value: Any, default: float) -> float:
        if isinstance(value, (list, tuple)) and value:
            return sum(value) / len(value)
        return float(value) if isinstance(value, (int, float)) else default

    return middle(step.get("radius"), 2.7), middle(step.get("fov"), 40.0)


def view_run(run_dir: Path, port: int = 8080, host: str = "127.0.0.1") -> RunViewer:
    """Serve ``run_dir``; the caller keeps the returned viewer alive and closes it."""
    require_viser()  # before the run is read: a missing extra is the first thing to say
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder {run_dir} does not exist")
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    config = config if isinstance(config, dict) else {}
    fld = load_field(run_dir)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    caption = run_caption(config)
    viewer = RunViewer(port=port, host=host, title=f"dreamlift · {run_dir.name}")
    viewer.show_field(fld)
    asset = true_asset(caption)
    if asset is not None:
        viewer.show_truth(asset)
    radius, fov = _orbit(config)
    viewer.show_cameras(turntable(36, 64, elevation_deg=20.0, radius=radius, fov_deg=fov))
    command = summary.get("command", "a run that has not finished (no summary.json)")
    viewer.show_metrics(f"`{command}`", summary.get("metrics", {}))
    viewer.plot_loss(*loss_curve(run_dir / "metrics.jsonl"))
    return viewer
