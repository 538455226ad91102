"""Edit: Perturb-and-Revise (arXiv:2412.05279) on a field from another run.

The algorithm box (§3 of the paper; the official code's ``mvdream_pnr.py`` and
``mvdream_pnr_ipg.py``)::

    θ ← θ_src                                    (the source run's last checkpoint)
    probe:  N steps of SDS toward the edit prompt at t = 0.75; record each step's loss
    η     ← adaptive(probe losses)               (eta.py; or the fixed --eta)
    θ ← θ_src; θ_geometry ← (1 − η) θ_src + η θ_0 (perturb.py; appearance untouched;
                                                  the optimiser's moments carried on)
    revise: SDS with t annealed from 0.75 to revise_t_end (official [0.02, 0.40])
    IPG:    SDS + λ(s) (L1 + perceptual)(render, source render at the same views),
            λ falling linearly to 0 over the stage's first half

Each stage is a stage of :mod:`dreamlift.stages` (its own checkpoint; ``--resume`` continues
the stage that was cut, with η and the probe's losses restored from the checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamlift.cameras import turntable
from dreamlift.errors import CheckpointError, ConfigError, DreamliftError
from dreamlift.fields.base import Field
from dreamlift.io.checkpoint import read_metadata
from dreamlift.io.media import save_turntable
from dreamlift.io.run import RunDir
from dreamlift.loop import LoopSettings
from dreamlift.methods.common import priors
from dreamlift.methods.common.folders import open_run
from dreamlift.methods.common.outputs import field_renderer, run_files, write_turntable_and_3d
from dreamlift.methods.edit.config import EditConfig
from dreamlift.methods.edit.eta import adaptive_eta
from dreamlift.methods.edit.perturb import perturb_geometry
from dreamlift.methods.generate.prompts import resolve_prompt, world_description
from dreamlift.methods.generate.scoring import described_asset, world_scores
from dreamlift.methods.generate.step import TextTo3D
from dreamlift.methods.generate.timing import iteration_split, timing_prior
from dreamlift.metrics.fidelity import fidelity_psnr, kept_objects
from dreamlift.metrics.ground_truth import Alignment
from dreamlift.metrics.lpips import LPIPSDistance
from dreamlift.metrics.perceptual import FeatureDistance, load_feature_distance
from dreamlift.priors import DiffusionPrior
from dreamlift.stages import Stage, StageState, load_field, run_checkpoints, run_stages
from dreamlift.utils.timing import SectionTimer
from dreamlift.world.assets import Description

SOURCE_FOLDER = "source"


def step_config(
    cfg: EditConfig,
    steps: int,
    t_range: tuple[float, float],
    t_end: tuple[float, float] | None,
    anneal_fraction: float,
):  # noqa: ANN201
    """The generate step's config of one stage: the edit prompt, the stage's length and its
    t schedule (fixed at ``t_range`` or annealed to ``t_end``) on the step's guidance, SDS or
    MV-SDS (both take the same t settings)."""
    name = cfg.step.guidance if cfg.step.guidance == "mvsds" else "sds"
    guidance = dataclasses.replace(
        getattr(cfg.step, name),
        t_range=t_range,
        t_max_end=None if t_end is None else t_end[1],
        t_min_end=None if t_end is None else t_end[0],
        anneal_fraction=anneal_fraction,
    )
    return dataclasses.replace(cfg.step, prompt=cfg.prompt, steps=steps, **{name: guidance})


class ProbeStep:
    """The probe: a plain SDS step whose guidance loss is appended to ``state``."""

    def __init__(self, inner: TextTo3D, state: StageState) -> None:
        self.inner, self.state = inner, state

    def __call__(self, step: int) -> tuple[Tensor, dict[str, float], dict[str, Tensor]]:
        loss, logs, out = self.inner(step)
        losses = self.state.setdefault("probe_losses", [])
        del losses[step:]  # a resumed probe redoes the steps after its checkpoint
        losses.append(
            sum(
                v
                for k, v in logs.items()
                if k.startswith("loss_")
                and k not in ("loss_reg", "loss_tv", "loss_opacity", "loss_scale")
            )
        )
        return loss, logs, out

    def backward(self, loss: Tensor) -> None:
        self.inner.backward(loss)


class IdentityPreservingStep:
    """SDS plus the identity terms against the source's renders at the step's cameras."""

    def __init__(
        self,
        inner: TextTo3D,
        source: Field,
        cfg: EditConfig,
        distance: FeatureDistance | LPIPSDistance | None,
    ) -> None:
        self.inner, self.source, self.cfg, self.distance = inner, source, cfg, distance

    def weights(self, step: int) -> tuple[float, float]:
        cfg = self.cfg
        end = max(1, round(cfg.ipg_decay_fraction * cfg.ipg_steps))
        fall = max(0.0, 1.0 - step / end)
        return cfg.ipg_l1 * cfg.ipg_scale * fall, cfg.ipg_perceptual * cfg.ipg_scale * fall

    def __call__(self, step: int) -> tuple[Tensor, dict[str, float], dict[str, Tensor]]:
        loss, logs, out = self.inner(step)
        w_l1, w_p = self.weights(step)
        if w_l1 <= 0 and w_p <= 0:
            return loss, logs, out
        cams, background = self.inner.last_cameras, self.inner.last_background
        assert cams is not None and background is not None
        images = out["rgb"].permute(0, 3, 1, 2)
        with torch.no_grad(), self.inner.timer.section("render_forward"):
            ref = self.source.render(cams, background)["rgb"].permute(0, 3, 1, 2)
        # The official L1 weight is for the mean over 4 views of 256² RGB: per pixel value
        # the same pull here, whatever our render size and batch.
        l1 = (images - ref).abs().mean() * images.numel() / self.cfg.ipg_reference_pixels
        identity = w_l1 * l1
        logs["loss_ipg_l1"] = float(l1.detach())
        if self.distance is not None and w_p > 0:
            perceptual = self.distance.between(images.clamp(0, 1), ref) * images.shape[0]
            identity = identity + w_p * perceptual
            logs["loss_ipg_perceptual"] = float(perceptual.detach())
        return self.inner.add_render_loss(loss, identity), logs, out

    def backward(self, loss: Tensor) -> None:
        self.inner.backward(loss)


def source_run(cfg: EditConfig, out: Path, quiet: bool) -> Path:
    """The source's run folder: ``cfg.source``, or ``asset`` reconstructed into out/source."""
    if not cfg.asset:
        folder = Path(cfg.source)
        if not folder.is_dir():
            raise CheckpointError(
                f"source run {folder} does not exist",
                "give the folder of a generate or reconstruct run",
            )
        return folder
    from dreamlift.methods.reconstruct import build_config as build_reconstruct
    from dreamlift.methods.reconstruct import reconstruct

    folder = out / SOURCE_FOLDER
    if (folder / "summary.json").is_file():
        return folder  # reconstructed before (a resumed edit)
    rcfg = build_reconstruct(
        "fast",
        asset=cfg.asset,
        field=cfg.step.field,
        seed=cfg.seed,
        device=cfg.device,
        steps=cfg.source_steps,
    )
    reconstruct(rcfg, folder, resume=(folder / "config.yaml").is_file(), quiet=quiet)
    return folder


def source_kind(cfg: EditConfig) -> str:
    """The field kind the edit works on: the source run's (read from its last checkpoint), or
    the one an ``asset`` source is reconstructed as."""
    if cfg.asset:
        return cfg.field or cfg.step.field
    paths = run_checkpoints(Path(cfg.source)) if Path(cfg.source).is_dir() else []
    if not paths:
        raise CheckpointError(
            f"{cfg.source} holds no run checkpoint",
            "give the folder of a generate or reconstruct run",
        )
    try:
        kind = read_metadata(paths[-1]).get("field_kind")
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint in any way
        raise CheckpointError(f"cannot read the checkpoint {paths[-1]}: {exc}") from None
    kind = kind or cfg.step.field
    if cfg.field is not None and cfg.field != kind:
        raise ConfigError(
            f"the source run {cfg.source} holds a {kind} field, not {cfg.field}",
            f"leave --field out (the edit works on the source's {kind}), or edit a {cfg.field} run",
        )
    return kind


def load_source(folder: Path, device: torch.device) -> Field:
    try:
        return load_field(folder, device)
    except DreamliftError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint in any way
        raise CheckpointError(
            f"cannot read the field of {folder}: {exc}",
            "is it a finished generate or reconstruct run?",
        ) from None


def source_in_world(cfg: EditConfig, source_dir: Path) -> tuple[str, Alignment] | None:
    """The source's world caption and the similarity taking its field onto that asset.

    A text-driven run (text-to-3D, or an earlier edit) names its caption as ``prompt`` and
    holds its scores' alignment; a reconstruct run of an asset (``--asset``'s source among
    them) was fitted to the world's views, so its field is in the world's frame. None when
    the source is no world asset, or its summary is missing or malformed (the fidelity is
    then left out: it must not cost a finished edit its summary).
    """
    try:
        summary = json.loads((source_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict):
        return (cfg.asset, Alignment()) if cfg.asset else None
    prompt = summary.get("prompt")
    if prompt is not None:  # a text-driven run: its frame is its scores'
        aligned = Alignment.from_scores(summary.get("metrics"))
        return (prompt, aligned) if isinstance(prompt, str) and aligned is not None else None
    config = summary.get("config")
    asset = config.get("asset") if isinstance(config, dict) else None
    return (asset, Alignment()) if isinstance(asset, str) else None


def kept_object_fidelity(
    cfg: EditConfig,
    source_dir: Path,
    source: Field,
    edited: Field,
    target: Description,
    scores: dict[str, Any],
) -> dict[str, Any]:
    """``fidelity_psnr`` over the objects source and edit captions both name
    (:mod:`dreamlift.metrics.fidelity`), with ``kept_objects``; nothing when the source is no
    world asset, the edit keeps no object or the scores found no alignment."""
    found = source_in_world(cfg, source_dir)
    edit_to_target = Alignment.from_scores(scores)
    if found is None or edit_to_target is None:
        return {}
    caption, source_to_asset = found
    source_desc = world_description(caption)
    pairs = kept_objects(source_desc, target) if source_desc is not None else []
    if not pairs:
        return {}
    fidelity = fidelity_psnr(
        field_renderer(edited), field_renderer(source), described_asset(source_desc),
        described_asset(target), pairs, edit_to_target, source_to_asset,
    )  # fmt: skip
    return {"kept_objects": pairs, **(fidelity or {})}


def side_by_side(run: RunDir, source: Field, edited: Field, cfg: EditConfig) -> dict[str, Path]:
    """A turntable of the source (left) and the edit (right)."""
    size = cfg.step.turntable_size
    radius, fov = sum(cfg.step.radius) / 2, sum(cfg.step.fov) / 2
    cams = turntable(
        cfg.step.turntable_frames, size, elevation_deg=20.0, radius=radius, fov_deg=fov
    )
    with torch.no_grad():
        left = field_renderer(source)(cams)["rgb"]
        right = field_renderer(edited)(cams)["rgb"]
    frames = torch.cat([left, right], dim=2).clamp(0, 1)
    paths = save_turntable(run.path, frames, stem="source_and_edit")
    return {f"side_by_side_{k.split('_')[-1]}": v for k, v in paths.items()}


def edit(
    cfg: EditConfig,
    out_dir: Path,
    resume: bool = False,
    quiet: bool = False,
    prior: DiffusionPrior | None = None,
) -> dict[str, Any]:
    """Edit the source's field toward ``cfg.prompt``; writes the run folder, returns the summary."""
    out_dir = Path(out_dir)
    cfg = dataclasses.replace(cfg, step=dataclasses.replace(cfg.step, field=source_kind(cfg)))
    run = open_run(out_dir, cfg, resume)
    if not cfg.prompt.strip():
        raise ConfigError("empty edit prompt", 'dreamlift edit out/g1 "a blue cube" --out out/e1')
    t0 = time.perf_counter()
    prior = prior or priors.load_prior(cfg.step.prior, cfg.device, prompt=cfg.prompt)
    distance = None
    if cfg.ipg_steps and cfg.ipg_perceptual > 0:
        distance = load_feature_distance(lpips=cfg.lpips)
    run.prepare()
    source_dir = source_run(cfg, out_dir, quiet)
    source = load_source(source_dir, prior.device)
    fld = load_source(source_dir, prior.device)
    kind = cfg.step.field
    run.write_config(cfg)
    source.eval().requires_grad_(False)
    source.set_densification(None)
    fld.set_densification(None)  # shapes stay the source's: θ_src, θ_0 and θ match by index
    timings = {"load_s": time.perf_counter() - t0}

    gens = {
        "cameras": torch.Generator().manual_seed(cfg.seed + 1),
        "guidance": torch.Generator().manual_seed(cfg.seed + 2),
        "perturb": torch.Generator().manual_seed(cfg.seed + 3),
    }
    prompt, template = resolve_prompt(dataclasses.replace(cfg.step, prompt=cfg.prompt), prior)
    timer = SectionTimer()  # every stage's step adds into it: one iteration split for the run

    def text_step(steps: int, t_range, t_end, fraction) -> TextTo3D:  # noqa: ANN001
        scfg = step_config(cfg, steps, t_range, t_end, fraction)
        return TextTo3D(
            scfg, fld, prior, prompt, template, gens["cameras"], gens["guidance"], timer
        )

    t_probe = (cfg.probe_t, cfg.probe_t)

    def prepare_probe(f: Field, state: StageState) -> ProbeStep:
        return ProbeStep(text_step(cfg.probe_steps, t_probe, None, 1.0), state)

    def begin_revise(f: Field, state: StageState, generators: dict) -> None:
        with torch.no_grad():  # the probe's updates are discarded: back to θ_src
            f.load_state_tensors(source.state_tensors())
        if cfg.eta is None:
            state.update(
                {
                    f"eta_{k}": v
                    for k, v in adaptive_eta(
                        state.get("probe_losses", []),
                        cfg.eta_upper,
                        cfg.eta_half,
                        cfg.eta_half_fraction,
                        cfg.probe_window,
                    ).items()
                }
            )
            state["eta"] = state.pop("eta_eta")
        else:
            state["eta"] = cfg.eta
        perturb_geometry(f, float(state["eta"]), generators["perturb"])

    def prepare_revise(f: Field, state: StageState) -> TextTo3D:
        return text_step(cfg.revise_steps, t_probe, cfg.revise_t_end, cfg.revise_anneal_fraction)

    def prepare_ipg(f: Field, state: StageState) -> IdentityPreservingStep:
        inner = text_step(cfg.ipg_steps, t_probe, cfg.revise_t_end, cfg.revise_anneal_fraction)
        return IdentityPreservingStep(inner, source, cfg, distance)

    stages = []
    if cfg.eta is None:
        stages.append(Stage("probe", cfg.probe_steps, prepare_probe, description="edit probe"))
    stages.append(
        Stage(
            "revise",
            cfg.revise_steps,
            prepare_revise,
            begin=begin_revise,
            carry_optimizer=True,
            description="edit revise",
        )
    )
    if cfg.ipg_steps:
        stages.append(
            Stage("ipg", cfg.ipg_steps, prepare_ipg, carry_optimizer=True, description="edit IPG")
        )
    settings = LoopSettings(
        steps=cfg.revise_steps,
        kind=f"edit/{kind}",
        checkpoint_every=cfg.step.checkpoint_every,
        log_every=cfg.step.log_every,
        quiet=quiet,
    )
    state: StageState = {}
    with timing_prior(timer, prior):
        staged = run_stages(fld, stages, run, gens, resume, settings, state)
    loop: dict[str, float] = {}
    for result in staged.results.values():
        for key, value in result.timings.items():
            loop[key] = loop.get(key, 0.0) + value
    timings["train_s"] = loop.get("step_s", 0.0)
    split = iteration_split(loop, timer.seconds)
    split["iterations"] = sum(r.steps_done - r.resumed_from for r in staged.results.values())

    fld.eval()
    warnings: list[str] = []
    t1 = time.perf_counter()
    desc = world_description(cfg.prompt)
    outputs = {
        **run_files(run),
        **write_turntable_and_3d(
            run,
            fld,
            turntable(
                cfg.step.turntable_frames,
                cfg.step.turntable_size,
                elevation_deg=20.0,
                radius=sum(cfg.step.radius) / 2,
                fov_deg=sum(cfg.step.fov) / 2,
            ),
            warnings,
            truth=described_asset(desc) if desc is not None else None,
        ),
    }
    outputs.update(side_by_side(run, source, fld, cfg))
    timings["outputs_s"] = time.perf_counter() - t1
    metrics: dict[str, Any] = {
        "eta": state.get("eta"),
        "eta_adaptive": cfg.eta is None,
        "probe": {k[4:]: v for k, v in state.items() if k.startswith("eta_")},
        "probe_losses": state.get("probe_losses", []),
        "perceptual": distance.name if distance else None,
        "source_run": str(source_dir),
    }
    if cfg.step.score and desc is not None:
        t1 = time.perf_counter()
        metrics.update(
            world_scores(dataclasses.replace(cfg.step, prompt=cfg.prompt), fld, desc, warnings)
        )
        metrics.update(kept_object_fidelity(cfg, source_dir, source, fld, desc, metrics))
        timings["score_s"] = time.perf_counter() - t1
    run.write_summary(
        f"edit {cfg.source or '--asset ' + repr(cfg.asset)} {cfg.prompt!r} --preset {cfg.preset}",
        cfg,
        metrics,
        timings,
        outputs,
        prompt=cfg.prompt,
        warnings=warnings,
        stages_skipped=staged.skipped,
        iteration_split=split,
    )
    return {
        "metrics": metrics,
        "timings": timings,
        "outputs": outputs,
        "warnings": warnings,
        "iteration_split": split,
    }
