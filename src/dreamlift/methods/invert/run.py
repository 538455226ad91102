"""``dreamlift invert``: one image → a latent (W, then W+) → a pivotally tuned generator.

Outputs in the run folder: ``latent.safetensors`` (the W+ pivot and its W), ``generator/``
(the tuned generator, written only when PTI ran, since otherwise it is the input one),
``input.png``, ``views.png`` (the input and novel views), ``turntable.mp4/.gif``,
``mesh.glb`` (marching cubes on the generator's density) and ``summary.json`` with the time
of each stage. Inverting a world head (``--head N``) also scores every stage against the
head's true renders (:mod:`dreamlift.methods.invert.scores`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from dreamlift.devices import resolve_device
from dreamlift.errors import ConfigError
from dreamlift.generators.base import GeneratorError, RayWarp
from dreamlift.generators.triplane import TriplaneGenerator
from dreamlift.io.media import image_grid, save_image, save_turntable
from dreamlift.io.mesh import extract_mesh, write_mesh
from dreamlift.io.run import RunDir
from dreamlift.methods.common.folders import refuse_existing_run
from dreamlift.methods.invert.config import InvertConfig
from dreamlift.methods.invert.inputs import (
    Pose,
    estimate_pose,
    load_photo,
    pose_cameras,
    render_world_head,
)
from dreamlift.methods.invert.optimize import Progress, Target, invert_target
from dreamlift.methods.invert.scores import (
    NOVEL_POSES,
    mesh_silhouette_iou,
    novel_view_scores,
)
from dreamlift.metrics.image import masked_psnr
from dreamlift.metrics.perceptual import load_feature_distance
from dreamlift.utils.numerics import flush_denormals
from dreamlift.world.heads import check_head_seed, head_cameras


@dataclass(frozen=True)
class InvertRequest:
    """What to invert: an image file, or world head ``head`` rendered at ``pose``."""

    image: Path | None = None
    head: int | None = None
    pose: Pose | None = None

    def __post_init__(self) -> None:
        if (self.image is None) == (self.head is None):
            raise ConfigError("give an image or --head N (not both)")
        if self.head is not None:
            check_head_seed(self.head)


def load_generator(name_or_folder: str | Path, device: str = "cpu") -> TriplaneGenerator:
    """A zoo generator by name (``toy-eg3d``) or a generator folder."""
    from dreamlift.zoo.registry import model_folder

    name = str(name_or_folder)
    folder = model_folder(name_or_folder)
    if not folder.is_dir():
        raise GeneratorError(
            f"generator {name!r} is neither a zoo model nor a folder",
            "use toy-eg3d or a folder with config.json and model.safetensors",
        )
    return TriplaneGenerator.from_pretrained(folder, device)


def _target(request: InvertRequest, cfg: InvertConfig) -> tuple[Target, Pose, str]:
    """The image to invert, its camera, and where the camera came from."""
    resolution = cfg.resolution
    if request.head is not None:
        pose = request.pose or Pose(0.0, 10.0)
        image = render_world_head(request.head, [pose], resolution)["rgb"]
        return Target(image, pose.camera(resolution)), pose, "given"
    image = load_photo(request.image, resolution)  # type: ignore[arg-type]
    if request.pose is not None:
        return Target(image, request.pose.camera(resolution)), request.pose, "given"
    pose = estimate_pose(Path(request.image), cfg.pose_estimator)  # type: ignore[arg-type]
    return Target(image, pose.camera(resolution)), pose, cfg.pose_estimator


def identity_network():  # noqa: ANN201
    """toy-id for the scores' identity similarity, or None (and no such score) when the
    zoo lacks it."""
    from dreamlift.errors import ModelError
    from dreamlift.zoo.recipes.head_nets import load_head_net

    try:
        return load_head_net("toy-id")
    except ModelError:
        return None


def turntable_frames(
    gen: TriplaneGenerator, ws: Tensor, frames: int, resolution: int, warp: RayWarp | None = None
) -> Tensor:
    """(frames, R, R, 3) views of a latent all around it at pitch 10° (``warp``: its rays'
    map, as for a blend rendered in the reference's frame)."""
    yaw = torch.linspace(-180, 180, frames + 1)[:-1]
    out = []
    with torch.no_grad():
        planes = gen.synthesis(ws)
        for y in yaw.tolist():
            cam = head_cameras(y, 10.0, resolution).to(planes.device)
            out.append(gen.render(planes, cam, warp=warp).rgb[0].permute(1, 2, 0).cpu())
    return torch.stack(out)


def write_generator_mesh(
    gen: TriplaneGenerator,
    ws: Tensor,
    path: Path,
    resolution: int,
    threshold: float,
    box: float | None = None,
    to_frame: Callable[[Tensor], Tensor] | None = None,
):  # noqa: ANN201
    """Marching cubes on a latent's density within ``box`` (default: the generator's), written
    to ``path``; ``to_frame`` maps world points to where the latent is queried. Returns the
    vertices and faces."""
    with torch.no_grad():
        planes = gen.synthesis(ws)

        def query(p: Tensor) -> Tensor:
            return (to_frame(p) if to_frame else p)[None].to(planes.device)

        verts, faces, colours = extract_mesh(
            lambda p: gen.sigma(planes, query(p))[0],
            lambda p: gen.raw(planes, query(p))[1][0],
            gen.cfg.box if box is None else box,
            resolution,
            threshold,
        )
    write_mesh(path, verts, faces, colours, y_up=True)
    return verts, faces


@flush_denormals()
def invert(
    request: InvertRequest,
    out: Path,
    cfg: InvertConfig,
    progress: Progress | None = None,
    resume_allowed: bool = False,
) -> dict:
    """Run an inversion into ``out``; returns the summary (also written to summary.json).
    Subnormal floats are flushed meanwhile (``utils/numerics.py``: ~20x slower on CPUs)."""
    out = Path(out)
    if not resume_allowed:
        refuse_existing_run(out)
    run = RunDir(out)  # its clock starts here; the folder is made once the inputs are read
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    target, pose, pose_from = _target(request, cfg)  # bad input fails before the generator
    device = resolve_device(cfg.device)
    gen = load_generator(cfg.generator, device)
    target = Target(target.image.to(device), target.camera.to(device))
    distance = load_feature_distance(lpips=cfg.lpips) if cfg.perceptual_weight > 0 else None
    identity = identity_network() if request.head is not None and cfg.identity_scores else None
    run.prepare()
    run.write_config(cfg)
    load_s = time.perf_counter() - t_start

    stage_scores: dict[str, dict[str, float]] = {}
    score_s = 0.0

    def keep(stage: str, ws: Tensor, generator: TriplaneGenerator = gen) -> None:
        nonlocal score_s
        if request.head is None:
            return
        t0 = time.perf_counter()
        with torch.no_grad():
            own = generator.render(generator.synthesis(ws), target.camera).rgb
        stage_scores[stage] = {
            "input_psnr": masked_psnr(own.cpu(), target.image.cpu()),
            **novel_view_scores(generator, ws, request.head, cfg.resolution, identity=identity),
        }
        score_s += time.perf_counter() - t0

    state = invert_target(gen, target, cfg, distance, progress, keep)
    if state.tuned:
        keep("pti", state.ws, state.generator)  # type: ignore[arg-type]
    final: TriplaneGenerator = state.generator  # type: ignore[assignment]

    t0 = time.perf_counter()
    outputs: dict[str, Path] = {}
    latent = out / "latent.safetensors"
    save_file(
        {"ws": state.ws.clone(), "w": state.ws[:, 0].clone()},
        str(latent),
        metadata={"generator": str(cfg.generator), "yaw": str(pose.yaw), "pitch": str(pose.pitch)},
    )
    outputs["latent"] = latent
    if state.tuned:
        final.save_pretrained(out / "generator")
        outputs["generator"] = out / "generator" / "config.json"
    outputs["input"] = save_image(out / "input.png", target.image[0].permute(1, 2, 0).cpu())
    with torch.no_grad():
        poses = [pose, *NOVEL_POSES]
        cams = pose_cameras(poses, cfg.resolution)
        views = final.render(final.synthesis(state.ws), cams).rgb
    outputs["views"] = save_image(out / "views.png", image_grid(views.permute(0, 2, 3, 1), 4))
    frames = turntable_frames(final, state.ws, cfg.turntable_frames, cfg.turntable_resolution)
    outputs.update(save_turntable(out, frames))
    verts, faces = write_generator_mesh(
        final, state.ws, out / "mesh.glb", cfg.mesh_resolution, cfg.mesh_threshold
    )
    outputs["mesh"] = out / "mesh.glb"
    output_s = time.perf_counter() - t0

    metrics: dict[str, object] = {"perceptual": distance.name if distance else None}
    if request.head is not None:
        t0 = time.perf_counter()
        metrics["stages"] = stage_scores
        metrics["mesh_silhouette_iou"] = mesh_silhouette_iou(verts, faces, request.head)
        last = stage_scores[list(stage_scores)[-1]] if stage_scores else {}
        # the result's novel views against the true ones, in toy-id's embedding (None when
        # the zoo lacks toy-id)
        metrics["identity_similarity"] = last.get("novel_identity")
        score_s += time.perf_counter() - t0
    timings = {
        "load_s": load_s,
        **state.seconds,
        "outputs_s": output_s,
        "scoring_s": score_s,
        "inversion_s": sum(state.seconds.values()),
    }
    source = {"head": request.head} if request.head is not None else {"image": str(request.image)}
    run.write_summary(
        "invert",
        cfg,
        metrics,
        timings,
        outputs,
        input={**source, "yaw": pose.yaw, "pitch": pose.pitch, "pose_from": pose_from},
    )
    return json.loads((out / "summary.json").read_text())
