"""Runs in named stages, and runs that start from another run's field.

Editing, inversion and blending do not train one field from step 0 in one go: Perturb-and-
Revise probes, perturbs and revises, then refines with identity-preserving gradients
(arXiv:2412.05279 §3); pivotal tuning optimises a latent, then the generator
(arXiv:2106.05744 §3). Each :class:`Stage` has a name, its own step counter (so every
schedule inside it starts at 0, also for a field loaded from elsewhere), its own optimiser and
its own checkpoint ``checkpoint-<name>.safetensors``. The method's extra ``state`` (a chosen
η, a transform, anything JSON-able) is written into every checkpoint and restored on resume,
so ``--resume`` continues the right stage bit for bit: a stage whose checkpoint is complete is
skipped, the stage that was cut is continued, later stages start as they would have.

:func:`load_field` reads any run's field — its kind, configuration and tensors — from the
run's last checkpoint, without knowing which method wrote it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamlift.errors import CheckpointError
from dreamlift.fields.base import Field
from dreamlift.fields.registry import field_from_checkpoint
from dreamlift.io.checkpoint import load_checkpoint, read_metadata
from dreamlift.io.run import RunDir
from dreamlift.loop import (
    CHECKPOINT_NAME,
    LoopResult,
    LoopSettings,
    StepLoss,
    load_state,
    optimize,
)

StageState = dict
"""The method's extra state: JSON-able values shared by every stage, checkpointed with each."""


@dataclass
class Stage:
    """One stage of a run.

    ``prepare(field, state)`` is called whenever the stage is entered — fresh or resumed — and
    returns its ``step_loss``; it sets what a checkpoint does not hold (a densification
    policy, learning rates, the guidance) and must not change parameters, since a resumed
    stage then loads them. ``begin(field, state, generators)`` runs only when the stage starts
    afresh, before its first step: the place for a perturbation or a choice (η) that goes into
    ``state``. ``make_optimizer(field)`` picks the groups the stage optimises (default: all);
    ``carry_optimizer`` starts from the previous stage's Adam moments instead of zeros.
    """

    name: str
    steps: int
    prepare: Callable[[Field, StageState], StepLoss]
    begin: Callable[[Field, StageState, dict[str, torch.Generator]], None] | None = None
    make_optimizer: Callable[[Field], torch.optim.Optimizer] | None = None
    carry_optimizer: bool = False
    description: str = ""


@dataclass
class StagedResult:
    field: Field
    state: StageState
    results: dict[str, LoopResult]
    """Per stage that ran in this process (stages completed before a resume are absent)."""
    skipped: list[str]
    """Stages whose complete checkpoint was found on resume and not run again."""


def stage_checkpoint_name(stage: str) -> str:
    return f"checkpoint-{stage}.safetensors"


def run_stages(
    fld: Field,
    stages: Sequence[Stage],
    run: RunDir,
    generators: dict[str, torch.Generator],
    resume: bool,
    settings: LoopSettings,
    state: StageState | None = None,
) -> StagedResult:
    """Run ``stages`` in order on ``fld``; ``settings`` gives the kind (each stage's checkpoint
    kind is ``<kind>/<stage>``), logging, checkpointing and quiet flags shared by all stages.

    With ``resume`` the last stage that has a checkpoint is found: if it is complete, the field,
    generators and state are loaded from it and the next stage begins; otherwise it continues
    from its checkpoint. Without ``resume`` an existing stage checkpoint is an error the caller
    should have reported already (the run folder check)."""
    names = [s.name for s in stages]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"stage names must be unique and non-empty, got {names}")
    state = {} if state is None else state
    first, carried = 0, None
    if resume:
        first, carried = _first_stage_to_run(fld, stages, run, generators, settings, state)
    results: dict[str, LoopResult] = {}
    for index in range(first, len(stages)):
        stage = stages[index]
        stage_settings = dataclasses.replace(
            settings,
            steps=stage.steps,
            kind=f"{settings.kind}/{stage.name}",
            checkpoint_name=stage_checkpoint_name(stage.name),
            stage=stage.name,
            stage_index=index,
        )
        path = run.path / stage_settings.checkpoint_name
        resuming = resume and path.exists()
        step_loss = stage.prepare(fld, state)
        make_opt = None if stage.make_optimizer is None else (lambda s=stage: s.make_optimizer(fld))
        start_opt = None
        if not resuming:
            if stage.begin is not None:
                stage.begin(fld, state, generators)
            if stage.carry_optimizer and carried is not None:
                start_opt = make_opt() if make_opt is not None else fld.make_optimizer()
                start_opt.load_state_dict(carried)
        result = optimize(
            fld,
            step_loss,
            run,
            stage_settings,
            generators,
            resuming,
            description=stage.description or stage.name,
            state=state,
            make_optimizer=make_opt,
            optimizer=start_opt,
            backward=getattr(step_loss, "backward", None),
        )
        results[stage.name] = result
        carried = result.optimizer.state_dict() if result.optimizer is not None else None
        if result.out_of_time:
            break
    return StagedResult(fld, state, results, names[:first])


def _first_stage_to_run(
    fld: Field,
    stages: Sequence[Stage],
    run: RunDir,
    generators: dict[str, torch.Generator],
    settings: LoopSettings,
    state: StageState,
) -> tuple[int, dict | None]:
    """The index of the stage a resumed run continues or begins. When the next stage has not
    started, loads what the last complete stage left (field, generators, state) and returns
    its optimiser's state dict too, for a stage that carries the moments on."""
    latest = -1
    for index, stage in enumerate(stages):
        if (run.path / stage_checkpoint_name(stage.name)).exists():
            latest = index
    if latest < 0:
        return 0, None
    stage = stages[latest]
    path = run.path / stage_checkpoint_name(stage.name)
    ckpt = load_checkpoint(path, expected_kind=f"{settings.kind}/{stage.name}")
    if ckpt.step < stage.steps or latest == len(stages) - 1:
        return latest, None  # continue it (a complete last stage: zero steps left)
    load_state(ckpt, path, fld, generators)
    state.clear()
    state.update(ckpt.extra)
    return latest + 1, ckpt.optimizer


# ------------------------------------------------------------------------ reading runs
def run_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, last stage last (a single-stage run has one)."""
    run_dir = Path(run_dir)
    single = run_dir / CHECKPOINT_NAME
    staged = sorted(
        run_dir.glob(stage_checkpoint_name("*")),
        key=lambda p: int(read_metadata(p).get("stage_index", "0")),
    )
    return ([single] if single.is_file() else []) + staged


def load_field(run_dir: Path | str, device: str | torch.device = "cpu") -> Field:
    """The field a run ended with, rebuilt from its last checkpoint: kind, configuration and
    tensors come from the checkpoint itself (older checkpoints without them: the kind from the
    checkpoint's run kind and the configuration from the run's config.yaml)."""
    run_dir = Path(run_dir)
    paths = run_checkpoints(run_dir)
    if not paths:
        raise CheckpointError(
            f"{run_dir} holds no run checkpoint", "give the folder of a generate or reconstruct run"
        )
    ckpt = load_checkpoint(paths[-1])
    fld = field_from_checkpoint(ckpt, run_dir / "config.yaml")
    return fld.to(torch.device(device))
