"""Recipe ``toy-sd-heads/decoder``: fine-tune the head prior's VAE decoder on head renders.

Why: toy-sd-heads learnt its UNet on the latents of toy-sd's VAE, which was trained on
objects and scenes and gives heads back at 21.5 dB: thin glasses fade and hair comes back
in another hue. On 48 heads of unseen captions, ``toy-parts`` read glasses on 56 % and the
right hair colour on 44 % of the VAE's round trips of the *true* renders (100 % and 94 % on
the renders themselves), so the prior's samples could not score above what its decoder lets
through (glasses 73 %, hair colour 72 % before this stage). The shipped stage (1,500
steps, 16 min at one thread beside another process) brought held-out heads' round trips
from 22.5 to 27.9 dB and the samples to glasses 87.5 %, beard 94 %, hair colour 75 %, hat
100 % (docs/benchmarks.md, "The head-caption prior"). An extra L1 term on 4×4-pooled colour,
tried for the hair, changed nothing measurable in a 600-step feasibility run (samples: hair
colour 75 % with and without it) and is not used.

The encoder stays frozen, so every latent the UNet was trained on, and the latents that
FaceDNeRF's ε-form SDS encodes, are unchanged bit for bit; only decoding (the samples,
SDEdit, x0-form guidance) changes. The fine-tune writes the prior's own ``vae`` folder and
no other model's: toy-sd's objects keep their decoder. Run it after the ``unet`` stage,
whose export writes toy-sd's VAE into the folder (the stage order does that).

Loss: L1 + L2 on the reconstruction of the UNet stage's captioned renders (one cache).
Figures: PSNR of round trips of held-out heads (seeds the zoo never trains on, natural
attributes) and the samples' attribute agreement, as the UNet stage measures it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dreamlift.world.head_datasets import HeadDataset, HeadDatasetConfig
from dreamlift.zoo.recipes.common import batch_indices, images_to_model
from dreamlift.zoo.recipes.decoder import DecoderRecipe
from dreamlift.zoo.recipes.head_prior import (
    HeadCaptionSpec,
    HeadPriorConfig,
    build_caption_cache,
    sample_agreement,
    unseen_heads,
)
from dreamlift.zoo.recipes.vae import psnr, round_trip
from dreamlift.zoo.trainer import TrainerConfig


@dataclass(frozen=True)
class HeadDecoderConfig:
    """Data, loss and evaluation of the head decoder fine-tune."""

    l2_weight: float = 1.0
    batch: int = 32
    data: HeadCaptionSpec = field(default_factory=HeadCaptionSpec)
    held_out_renders: int = 64
    # Sample judging exactly as the UNet stage does it, so the figures compare.
    eval_seed: int = HeadPriorConfig.eval_seed
    eval_samples: int = HeadPriorConfig.eval_samples
    eval_steps: int = HeadPriorConfig.eval_steps
    eval_guidance: float = HeadPriorConfig.eval_guidance
    # toy-sd's decoder fine-tune's rate and length (a fine-tune, a short warm-up).
    train: TrainerConfig = TrainerConfig(steps=1500, lr=3e-4, warmup=50, checkpoint_every=100)

    @classmethod
    def tiny(cls, steps: int = 2) -> HeadDecoderConfig:
        """Test sizes (seconds): a few renders, two sampling steps."""
        return cls(
            batch=4,
            data=HeadCaptionSpec(items=8, resolution=64, chunk=4, supersample=1),
            held_out_renders=2,
            eval_samples=2,
            eval_steps=2,
            train=TrainerConfig.tiny(steps),
        )


class HeadDecoderRecipe(DecoderRecipe):
    """Stage ``decoder`` of toy-sd-heads: ``folder`` is the prior's package folder."""

    model = "toy-sd-heads"

    def __init__(
        self, config: HeadDecoderConfig, folder: Path, data_root: Path, quiet: bool = False
    ) -> None:
        super().__init__(config, folder, data_root, siblings=(), quiet=quiet, stage="decoder")
        self.kind = "zoo/toy-sd-heads/decoder"
        self.images: Tensor | None = None

    def prepare(self) -> None:
        """The UNet stage's captioned renders (rendered once, shared)."""
        self.images = build_caption_cache(self.config.data, self.data_root, self.quiet)
        self.pool = torch.arange(len(self.images))

    def batch(self, gen: torch.Generator) -> Tensor:
        assert self.images is not None and self.pool is not None, "call prepare() first"
        return batch_indices(self.pool, self.config.batch, gen)

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        assert self.images is not None
        x = images_to_model(self.images[self.batch(gen)])
        with torch.no_grad():
            z = self.vae.encode(x).latent_dist.sample(generator=gen)
        return self.reconstruction(self.vae.decode(z).sample, x)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean round-trip PSNR of held-out heads, and the samples' attribute agreement."""
        from diffusers import AutoencoderKL

        cfg = self.config
        vae = AutoencoderKL.from_pretrained(self.folder / "vae", local_files_only=True).eval()
        held = held_out_heads(cfg.held_out_renders, cfg.data.resolution)
        figures = {"heads_psnr_db": round(float(psnr(round_trip(vae, held), held).mean()), 2)}
        heads = unseen_heads(cfg.eval_seed, cfg.eval_samples)
        agreement = sample_agreement(
            self.folder, heads, cfg.eval_steps, cfg.eval_guidance, cfg.data.resolution
        )
        return {**figures, **agreement}


def held_out_heads(count: int, resolution: int) -> Tensor:
    """``count`` renders (N, 3, H, W) in [0, 1] of held-out heads at random pose and light."""
    data = HeadDataset(HeadDatasetConfig(split="held_out", resolution=resolution), count)
    return torch.stack([data[i]["image"] for i in range(count)])


__all__ = ["HeadDecoderConfig", "HeadDecoderRecipe", "held_out_heads"]
