"""``face``: FaceDNeRF end to end, in phases that each leave their result under ``stages/``,
so ``--resume`` skips a finished phase and redoes only the one that was cut:

1. ``stages/w.safetensors``: W fitted to the image alone (reconstruction and identity are
   not yet fighting an edit): the reconstruction shown beside the edit;
2. ``stages/wplus.safetensors``: stage A, the W+ latent under the whole objective (text
   only: from w_avg, the diffusion term and Eq. 9's regulariser);
3. ``stages/generator/``: stage B, the generator tuned with the latent frozen (PTI).

Outputs: ``input.png``, ``result.png`` (the input's camera), ``compare.png`` (the
reconstruction above the result at five yaws), ``turntable.mp4/.gif`` (reconstruction and
result side by side), ``mesh.glb``, ``latent.safetensors``, ``generator/`` (when tuned) and
``summary.json`` (the time split, the prior's share of stages A and B, the loss terms over
time, and for world heads the scores of :mod:`dreamlift.methods.face.scores`).

Every phase is seeded on its own, so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from dreamlift.devices import resolve_device
from dreamlift.errors import DataError, ModelError
from dreamlift.generators.triplane import TriplaneGenerator
from dreamlift.io.media import image_grid, save_image, save_turntable
from dreamlift.methods.common.folders import open_run
from dreamlift.methods.face.config import FaceConfig
from dreamlift.methods.face.inputs import FaceRequest, check_face, edited_head, wanted_attributes
from dreamlift.methods.face.objective import FaceGoal, FaceModels, FaceObjective
from dreamlift.methods.face.optimize import History, Progress, fit_wplus, tune_generator
from dreamlift.methods.invert.inputs import (
    Pose,
    estimate_pose,
    load_photo,
    pose_cameras,
    render_world_head,
)
from dreamlift.methods.invert.optimize import Target, fit_w
from dreamlift.methods.invert.run import load_generator, turntable_frames, write_generator_mesh
from dreamlift.metrics.perceptual import load_feature_distance
from dreamlift.utils.numerics import flush_denormals
from dreamlift.utils.timing import SectionTimer
from dreamlift.zoo.recipes.head_nets import load_head_net

STAGES_DIR = "stages"
COMPARE_YAWS = (-45.0, -20.0, 0.0, 20.0, 45.0)
MIN_RECONSTRUCTION_PSNR = 18.0
"""Below this the reconstruction does not render its own image: the input is likely not a
head the generator can render (world heads reach 24–28 dB)."""


@dataclass
class FaceInput:
    target: Target | None
    pose: Pose
    pose_from: str


def load_face_prior(name: str, device: str):  # noqa: ANN201
    """The diffusion prior, refused when its tokenizer is the world's object vocabulary
    without the head words (toy-sd cannot read "a person with …")."""
    from dreamlift.priors import DiffusionPrior

    prior = DiffusionPrior.load(name, device=device)
    vocab = prior.tokenizer.get_vocab()
    if len(vocab) < 2000 and "person</w>" not in vocab:
        raise ModelError(
            f"prior {name!r} does not know head captions (its vocabulary lacks 'person')",
            "use toy-sd-heads (the default) or a real Stable Diffusion folder",
        )
    return prior


def face_input(request: FaceRequest, cfg: FaceConfig) -> FaceInput:
    """The image and its camera (world head: rendered; photo: read, pose estimated)."""
    size = cfg.resolution
    if request.text_only:
        return FaceInput(None, Pose(0.0, 10.0), "text only")
    if request.head is not None:
        pose = request.pose or Pose(0.0, 10.0)
        image = render_world_head(request.head, [pose], size)["rgb"]
        return FaceInput(Target(image, pose.camera(size)), pose, "given")
    image = load_photo(Path(str(request.image)), size)
    if request.pose is not None:
        return FaceInput(Target(image, request.pose.camera(size)), request.pose, "given")
    pose = estimate_pose(Path(str(request.image)), cfg.pose_estimator)
    return FaceInput(Target(image, pose.camera(size)), pose, cfg.pose_estimator)


def _save_latent(path: Path, ws: Tensor, history: History | None = None) -> None:
    meta = {"history": json.dumps(history.records)} if history is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"ws": ws.detach().cpu().contiguous()}, str(tmp), metadata=meta)
    tmp.replace(path)


def _load_latent(path: Path, device: str) -> tuple[Tensor, list] | None:
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        ws = load_file(str(path))["ws"].to(device)
        with safe_open(str(path), "pt") as f:
            records = json.loads((f.metadata() or {}).get("history", "[]"))
    except Exception:  # noqa: BLE001 - an unreadable phase is redone
        return None
    return ws, records


@flush_denormals()
def run_face(
    request: FaceRequest, out: Path, progress: Progress | None = None, resume: bool = False
) -> dict:
    """Run FaceDNeRF into ``out``; returns the summary (also written to summary.json)."""
    cfg = request.config
    inv = cfg.inversion
    out = Path(out)
    run = open_run(out, request, resume)
    t_start = time.perf_counter()
    given = face_input(request, cfg)  # bad input fails before any model loads
    device = str(resolve_device(cfg.device))
    gen = load_generator(cfg.generator, device)
    target = given.target
    if target is not None:
        target = Target(target.image.to(device), target.camera.to(device))
    parts = load_head_net(cfg.parts_net, "parts")
    warnings: list[str] = []
    evidence = None
    if target is not None:
        evidence = check_face(parts, target.image.cpu(), request.image or "the input")
    models = FaceModels(
        prior=load_face_prior(cfg.prior, device) if request.prompt else None,
        identity=load_head_net(cfg.identity_net, "id") if target is not None else None,
        light=load_head_net(cfg.light_net, "light") if request.light is not None else None,
        distance=load_feature_distance(lpips=cfg.lpips) if target is not None else None,
    )
    for net in (models.identity, models.light):
        if net is not None:
            net.to(device)
    if models.distance is not None and target is not None:
        with torch.no_grad():
            target.features = models.distance.features(target.image)
    run.prepare()
    run.write_config(request)
    timings: dict[str, float] = {"load_s": time.perf_counter() - t_start}
    stages = out / STAGES_DIR
    resumed: list[str] = []
    torch.manual_seed(cfg.seed)

    # Phase 1: the reconstruction (W, image terms only).
    t0 = time.perf_counter()
    saved = _load_latent(stages / "w.safetensors", device) if resume else None
    if saved is not None:
        ws_rec, resumed = saved[0], ["w"]
    elif target is not None and inv.w_steps:
        ws_rec = fit_w(gen, target, inv, models.distance, progress)
        _save_latent(stages / "w.safetensors", ws_rec)
    else:
        ws_rec = gen.broadcast(gen.w_avg()[None]).clone()  # text only: the paper's Eq. 9
    timings["w_s"] = time.perf_counter() - t0
    goal = FaceGoal(target, request.prompt, torch.tensor(request.light) if request.light else None)
    objective = FaceObjective(cfg, goal, models)
    history = History()
    timer = SectionTimer()

    # Phase 2: stage A.
    t0 = time.perf_counter()
    steps_a = inv.wplus_steps if target is not None else cfg.generation_steps
    saved = _load_latent(stages / "wplus.safetensors", device) if resume else None
    if saved is not None:
        ws, records = saved
        history.records.extend(records)
        resumed.append("wplus")
    else:
        objective.begin("wplus")
        with _timing(timer, models, "wplus"):
            ws = fit_wplus(gen, ws_rec, objective, steps_a, history, progress)
        _save_latent(stages / "wplus.safetensors", ws, history)
    timings["wplus_s"] = time.perf_counter() - t0

    # Phase 3: stage B (PTI), with an image only.
    t0 = time.perf_counter()
    final: TriplaneGenerator = gen
    tuned = False
    if target is not None and inv.pti_steps:
        folder = stages / "generator"
        if resume and (folder / "model.safetensors").is_file() and (stages / "pti.json").is_file():
            final = TriplaneGenerator.from_pretrained(folder, device)
            history.records.extend(json.loads((stages / "pti.json").read_text()))
            resumed.append("pti")
        else:
            objective.begin("pti")
            before = len(history.records)
            with _timing(timer, models, "pti"):
                final = tune_generator(gen, ws, objective, inv.pti_steps, history, progress)  # type: ignore[assignment]
            final.save_pretrained(folder)
            (stages / "pti.json").write_text(json.dumps(history.records[before:]))
        tuned = True
    timings["pti_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    outputs = _write_outputs(out, cfg, given, gen, ws_rec, final, ws, tuned, warnings)
    timings["outputs_s"] = time.perf_counter() - t0

    metrics: dict[str, object] = {"perceptual": getattr(models.distance, "name", None)}
    if evidence is not None:
        metrics["face_evidence"] = evidence
    if target is not None:
        from dreamlift.metrics.image import masked_psnr

        with torch.no_grad():
            own = gen.render(gen.synthesis(ws_rec), target.camera).rgb
        rec_psnr = masked_psnr(own.cpu(), target.image.cpu())
        metrics["reconstruction_psnr"] = rec_psnr
        if rec_psnr < MIN_RECONSTRUCTION_PSNR and inv.w_steps:
            warnings.append(
                f"the reconstruction matches the input at only {rec_psnr:.1f} dB (a head the "
                f"generator can render reaches ≥ {MIN_RECONSTRUCTION_PSNR:.0f} dB): is it a head "
                "crop like the generator's training views?"
            )
    stage_s = timings["wplus_s"] + timings["pti_s"]
    from dreamlift.methods.generate.timing import PRIOR_PARTS

    prior_s = sum(timer.seconds.get(k, 0.0) for k in PRIOR_PARTS)
    metrics["prior_share"] = prior_s / stage_s if stage_s > 0 and resumed == [] else None
    metrics["prior_seconds"] = dict(timer.seconds)
    if request.is_world:
        t0 = time.perf_counter()
        metrics.update(score_world_face(request, final, ws, ws_rec, gen, parts, models))
        timings["scoring_s"] = time.perf_counter() - t0
    run.write_summary(
        "face",
        request,
        metrics,
        timings,
        outputs,
        input={"yaw": given.pose.yaw, "pitch": given.pose.pitch, "pose_from": given.pose_from},
        history=history.records,
        resumed_phases=resumed,
        warnings=warnings,
    )
    return json.loads((out / "summary.json").read_text())


def _timing(timer: SectionTimer, models: FaceModels, stage: str):  # noqa: ANN202
    """Time the stage and, inside it, the prior's UNet and VAE encoder."""
    from contextlib import ExitStack

    stack = ExitStack()
    stack.enter_context(timer.section(stage))
    if models.prior is not None:
        from dreamlift.methods.generate.timing import timing_prior

        stack.enter_context(timing_prior(timer, models.prior))
    return stack


def _write_outputs(
    out: Path,
    cfg: FaceConfig,
    given: FaceInput,
    gen: TriplaneGenerator,
    ws_rec: Tensor,
    final: TriplaneGenerator,
    ws: Tensor,
    tuned: bool,
    warnings: list[str],
) -> dict[str, Path]:
    size = cfg.resolution
    outputs: dict[str, Path] = {}
    latent = out / "latent.safetensors"
    save_file(
        {
            "ws": ws.detach().cpu().contiguous(),
            "ws_reconstruction": ws_rec.detach().cpu().contiguous(),
        },
        str(latent),
        metadata={"generator": str(cfg.generator), "tuned": str(tuned)},
    )
    outputs["latent"] = latent
    if tuned:
        final.save_pretrained(out / "generator")
        outputs["generator"] = out / "generator" / "config.json"
    if given.target is not None:
        outputs["input"] = save_image(
            out / "input.png", given.target.image[0].permute(1, 2, 0).cpu()
        )
    with torch.no_grad():
        cam = given.pose.camera(size).to(ws.device)
        result = final.render(final.synthesis(ws), cam).rgb[0]
        outputs["result"] = save_image(out / "result.png", result.permute(1, 2, 0).cpu())
        cams = pose_cameras([Pose(y, 10.0) for y in COMPARE_YAWS], size).to(ws.device)
        rows = [
            gen.render(gen.synthesis(ws_rec), cams).rgb,
            final.render(final.synthesis(ws), cams).rgb,
        ]
    grid = image_grid(torch.cat(rows).permute(0, 2, 3, 1).cpu(), len(COMPARE_YAWS))
    outputs["compare"] = save_image(out / "compare.png", grid)
    left = turntable_frames(gen, ws_rec, cfg.turntable_frames, size)
    right = turntable_frames(final, ws, cfg.turntable_frames, size)
    outputs.update(save_turntable(out, torch.cat([left, right], dim=2)))
    try:
        write_generator_mesh(final, ws, out / "mesh.glb", cfg.mesh_resolution, cfg.mesh_threshold)
        outputs["mesh"] = out / "mesh.glb"
    except DataError as exc:  # the run's other outputs are worth keeping
        warnings.append(f"no mesh: {exc.message}")
    return outputs


def score_world_face(
    request: FaceRequest,
    final: TriplaneGenerator,
    ws: Tensor,
    ws_rec: Tensor,
    gen: TriplaneGenerator,
    parts: torch.nn.Module,
    models: FaceModels,
) -> dict[str, object]:
    """The result's and the reconstruction's scores against the world's truth."""
    from dreamlift.methods.face.scores import (
        FaceScoreNets,
        result_views,
        true_views,
        view_scores,
    )
    from dreamlift.world.heads import head_params

    assert request.head is not None
    cfg = request.config
    identity = models.identity or load_head_net(cfg.identity_net, "id")
    light = models.light or (load_head_net(cfg.light_net, "light") if request.light else None)
    nets = FaceScoreNets(identity.cpu(), parts.cpu(), light.cpu() if light else None)
    wanted = wanted_attributes(request.prompt, head_params(request.head)) if request.prompt else {}
    sh = tuple(request.light) if request.light else None
    truth = true_views(request.head, edited_head(request.head, request.prompt), sh, cfg.resolution)
    scores = view_scores(result_views(final, ws, cfg.resolution), truth, wanted, nets)
    baseline = view_scores(result_views(gen, ws_rec, cfg.resolution), truth, wanted, nets)
    return {"scores": scores, "reconstruction_scores": baseline, "wanted": wanted}


__all__ = ["run_face"]
