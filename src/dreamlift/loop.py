"""The one optimisation loop every method runs: steps, checkpoints, resume, progress, stops.

A method supplies ``step_loss(step) -> (loss, logs, render_out)``; the loop owns the rest:
zeroing and stepping the optimiser, the field's structural hooks, logging, periodic atomic
checkpoints, exact resumption (field, optimiser moments and every random generator), a
progress bar with ETA, a checkpoint on Ctrl-C / SIGTERM, and a clean stop on a non-finite
loss that keeps the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor

from dreamlift.errors import DreamliftError, TrainingError
from dreamlift.fields.base import Field, RenderOutput
from dreamlift.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dreamlift.io.run import RunDir

StepLoss = Callable[[int], tuple[Tensor, dict[str, float], RenderOutput]]
CHECKPOINT_NAME = "checkpoint.safetensors"


class Interrupted(DreamliftError):
    """The user stopped the run; a resumable checkpoint was written."""


@dataclass
class LoopSettings:
    steps: int
    kind: str  # checkpoint kind, e.g. "reconstruct/nerf"
    checkpoint_every: int = 200
    log_every: int = 10
    quiet: bool = False


@dataclass
class LoopResult:
    field: Field
    steps_done: int
    resumed_from: int
    timings: dict[str, float] = field(default_factory=dict)


class StopRequests:
    """Turns the first SIGINT/SIGTERM into a flag checked between steps, so the checkpoint
    written on a stop is a consistent end-of-step state; a second signal stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequests:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def progress_bar(console: Console | None = None, disable: bool = False) -> Progress:
    """The progress bar of long work: description, bar, n/total, status, elapsed, ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


def checkpoint_path(run: RunDir) -> Path:
    return run.path / CHECKPOINT_NAME


def _save(
    run: RunDir,
    settings: LoopSettings,
    fld: Field,
    opt: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    step: int,
    extra: dict,
) -> None:
    save_checkpoint(
        checkpoint_path(run),
        Checkpoint(
            step=step,
            kind=settings.kind,
            field=fld.state_tensors(),
            optimizer=opt.state_dict(),
            generators={k: g.get_state() for k, g in generators.items()},
            extra=extra,
        ),
    )


def restore(
    run: RunDir, settings: LoopSettings, fld: Field, generators: dict[str, torch.Generator]
) -> tuple[torch.optim.Optimizer, int, dict]:
    """Load the run's checkpoint into ``fld`` and ``generators``.

    Returns (optimiser, step, extra)."""
    ckpt = load_checkpoint(checkpoint_path(run), expected_kind=settings.kind)
    try:
        fld.load_state_tensors(ckpt.field)
        opt = fld.make_optimizer()
        opt.load_state_dict(ckpt.optimizer)
        for name, gen in generators.items():
            gen.set_state(ckpt.generators[name])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TrainingError(
            f"checkpoint {checkpoint_path(run)} does not match this run's settings ({exc})"
        ) from None
    return opt, ckpt.step, ckpt.extra


def optimize(
    fld: Field,
    step_loss: StepLoss,
    run: RunDir,
    settings: LoopSettings,
    generators: dict[str, torch.Generator],
    resume: bool,
    description: str = "optimising",
    on_log: Callable[[int], dict[str, float]] | None = None,
) -> LoopResult:
    """Run ``settings.steps`` steps (continuing from the checkpoint when ``resume``)."""
    start = 0
    if resume and checkpoint_path(run).exists():
        opt, start, _ = restore(run, settings, fld, generators)
        run.truncate_metrics(start - 1)
    else:
        opt = fld.make_optimizer()
    timings = {"step_s": 0.0, "loss_s": 0.0, "backward_s": 0.0, "optimizer_s": 0.0}
    last_good = start
    progress = progress_bar(disable=settings.quiet)
    with StopRequests() as stop, progress:
        task = progress.add_task(description, total=settings.steps, completed=start, status="")
        for step in range(start, settings.steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss, logs, out = step_loss(step)
            loss_value = float(loss.detach())
            t1 = time.perf_counter()
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"the loss became {loss_value} at step {step}; stopped",
                    f"the last good checkpoint (step {last_good}) is kept in "
                    f"{checkpoint_path(run)}; try a lower learning rate",
                )
            loss.backward()
            t2 = time.perf_counter()
            opt = fld.after_backward(step, out, opt)
            opt.step()
            opt = fld.after_step(step, opt)
            t3 = time.perf_counter()
            timings["loss_s"] += t1 - t0
            timings["backward_s"] += t2 - t1
            timings["optimizer_s"] += t3 - t2
            timings["step_s"] += t3 - t0
            done = step + 1
            if done % settings.log_every == 0 or done == settings.steps:
                record = {"step": step, "loss": loss_value, **logs}
                if on_log is not None:
                    record.update(on_log(step))
                run.log(record)
                progress.update(task, status=f"loss {loss_value:.4f}")
            if done % settings.checkpoint_every == 0 or done == settings.steps or stop.requested:
                _save(run, settings, fld, opt, generators, done, {})
                last_good = done
            progress.update(task, completed=done)
            if stop.requested:
                raise Interrupted(
                    f"stopped at step {done}; a checkpoint was written",
                    "rerun the same command with --resume to continue",
                )
    steps_done = settings.steps - start
    if steps_done:
        timings["iterations_per_s"] = steps_done / max(timings["step_s"], 1e-9)
    return LoopResult(fld, settings.steps, start, timings)
