"""Settings of ``dreamlift generate``: the typed config, its presets and its schedules.

Every schedule of the method is a pure function of the step and sits here with the config
that parameterises it; presets are plain dicts of overrides (``fast``: CPU minutes with the
toy prior; ``paper``: GE3D's released settings). Values are checked against the config's
types by :mod:`dreamlift.methods.common.config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from dreamlift.cameras import DEFAULT_ORBIT
from dreamlift.errors import ConfigError, DreamliftError
from dreamlift.fields.gaussians import GaussiansConfig
from dreamlift.fields.nerf import NerfConfig
from dreamlift.fields.registry import check_field_name
from dreamlift.guidance import GE3DConfig, ISMConfig, MVSDSConfig, SDSConfig
from dreamlift.guidance.base import guidance_spec
from dreamlift.guidance.ge3d import GE3D_NEGATIVE_PROMPT
from dreamlift.methods.common import config as settings
from dreamlift.methods.common.config import check_turntable_size
from dreamlift.methods.common.folders import resume_config as resumed
from dreamlift.methods.common.priors import guidance_for_prior, is_multiview_prior
from dreamlift.methods.generate.convergence import ConvergenceConfig, check_convergence_config


# ---------------------------------------------------------------------- schedules
def azimuth_half_range(step: int, start: float, growth: float, every: int) -> float:
    """Camera curriculum: azimuths in ±half, ``start`` × ``growth`` every ``every`` steps,
    capped at 180 (GE3D: ±80 widening ×1.5 every 100 iterations)."""
    if every <= 0 or growth <= 1.0:
        return min(start, 180.0)
    return min(start * growth ** (step // every), 180.0)


def render_scale(step: int, warmup: tuple[tuple[int, float], ...]) -> float:
    """Resolution warm-up: the fraction of the full render size used from each start step."""
    scale = warmup[0][1]
    for start, value in warmup:
        if step >= start:
            scale = value
    return scale


# ---------------------------------------------------------------------- config
@dataclass
class GenerateConfig:
    """Settings of ``dreamlift generate``; presets are in :data:`PRESETS`."""

    prompt: str = ""
    prior: str = "toy-sd-camera"
    """Zoo name or diffusers folder (SD 1.x / 2.x layout)."""
    field: str = "gaussians"
    guidance: str = "ge3d"
    preset: str = "fast"
    steps: int = 600
    seed: int = 0
    device: str = "auto"
    resolution: int | None = None
    """Render size; None = the prior's image size (64 for toy-sd, 512 for SD 2.1-base)."""
    resolution_warmup: tuple[tuple[int, float], ...] = ((0, 0.5), (150, 1.0))
    """(start step, fraction of ``resolution``): coarse renders first (cheap, shape only)."""
    views_per_step: int = 1
    """Renders per step; with a multi-view prior, rounded up to whole groups of its views
    (4 azimuths 90° apart from a random start, one elevation: MVDream's cameras)."""
    radius: tuple[float, float] = (DEFAULT_ORBIT.radius, DEFAULT_ORBIT.radius)
    elevation: tuple[float, float] = (0.0, 40.0)
    fov: tuple[float, float] = (DEFAULT_ORBIT.fov_deg, DEFAULT_ORBIT.fov_deg)
    azimuth_start: float = 180.0
    """Half-range of azimuths at step 0 (front-centred); widens per the curriculum."""
    azimuth_growth: float = 1.5
    azimuth_every: int = 100
    view_template: str | None = None
    """View prompt template; None = the world's "{prompt}, {view} view" for toy priors and
    "{view} view of {prompt}" for real ones."""
    negative_prompt: str | None = None
    """Uncond branch of CFG; None keeps the guidance's own (GE3D: its negative prompt)."""
    guidance_scale: float | None = None
    """CFG scale; None keeps the guidance's own."""
    guidance_weight: float = 1.0
    """Weight of the guidance's loss(es)."""
    scale_weight: float = 0.0
    """GE3D's λ_scale · mean Gaussian scale (keeps splats small; Gaussians only)."""
    tv_weight: float = 0.0
    """GE3D's λ_tv · (TV(render) + TV(depth)): smooth colour and depth between pixels."""
    opacity_weight: float | None = None
    """Penalty on the rendered opacity: sqrt(o² + 0.01) summed over the prior's pixels and
    averaged over views (threestudio's sparsity form), per pixel like the guidance's
    residual. None: the field's default, :data:`OPACITY_WEIGHTS` (NeRF 0.1, Gaussians 0).
    Near-white fog costs the guidance almost nothing against a white background, so only a
    loss on what the views see removes it; a grid-cell L1 (``nerf.sparsity``) is swamped by
    the guidance's gradient in every cell a ray reaches (measured: SDS on NeRF, "a green
    cone", IoU 0.59 → 0.94 at 0.1; docs/benchmarks.md)."""
    flip_views: float = 0.0
    """Probability of flipping a step's renders left-right before the prior sees them (GE3D
    0.5): the prior's answer for a mirrored view teaches the same object."""
    background_aug: float = 0.0
    """Probability of a random solid background colour instead of white (GE3D's
    bg_aug_ratio 0.66): half-transparent fog cannot hide against an unknown background."""
    init: str = "sphere"
    """Gaussians: ``sphere`` (shell), ``random`` (ball) or a 3DGS ``.ply`` path."""
    init_radius: float = 0.5
    nerf_blob_density: float = 20.0
    """NeRF density bias: a Gaussian blob of this peak density (per unit) at the centre."""
    nerf_blob_radius: float = 0.5
    checkpoint_every: int = 100
    log_every: int = 10
    turntable_frames: int = 36
    turntable_size: int = 256
    """Pixels per side of the turntable videos, rendered from the final field (not the
    training size): 256 people can see; the renders cost seconds (docs/benchmarks.md)."""
    export: str = "auto"
    """``auto``: the field's own file (gaussians.ply / mesh.glb); ``mesh``: also a mesh."""
    mesh_resolution: int = 96
    """Grid points per side of the Gaussians' density mesh (``export: mesh``)."""
    score: bool = True
    """Score world captions against ground truth (8 aligned views) and with toy-clip."""
    rank_shapes: bool = True
    """Also rank every world shape (single objects: the aligned hull IoU of the result with
    each world shape, ``shape_ious`` / ``shape_winner`` / ``shape_correct``)."""
    score_refinements: int = 32
    """Re-renders refining each ground-truth alignment."""
    judge: str = "toy-clip"
    time_budget_s: float | None = None
    """Stop early, with a checkpoint, after this much training time; the schedules still
    follow ``steps`` (choose ``steps`` to fit the budget for a complete schedule)."""
    convergence: ConvergenceConfig = dataclass_field(default_factory=ConvergenceConfig)
    """Stop before ``steps`` once the silhouettes stop changing (``convergence.py``)."""
    eval_every: int = 0
    """Every N steps (a multiple of ``log_every``) log ``eval_iou``, the aligned silhouette
    IoU on 4 views, for world captions; not counted in the time budget (benchmarks)."""
    profile: bool = False
    """Synchronise the device at each timing boundary of the iteration-time split (exact on
    a GPU; CPU timings are exact without it)."""
    gaussians: GaussiansConfig = dataclass_field(default_factory=GaussiansConfig)
    nerf: NerfConfig = dataclass_field(default_factory=NerfConfig)
    sds: SDSConfig = dataclass_field(default_factory=lambda: SDSConfig(form="x0"))
    ism: ISMConfig = dataclass_field(default_factory=ISMConfig)
    ge3d: GE3DConfig = dataclass_field(default_factory=GE3DConfig)
    mvsds: MVSDSConfig = dataclass_field(default_factory=MVSDSConfig)

    def field_config(self) -> Any:
        return getattr(self, self.field)

    def resolved_opacity_weight(self) -> float:
        """``opacity_weight``, or the field's default when it is None."""
        if self.opacity_weight is not None:
            return self.opacity_weight
        return OPACITY_WEIGHTS.get(self.field, 0.0)

    def guidance_config(self) -> Any:
        """The chosen guidance's config with the top-level CFG / negative overrides applied."""
        cfg = getattr(self, self.guidance)
        if self.guidance_scale is not None:
            cfg = dataclasses.replace(cfg, guidance_scale=self.guidance_scale)
        if self.negative_prompt is not None:
            cfg = dataclasses.replace(cfg, negative_prompt=self.negative_prompt)
        return cfg


# The rendered-opacity penalty per field when ``opacity_weight`` is None: Gaussians have no
# free density to fog the scene; a dense grid does.
OPACITY_WEIGHTS: dict[str, float] = {"nerf": 0.1, "gaussians": 0.0}

FAST_GAUSSIANS = {
    "num_init": 2048,
    "sh_degree": 0,
    "densify_from": 100,
    "densify_until": 450,
    "densify_every": 100,
    "opacity_reset_every": 0,
    "max_gaussians": 20_000,
    # Grey start: with random colours, Gaussians the guidance pushes little stay as
    # multi-coloured speckle (measured: "a green cone" IoU 0.70 → 0.87, shape and colour
    # right instead of the colour wrong; "a yellow torus" shape and colour right, colour
    # error 0.39 → 0.21; docs/benchmarks.md).
    "init_grey": 0.5,
}
PRESETS: dict[str, dict[str, Any]] = {
    # CPU minutes with the toy prior (the recipe of its feasibility run before this project:
    # 64 px, one or two orbit views with view captions, CFG 3-7.5, t annealing, the x0
    # image-space SDS form, Adam).
    # Each guidance's CFG scale and negative prompt are set in its own group: the top-level
    # ``guidance_scale`` / ``negative_prompt`` are the user's --cfg / --negative, and would
    # override every guidance's values (the paper preset's SDS at DreamFusion's 100 among them).
    "fast": {
        "steps": 600,
        "gaussians": FAST_GAUSSIANS,
        # No density beyond radius 0.9 (the world's objects reach 0.6-0.75 from the centre):
        # the guidance otherwise paints background fog into the grid's corners. 32 samples a
        # ray (about one per cell of the 48³ grid) instead of 64: with SDS on four single
        # objects the same shapes and colours (mean IoU 0.900 against 0.903, colour error
        # 0.090 against 0.120), 1.35x faster steps, and the toy prior's share of a step 56 %
        # instead of 42 % (docs/benchmarks.md).
        "nerf": {
            "resolutions": ((0, 32), (300, 48)),
            "sparsity": 0.005,
            "sphere_radius": 0.9,
            "samples_per_ray": 32,
        },
        # The finest node's term in image space (GE3DConfig.clean_target): with the latent
        # term the yellow torus came out orange (toy-clip R-precision 0); in image space at
        # weight 4, yellow (1.0); fast set R-precision 0.875 -> 1.0 (docs/benchmarks.md).
        # SDS's t_max annealed to 0.2 instead of 0.5: the x0 targets of large t regress to
        # the data's mean colour, so the late steps at t up to 0.5 kept every colour dull.
        # Six single objects on Gaussians: captions judged right 3 -> 6, mean IoU 0.965 ->
        # 0.970; four on NeRF: 2 -> 4, 0.905 -> 0.955 (docs/benchmarks.md, "SDS's colours").
        "sds": {"t_max_end": 0.2},
        # GE3D's negative prompt is left out: the toy tokenizer knows none of its words and
        # spells them out letter by letter, past its 20-token context.
        "ge3d": {
            "dbc_sigma_fraction": 1 / 3,
            "clean_target": "image",
            "image_weight": 4.0,
            "negative_prompt": "",
        },
    },
    # GE3D's released settings (arXiv 2412.05929 and its code).
    "paper": {
        "steps": 3000,
        "views_per_step": 4,
        "resolution_warmup": ((0, 1.0),),
        "radius": (3.5, 5.0),
        "fov": (18.3, 34.4),
        "elevation": (0.0, 45.0),
        "azimuth_start": 80.0,
        "scale_weight": 1.0,
        "tv_weight": 1.0,
        "flip_views": 0.5,
        "background_aug": 0.66,
        "init": "random",
        "checkpoint_every": 500,
        "gaussians": {
            "num_init": 81_920,
            "sh_degree": 0,
            "lr_means": 2e-4,
            "lr_means_final": 1.6e-6,
            "lr_features_dc": 0.01,
            "densify_from": 100,
            "densify_until": 3000,
            "densify_every": 100,
            "grad_threshold": 7.5e-4,
            "percent_dense": 0.003,
            "opacity_reset_every": 300,
            "max_gaussians": 500_000,
        },
        "ge3d": {"perpneg": {"enabled": True}, "negative_prompt": GE3D_NEGATIVE_PROMPT},
        # LucidDreamer's (GE3D's base) CFG and negative prompt; DreamFusion's SDS: CFG 100, no
        # negative prompt (arXiv 2209.14988, Sec. 3).
        "ism": {"guidance_scale": 7.5, "negative_prompt": GE3D_NEGATIVE_PROMPT},
        "sds": {"form": "eps", "guidance_scale": 100.0, "negative_prompt": ""},
    },
}


PRESETS["quick"] = PRESETS["fast"]
"""``fast`` with a half-length Gaussian schedule (:data:`FIELD_PRESETS`); NeRF as ``fast``."""

QUICK_START = {"init_opacity": 0.3, "lr_means": 3.2e-3, "lr_means_final": 3.2e-5}
"""Gaussians that start visible and move faster (both presets): at opacity 0.1 the first 100
steps barely changed the silhouette (IoU 0.36 -> 0.39 on the README's caption); at 0.3, with
twice the position rate (generate decays it over the run, run.initial_field), the shape is
there by step 150-250."""

FIELD_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "fast": {
        # The quick start on the 600-step schedule settles most captions' silhouettes by step
        # 300-400 and keeps the late steps for those still changing (cones, the pyramid);
        # the convergence test stops each run where its own silhouettes stop moving
        # (docs/benchmarks.md, "Stopping at convergence"). SDS and GE3D run the shorter
        # schedule of GUIDANCE_FIELD_PRESETS on top of this.
        "gaussians": {"gaussians": QUICK_START, "convergence": {"enabled": True}},
    },
    "quick": {
        # The quick start on a half-length schedule: 300 steps reach what 600 did on 9 of the
        # fast set's 12 captions, better on the tori, worse on the cones and the pyramid
        # (docs/benchmarks.md, "Where the main job's time goes"). SDS and GE3D run the
        # shorter schedule of GUIDANCE_FIELD_PRESETS instead; this stays ISM's and MV-SDS's.
        "gaussians": {
            "steps": 300,
            "resolution_warmup": ((0, 0.5), (75, 1.0)),
            "gaussians": {
                **QUICK_START,
                "densify_from": 50,
                "densify_until": 225,
                "densify_every": 50,
            },
        },
    },
}
"""Each preset's settings for one field kind, over the preset's own."""

SHORT_SCHEDULE: dict[str, Any] = {
    "steps": 200,
    "resolution_warmup": ((0, 0.5), (75, 1.0)),
    "gaussians": {
        "lr_means": 9.6e-3,
        "lr_means_final": 9.6e-5,
        "lr_features_dc": 0.015,
        "lr_opacity": 0.15,
        "lr_scaling": 0.015,
        "densify_from": 50,
        "densify_until": 150,
        "densify_every": 50,
    },
}
"""Gaussians in 200 steps at three times the quick start's rates (positions at both ends of
their decay, colour, opacity, scale), warm-up and densification on a third of the schedule:
the shapes needed to move faster, not more steps (docs/benchmarks.md, "200 steps at three
times the rates").
- SDS, the six single objects at seeds 0 and 1: all 12 runs judged right, as with 600 steps
  at the base rates; mean IoU 0.961 against 0.968. At the base rates 300 steps judged none
  right; with the position rate decaying to the base schedule's end value, a cone fell to
  0.86.
- GE3D, the fast set's 12 captions: every IoU within 0.02 of the 600-step schedule's (stopped
  at convergence, mostly at step 500), the same 10 judged right, training about 2.8x shorter.
- ISM is left on the 600-step schedule: at 200 steps its yellow torus and orange cylinder
  lost their colours and the blue sphere's R-precision fell from 0.875 to 0.125."""

SHORT_SCHEDULE_LAYERS = {
    ("sds", "gaussians"): SHORT_SCHEDULE,
    ("ge3d", "gaussians"): SHORT_SCHEDULE,
}

GUIDANCE_FIELD_PRESETS: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
    "fast": SHORT_SCHEDULE_LAYERS,
    "quick": SHORT_SCHEDULE_LAYERS,  # the same fixed length without fast's stop at convergence
}
"""Each preset's settings for one (guidance, field kind) pair, over the field layer's."""


def build_config(preset: str = "fast", **overrides: Any) -> GenerateConfig:
    """Preset values, the preset's layer for the chosen field (:data:`FIELD_PRESETS`), its
    layer for the chosen guidance on that field (:data:`GUIDANCE_FIELD_PRESETS`), then the
    non-None ``overrides``, merged key by key into nested settings
    (``gaussians={"num_init": 500}`` keeps the preset's other Gaussian settings); names and
    values are checked here."""
    if preset not in PRESETS:
        raise DreamliftError(f"unknown preset {preset!r}", f"choose one of: {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = PRESETS[preset]
    kind = given.get("field", values.get("field", GenerateConfig.field))
    guidance = guidance_for_prior(
        given.get("prior", values.get("prior", GenerateConfig.prior)),
        given.get("guidance"),
        GenerateConfig.guidance,
    )
    values = settings.merge(values, FIELD_PRESETS.get(preset, {}).get(kind, {}))
    values = settings.merge(
        values, GUIDANCE_FIELD_PRESETS.get(preset, {}).get((guidance, kind), {})
    )
    values = settings.merge(values, given)
    values["preset"] = preset
    values["guidance"] = guidance
    return check_config(config_from_dict(values))


def resume_config(out_dir: Path, **overrides: Any) -> GenerateConfig:
    """The config saved in ``out_dir`` with ``overrides`` (as :func:`build_config` takes
    them); :func:`~dreamlift.methods.common.folders.open_run` refuses what cannot change."""
    return check_config(resumed(GenerateConfig, Path(out_dir), overrides))


def check_config(cfg: GenerateConfig) -> GenerateConfig:
    """Names in registries and values that only make sense together."""
    check_field_name(cfg.field)
    guidance_spec(cfg.guidance)
    if cfg.guidance != "mvsds" and is_multiview_prior(cfg.prior):
        raise ConfigError(
            f"{cfg.guidance} guidance denoises one view at a time; {cfg.prior} is a multi-view "
            "prior",
            "leave the guidance unset (MV-SDS is the default with a multi-view prior) or "
            "choose mvsds",
        )
    if cfg.export not in ("auto", "mesh"):
        raise DreamliftError(f"unknown export {cfg.export!r}", "choose auto or mesh")
    if cfg.steps < 1:
        raise DreamliftError(f"steps must be at least 1, got {cfg.steps}")
    if cfg.resolution is not None and not 8 <= cfg.resolution <= 2048:
        raise ConfigError(f"resolution must be in [8, 2048], got {cfg.resolution}")
    check_turntable_size(cfg.turntable_size)
    if cfg.eval_every < 0 or (cfg.eval_every and cfg.eval_every % cfg.log_every):
        raise DreamliftError(
            f"eval_every {cfg.eval_every} is not a multiple of log_every {cfg.log_every}",
            "evaluations run on logged steps",
        )
    check_convergence_config(cfg.convergence)
    if cfg.time_budget_s is not None and cfg.time_budget_s <= 0:
        raise DreamliftError(f"time budget must be positive, got {cfg.time_budget_s}")
    return cfg


def config_from_dict(values: dict[str, Any]) -> GenerateConfig:
    """Rebuild a config from plain values (a preset, a saved ``config.yaml``)."""
    return settings.config_from_values(GenerateConfig, values)


def config_fields() -> list[str]:
    return settings.config_fields(GenerateConfig)
