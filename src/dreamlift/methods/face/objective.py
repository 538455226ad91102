"""FaceDNeRF's objective (arXiv:2306.00783, Eq. 1, 8 and 9), one step's worth.

Terms, each computed only when it has something to say:

* reconstruction (with an image): MSE plus the inversion's perceptual distance between the
  render at the input camera and the image (the code's L_rec is LPIPS alone; at 64 px the
  MSE keeps colours that a feature distance lets drift, as ``dreamlift invert`` measured);
* identity (with an image): 1 − cos of toy-id embeddings (ArcFace's role), input camera;
* diffusion (with a prompt): SDS through the head-caption prior at a side camera, CFG
  ``guidance_scale`` and DreamFusion's (1 − ᾱ_t) weighting (``criteria/sd.py``);
* illumination (with a light): ‖toy-light(side render) − L_t‖². toy-light estimates the
  light in the head's frame (it was trained on world-frame SH at random yaw), so the
  target needs no rotation by the side camera's offset; the code's DPR estimates it in the
  camera's frame and rotates the target instead (METHODS §4.6);
* latent (text only, Eq. 9): ‖w − w_avg‖².
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamlift.cameras import Cameras
from dreamlift.generators.base import Generator3D
from dreamlift.guidance.base import GuidanceInput, make_guidance
from dreamlift.methods.face.config import FaceConfig
from dreamlift.methods.invert.optimize import Target, reconstruction_loss
from dreamlift.methods.invert.scores import identity_embedding
from dreamlift.metrics.perceptual import FeatureDistance
from dreamlift.priors import DiffusionPrior
from dreamlift.world.heads import head_cameras


@dataclass
class FaceModels:
    """The frozen networks the terms ask (None where a term is off)."""

    prior: DiffusionPrior | None = None
    identity: nn.Module | None = None
    light: nn.Module | None = None
    distance: FeatureDistance | None = None


@dataclass
class FaceGoal:
    """What the optimisation is asked for: the image (or None), the prompt, the light."""

    target: Target | None = None
    prompt: str | None = None
    light: Tensor | None = None
    """(9,) SH coefficients in the head's frame."""


STAGE_SEEDS = {"wplus": 1, "pti": 2}


class FaceObjective:
    """``objective(gen, ws, step, total)`` → (weighted loss, {term: unweighted value})."""

    def __init__(self, cfg: FaceConfig, goal: FaceGoal, models: FaceModels) -> None:
        self.cfg = cfg
        self.goal = goal
        self.models = models
        self.begin("wplus")
        self.sds = make_guidance(
            "sds",
            {
                "guidance_scale": cfg.guidance_scale,
                "t_range": cfg.t_range,
                "t_max_end": None,
                "weighting": "sds" if cfg.sds_form == "eps" else "uniform",
                "form": cfg.sds_form,
            },
        )
        self.target_identity: Tensor | None = None
        if goal.target is not None and models.identity is not None:
            with torch.no_grad():
                self.target_identity = identity_embedding(models.identity, goal.target.image)
        self.last_info: dict[str, float] = {}

    def begin(self, stage: str) -> None:
        """Reseed the side cameras and the SDS draws for ``stage``: each stage's draws depend
        on the seed and the stage alone, so a resumed run that skips stage A draws in stage
        B what the uninterrupted run drew."""
        offset = STAGE_SEEDS[stage]
        self.rng = random.Random(self.cfg.seed * 1009 + offset)
        self.torch_rng = torch.Generator().manual_seed(self.cfg.seed * 1013 + offset)

    @property
    def needs_side_view(self) -> bool:
        return self.uses("diffusion") or self.uses("illumination")

    def uses(self, term: str) -> bool:
        """Whether ``term`` is part of this objective (it has its input and a weight)."""
        w = getattr(self.cfg.weights, term)
        goal, models = self.goal, self.models
        has = {
            "rec": goal.target is not None,
            "identity": goal.target is not None and models.identity is not None,
            "diffusion": goal.prompt is not None and models.prior is not None,
            "illumination": goal.light is not None and models.light is not None,
            "latent": goal.target is None,
        }[term]
        return has and w > 0

    def side_camera(self) -> Cameras:
        """The code's random side camera: yaw and pitch uniform about the centre."""
        cfg = self.cfg
        if cfg.diffusion_at_input and self.goal.target is not None:
            return self.goal.target.camera
        yaw = cfg.side_centre[0] + self.rng.uniform(-cfg.side_yaw_deg, cfg.side_yaw_deg)
        pitch = cfg.side_centre[1] + self.rng.uniform(-cfg.side_pitch_deg, cfg.side_pitch_deg)
        return head_cameras(yaw, pitch, cfg.resolution)

    def __call__(
        self,
        gen: Generator3D,
        ws: Tensor,
        step: int,
        total: int,
        w_avg: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        cfg, goal, models = self.cfg, self.goal, self.models
        weights = cfg.weights
        planes = gen.synthesis(ws)
        terms: dict[str, Tensor] = {}
        if goal.target is not None:
            image = gen.render(planes, goal.target.camera.to(ws.device)).rgb
            if self.uses("rec"):
                terms["rec"] = reconstruction_loss(
                    image, goal.target, models.distance, cfg.inversion.perceptual_weight
                )
            if self.uses("identity"):
                assert models.identity is not None and self.target_identity is not None
                mine = identity_embedding(models.identity, image)
                terms["identity"] = 1 - (mine * self.target_identity).sum(-1).mean()
        if self.needs_side_view:
            side = gen.render(planes, self.side_camera().to(ws.device)).rgb
            if self.uses("diffusion"):
                assert models.prior is not None and goal.prompt is not None
                size = models.prior.image_size
                seen = side
                if seen.shape[-1] != size:  # the code resizes its renders to SD's 512 px
                    seen = F.interpolate(seen, size=(size, size), mode="bilinear")
                inp = GuidanceInput(
                    images=seen,
                    prompts=[goal.prompt],
                    generator=self.torch_rng,
                    step=step,
                    total_steps=total,
                )
                terms["diffusion"] = self.sds(models.prior, inp)["loss_sds"]
            if self.uses("illumination"):
                assert models.light is not None and goal.light is not None
                estimate = models.light(side)
                terms["illumination"] = (estimate - goal.light.to(side)).square().sum(-1).mean()
        if self.uses("latent") and w_avg is not None:
            terms["latent"] = (ws - w_avg).square().sum(-1).mean()
        loss = sum((getattr(weights, k) * v for k, v in terms.items()), ws.new_zeros(()))
        self.last_info = {k: float(v.detach()) for k, v in terms.items()}
        if "diffusion" in terms:  # the SDS surrogate's value says nothing; its gradient does
            self.last_info["diffusion"] = self.sds.last_info["grad_norm"]
        return loss, self.last_info


__all__ = ["FaceGoal", "FaceModels", "FaceObjective"]
