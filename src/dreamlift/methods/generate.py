"""Generate: text-to-3D by distilling a 2D diffusion prior into a field (GE3D by default).

The algorithm box (GE3D, METHODS 2.3; SDS and ISM are the same loop with another guidance)::

    field ← init (Gaussians: sphere / random ball / .ply; NeRF: a density blob)
    for τ in 0 … T-1:
        cameras, azimuths ← orbit curriculum(τ)              (azimuth range widens)
        x ← render(field, cameras) at resolution warm-up(τ), resized to the prior's size
        prompts ← view-dependent prompts of the caption from the azimuths
        losses ← guidance(prior, x, prompts, τ)              (t / node schedules inside)
        L ← Σ weight · loss + field regularisers; Adam step; densify (Gaussians)

Every schedule is a pure function of the step and sits in the config. Runs write the run
contract, a checkpoint that ``resume`` continues exactly, a turntable and the 3D file; when
the prompt is a world caption, ``summary.json`` also scores the result against ground truth.
"""

from __future__ import annotations

import dataclasses
import re
import time
import typing
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.cameras import Cameras, OrbitRange, sample_orbit, turntable
from dreamlift.errors import CaptionError, DataError, DreamliftError, OutputError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.fields.nerf import NerfConfig, NerfField
from dreamlift.fields.registry import check_field_name, make_field
from dreamlift.guidance import GE3DConfig, GuidanceInput, ISMConfig, SDSConfig, make_guidance
from dreamlift.guidance.base import guidance_spec
from dreamlift.guidance.ge3d import GE3D_NEGATIVE_PROMPT
from dreamlift.io.media import save_turntable
from dreamlift.io.run import RunDir
from dreamlift.loop import LoopSettings, checkpoint_path, optimize
from dreamlift.priors import PREFIX_TEMPLATE, SUFFIX_TEMPLATE, DiffusionPrior, view_prompts
from dreamlift.world import asset_from_caption, caption, parse
from dreamlift.world.assets import Description
from dreamlift.zoo.tokenizer import caption_words

TOY_PRIORS = ("toy-sd",)  # zoo priors that only know the world's caption grammar
WORLD_VOCAB_MAX = 2000  # a closed-vocabulary tokenizer is far smaller than CLIP's 49,408


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
    prior: str = "toy-sd"
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
    radius: tuple[float, float] = (2.7, 2.7)
    elevation: tuple[float, float] = (0.0, 40.0)
    fov: tuple[float, float] = (40.0, 40.0)
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
    init: str = "sphere"
    """Gaussians: ``sphere`` (shell), ``random`` (ball) or a 3DGS ``.ply`` path."""
    init_radius: float = 0.5
    nerf_blob_density: float = 20.0
    """NeRF density bias: a Gaussian blob of this peak density (per unit) at the centre."""
    nerf_blob_radius: float = 0.5
    checkpoint_every: int = 100
    log_every: int = 10
    turntable_frames: int = 36
    export: str = "auto"
    """``auto``: the field's own file (gaussians.ply / mesh.glb); ``mesh``: also a mesh."""
    mesh_resolution: int = 96
    """Grid points per side of the Gaussians' density mesh (``export: mesh``)."""
    score: bool = True
    """Score world captions against ground truth (8 aligned views) and with toy-clip."""
    rank_shapes: bool = True
    """Also rank every world shape in the described colour (single objects; slower)."""
    score_refinements: int = 32
    """Re-renders refining each ground-truth alignment (shape ranking uses a third)."""
    judge: str = "toy-clip"
    gaussians: GaussiansConfig = dataclass_field(default_factory=GaussiansConfig)
    nerf: NerfConfig = dataclass_field(default_factory=NerfConfig)
    sds: SDSConfig = dataclass_field(default_factory=lambda: SDSConfig(form="x0"))
    ism: ISMConfig = dataclass_field(default_factory=ISMConfig)
    ge3d: GE3DConfig = dataclass_field(default_factory=GE3DConfig)

    def field_config(self) -> Any:
        return getattr(self, self.field)

    def guidance_config(self) -> Any:
        """The chosen guidance's config with the top-level CFG / negative overrides applied."""
        cfg = getattr(self, self.guidance)
        if self.guidance_scale is not None:
            cfg = dataclasses.replace(cfg, guidance_scale=self.guidance_scale)
        if self.negative_prompt is not None:
            cfg = dataclasses.replace(cfg, negative_prompt=self.negative_prompt)
        return cfg


FAST_GAUSSIANS = {
    "num_init": 2048,
    "sh_degree": 0,
    "densify_from": 100,
    "densify_until": 450,
    "densify_every": 100,
    "opacity_reset_every": 0,
    "max_gaussians": 20_000,
}
PRESETS: dict[str, dict[str, Any]] = {
    # CPU minutes with toy-sd (TOY-PRIOR-NOTES: 64 px, one or two orbit views with view
    # captions, CFG 3-7.5, t annealing, the x0 image-space SDS form, Adam).
    "fast": {
        "steps": 600,
        "negative_prompt": "",
        "guidance_scale": 7.5,
        "gaussians": FAST_GAUSSIANS,
        "nerf": {"resolutions": ((0, 32), (300, 48)), "sparsity": 0.005},
        "ge3d": {"dbc_sigma_fraction": 1 / 3},
    },
    # GE3D's released settings (METHODS 2.4).
    "paper": {
        "steps": 3000,
        "views_per_step": 4,
        "resolution_warmup": ((0, 1.0),),
        "radius": (3.5, 5.0),
        "fov": (18.3, 34.4),
        "elevation": (0.0, 45.0),
        "azimuth_start": 80.0,
        "scale_weight": 1.0,
        "init": "random",
        "negative_prompt": GE3D_NEGATIVE_PROMPT,
        "guidance_scale": 7.5,
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
        "ge3d": {"perpneg": {"enabled": True}},
        "sds": {"form": "eps", "guidance_scale": 100.0},
    },
}


def build_config(preset: str = "fast", **overrides: Any) -> GenerateConfig:
    """Preset values, then the non-None ``overrides``; names are checked here, not later."""
    if preset not in PRESETS:
        raise DreamliftError(f"unknown preset {preset!r}", f"choose one of: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    values["preset"] = preset
    cfg = config_from_dict(values)
    check_field_name(cfg.field)
    guidance_spec(cfg.guidance)
    if cfg.export not in ("auto", "mesh"):
        raise DreamliftError(f"unknown export {cfg.export!r}", "choose auto or mesh")
    if cfg.steps < 1:
        raise DreamliftError(f"steps must be at least 1, got {cfg.steps}")
    return cfg


def config_from_dict(values: dict[str, Any]) -> GenerateConfig:
    """Rebuild a config from plain values (a preset, a saved ``config.yaml``)."""
    try:
        return _dataclass_from(GenerateConfig, values)
    except (TypeError, ValueError) as exc:
        known = ", ".join(f.name for f in dataclasses.fields(GenerateConfig))
        raise DreamliftError(f"bad setting: {exc}", f"settings are: {known}") from None


def _dataclass_from(cls: type, values: dict[str, Any]) -> Any:
    """Nested dataclasses from dicts over their defaults; lists become tuples (YAML)."""
    hints, defaults = typing.get_type_hints(cls), cls()
    kwargs = {}
    for key, value in values.items():
        kind = hints.get(key)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = _dataclass_from(kind, _merge(dataclasses.asdict(getattr(defaults, key)), value))
        kwargs[key] = _tuples(value)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _tuples(value: Any) -> Any:
    return tuple(_tuples(x) for x in value) if isinstance(value, list) else value


# ---------------------------------------------------------------------- prompts
def uses_world_vocabulary(prior: DiffusionPrior) -> bool:
    """Whether the prior's tokenizer is the world's closed vocabulary (a toy prior)."""
    vocab = prior.tokenizer.get_vocab()
    return len(vocab) <= WORLD_VOCAB_MAX and all(
        f"{w}</w>" in vocab for w in caption_words() if w.isalpha()
    )


def check_prompt(prompt: str) -> None:
    if not prompt.strip():
        raise CaptionError("the prompt is empty", "give one, e.g. 'a red cube'")


def world_description(prompt: str) -> Description | None:
    try:
        return parse(prompt)
    except CaptionError:
        return None


def resolve_prompt(cfg: GenerateConfig, prior: DiffusionPrior) -> tuple[str, str]:
    """(view-free prompt, view template). A toy prior needs a caption of the world's grammar
    (a CaptionError lists the vocabulary) and a negative prompt within its words."""
    check_prompt(cfg.prompt)
    toy = uses_world_vocabulary(prior)
    template = cfg.view_template or (SUFFIX_TEMPLATE if toy else PREFIX_TEMPLATE)
    if not toy:
        return cfg.prompt.strip(), template
    desc = parse(cfg.prompt)  # raises with the vocabulary in its hint
    vocab = prior.tokenizer.get_vocab()
    negative = cfg.guidance_config().negative_prompt
    unknown = [w for w in re.findall(r"[a-z]+", negative.lower()) if f"{w}</w>" not in vocab]
    if unknown:
        raise CaptionError(
            f"the negative prompt has words the prior does not know: {', '.join(unknown)}",
            'pass --negative "" (or words of the caption grammar) for a toy prior',
        )
    return caption(dataclasses.replace(desc, view=None)), template


# ---------------------------------------------------------------------- parts
def initial_field(cfg: GenerateConfig, generator: torch.Generator) -> Field:
    """Gaussians on a sphere / in a ball / from a .ply; NeRF with a central density blob."""
    if cfg.field == "gaussians" and cfg.init not in ("sphere", "random"):
        path = Path(cfg.init)
        if not path.is_file():
            raise DataError(f"--init {cfg.init}: no such .ply file", "use sphere, random or PATH")
        return GaussianField.from_ply(path, cfg.gaussians)
    if cfg.field == "gaussians":
        mode = "sphere_surface" if cfg.init == "sphere" else "random"
        fcfg = dataclasses.replace(
            cfg.gaussians,
            init_mode=mode,
            init_radius=cfg.init_radius,
            lr_means_decay_steps=cfg.steps,
        )
        return make_field("gaussians", fcfg, generator)
    fld = make_field("nerf", dataclasses.replace(cfg.nerf, train_steps=cfg.steps), generator)
    assert isinstance(fld, NerfField)
    peak, r = cfg.nerf_blob_density, cfg.nerf_blob_radius
    fld.set_from_functions(
        lambda p: peak * torch.exp(-p.square().sum(-1) / (2 * r * r)) + 1e-3,
        lambda p: torch.full((p.shape[0], 3), 0.5),
    )
    return fld


def orbit_range(cfg: GenerateConfig, step: int) -> OrbitRange:
    half = azimuth_half_range(step, cfg.azimuth_start, cfg.azimuth_growth, cfg.azimuth_every)
    return OrbitRange(cfg.radius, cfg.elevation, (-half, half), cfg.fov)


def render_views(
    fld: Field, cams: Cameras, size: int, background: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Render and bring to the prior's size: images (B, 3, size, size) in [0, 1]."""
    out = fld.render(cams, background)
    images = out["rgb"].permute(0, 3, 1, 2)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1), out


class TextTo3D:
    """One optimisation step of score distillation: the loop body of the algorithm box."""

    def __init__(
        self,
        cfg: GenerateConfig,
        fld: Field,
        prior: DiffusionPrior,
        prompt: str,
        template: str,
        cameras_gen: torch.Generator,
        guidance_gen: torch.Generator,
    ):
        self.cfg, self.field, self.prior, self.prompt = cfg, fld, prior, prompt
        self.template = template
        gcfg = cfg.guidance_config()
        if hasattr(gcfg, "perpneg"):
            gcfg = dataclasses.replace(
                gcfg, perpneg=dataclasses.replace(gcfg.perpneg, template=template)
            )
        self.guidance = make_guidance(cfg.guidance, gcfg)
        self.cameras_gen, self.guidance_gen = cameras_gen, guidance_gen
        self.size = prior.image_size
        self.full = cfg.resolution or self.size
        self.background = torch.ones(3, device=prior.device)

    def __call__(self, step: int) -> tuple[Tensor, dict[str, float], dict[str, Tensor]]:
        cfg = self.cfg
        res = max(8, round(self.full * render_scale(step, cfg.resolution_warmup)))
        cams, azimuth, elevation = sample_orbit(
            cfg.views_per_step, res, orbit_range(cfg, step), self.cameras_gen
        )
        images, out = render_views(
            self.field, cams.to(self.prior.device), self.size, self.background
        )
        inp = GuidanceInput(
            images=images,
            prompts=view_prompts(self.prompt, azimuth, elevation, self.template),
            prompt=self.prompt,
            azimuths=azimuth,
            step=step,
            total_steps=cfg.steps,
            generator=self.guidance_gen,
        )
        losses = self.guidance(self.prior, inp)
        loss = cfg.guidance_weight * sum(losses.values())
        logs = {k: float(v.detach()) for k, v in losses.items()}
        logs.update({f"info_{k}": v for k, v in self.guidance.last_info.items()})
        regularizer = getattr(self.field, "regularizer", None)
        if regularizer is not None:
            reg = regularizer()
            loss = loss + reg
            logs["loss_reg"] = float(reg.detach())
        if cfg.scale_weight > 0 and isinstance(self.field, GaussianField):
            scale = torch.exp(self.field.log_scales).mean()
            loss = loss + cfg.scale_weight * scale
            logs["loss_scale"] = float(scale.detach())
        logs["resolution"] = float(res)
        return loss, logs, out


# ---------------------------------------------------------------------- the method
def resume_config(out_dir: Path, steps: int | None = None) -> GenerateConfig:
    """The saved config of the run in ``out_dir`` (``steps`` extends it when given)."""
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise OutputError(f"nothing to resume in {out_dir} (no config.yaml)", "drop --resume")
    cfg = config_from_dict(RunDir(Path(out_dir)).read_config())
    if steps is not None:
        cfg.steps = steps
    return cfg


def load_prior(cfg: GenerateConfig) -> DiffusionPrior:
    """The prior; a toy prior's prompt is checked first, so a bad caption is reported
    before a missing model."""
    check_prompt(cfg.prompt)
    if cfg.prior in TOY_PRIORS:
        parse(cfg.prompt)
    return DiffusionPrior.load(cfg.prior, device=cfg.device)


def generate(
    cfg: GenerateConfig,
    out_dir: Path,
    resume: bool = False,
    quiet: bool = False,
    prior: DiffusionPrior | None = None,
) -> dict[str, Any]:
    """Distil ``cfg.prompt`` into ``cfg.field``; writes the run folder, returns the summary."""
    run = RunDir(out_dir)
    if not resume and checkpoint_path(run).exists():
        raise OutputError(
            f"{run.path} already holds a run (checkpoint.safetensors)",
            "pass --resume to continue it, or choose another --out",
        )
    t0 = time.perf_counter()
    prior = prior or load_prior(cfg)
    prompt, template = resolve_prompt(cfg, prior)
    run.prepare()
    run.write_config(cfg)
    timings = {"load_s": time.perf_counter() - t0}

    torch.manual_seed(cfg.seed)
    fld = initial_field(cfg, torch.Generator().manual_seed(cfg.seed)).to(prior.device)
    gens = {
        "cameras": torch.Generator().manual_seed(cfg.seed + 1),
        "guidance": torch.Generator().manual_seed(cfg.seed + 2),
    }
    step_loss = TextTo3D(cfg, fld, prior, prompt, template, gens["cameras"], gens["guidance"])
    settings = LoopSettings(
        steps=cfg.steps,
        kind=f"generate/{cfg.field}",
        checkpoint_every=cfg.checkpoint_every,
        log_every=cfg.log_every,
        quiet=quiet,
    )
    result = optimize(
        fld, step_loss, run, settings, gens, resume, description=f"generate {cfg.guidance}"
    )
    timings.update({"train_s": result.timings.get("step_s", 0.0)})
    timings.update({k: v for k, v in result.timings.items() if k != "step_s"})

    fld.eval()
    warnings: list[str] = []
    t1 = time.perf_counter()
    outputs = write_outputs(run, cfg, fld, warnings)
    timings["outputs_s"] = time.perf_counter() - t1
    metrics: dict[str, Any] = {}
    desc = world_description(prompt)
    if cfg.score and desc is not None:
        t1 = time.perf_counter()
        metrics.update(world_scores(cfg, fld, desc, warnings))
        timings["score_s"] = time.perf_counter() - t1
    elif cfg.score:
        warnings.append("not a world caption: no ground-truth scores")
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
        prompt=prompt,
        resumed_from=result.resumed_from,
        warnings=warnings,
    )
    return {"metrics": metrics, "timings": timings, "outputs": outputs, "warnings": warnings}


def _renderer(fld: Field):
    device = next(fld.parameters()).device

    @torch.no_grad()
    def render_fn(cameras: Cameras) -> dict[str, Tensor]:
        out = fld.render(cameras.to(device), torch.ones(3, device=device))
        return {k: out[k].cpu() for k in ("rgb", "opacity")}

    return render_fn


def write_outputs(
    run: RunDir, cfg: GenerateConfig, fld: Field, warnings: list[str]
) -> dict[str, Path]:
    """Turntable (mp4 + gif) and the 3D file(s); an empty field warns instead of failing."""
    outputs: dict[str, Path] = {
        "config": run.path / "config.yaml",
        "metrics": run.metrics_path,
        "checkpoint": checkpoint_path(run),
    }
    size = max(cfg.resolution or 64, 64)
    radius, fov = sum(cfg.radius) / 2, sum(cfg.fov) / 2
    cams = turntable(cfg.turntable_frames, size, elevation_deg=20.0, radius=radius, fov_deg=fov)
    frames = torch.cat([_renderer(fld)(cams[i : i + 8])["rgb"] for i in range(0, len(cams), 8)])
    outputs.update(save_turntable(run.path, frames.clamp(0, 1)))
    try:
        outputs.update(fld.export(run.path))
        if cfg.export == "mesh" and isinstance(fld, GaussianField):
            from dreamlift.methods.outputs import export_gaussian_mesh

            outputs["mesh"] = export_gaussian_mesh(
                fld, run.path / "mesh.glb", resolution=cfg.mesh_resolution
            )
    except DataError as exc:
        warnings.append(f"no 3D file exported: {exc}")
    return outputs


def world_scores(
    cfg: GenerateConfig, fld: Field, desc: Description, warnings: list[str]
) -> dict[str, Any]:
    """Ground truth (aligned silhouette IoU, colour error, shape ranking) and toy-clip."""
    from dreamlift.metrics.ground_truth import (
        GroundTruthSettings,
        ground_truth_scores,
        shape_ranking,
        toy_clip_scores,
    )

    render_fn = _renderer(fld)
    asset = asset_from_caption(caption(dataclasses.replace(desc, view=None)))
    settings = GroundTruthSettings(render_evaluations=cfg.score_refinements)
    scores: dict[str, Any] = dict(ground_truth_scores(render_fn, asset, settings))
    if cfg.rank_shapes and len(desc.objects) == 1:
        quick = GroundTruthSettings(render_evaluations=max(cfg.score_refinements // 3, 1))
        ranking = shape_ranking(render_fn, desc, quick)
        scores["shape_ious"] = ranking["ious"]
        scores["shape_winner"] = ranking["winner"]
        scores["shape_margin"] = ranking["margin"]
    try:
        scores.update(toy_clip_scores(cfg.judge, render_fn, desc))
    except DreamliftError as exc:
        warnings.append(f"no CLIP scores: {exc}")
    return scores


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(GenerateConfig)]
