"""Reconstruct: fit a field to posed images (world renders or a ``transforms.json`` folder).

The shared base of editing, tests and benchmarks. With ``--asset`` the world renders the
training views and held-out test views, so the summary says how close the fit came (PSNR,
SSIM, mask IoU on views never trained on)::

    train, test ← views (world renders or transforms.json)
    field ← the registry's field, seeded
    for τ in 0 … T-1:  L ← FitViews(τ); Adam step; densify     (step.py, the shared loop)
    metrics ← evaluate(field, test)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamlift.cameras import turntable
from dreamlift.devices import resolve_device
from dreamlift.fields.base import Field
from dreamlift.fields.registry import make_field
from dreamlift.io.media import image_grid, save_image
from dreamlift.io.run import RunDir
from dreamlift.io.transforms import PosedImages
from dreamlift.loop import LoopSettings, optimize
from dreamlift.methods.common.folders import open_run
from dreamlift.methods.common.outputs import run_files, write_turntable_and_3d
from dreamlift.methods.reconstruct.config import ReconstructConfig
from dreamlift.methods.reconstruct.step import FitViews
from dreamlift.methods.reconstruct.views import data_views, evaluate, world_views
from dreamlift.world import asset_from_caption


def reconstruct(
    cfg: ReconstructConfig, out_dir: Path, resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Fit ``cfg.field`` to the views and write the run folder; returns the summary dict."""
    run = open_run(out_dir, cfg, resume)
    device = resolve_device(cfg.device)
    run.prepare()
    t0 = time.perf_counter()
    train, test = world_views(cfg) if cfg.asset is not None else data_views(cfg)
    t_data = time.perf_counter() - t0
    run.write_config(cfg)

    field_gen = torch.Generator().manual_seed(cfg.seed)
    batch_gen = torch.Generator().manual_seed(cfg.seed + 1)
    fld = make_field(cfg.field, cfg.field_config(), field_gen).to(device)
    step_loss = FitViews(cfg, fld, train, batch_gen)

    def on_log(steps_done: int) -> dict[str, float]:
        if cfg.eval_every and steps_done % cfg.eval_every == 0:
            return {f"test_{k}": v for k, v in evaluate(fld, test)[0].items()}
        return {}

    settings = LoopSettings(
        steps=cfg.total_steps(),
        kind=f"reconstruct/{cfg.field}",
        checkpoint_every=cfg.checkpoint_every,
        log_every=cfg.log_every,
        quiet=quiet,
    )
    result = optimize(
        fld,
        step_loss,
        run,
        settings,
        {"batch": batch_gen},
        resume,
        description=f"reconstruct {cfg.field}",
        on_log=on_log,
    )
    t_eval = time.perf_counter()
    metrics, test_out = evaluate(fld, test)
    eval_s = time.perf_counter() - t_eval
    warnings: list[str] = []
    outputs = write_outputs(run, cfg, fld, train, test, test_out, warnings)
    metrics.update({"train_views": len(train), "test_views": len(test)})
    timings = {
        "data_s": t_data,
        "eval_s": eval_s,
        "train_s": result.timings.get("step_s", 0.0),
        **{k: v for k, v in result.timings.items() if k != "step_s"},
    }
    if "loss_s" in timings:  # the loop's "loss" time includes the forward render
        timings["render_s"] = step_loss.render_s
        timings["loss_s"] -= step_loss.render_s
    command = f"reconstruct --field {cfg.field} " + (
        f"--asset {cfg.asset!r}" if cfg.asset is not None else f"--data {cfg.data}"
    )
    run.write_summary(
        command, cfg, metrics, timings, outputs, resumed_from=result.resumed_from, warnings=warnings
    )
    return {"metrics": metrics, "timings": timings, "outputs": outputs, "warnings": warnings}


def write_outputs(
    run: RunDir,
    cfg: ReconstructConfig,
    fld: Field,
    train: PosedImages,
    test: PosedImages,
    test_out: dict[str, Tensor],
    warnings: list[str],
) -> dict[str, Path]:
    """The held-out views beside their renders, and a turntable seen from the training
    cameras' mean distance and field of view (beside the true asset's, for ``--asset``), with
    the 3D file(s)."""
    outputs = run_files(run)
    outputs["test_views"] = save_image(
        run.path / "test_views.png",
        image_grid(torch.cat([test.images, test_out["rgb"].clamp(0, 1)]), columns=len(test)),
    )
    radius = float(train.cameras.centers.norm(dim=-1).mean())
    fov = float(torch.rad2deg(2 * torch.atan(train.cameras.width / (2 * train.cameras.fx))).mean())
    cams = turntable(
        cfg.turntable_frames, cfg.turntable_size, elevation_deg=20.0, radius=radius, fov_deg=fov
    )
    truth = asset_from_caption(cfg.asset) if cfg.asset is not None else None
    outputs.update(write_turntable_and_3d(run, fld, cams, warnings, truth=truth))
    return outputs
