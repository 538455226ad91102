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

from dreamlift.checkpointing import (
    CHECKPOINT_NAME,
    Commit,
    DirectCommit,
    SaveRequest,
    checkpoint_path,
    load_state,
    restore,
)
from dreamlift.errors import DreamliftError, OutputError, TrainingError
from dreamlift.fields.base import Field, RenderOutput
from dreamlift.guidance.guard import NonFiniteGuard
from dreamlift.io.run import RunDir

__all__ = [
    "CHECKPOINT_NAME",
    "BatchStep",
    "Interrupted",
    "LoopResult",
    "LoopSettings",
    "Member",
    "StepLoss",
    "StopRequests",
    "as_batch_step",
    "checkpoint_path",
    "load_state",
    "optimize",
    "optimize_members",
    "progress_bar",
]

StepLoss = Callable[[int], tuple[Tensor, dict[str, float], RenderOutput]]
BatchStep = Callable[[int, list[int]], tuple[Tensor, list[dict[str, float]], list[RenderOutput]]]
"""``batch_step(step, active) -> (loss, logs, outs)``: one step of the members whose indices
are ``active`` (in order): one loss over all of them, then each one's logs and render."""
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


@dataclass
class Member:
    """One field the loop trains and what it resumes from: the run folder its checkpoint and
    metrics go to, its random generators, its extra ``state`` and its own hooks (each as
    :func:`optimize` describes it)."""

    field: Field
    run: RunDir
    generators: dict[str, torch.Generator]
    state: dict = field(default_factory=dict)
    until: Callable[[int], bool] | None = None
    on_log: Callable[[int], dict[str, float]] | None = None
    on_record: Callable[[dict], None] | None = None
    make_optimizer: Callable[[], torch.optim.Optimizer] | None = None
    optimizer: torch.optim.Optimizer | None = None
    """An optimiser to start with (a stage that carries the previous stage's moments on)."""


@dataclass
class _Training:
    """A member while the loop runs: its optimiser and how far it got."""

    member: Member
    path: Path
    optimizer: torch.optim.Optimizer
    start: int
    done: int
    stopped_early: bool = False
    out_of_time: bool = False

    def finished(self, steps: int) -> bool:
        return self.done >= steps or self.stopped_early


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


def check_guidance(guard: NonFiniteGuard, logs: dict[str, float], step: int, kept: str) -> None:
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
            f"{kept}; the prior diverges: check the model and its dtype, or lower the "
            "guidance scale",
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
    member = Member(
        fld,
        run,
        generators,
        {} if state is None else state,
        until,
        on_log,
        on_record,
        make_optimizer,
        optimizer,
    )
    batch_step = as_batch_step(step_loss)
    return optimize_members([member], batch_step, settings, resume, description, backward, sync)[0]


def as_batch_step(step_loss: StepLoss) -> BatchStep:
    """One member's ``step_loss`` as the :data:`BatchStep` of a batch of one."""

    def one(step: int, active: list[int]) -> tuple[Tensor, list[dict[str, float]], list]:
        loss, logs, out = step_loss(step)
        return loss, [logs], [out]

    return one


def optimize_members(
    members: list[Member],
    batch_step: BatchStep,
    settings: LoopSettings,
    resume: bool,
    description: str = "optimising",
    backward: Callable[[Tensor], None] | None = None,
    sync: Callable[[], None] | None = None,
    commit: Commit | None = None,
) -> list[LoopResult]:
    """:func:`optimize` for several fields in lockstep: one ``batch_step`` (one loss, one
    backward) per step for the members still training, each member with its own optimiser,
    structural hooks, records in its own metrics.jsonl and checkpoint in its own run folder.

    A member whose ``until`` says so stops while the others go on; whenever one member's
    checkpoint is due, every training member is checkpointed at that step through ``commit``
    (default :class:`~dreamlift.checkpointing.DirectCommit`; members that share random draws
    need :class:`~dreamlift.checkpointing.TwoPhaseCommit`), so a resumed batch continues
    from one step. The time budget, a stop request and a non-finite loss apply to the batch.
    Returns one :class:`LoopResult` per member; ``timings`` are the batch's.
    """
    commit = commit or DirectCommit()
    paths = [checkpoint_path(m.run, settings.checkpoint_name) for m in members]
    if resume:
        commit.recover(paths)
    runs = [_begin(m, path, settings, resume) for m, path in zip(members, paths, strict=True)]
    if resume:
        commit.restored()
    guard = NonFiniteGuard(settings.nonfinite_patience)
    keys = ("step_s", "loss_s", "backward_s", "optimizer_s", "densify_s", "log_s")
    timings = dict.fromkeys(keys, 0.0)
    begin = _common_start(runs, settings.steps)

    def now() -> float:
        if sync is not None:
            sync()
        return time.perf_counter()

    def loop_seconds() -> float:
        return time.perf_counter() - began - timings["log_s"]

    def kept(step: int) -> str:
        if len(runs) == 1:
            return f"the last good checkpoint (step {step}) is kept in {runs[0].path}"
        return f"the last good checkpoints (step {step}) are kept in each run folder"

    def save(training: list[_Training], step: int) -> None:
        requests = [
            SaveRequest(
                r.member.run,
                settings.checkpoint_name,
                settings.kind,
                r.member.field,
                r.optimizer,
                r.member.generators,
                step,
                r.member.state,
                settings.stage,
                settings.stage_index,
            )
            for r in training
        ]
        try:
            commit.save(requests)
        except OSError as exc:
            raise OutputError(
                f"cannot write the checkpoint of step {step}: {exc.strerror or exc}",
                f"{kept(last_good)}; free space, then rerun with --resume",
            ) from None

    last_good, out_of_time = begin, False
    progress = progress_bar(disable=settings.quiet)
    began = time.perf_counter()
    with StopRequests() as stop, progress:
        task = progress.add_task(description, total=settings.steps, completed=begin, status="")
        for step in range(begin, settings.steps):
            active = [i for i, r in enumerate(runs) if not r.finished(settings.steps)]
            if not active:
                break
            training = [runs[i] for i in active]
            t0 = now()
            for r in training:
                r.optimizer.zero_grad(set_to_none=True)
            loss, logs, outs = batch_step(step, active)
            loss_value = float(loss.detach())
            t1 = now()
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"the loss became {loss_value} at step {step + 1}; stopped",
                    f"{kept(last_good)}; try a lower learning rate",
                )
            check_guidance(guard, logs[0], step, kept(last_good))
            if backward is None:
                loss.backward()
            else:
                backward(loss)
            t2 = now()
            for r, out in zip(training, outs, strict=True):
                r.optimizer = r.member.field.after_backward(step, out, r.optimizer)
            t3 = now()
            for r in training:
                r.optimizer.step()
            t4 = now()
            for r in training:
                r.optimizer = r.member.field.after_step(step, r.optimizer)
            t5 = now()
            timings["loss_s"] += t1 - t0
            timings["backward_s"] += t2 - t1
            timings["optimizer_s"] += t4 - t3
            timings["densify_s"] += (t3 - t2) + (t5 - t4)
            timings["step_s"] += t5 - t0
            done = step + 1
            budget = settings.time_budget_s
            out_of_time = budget is not None and done < settings.steps and loop_seconds() >= budget
            for r in training:
                r.done, r.out_of_time = done, out_of_time
                until = r.member.until
                r.stopped_early = until is not None and done < settings.steps and until(done)
            ending = [r for r in training if r.finished(settings.steps)]
            last = out_of_time or bool(ending)
            if done % settings.log_every == 0 or last:
                for r, member_logs in zip(training, logs, strict=True):
                    _log(r, done, loss_value, member_logs, loop_seconds, timings, settings)
                status = f"loss {loss_value:.4f}"
                if len(runs) > 1:
                    status += f" · {len(training) - len(ending)}/{len(runs)} training"
                progress.update(task, status=status)
            if done % settings.checkpoint_every == 0 or last or stop.requested:
                save(training, done)
                last_good = done
            progress.update(task, completed=done)
            if stop.requested:
                raise Interrupted(
                    f"stopped at step {done}; a checkpoint was written",
                    "rerun the same command with --resume to continue",
                )
            if all(r.finished(settings.steps) for r in runs) and done < settings.steps:
                progress.update(task, total=done)  # a finished bar, not one 250 steps short
            if out_of_time:
                break
    timings["loop_s"] = loop_seconds()
    results = []
    for r in runs:
        own = dict(timings)
        if r.done > r.start:
            own["iterations_per_s"] = (r.done - r.start) / max(timings["step_s"], 1e-9)
        results.append(
            LoopResult(
                r.member.field,
                r.done,
                r.start,
                own,
                out_of_time=r.out_of_time,
                stopped_early=r.stopped_early,
                optimizer=r.optimizer,
            )
        )
    return results


def _begin(member: Member, path: Path, settings: LoopSettings, resume: bool) -> _Training:
    """A member restored from its checkpoint (when resuming and there is one) or starting."""
    if resume and path.exists():
        opt, start, extra = restore(
            path, settings.kind, member.field, member.generators, member.make_optimizer
        )
        member.state.clear()
        member.state.update(extra)
        member.run.truncate_metrics(start, stage=settings.stage)
    else:
        start = 0
        if member.optimizer is not None:
            opt = member.optimizer
        elif member.make_optimizer is not None:
            opt = member.make_optimizer()
        else:
            opt = member.field.make_optimizer()
    training = _Training(member, path, opt, start, start)
    # A resumed run that had already stopped early takes no further step.
    until = member.until
    training.stopped_early = until is not None and 0 < start < settings.steps and until(start)
    return training


def _common_start(runs: list[_Training], steps: int) -> int:
    """The step the members still training continue from (they must agree)."""
    starts = {r.start for r in runs if not r.finished(steps)}
    if len(starts) > 1:
        raise TrainingError(
            f"the runs trained together are at different steps ({sorted(starts)})",
            "resume each on its own (generate --resume), or start again in another --out",
        )
    if starts:
        return starts.pop()
    return max(r.start for r in runs)


def _log(
    run: _Training,
    done: int,
    loss_value: float,
    logs: dict[str, float],
    loop_seconds: Callable[[], float],
    timings: dict[str, float],
    settings: LoopSettings,
) -> None:
    """One record into the member's metrics.jsonl (its evaluation off the clock)."""
    record = {"step": done, "loss": loss_value, "time_s": loop_seconds(), **logs}
    if settings.stage:
        record["stage"] = settings.stage
    member = run.member
    if member.on_log is not None:
        t0 = time.perf_counter()
        record.update(member.on_log(done))
        timings["log_s"] += time.perf_counter() - t0
    member.run.log(record)
    if member.on_record is not None:
        member.on_record(record)
