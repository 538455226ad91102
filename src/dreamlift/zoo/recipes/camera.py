"""Recipe ``toy-sd-camera/unet``: toy-sd taught which camera it is seen from.

Why: toy-sd's view words span 90° each, so its "front view" of a cube is face-on and
corner-on alike, and score distillation then makes solids of revolution (a cube that looks
the same from every side; see docs/benchmarks.md). This recipe fine-tunes toy-sd's UNet
together with a new :class:`~dreamlift.priors.camera.CameraEmbedding` on toy-sd's latent
cache, now with each render's azimuth and elevation. toy-sd's VAE, tokenizer and text encoder
are reused frozen, so toy-sd, toy-sd-depth and toy-sd-camera share one prompt space, and
toy-sd itself, which the editing methods were measured with, stays as it is.

The camera is dropped for 10 % of the batch (a zero offset), so the stock pipeline, which
knows no camera, still samples captions; the embedding's last layer starts at zero, so step 0
is toy-sd. The embedding learns 10x faster than the UNet: at the UNet's rate it stayed at
chance. Without a checkpoint the recipe starts from toy-sd-camera's folder when it already
holds a camera embedding (it carries on), else from toy-sd.

Evaluation adds ``yaw_agreement``: cubes and pyramids of every colour are sampled through
:class:`~dreamlift.priors.DiffusionPrior` at azimuth 0 (face-on) and 45 (corner-on), and each
sample's silhouette is compared with the world's render at its own camera and at the camera
45° away. The fraction closer to its own camera is the figure (0.5 = camera ignored).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from dreamlift.errors import ModelError
from dreamlift.priors.camera import (
    CAMERA_FOLDER,
    CameraEmbedding,
    CameraEmbeddingConfig,
    has_camera,
)
from dreamlift.zoo.recipes.common import export_folder
from dreamlift.zoo.recipes.sd import SDConfig, SDRecipe, file_digest, training_alphas_cumprod

YAW_SHAPES = ("cube", "pyramid")
"""The world's shapes whose silhouette changes with yaw (period 90°)."""
YAW_PAIR = (0.0, 45.0)
YAW_ELEVATION = 15.0


class CameraRecipe(SDRecipe):
    """toy-sd-camera's one stage: UNet + camera embedding; ``base`` is toy-sd's folder."""

    def __init__(
        self,
        config: SDConfig,
        folder: Path,
        data_root: Path,
        base: Path,
        clip_folder: Path | None = None,
        quiet: bool = False,
    ) -> None:
        super().__init__(config, folder, data_root, base=base, clip_folder=clip_folder, quiet=quiet)
        self.model = "toy-sd-camera"
        self.kind = "zoo/toy-sd-camera/unet"

    def _setup(self) -> None:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        parts = ("vae", "unet", "text_encoder", "tokenizer")
        missing = [p for p in parts if not (self.base / p).is_dir()]
        if missing:
            raise ModelError(
                f"toy-sd's {', '.join(missing)} missing in {self.base}",
                "train toy-sd first: dreamlift zoo train toy-sd",
            )
        self.vae = AutoencoderKL.from_pretrained(self.base / "vae", local_files_only=True).eval()
        self.vae.requires_grad_(False)
        self.vae_digest = file_digest(self.base / "vae" / "diffusion_pytorch_model.safetensors")
        self.tokenizer = CLIPTokenizer.from_pretrained(self.base / "tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(self.base / "text_encoder").eval()
        self.text_encoder.requires_grad_(False)
        start = self.folder if has_camera(self.folder) else self.base
        self.unet = UNet2DConditionModel.from_pretrained(start / "unet", local_files_only=True)
        self.unet.train().requires_grad_(True)
        if start == self.folder:
            self.camera = CameraEmbedding.load(self.folder / CAMERA_FOLDER).requires_grad_(True)
        else:
            width = self.text_encoder.config.hidden_size
            self.camera = CameraEmbedding(CameraEmbeddingConfig(width=width))
        self.camera.train()
        levels = len(self.vae.config.block_out_channels)
        self.latent_size = self.config.dataset.resolution // 2 ** (levels - 1)
        self.alphas_cumprod = training_alphas_cumprod()

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "camera": self.camera}

    def text_states(self, ids: Tensor, idx: Tensor, gen: torch.Generator) -> Tensor:
        with torch.no_grad():
            states = self.text_encoder(ids)[0]
        offset = self.camera(self.azimuth[idx], self.elevation[idx])
        keep = torch.rand(len(idx), generator=gen) >= self.config.camera_dropout
        return states + offset * keep.view(-1, 1, 1).to(offset)

    def export(self, modules: dict[str, nn.Module]) -> Path:
        pipe = self.pipeline(modules)

        def write(tmp: Path) -> None:
            pipe.save_pretrained(tmp, safe_serialization=True)
            modules["camera"].save(tmp / CAMERA_FOLDER)

        return export_folder(self.folder, write)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """toy-sd's figures (stock pipeline: no camera) plus ``yaw_agreement``."""
        figures = super().evaluate()
        figures["yaw_agreement"] = round(yaw_agreement(self.folder, self.config), 4)
        return figures


def yaw_agreement(folder: Path, config: SDConfig, seed: int = 0) -> float:
    """Fraction of camera-told samples whose silhouette is nearer their own camera's truth."""
    from dreamlift.cameras import orbit_cameras
    from dreamlift.metrics.image import mask_iou
    from dreamlift.priors import DiffusionPrior
    from dreamlift.world.assets import COLOURS, Description, ObjectSpec, layout
    from dreamlift.world.captions import caption
    from dreamlift.world.render import render

    prior = DiffusionPrior.load(folder, device="cpu", dtype=torch.float32)
    objects = [ObjectSpec(c, s) for s in YAW_SHAPES for c in COLOURS]
    near, far = YAW_PAIR
    azimuth = torch.tensor([near, far] * len(objects))
    elevation = torch.full_like(azimuth, YAW_ELEVATION)
    prompts = [caption(Description((o,)), "front") for o in objects for _ in YAW_PAIR]
    text = prior.with_camera(prior.embed_text(prompts), azimuth, elevation)
    gen = torch.Generator().manual_seed(seed)
    noise = prior.initial_latents(len(prompts), gen)
    latents = prior.sample(text, config.eval_steps, config.eval_guidance, latents=noise)
    samples = prior.decode(latents).clamp(0, 1)
    sample_masks = ((1.0 - samples).abs().amax(dim=1) > 0.1).float()
    orbit = config.dataset.orbit
    size = samples.shape[-1]
    pair = torch.tensor(YAW_PAIR)
    cams = orbit_cameras(
        pair, torch.full_like(pair, YAW_ELEVATION), orbit.radius[0], orbit.fov[0], size
    )
    truth = torch.cat([render(layout(Description((o,))), cams)["alpha"][..., 0] for o in objects])
    swapped = truth.view(len(objects), 2, size, size).flip(1).reshape_as(truth)
    nearer = mask_iou(sample_masks, truth) > mask_iou(sample_masks, swapped)
    return float(nearer.float().mean())
