"""Settings of ``dreamlift edit`` (Perturb-and-Revise, arXiv:2412.05279) and its presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from dreamlift.errors import ConfigError
from dreamlift.fields.registry import check_field_name
from dreamlift.io.run import to_plain
from dreamlift.methods.common import config as settings
from dreamlift.methods.common.folders import resume_config as resumed
from dreamlift.methods.common.priors import guidance_for_prior
from dreamlift.methods.generate.config import GenerateConfig
from dreamlift.methods.generate.config import build_config as build_step_config
from dreamlift.methods.generate.config import check_config as check_step_config


def _default_step() -> GenerateConfig:
    # An edit's stages run their set lengths: generate's stop at convergence is not theirs.
    return build_step_config("fast", guidance="sds", convergence={"enabled": False})


@dataclass
class EditConfig:
    """One edit: a source run's field, an edit prompt, and PnR's three stages.

    ``step`` holds everything a score-distillation step needs (prior, guidance and its CFG,
    camera orbit, render size, regularisers, scoring), as ``generate`` takes it; its prompt
    and step count are set by the edit.
    """

    prompt: str = ""
    source: str = ""
    """Folder of the run whose field is edited (generate, reconstruct or edit)."""
    asset: str | None = None
    """Instead of ``source``: a world caption, reconstructed from its views first."""
    field: str | None = None
    """The field kind to edit (``nerf`` or ``gaussians``): an ``asset`` is reconstructed as
    one; a source run must hold one (refused otherwise). None: the source's kind (``asset``:
    ``step.field``). ``--set step.field=...`` means the same."""
    preset: str = "fast"
    eta: float | None = None
    """Fixed perturbation size in [0, 1]; None: chosen by the probe (adaptive η)."""
    eta_upper: float = 0.6
    """U, the largest adaptive η (official ``auto_eta_upper_bound``)."""
    eta_half: float | None = None
    """Absolute H of η's formula (official 1000, in MVDream's loss units); None: scale-free."""
    eta_half_fraction: float = 0.5
    """Scale-free H as a fraction of the probe's starting loss (see ``methods/edit/eta.py``)."""
    probe_steps: int = 50
    probe_t: float = 0.75
    probe_window: int = 10
    revise_steps: int = 300
    revise_t_end: tuple[float, float] = (0.02, 0.10)
    """(t_min, t_max) the revise and IPG stages anneal to from (probe_t, probe_t). The
    official (0.02, 0.40) (the paper preset) leaves the toy prior's colours too pale to name:
    x̂0 at larger t regresses to the data's mean colour (docs/benchmarks.md, "Editing again")."""
    revise_anneal_fraction: float = 0.8
    """Fraction of the revise stage over which t anneals (official 1200 of 1500 steps)."""
    ipg_steps: int = 300
    """Identity-preserving refinement steps (0: no IPG stage). The stage restarts t at
    ``probe_t``, whose x̂0 targets are pale; at 150 steps too few small-t steps followed to
    bring a recolouring's colour back (the identity weights' scale did not matter: 0.05 and
    0.15 ended at the same colour)."""
    ipg_l1: float = 30_000.0
    """Official L1 weight, for ``ipg_reference_pixels`` pixels (scaled to ours per pixel)."""
    ipg_perceptual: float = 300.0
    """Official LPIPS weight (per image; ours is a toy-clip feature distance)."""
    ipg_reference_pixels: int = 4 * 3 * 256 * 256
    """Pixel values the official weights were set for: 4 views of 256² RGB."""
    ipg_scale: float = 0.15
    """Our guidance's pull relative to the official one (CFG 7.5 against 50), which the
    identity weights are multiplied by so that the tug-of-war keeps its balance."""
    lpips: str | None = None
    """Folder with LPIPS-VGG's weights (``vgg16`` and ``lpips_vgg``, .pth or .safetensors;
    :mod:`dreamlift.metrics.lpips`) for the IPG's perceptual term, as the paper uses; None:
    the toy-clip feature distance (:mod:`dreamlift.metrics.perceptual`). summary.json says
    which ran."""
    ipg_decay_fraction: float = 0.5
    """The identity weights fall linearly to 0 over this fraction of the IPG stage."""
    source_steps: int | None = None
    """``asset`` sources: reconstruction steps (None: reconstruct's fast preset)."""
    seed: int = 0
    device: str = "auto"
    step: GenerateConfig = dataclass_field(default_factory=_default_step)

    def __post_init__(self) -> None:
        if self.eta is not None and not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"--eta must be in [0, 1], got {self.eta:g}")
        if not 0.0 < self.probe_t < 1.0:
            raise ConfigError(f"probe_t must be in (0, 1), got {self.probe_t:g}")
        if self.eta is None and self.probe_steps < 2 * self.probe_window:
            raise ConfigError(
                f"the probe needs at least {2 * self.probe_window} steps for adaptive η",
                "raise probe_steps or give a fixed --eta",
            )
        if self.field is not None:
            check_field_name(self.field)
        if (not self.source) == (self.asset is None):
            raise ConfigError("give a source run folder or --asset CAPTION (one of them)")


PRESETS: dict[str, dict[str, Any]] = {
    # This CPU, toy prior: a few minutes.
    "fast": {},
    # The official code's settings (configs/mvdream-pnr.yaml, mvdream-pnr-ipg.yaml).
    "paper": {
        "revise_steps": 1500,
        "ipg_steps": 1000,
        "ipg_scale": 1.0,
        "revise_anneal_fraction": 0.8,
        "revise_t_end": (0.02, 0.40),
        "step": {
            "views_per_step": 4,
            "resolution_warmup": ((0, 1.0),),
            "elevation": (0.0, 30.0),
            "guidance_scale": 50.0,
            "sds": {"form": "x0", "recon_std_rescale": 0.5, "std_group": 4},
        },
    },
}


def build_config(preset: str = "fast", **overrides: Any) -> EditConfig:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}", f"choose one of: {', '.join(PRESETS)}")
    step_defaults = to_plain(dataclasses.asdict(_default_step()))
    values = settings.merge({"step": step_defaults}, PRESETS[preset])
    values = settings.merge(values, {k: v for k, v in overrides.items() if v is not None})
    values["preset"] = preset
    step, given_step = values["step"], overrides.get("step") or {}
    values["field"] = values.get("field") or given_step.get("field")
    # the revision's guidance: MV-SDS on a multi-view prior, SDS otherwise (run.step_config)
    step["guidance"] = guidance_for_prior(step["prior"], given_step.get("guidance"), "sds")
    cfg = settings.config_from_values(EditConfig, values)
    check_step_config(cfg.step)  # generate's checks, the multi-view guidance among them
    return cfg


def resume_config(out_dir: Path, **overrides: Any) -> EditConfig:
    return resumed(EditConfig, Path(out_dir), overrides)
