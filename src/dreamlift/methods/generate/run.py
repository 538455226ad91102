"""Generate: text-to-3D by distilling a 2D diffusion prior into a field (GE3D by default).

The algorithm box (GE3D, arXiv 2412.05929, Sec. 3; SDS and ISM are the same loop with
another guidance)::

    field ← init (Gaussians: sphere / random ball / .ply; NeRF: a density blob)
    for τ in 0 … T-1:
        L ← TextTo3D(τ)                                      (step.py)
        Adam step on L; densify (Gaussians)                  (the shared loop)

Every schedule is a pure function of the step and sits in the config (``config.py``). Runs
write the run contract, a checkpoint that ``resume`` continues exactly, a turntable and the
3D file; when the prompt is a world caption, ``summary.json`` also scores the result against
ground truth (``scoring.py``). Every run records where an iteration's time goes
(``iteration_split`` in ``summary.json``, ``timing.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamlift.errors import DataError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField
from dreamlift.fields.nerf import NerfField
from dreamlift.fields.registry import make_field
from dreamlift.fields.splat_gsplat import gsplat_unavailable_reason
from dreamlift.io.run import RunDir
from dreamlift.loop import LoopResult, LoopSettings, Member, as_batch_step, optimize_members
from dreamlift.methods.common import priors
from dreamlift.methods.common.folders import open_run
from dreamlift.methods.generate.config import GenerateConfig
from dreamlift.methods.generate.convergence import ConvergenceStop
from dreamlift.methods.generate.outputs import write_outputs
from dreamlift.methods.generate.prompts import resolve_prompt, world_description
from dreamlift.methods.generate.scoring import EvalCurve, described_asset, world_scores
from dreamlift.methods.generate.step import TextTo3D
from dreamlift.methods.generate.timing import iteration_split, timing_prior
from dreamlift.priors import DiffusionPrior
from dreamlift.utils.beside import Beside
from dreamlift.utils.timing import SectionTimer
from dreamlift.world.assets import Asset, Description

log = logging.getLogger(__name__)


def backend_warnings(cfg: GenerateConfig, device: torch.device) -> list[str]:
    """Said before training, not after: on a GPU the pure-torch rasteriser was 140-650x
    slower than gsplat's kernels (H200, 4 views of 512², 4k-82k Gaussians,
    benchmarks/results/gpu_h200/rasterize_cuda.json): a paper-preset step took 3.1 s instead
    of 0.6 s, hours for a run that gsplat does in half an hour."""
    if cfg.field != "gaussians" or device.type != "cuda" or cfg.gaussians.backend != "auto":
        return []
    reason = gsplat_unavailable_reason()
    if reason is None:
        return []
    message = (
        f"gsplat cannot be used ({reason}): Gaussians render through the pure-torch "
        "rasteriser, 140-650x slower on a GPU (pip install 'dreamlift[cuda]')"
    )
    log.warning(message)
    return [message]


def initial_field(cfg: GenerateConfig, generator: torch.Generator) -> Field:
    """Gaussians on a sphere / in a ball / from a .ply; NeRF with a central density blob."""
    if cfg.field == "gaussians":
        # The position learning rate decays over the run, whatever the start.
        fcfg = dataclasses.replace(cfg.gaussians, lr_means_decay_steps=cfg.steps)
        if cfg.init in ("sphere", "random"):
            mode = "sphere_surface" if cfg.init == "sphere" else "random"
            fcfg = dataclasses.replace(fcfg, init_mode=mode, init_radius=cfg.init_radius)
            return make_field("gaussians", fcfg, generator)
        path = Path(cfg.init)
        if not path.is_file():
            raise DataError(f"--init {cfg.init}: no such .ply file", "use sphere, random or PATH")
        return GaussianField.from_ply(path, fcfg)
    fld = make_field("nerf", dataclasses.replace(cfg.nerf, train_steps=cfg.steps), generator)
    assert isinstance(fld, NerfField)
    peak, r = cfg.nerf_blob_density, cfg.nerf_blob_radius
    fld.set_from_functions(
        lambda p: peak * torch.exp(-p.square().sum(-1) / (2 * r * r)) + 1e-3,
        lambda p: torch.full((p.shape[0], 3), 0.5),
    )
    return fld


def load_prior(cfg: GenerateConfig) -> DiffusionPrior:
    """The prior; a toy prior's prompt is checked first, so a bad caption is reported
    before a missing model."""
    return priors.load_prior(cfg.prior, cfg.device, prompt=cfg.prompt)


def profile_sync(cfg: GenerateConfig, device: torch.device) -> Callable[[], None] | None:
    """What the timings wait for: the GPU, with ``profile`` (an exact iteration split)."""
    return torch.cuda.synchronize if cfg.profile and device.type == "cuda" else None


@dataclass
class PreparedRun:
    """One generate run set up around the loop (:func:`prepare_run`): its folder, field, step,
    generators, extra state and stop rule, and what :func:`finish_run` writes after it."""

    cfg: GenerateConfig
    run: RunDir
    prior: DiffusionPrior
    prompt: str
    description: Description | None
    field: Field
    step_loss: TextTo3D
    generators: dict[str, torch.Generator]
    state: dict[str, Any]
    until: ConvergenceStop | None
    curve: EvalCurve | None
    timings: dict[str, float]
    warnings: list[str]

    @property
    def sync(self) -> Callable[[], None] | None:
        return profile_sync(self.cfg, self.prior.device)

    def settings(self, quiet: bool) -> LoopSettings:
        cfg = self.cfg
        return LoopSettings(
            steps=cfg.steps,
            kind=f"generate/{cfg.field}",
            checkpoint_every=cfg.checkpoint_every,
            log_every=cfg.log_every,
            quiet=quiet,
            time_budget_s=cfg.time_budget_s,
        )

    def member(self, watch: Callable[[Field], Callable[[dict], None]] | None = None) -> Member:
        """The run as the loop's :class:`~dreamlift.loop.Member`."""
        return Member(
            self.field,
            self.run,
            self.generators,
            self.state,
            until=self.until,
            on_log=self.curve.on_log if self.curve is not None else None,
            on_record=watch(self.field) if watch is not None else None,
        )


def prepare_run(
    cfg: GenerateConfig,
    run: RunDir,
    prior: DiffusionPrior,
    timer: SectionTimer | None = None,
) -> PreparedRun:
    """Check the prompt against ``prior``, take the run folder (``open_run``'s), build the
    field and the step (timed into ``timer``: runs trained together share one); nothing is
    trained."""
    t0 = time.perf_counter()
    prompt, template = resolve_prompt(cfg, prior)
    desc = world_description(prompt)
    fld = initial_field(cfg, torch.Generator().manual_seed(cfg.seed)).to(prior.device)
    run.prepare()  # the inputs (prompt, prior, --init file) are read: nothing failed
    run.write_config(cfg)
    warnings = backend_warnings(cfg, prior.device)
    gens = {
        "cameras": torch.Generator().manual_seed(cfg.seed + 1),
        "guidance": torch.Generator().manual_seed(cfg.seed + 2),
    }
    sync = profile_sync(cfg, prior.device)
    step_loss = TextTo3D(
        cfg,
        fld,
        prior,
        prompt,
        template,
        gens["cameras"],
        gens["guidance"],
        timer or SectionTimer(sync),
    )
    state: dict[str, Any] = {}
    until = None
    if cfg.convergence.enabled:
        until = ConvergenceStop(cfg.convergence, fld, cfg.steps, state)
    curve = None
    if cfg.eval_every > 0 and desc is not None:
        curve = EvalCurve(fld, desc, cfg.eval_every)
    timings = {"load_s": time.perf_counter() - t0}
    return PreparedRun(
        cfg, run, prior, prompt, desc, fld, step_loss, gens, state, until, curve, timings, warnings
    )


def generate(
    cfg: GenerateConfig,
    out_dir: Path,
    resume: bool = False,
    quiet: bool = False,
    prior: DiffusionPrior | None = None,
    watch: Callable[[Field], Callable[[dict], None]] | None = None,
) -> dict[str, Any]:
    """Distil ``cfg.prompt`` into ``cfg.field``; writes the run folder, returns the summary.
    ``watch(field)`` gives an observer of each logged record (``--viewer``'s live view)."""
    t0 = time.perf_counter()
    run = open_run(out_dir, cfg, resume)  # an existing run is refused before the prior loads
    prepared = prepare_run(cfg, run, prior or load_prior(cfg))
    prepared.timings["load_s"] = time.perf_counter() - t0
    step_loss = prepared.step_loss
    with timing_prior(step_loss.timer, prepared.prior):
        (result,) = optimize_members(
            [prepared.member(watch)],
            as_batch_step(step_loss),
            prepared.settings(quiet),
            resume,
            description=f"generate {cfg.guidance}",
            backward=step_loss.backward,
            sync=prepared.sync,
        )
    return finish_run(prepared, result, step_loss.timer.seconds)


def _timed_outputs(
    run: RunDir, cfg: GenerateConfig, fld: Field, truth: Asset | None
) -> tuple[dict[str, Path], list[str], float]:
    """:func:`write_outputs`, with the warnings it adds and the seconds it took."""
    t0 = time.perf_counter()
    warnings: list[str] = []
    outputs = write_outputs(run, cfg, fld, warnings, truth)
    return outputs, warnings, time.perf_counter() - t0


def finish_run(
    prepared: PreparedRun,
    result: LoopResult,
    sections: dict[str, float],
    batch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """After the loop: the turntables and 3D file, the world scores, summary.json; returns
    the summary. ``sections`` is the step timer's split; ``batch`` describes the runs
    trained together with this one (``generate --batch``)."""
    cfg, run, fld = prepared.cfg, prepared.run, prepared.field
    timings, warnings, until = prepared.timings, prepared.warnings, prepared.until
    timings.update({"train_s": result.timings.get("step_s", 0.0)})
    timings.update({k: v for k, v in result.timings.items() if k != "step_s"})
    split = iteration_split(result.timings, sections)
    split["iterations"] = result.steps_done - result.resumed_from

    fld.eval()
    metrics: dict[str, Any] = {"steps_done": result.steps_done, "out_of_time": result.out_of_time}
    notes = []
    if until is not None:
        timings["convergence_s"] = until.seconds
        metrics["converged_at"] = until.converged_at
        metrics["convergence_checks"] = until.record["history"]
        if until.converged_at is not None:
            notes.append(
                f"converged at step {until.converged_at} of {cfg.steps}: silhouettes and "
                f"colour still in {cfg.convergence.patience} checks in a row (IoU >= "
                f"{cfg.convergence.threshold}, colour within {cfg.convergence.colour_change}); "
                "--all-steps runs every step"
            )
    if result.out_of_time:
        warnings.append(f"time budget reached: stopped after {result.steps_done}/{cfg.steps} steps")
    curve, desc = prepared.curve, prepared.description
    if curve is not None:
        spent = curve.finish(result.steps_done, result.timings["loop_s"])
        timings["log_s"] = timings.get("log_s", 0.0) + spent
        metrics["eval_curve"] = curve.points
    truth = described_asset(desc) if desc is not None else None
    score_warnings: list[str] = []
    # The turntables and 3D file are written in a forked child while this process scores:
    # both hold the GIL, so threads would not overlap them (utils/beside.py).
    with Beside(_timed_outputs, run, cfg, fld, truth) as written:
        if cfg.score and desc is not None:
            t1 = time.perf_counter()
            metrics.update(world_scores(cfg, fld, desc, score_warnings))
            timings["score_s"] = time.perf_counter() - t1
        elif cfg.score:
            score_warnings.append("not a world caption: no ground-truth scores")
    outputs, output_warnings, timings["outputs_s"] = written.result()
    warnings += output_warnings + score_warnings
    command = (
        f"generate {cfg.prompt!r} --prior {cfg.prior} --field {cfg.field} "
        f"--guidance {cfg.guidance} --preset {cfg.preset} --steps {cfg.steps}"
    )
    run.write_summary(
        command,
        cfg,
        metrics,
        timings,
        outputs,
        prompt=prepared.prompt,
        resumed_from=result.resumed_from,
        warnings=warnings,
        iteration_split=split,
        **({"batch": batch} if batch is not None else {}),
    )
    return {
        "metrics": metrics,
        "timings": timings,
        "outputs": outputs,
        "warnings": warnings,
        "notes": notes,
        "iteration_split": split,
    }
