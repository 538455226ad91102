"""Training recipes of the zoo: one per stage, run by :class:`dreamlift.zoo.trainer.Trainer`.

=============  ========  ==============================================================
model          stage     recipe
=============  ========  ==============================================================
toy-sd         vae       :class:`~dreamlift.zoo.recipes.vae.VAERecipe` → ``toy-sd/vae``
toy-sd         decoder   :class:`~dreamlift.zoo.recipes.decoder.DecoderRecipe` → ``*/vae``
toy-sd         scene-    the same recipe on a scene-heavy mix → ``*/vae``
               decoder
toy-sd         unet      :class:`~dreamlift.zoo.recipes.sd.SDRecipe` → ``toy-sd``
toy-sd-depth   unet      :class:`~dreamlift.zoo.recipes.sd.SDRecipe` (depth) → ``toy-sd-depth``
toy-sd-depth   refine    :class:`~dreamlift.zoo.recipes.sd.SDRefineRecipe` → ``toy-sd-depth``
toy-sd-camera  unet      :class:`~dreamlift.zoo.recipes.camera.CameraRecipe` → ``toy-sd-camera``
toy-sd-heads   unet      :class:`~.head_prior.HeadPriorRecipe` → ``toy-sd-heads``
toy-sd-heads   decoder   :class:`~.head_decoder.HeadDecoderRecipe` → ``toy-sd-heads/vae``
toy-mvdream    unet      :class:`~dreamlift.zoo.recipes.mvdream.MVDreamRecipe` → ``toy-mvdream``
toy-clip       clip      :class:`~dreamlift.zoo.recipes.clip.CLIPRecipe` → ``toy-clip``
toy-eg3d       generator :class:`~dreamlift.zoo.recipes.eg3d.EG3DRecipe` → ``toy-eg3d``
toy-eg3d       anneal    :class:`~dreamlift.zoo.recipes.eg3d.EG3DAnnealRecipe` → ``toy-eg3d``
toy-eg3d       refine    :class:`~dreamlift.zoo.recipes.eg3d.EG3DRefineRecipe` → ``toy-eg3d``
toy-eg3d       vary      :class:`~dreamlift.zoo.recipes.eg3d.EG3DVaryRecipe` → ``toy-eg3d``
toy-eg3d       polish    :class:`~dreamlift.zoo.recipes.eg3d.EG3DPolishRecipe` → ``toy-eg3d``
toy-pose …     net       :class:`~dreamlift.zoo.recipes.head_nets.HeadNetRecipe` (also
                         toy-parts, toy-light, toy-id; one head render cache)
=============  ========  ==============================================================

A stage trains in ``<workdir>/<stage>`` (checkpoint, ``metrics.jsonl``); render, latent and
tokenizer caches live next to the model's work dir (``<workdir>/..``, by default
``~/.cache/dreamlift/zoo``), so models with the same data share them: the 16k-render cache
serves the VAE, toy-sd and toy-clip. Run trainings one after another: two processes of two
threads each on two cores thrash (28 s against 2.9 s a step in a feasibility run made before
this project), and they would build a shared cache at the same time. The package folder is
the hand-off between stages: toy-sd's UNet stage loads the exported VAE, toy-sd-depth and
toy-sd-camera load toy-sd's VAE and text encoder, toy-sd's evaluation uses toy-clip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from dreamlift.errors import TrainingError
from dreamlift.zoo.recipes.common import (
    parameter_count,
    quiet_libraries,
    read_zoo_json,
    record_stage,
)
from dreamlift.zoo.registry import ZOO, entry, models_root
from dreamlift.zoo.trainer import Trainer, TrainerConfig

Size = Literal["fast", "tiny"]
# Stages that export ``<model>/vae`` rather than the model's folder.
AUTOENCODER_STAGES = ("vae", "decoder", "scene-decoder")


class Recipe(Protocol):
    """A training stage: data, modules, loss, export into the package folder, evaluation."""

    model: str
    stage: str
    kind: str
    train: TrainerConfig

    def prepare(self) -> None: ...

    def modules(self) -> dict[str, nn.Module]: ...

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]: ...

    def export(self, modules: dict[str, nn.Module]) -> Path: ...

    def evaluate(self) -> dict[str, float]: ...


def make_recipe(
    model: str,
    stage: str,
    workdir: Path,
    size: Size = "fast",
    root: Path | None = None,
    steps: int | None = None,
    quiet: bool = False,
) -> Recipe:
    """The recipe of one stage, exporting into ``root/<model>`` (default: the package's zoo).

    ``workdir`` is the stage's work dir (``<model workdir>/<stage>``).
    """
    from dreamlift.zoo.recipes.camera import CameraRecipe
    from dreamlift.zoo.recipes.clip import CLIPConfig, CLIPRecipe
    from dreamlift.zoo.recipes.decoder import DecoderConfig, DecoderRecipe
    from dreamlift.zoo.recipes.eg3d import (
        EG3DAnnealRecipe,
        EG3DConfig,
        EG3DPolishRecipe,
        EG3DRecipe,
        EG3DRefineRecipe,
        EG3DVaryRecipe,
    )
    from dreamlift.zoo.recipes.head_nets import TASK_OF_MODEL, HeadNetRecipe, HeadNetRecipeConfig
    from dreamlift.zoo.recipes.sd import SDConfig, SDRecipe, SDRefineRecipe
    from dreamlift.zoo.recipes.vae import VAEConfig, VAERecipe

    e = entry(model)
    if stage not in e.stages:
        raise TrainingError(f"{model} has no stage {stage!r}", f"stages: {', '.join(e.stages)}")
    root = Path(root) if root is not None else models_root()
    folder, data_root = root / model, Path(workdir).parent.parent
    tiny = size == "tiny"

    def with_steps(cfg):  # noqa: ANN001, ANN202 - any recipe config
        return cfg if steps is None else replace(cfg, train=replace(cfg.train, steps=steps))

    if (model, stage) == ("toy-sd", "vae"):
        vcfg = with_steps(VAEConfig.tiny() if tiny else VAEConfig())
        return VAERecipe(vcfg, folder, data_root, quiet)
    if model == "toy-sd" and stage in ("decoder", "scene-decoder"):
        scenes = stage == "scene-decoder"
        full = DecoderConfig.scenes() if scenes else DecoderConfig()
        dcfg = with_steps(DecoderConfig.tiny(scenes=scenes) if tiny else full)
        return DecoderRecipe(dcfg, folder, data_root, vae_siblings(root), quiet, stage)
    if model in TASK_OF_MODEL:
        task = TASK_OF_MODEL[model]
        hcfg = HeadNetRecipeConfig.tiny(task) if tiny else HeadNetRecipeConfig.for_task(task)
        return HeadNetRecipe(model, with_steps(hcfg), folder, data_root, quiet)
    if model == "toy-eg3d":
        ecfg = EG3DConfig.tiny() if tiny else EG3DConfig()
        if stage == "anneal":
            annealed = ecfg.annealed(2) if tiny else ecfg.annealed()
            return EG3DAnnealRecipe(with_steps(annealed), folder, data_root, quiet)
        if stage == "refine":
            refined = ecfg.refined(2) if tiny else ecfg.refined()
            return EG3DRefineRecipe(with_steps(refined), folder, data_root, quiet)
        if stage == "vary":
            varied = ecfg.varied(2, variants=1) if tiny else ecfg.varied()
            return EG3DVaryRecipe(with_steps(varied), folder, data_root, quiet)
        if stage == "polish":
            polished = ecfg.polished(2, variants=1) if tiny else ecfg.polished()
            return EG3DPolishRecipe(with_steps(polished), folder, data_root, quiet)
        return EG3DRecipe(with_steps(ecfg), folder, data_root, quiet)
    if model == "toy-mvdream":
        from dreamlift.zoo.recipes.mvdream import MVDreamConfig, MVDreamRecipe

        mcfg = with_steps(MVDreamConfig.tiny() if tiny else MVDreamConfig())
        return MVDreamRecipe(
            mcfg,
            folder,
            data_root,
            root / "toy-sd",
            root / "toy-clip",
            root / "toy-sd-camera",
            quiet,
        )
    if (model, stage) == ("toy-sd-heads", "decoder"):
        from dreamlift.zoo.recipes.head_decoder import HeadDecoderConfig, HeadDecoderRecipe

        hd_cfg = with_steps(HeadDecoderConfig.tiny() if tiny else HeadDecoderConfig())
        return HeadDecoderRecipe(hd_cfg, folder, data_root, quiet)
    if model == "toy-sd-heads":
        from dreamlift.zoo.recipes.head_prior import HeadPriorConfig, HeadPriorRecipe

        hp_cfg = with_steps(HeadPriorConfig.tiny_heads() if tiny else HeadPriorConfig())
        return HeadPriorRecipe(
            hp_cfg, folder, data_root, base=root / "toy-sd", clip_folder=None, quiet=quiet
        )
    if model == "toy-sd-camera":
        camera_cfg = with_steps(SDConfig.tiny() if tiny else SDConfig.camera())
        return CameraRecipe(
            camera_cfg, folder, data_root, root / "toy-sd", root / "toy-clip", quiet
        )
    if (model, stage) == ("toy-sd-depth", "refine"):
        rcfg = with_steps(SDConfig.tiny(True) if tiny else SDConfig.depth_refined())
        return SDRefineRecipe(
            rcfg, folder, data_root, root / "toy-sd", root / "toy-clip", quiet=quiet
        )
    if stage == "unet":
        depth = model == "toy-sd-depth"
        scfg = with_steps(SDConfig.tiny(depth) if tiny else SDConfig.fast(depth))
        return SDRecipe(
            scfg,
            folder,
            data_root,
            base=root / "toy-sd",
            clip_folder=root / "toy-clip",
            quiet=quiet,
        )
    ccfg = with_steps(CLIPConfig.tiny() if tiny else CLIPConfig())
    return CLIPRecipe(ccfg, folder, data_root, quiet)


def vae_siblings(root: Path) -> tuple[Path, ...]:
    """Folders of the zoo models other than toy-sd that carry a copy of a VAE."""
    vae_file = "vae/diffusion_pytorch_model.safetensors"
    return tuple(
        root / e.name for e in ZOO.values() if e.name != "toy-sd" and vae_file in e.required
    )


@dataclass
class StageReport:
    model: str
    stage: str
    steps: int
    seconds: float
    folder: Path
    figures: dict[str, float]


def run_stage(
    model: str,
    stage: str,
    workdir: Path,
    *,
    size: Size = "fast",
    root: Path | None = None,
    steps: int | None = None,
    export_only: bool = False,
    evaluate: bool = True,
    evaluate_only: bool = False,
    quiet: bool = False,
) -> StageReport:
    """Train (resuming) one stage, export its EMA weights, evaluate, record ``zoo.json``.

    ``export_only`` exports the latest checkpoint without training (the record keeps the
    training run's time). Without ``evaluate`` the stage's figures are cleared: they were
    measured on weights this export replaces. ``evaluate_only`` re-measures the exported
    model as it is (after a part it shares changed: the decoder stage rewrites the VAE of
    toy-sd-depth and toy-sd-camera), with no checkpoint needed.
    """
    with quiet_libraries():
        recipe = make_recipe(model, stage, Path(workdir) / stage, size, root, steps, quiet)
        if evaluate_only:
            model_folder = (Path(root) if root is not None else models_root()) / model
            t0 = time.perf_counter()
            figures = recipe.evaluate()
            record_stage(model_folder, model, stage, figures=figures)
            recorded = read_zoo_json(model_folder).get("training_steps", {}).get(stage) or 0
            seconds = time.perf_counter() - t0
            return StageReport(model, stage, int(recorded), seconds, model_folder, figures)
        trainer = Trainer(recipe, recipe.train, Path(workdir) / stage, quiet=quiet)
        t0 = time.perf_counter()
        if export_only:
            if not trainer.restore():
                raise TrainingError(
                    f"no checkpoint of {model}/{stage} in {trainer.workdir}",
                    f"train first: dreamlift zoo train {model}",
                )
        else:
            recipe.prepare()
            trainer.run(description=f"{model}/{stage}")
        seconds = time.perf_counter() - t0
        modules = trainer.ema_modules()
        params = parameter_count(*modules.values())
        folder = recipe.export(modules)
        model_folder = folder.parent if stage in AUTOENCODER_STAGES else folder
        timing = {"seconds_this_run": round(seconds, 1), "threads": torch.get_num_threads()}
        record_stage(
            model_folder,
            model,
            stage,
            steps=trainer.step,
            trained_parameters=params,
            **({} if export_only else timing),
            **({} if evaluate else {"figures": {}}),
        )
        figures: dict[str, float] = {}
        if evaluate:
            figures = recipe.evaluate()
            record_stage(model_folder, model, stage, figures=figures)
    return StageReport(model, stage, trainer.step, seconds, model_folder, figures)


__all__ = ["Recipe", "StageReport", "make_recipe", "run_stage"]
