"""The one optimisation loop every method runs: steps, checkpoints, resume, progress, stops.

A method supplies ``step_loss(step) -> (loss, logs, render_out)`` (and, optionally, its own
``backward(loss)``); the loop owns the rest: zeroing and stepping the optimiser, the field's
structural hooks, logging, periodic atomic checkpoints, exact resumption (field, optimiser
moments, every random generator and the method's extra ``state``), a progress bar with ETA, a
checkpoint on Ctrl-C / SIGTERM, a stop at a time budget, and a clean stop that keeps the last
good checkpoint on a non-finite loss or on guidance whose gradient stays non-finite.

Steps are counted the same way everywhere: ``step_loss`` receives the 0-based index of the
step it computes; a checkpoint's ``step`` and metrics.jsonl's ``"step"`` are the number of
steps completed (1-based), so the record logged after the first step says ``"step": 1``.
A run of several stages (:mod:`dreamlift.stages`) runs this loop once per stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from dreamlift.errors import DreamliftError, OutputError, TrainingError
from dreamlift.fields.base import Field, RenderOutput
from dreamlift.guidance.guard import NonFiniteGuard
from dreamlift.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dreamlift.io.run import RunDir, to_plain

StepLoss = Callable[[int], tuple[Tensor, dict[str, float], RenderOutput]]
CHECKPOINT_NAME = "checkpoint.safetensors"
NONFINITE_SUFFIX, NUMEL_SUFFIX = "nonfinite_grad", "grad_numel"
"""A step's log entries whose keys end so count the non-finite entries of a guidance gradient
and its size (``Guidance.last_info``, under any prefix); the loop stops when they persist."""


class Interrupted(DreamliftError):
    """The user stopped the run; a resumable checkpoint was written."""


@dataclass
class LoopSettings:
    steps: int
    kind: str  # checkpoint kind, e.g. "reconstruct/nerf"
    checkpoint_every: int = 200
    log_every: int = 10
    quiet: bool = False
    time_budget_s: float | None = None
    """Stop early, with a checkpoint, once the loop's own time (wall time less the time spent
    in ``on_log`` evaluations) reaches this many seconds; None runs every step."""
    checkpoint_name: str = CHECKPOINT_NAME
    """File name of this loop's checkpoint in the run folder (one per stage)."""
    stage: str = ""
    """The stage's name in a staged run ("" for a single stage); logged with every record."""
    stage_index: int = 0
    nonfinite_patience: int = 3
    """Stop once a guidance gradient has had non-finite entries this many steps in a row
    (each such step still applies the gradient with those entries zeroed)."""


@dataclass
class LoopResult:
    field: Field
    steps_done: int
    """The step the run reached (``settings.steps`` unless it stopped at the time budget)."""
    resumed_from: int
    timings: dict[str, float] = field(default_factory=dict)
    out_of_time: bool = False
    """Whether the time budget stopped the run before ``settings.steps``."""
    stopped_early: bool = False
    """Whether ``until`` stopped the run before ``settings.steps`` (e.g. converged)."""
    optimizer: torch.optim.Optimizer | None = None
    """The optimiser as it ended (a next stage may carry its moments on)."""


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


def checkpoint_path(run: RunDir, name: str = CHECKPOINT_NAME) -> Path:
    return run.path / name


def field_config_plain(fld: Field) -> dict | None:
    """The field's configuration as plain values, for the checkpoint's metadata."""
    config = getattr(fld, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    return to_plain(config)


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
        checkpoint_path(run, settings.checkpoint_name),
        Checkpoint(
            step=step,
            kind=settings.kind,
            field=fld.state_tensors(),
            optimizer=opt.state_dict(),
            generators={k: g.get_state() for k, g in generators.items()},
            extra=extra,
            field_kind=fld.kind,
            field_config=field_config_plain(fld),
            stage=settings.stage,
            stage_index=settings.stage_index,
        ),
    )


def restore(
    run: RunDir,
    settings: LoopSettings,
    fld: Field,
    generators: dict[str, torch.Generator],
    make_optimizer: Callable[[], torch.optim.Optimizer] | None = None,
) -> tuple[torch.optim.Optimizer, int, dict]:
    """Load the run's checkpoint into ``fld`` and ``generators``.

    Returns (optimiser, step, extra)."""
    path = checkpoint_path(run, settings.checkpoint_name)
    ckpt = load_checkpoint(path, expected_kind=settings.kind)
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


def check_guidance(
    guard: NonFiniteGuard, logs: dict[str, float], step: int, last_good: int, path: Path
) -> None:
    """Apply the non-finite-guidance rule to a step's logs (the counts every guidance reports,
    under any prefix); the error names the checkpoint that is kept."""
    counts = [v for k, v in logs.items() if k.endswith(NONFINITE_SUFFIX)]
    sizes = [v for k, v in logs.items() if k.endswith(NUMEL_SUFFIX)]
    bad = sum(v if math.isfinite(v) else 1.0 for v in counts)
    try:
        guard.check(bad, step + 1, sum(sizes) if sizes else None)
    except TrainingError as exc:
        raise TrainingError(
            exc.message,
            f"the last good checkpoint (step {last_good}) is kept in {path}; the prior "
            "diverges: check the model and its dtype, or lower the guidance scale",
        ) from None


def optimize(
    fld: Field,
    step_loss: StepLoss,
    run: RunDir,
    settings: LoopSettings,
    generators: dict[str, torch.Generator],
    resume: bool,
    description: str = "optimising",
    on_log: Callable[[int], dict[str, float]] | None = None,
    backward: Callable[[Tensor], None] | None = None,
    sync: Callable[[], None] | None = None,
    state: dict | None = None,
    make_optimizer: Callable[[], torch.optim.Optimizer] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    on_record: Callable[[dict], None] | None = None,
    until: Callable[[int], bool] | None = None,
) -> LoopResult:
    """Run ``settings.steps`` steps (continuing from the checkpoint when ``resume``).

    ``on_log(steps_done)`` runs at each logged step (an evaluation, off the clock) and adds
    its values to the record. ``backward(loss)`` replaces ``loss.backward()`` (a method that
    splits its backward pass to time it); ``sync`` (e.g. ``torch.cuda.synchronize``) runs at
    each timing boundary.
    ``state`` is the method's extra state (JSON-able values, e.g. a chosen η): written into
    every checkpoint and, on resume, restored into the same dict. ``make_optimizer`` builds
    the optimiser (default: over all of the field's groups); ``optimizer`` is one to start
    with instead (a stage that carries the previous stage's moments on). ``on_record(record)``
    sees each logged record once it is written (a live viewer); its time is the loop's.
    ``until(steps_done)``, asked after every step (its time is the loop's), ends the run early
    when it says True, with a logged record and a checkpoint as at the last step; it keeps what
    it needs to decide in ``state``, so a resumed run stops where the uninterrupted one does
    (asked once at the resumed step, it may say the run has already ended).
    Timings: ``step_s`` = ``loss_s`` + ``backward_s`` + ``optimizer_s`` (the optimiser's step)
    + ``densify_s`` (the field's structural hooks), ``log_s`` in ``on_log``, and ``loop_s``,
    the loop's wall time less ``log_s`` (what the time budget is compared with).
    """
    start = 0
    state = {} if state is None else state
    path = checkpoint_path(run, settings.checkpoint_name)
    if resume and path.exists():
        opt, start, extra = restore(run, settings, fld, generators, make_optimizer)
        state.clear()
        state.update(extra)
        run.truncate_metrics(start, stage=settings.stage)
    elif optimizer is not None:
        opt = optimizer
    else:
        opt = make_optimizer() if make_optimizer is not None else fld.make_optimizer()
    guard = NonFiniteGuard(settings.nonfinite_patience)
    keys = ("step_s", "loss_s", "backward_s", "optimizer_s", "densify_s", "log_s")
    timings = dict.fromkeys(keys, 0.0)

    def now() -> float:
        if sync is not None:
            sync()
        return time.perf_counter()

    def loop_seconds() -> float:
        return time.perf_counter() - began - timings["log_s"]

    last_good, done, out_of_time = start, start, False
    # A resumed run that had already stopped early takes no further step.
    stopped_early = until is not None and 0 < start < settings.steps and until(start)
    end = start if stopped_early else settings.steps
    progress = progress_bar(disable=settings.quiet)
    began = time.perf_counter()
    with StopRequests() as stop, progress:
        task = progress.add_task(description, total=settings.steps, completed=start, status="")
        for step in range(start, end):
            t0 = now()
            opt.zero_grad(set_to_none=True)
            loss, logs, out = step_loss(step)
            loss_value = float(loss.detach())
            t1 = now()
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"the loss became {loss_value} at step {step + 1}; stopped",
                    f"the last good checkpoint (step {last_good}) is kept in "
                    f"{path}; try a lower learning rate",
                )
            check_guidance(guard, logs, step, last_good, path)
            if backward is None:
                loss.backward()
            else:
                backward(loss)
            t2 = now()
            opt = fld.after_backward(step, out, opt)
            t3 = now()
            opt.step()
            t4 = now()
            opt = fld.after_step(step, opt)
            t5 = now()
            timings["loss_s"] += t1 - t0
            timings["backward_s"] += t2 - t1
            timings["optimizer_s"] += t4 - t3
            timings["densify_s"] += (t3 - t2) + (t5 - t4)
            timings["step_s"] += t5 - t0
            done = step + 1
            budget = settings.time_budget_s
            out_of_time = budget is not None and done < settings.steps and loop_seconds() >= budget
            stopped_early = until is not None and done < settings.steps and until(done)
            last = done == settings.steps or out_of_time or stopped_early
            if done % settings.log_every == 0 or last:
                record = {"step": done, "loss": loss_value, "time_s": loop_seconds(), **logs}
                if settings.stage:
                    record["stage"] = settings.stage
                if on_log is not None:
                    t6 = time.perf_counter()
                    record.update(on_log(done))
                    timings["log_s"] += time.perf_counter() - t6
                run.log(record)
                if on_record is not None:
                    on_record(record)
                progress.update(task, status=f"loss {loss_value:.4f}")
            if done % settings.checkpoint_every == 0 or last or stop.requested:
                try:
                    _save(run, settings, fld, opt, generators, done, state)
                except OSError as exc:
                    raise OutputError(
                        f"cannot write the checkpoint of step {done}: {exc.strerror or exc}",
                        f"the last good checkpoint (step {last_good}) is kept in {path}; "
                        "free space, then rerun with --resume",
                    ) from None
                last_good = done
            progress.update(task, completed=done)
            if stop.requested:
                raise Interrupted(
                    f"stopped at step {done}; a checkpoint was written",
                    "rerun the same command with --resume to continue",
                )
            if stopped_early:
                progress.update(task, total=done)  # a finished bar, not one 250 steps short
            if out_of_time or stopped_early:
                break
    timings["loop_s"] = loop_seconds()
    steps_done = done - start
    if steps_done:
        timings["iterations_per_s"] = steps_done / max(timings["step_s"], 1e-9)
    return LoopResult(
        fld,
        done,
        start,
        timings,
        out_of_time=out_of_time,
        stopped_early=stopped_early,
        optimizer=opt,
    )
