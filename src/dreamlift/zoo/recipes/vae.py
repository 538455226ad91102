"""Recipe ``toy-sd/vae``: the autoencoder of toy-sd (64×64×3 ↔ 16×16×4), an ``AutoencoderKL``.

Loss: L1 + L2 on the reconstruction + a tiny KL (1e-6), the form that reached 28.5 dB in
7 minutes in a feasibility run made before this project; colour is the fragile part on a CPU,
so the evaluation reports a colour error next to PSNR. At export the latent
``scaling_factor`` is set to 1/std of the posterior means of a held-out batch, so the UNet
sees unit-variance latents.

Time: measured 1.06 s/step at batch 32 on 1 thread (CPU shared with another job); 2 threads
are ~1.6× faster (feasibility run: 0.43 s/step). The fast 1,500 steps take ≈ 27 min at
1 thread, ≈ 15 min at 2, plus ≈ 4.5 min once to render the 16k-image cache (16 ms/render,
shared with toy-sd and toy-clip). ``--steps`` more resumes: PSNR was still rising at 1,000
steps in the feasibility run (28.5 dB); the bar is 30 dB.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from dreamlift.world import COLOURS
from dreamlift.world.captions import parse
from dreamlift.world.datasets import DatasetConfig
from dreamlift.zoo.data import CacheSpec, RenderCache
from dreamlift.zoo.heldout import eval_dataset, training_dataset
from dreamlift.zoo.recipes.common import (
    batch_indices,
    export_folder,
    images_to_model,
    renders,
    training_subset,
)
from dreamlift.zoo.tiny import TinySDConfig, tiny_vae
from dreamlift.zoo.trainer import TrainerConfig

if TYPE_CHECKING:
    from dreamlift.zoo.recipes.decoder import DecoderConfig


@dataclass(frozen=True)
class VAEConfig:
    """Sizes and data of the toy autoencoder.

    (16, 32, 64) channels: three levels give the factor-4 downsampling to 16×16 latents;
    (32, 64, 64) was ~2× slower per step for no measured gain in the feasibility run.
    """

    channels: tuple[int, ...] = (16, 32, 64)
    groups: int = 8
    latent_channels: int = 4
    kl_weight: float = 1e-6  # just enough to keep the posterior a distribution
    l2_weight: float = 1.0  # L1 sharpens edges, L2 fixes flat colour areas
    batch: int = 32
    renders: int = 16384
    eval_renders: int = 256
    dataset: DatasetConfig = field(default_factory=training_dataset)
    train: TrainerConfig = TrainerConfig(steps=1500, lr=1e-3, warmup=100, checkpoint_every=100)

    @classmethod
    def tiny(cls, steps: int = 2) -> VAEConfig:
        """Test sizes: seconds, not minutes."""
        return cls(
            channels=(8, 8, 8),
            groups=4,
            batch=4,
            renders=16,
            eval_renders=8,
            dataset=training_dataset(supersample=1),
            train=TrainerConfig.tiny(steps),
        )

    def sd_config(self) -> TinySDConfig:
        return TinySDConfig(
            sample_size=self.dataset.resolution // 2 ** (len(self.channels) - 1),
            vae_channels=self.channels,
            vae_groups=self.groups,
            latent_channels=self.latent_channels,
            scaling_factor=1.0,
        )


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR (dB) of images in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return -10.0 * torch.log10(mse)


def mean_object_colour(images: Tensor, mask: Tensor) -> Tensor:
    """(B,3) mask-weighted mean colour of (B,3,H,W) images; mask (B,1,H,W) in [0, 1]."""
    w = mask.clamp(0, 1)
    area = w.flatten(1).sum(1).clamp(min=1.0)
    return (images * w).flatten(2).sum(2) / area[:, None]


def colour_error(recon: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per-image L1 distance of the mean object colour (in [0, 1] units)."""
    return (mean_object_colour(recon, mask) - mean_object_colour(target, mask)).abs().mean(1)


def colour_shift_by_colour(
    recon: Tensor, target: Tensor, mask: Tensor, captions: list[str]
) -> dict[str, float]:
    """RGB (L2) distance between the reconstructed and the true mean object colour, averaged
    over the single-object images of each world colour.

    The all-image mean colour error hides a systematic drift of one hue: a VAE that turns
    every purple lavender (+0.11 green) still averages 0.03 over twelve colours, yet
    distillation through it moves a purple object toward grey. Colours with no single-object
    image are left out. A one-object ground scene's caption reads like a single object's; its
    mask then holds the ground too, which the VAE reproduces well, so such an image only
    dilutes its colour's shift a little.
    """
    shifts = (mean_object_colour(recon, mask) - mean_object_colour(target, mask)).norm(dim=1)
    by_colour: dict[str, list[float]] = {}
    for shift, text in zip(shifts.tolist(), captions, strict=True):
        objects = parse(text).objects
        if len(objects) == 1:
            by_colour.setdefault(objects[0].colour, []).append(shift)
    return {c: sum(v) / len(v) for c in COLOURS if (v := by_colour.get(c))}


class AutoencoderStage:
    """What toy-sd's two autoencoder stages share: the VAE's render cache (one for training,
    one held out), the autoencoder as the one trained module, the reconstruction terms and
    the evaluation of the exported ``<folder>/vae``. A stage sets ``self.vae`` and its loss.
    """

    model = "toy-sd"
    vae: nn.Module

    def __init__(
        self, config: VAEConfig | DecoderConfig, folder: Path, data_root: Path, quiet: bool
    ) -> None:
        self.config = config
        self.train = config.train
        self.folder = Path(folder)
        self.data_root = Path(data_root)
        self.quiet = quiet
        self.cache: RenderCache | None = None
        self.pool: Tensor | None = None

    def prepare(self) -> None:
        """Render (or load) the training cache."""
        spec = CacheSpec(self.config.dataset, self.config.renders)
        self.cache = renders(spec, self.data_root, self.quiet)
        self.pool = training_subset(self.cache)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def batch(self, gen: torch.Generator) -> Tensor:
        """Indices of one training batch (``gen`` decides)."""
        assert self.cache is not None and self.pool is not None, "call prepare() first"
        return batch_indices(self.pool, self.config.batch, gen)

    def reconstruction(self, y: Tensor, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """L1 + l2_weight · L2 of a reconstruction, with both terms for the log."""
        l1 = (y - x).abs().mean()
        l2 = ((y - x) ** 2).mean()
        logs = {"l1": float(l1.detach()), "l2": float(l2.detach())}
        return l1 + self.config.l2_weight * l2, logs

    def _eval_cache(self, kinds: dict[str, float] | None = None) -> RenderCache:
        """Held-out renders of the zoo's standard mix (``kinds`` to change it): whatever mix a
        stage trains on, its figures stay comparable with the other stages'."""
        kinds = kinds if kinds is not None else DatasetConfig().kinds
        held = eval_dataset(replace(self.config.dataset, kinds=kinds))
        return renders(CacheSpec(held, self.config.eval_renders), self.data_root, self.quiet)

    def evaluate(self) -> dict[str, float]:
        """Held-out PSNR (bar: ≥ 30 dB) and colour errors of the exported autoencoder, and its
        PSNR on held-out ground scenes alone (``scenes_*``: what ``handles`` edits)."""
        return evaluate_autoencoder(
            self.folder / "vae", self._eval_cache(), scenes=self._eval_cache({"scene": 1.0})
        )


class VAERecipe(AutoencoderStage):
    """Stage ``vae`` of toy-sd: trains the autoencoder, exports ``<folder>/vae``."""

    stage = "vae"
    kind = "zoo/toy-sd/vae"

    def __init__(self, config: VAEConfig, folder: Path, data_root: Path, quiet: bool = False):
        super().__init__(config, folder, data_root, quiet)
        self.vae = tiny_vae(config.sd_config())

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        assert self.cache is not None
        x = images_to_model(self.cache.image[self.batch(gen)])
        post = self.vae.encode(x).latent_dist
        y = self.vae.decode(post.sample(generator=gen)).sample
        recon, logs = self.reconstruction(y, x)
        kl = post.kl().mean()
        return recon + self.config.kl_weight * kl, {**logs, "kl": float(kl.detach())}

    @torch.no_grad()
    def export(self, modules: dict[str, nn.Module]) -> Path:
        """Write the EMA autoencoder to ``<folder>/vae`` with its latent scaling factor."""
        vae = modules["vae"].eval()
        held = self._eval_cache()
        means = torch.cat(
            [
                vae.encode(images_to_model(held.image[i : i + 64])).latent_dist.mean
                for i in range(0, len(held), 64)
            ]
        )
        vae.register_to_config(scaling_factor=float(1.0 / means.std().clamp(min=1e-6)))
        return export_folder(
            self.folder / "vae", lambda tmp: vae.save_pretrained(tmp, safe_serialization=True)
        )


@torch.no_grad()
def round_trip(vae: nn.Module, images: Tensor, batch: int = 64) -> Tensor:
    """Images (N, 3, H, W) in [0, 1] encoded to the latent mean and decoded back, clamped to
    [0, 1]; ``batch`` images at a time."""
    out = []
    for i in range(0, len(images), batch):
        z = vae.encode(images[i : i + batch] * 2 - 1).latent_dist.mean
        out.append((vae.decode(z).sample / 2 + 0.5).clamp(0, 1))
    return torch.cat(out)


@torch.no_grad()
def evaluate_autoencoder(
    vae_folder: Path, held: RenderCache, scenes: RenderCache | None = None
) -> dict[str, float]:
    """PSNR, mean colour error and the worst colour's shift of a saved autoencoder on ``held``;
    with ``scenes``, its PSNR on them too (``scenes_*``), from the same loaded model."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_folder, local_files_only=True).eval()
    target, mask = held.image.float() / 255.0, held.mask.float() / 255.0
    recon = round_trip(vae, target)
    p, c = psnr(recon, target), colour_error(recon, target, mask)
    shifts = colour_shift_by_colour(recon, target, mask, held.captions)
    figures = {
        "psnr_db": round(float(p.mean()), 2),
        "psnr_db_p10": round(float(p.quantile(0.1)), 2),
        "colour_error": round(float(c.mean()), 4),
        "colour_shift_worst": round(max(shifts.values(), default=0.0), 4),
        "scaling_factor": round(float(vae.config.scaling_factor), 4),
    }
    if scenes is not None:
        scene_images = scenes.image.float() / 255.0
        ps = psnr(round_trip(vae, scene_images), scene_images)
        figures["scenes_psnr_db"] = round(float(ps.mean()), 2)
        figures["scenes_psnr_db_p10"] = round(float(ps.quantile(0.1)), 2)
    return figures
