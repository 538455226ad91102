"""Recipe ``toy-sd/decoder``: fine-tune toy-sd's VAE decoder with its encoder frozen.

Why: the first VAE (``toy-sd/vae``, 1,500 steps) reconstructs the world at 30.8 dB but drifts
saturated hues toward grey: purple objects came back lavender (+0.11 green), green ones lost
0.15–0.19 green. Every prior decodes through it, so a 3D object distilled toward a decoded
target inherits the drift (GE3D's image-space term turned a purple pyramid nearer grey than
purple). The decoder is the part at fault — the same latents decode to the right colour
after this fine-tune — and keeping the encoder frozen keeps every latent identical, so the
UNets trained on them (toy-sd, toy-sd-depth, toy-sd-camera) stay valid without retraining.

Loss: L1 + L2 on the reconstruction, plus the L1 error of each image's mean object colour
(the figure that drifted, optimised directly; its share was not ablated). Export writes
``toy-sd/vae`` and the same VAE into every sibling model that carries a copy of toy-sd's
whole VAE; a sibling with a decoder of its own (toy-sd-heads', fine-tuned on heads by
:mod:`~dreamlift.zoo.recipes.head_decoder`) or another encoder keeps its VAE.

Stage ``scene-decoder`` is the same fine-tune again on a scene-heavy mix
(:meth:`DecoderConfig.scenes`). Why: ``handles`` edits ground scenes (several objects on a
shaded ground plane), a tenth of the first stages' data; the decoder gave them
back at 28.3 dB (the handles benchmark's 40 scenes) against 33 dB on the object mix, and
every handles edit inherited the blur. A feasibility run, decoder alone on scenes alone,
rose 28.3 → 30.1 dB in 300 steps, so the frozen encoder's latents carry scenes and the
decoder was the part to train; half the mix stays objects so that their figures hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from dreamlift.errors import ModelError
from dreamlift.world.datasets import DatasetConfig
from dreamlift.zoo.heldout import training_dataset
from dreamlift.zoo.recipes.common import export_folder, images_to_model
from dreamlift.zoo.recipes.vae import AutoencoderStage, VAEConfig, colour_error
from dreamlift.zoo.trainer import TrainerConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"
FROZEN_PREFIXES = ("encoder.", "quant_conv.")
# The scene-decoder's mix: the default mix's objects scaled to half, scenes the other half.
SCENE_HEAVY_KINDS = (("single", 0.3), ("on_top", 0.1), ("next_to", 0.1), ("scene", 0.5))


@dataclass(frozen=True)
class DecoderConfig:
    """Data and loss of the decoder fine-tune; the data is the VAE's (one shared cache)."""

    colour_weight: float = 1.0
    l2_weight: float = 1.0
    batch: int = 32
    renders: int = VAEConfig().renders
    eval_renders: int = VAEConfig().eval_renders
    dataset: DatasetConfig = field(default_factory=training_dataset)
    # A fine-tune: about a third of the first training's rate, a short warm-up.
    train: TrainerConfig = TrainerConfig(steps=1500, lr=3e-4, warmup=50, checkpoint_every=100)

    @classmethod
    def scenes(cls) -> DecoderConfig:
        """Stage ``scene-decoder``: half ground scenes, half the object mix (module doc)."""
        return cls(
            dataset=training_dataset(kinds=dict(SCENE_HEAVY_KINDS)),
            train=TrainerConfig(steps=2000, lr=3e-4, warmup=50, checkpoint_every=100),
        )

    @classmethod
    def tiny(cls, steps: int = 2, scenes: bool = False) -> DecoderConfig:
        """Test sizes (seconds, not minutes), on the tiny VAE's data as the defaults are on
        the VAE's (in the scene-heavy mix with ``scenes``)."""
        vae = VAEConfig.tiny()
        kinds = dict(SCENE_HEAVY_KINDS) if scenes else vae.dataset.kinds
        return cls(
            batch=4,
            renders=vae.renders,
            eval_renders=vae.eval_renders,
            dataset=replace(vae.dataset, kinds=kinds),
            train=TrainerConfig.tiny(steps),
        )


def encoder_state(folder: Path) -> dict[str, Tensor]:
    """The frozen part (encoder and quant conv) of a saved VAE folder's weights."""
    path = Path(folder) / WEIGHTS
    if not path.exists():
        raise ModelError(
            f"no VAE weights in {folder}", "train it first: dreamlift zoo train toy-sd"
        )
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(FROZEN_PREFIXES)}


def same_weights(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def vae_state(folder: Path) -> dict[str, Tensor]:
    """Every weight of a saved VAE folder (empty when it has none)."""
    path = Path(folder) / WEIGHTS
    return load_file(str(path)) if path.exists() else {}


class DecoderRecipe(AutoencoderStage):
    """Stage ``decoder`` (or ``scene-decoder``) of toy-sd: ``folder`` is toy-sd's package
    folder, ``siblings`` the folders of the models that were given toy-sd's VAE (updated when
    they still carry a copy of its VAE). The fine-tune starts from the VAE exported in
    ``folder``."""

    def __init__(
        self,
        config: DecoderConfig,
        folder: Path,
        data_root: Path,
        siblings: tuple[Path, ...] = (),
        quiet: bool = False,
        stage: str = "decoder",
    ) -> None:
        from diffusers import AutoencoderKL

        super().__init__(config, folder, data_root, quiet)
        self.stage = stage
        self.kind = f"zoo/toy-sd/{stage}"
        self.siblings = tuple(Path(s) for s in siblings)
        vae_dir = self.folder / "vae"
        self.base_encoder = encoder_state(vae_dir)
        self.base_vae = vae_state(vae_dir)
        self.vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True)
        for name, param in self.vae.named_parameters():
            param.requires_grad_(not name.startswith(FROZEN_PREFIXES))

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        assert self.cache is not None
        idx = self.batch(gen)
        x = images_to_model(self.cache.image[idx])
        mask = self.cache.mask[idx].float() / 255.0
        with torch.no_grad():
            z = self.vae.encode(x).latent_dist.sample(generator=gen)
        y = self.vae.decode(z).sample
        recon, logs = self.reconstruction(y, x)
        colour = colour_error((y + 1) / 2, (x + 1) / 2, mask).mean()
        loss = recon + self.config.colour_weight * colour
        return loss, {**logs, "colour": float(colour.detach())}

    @torch.no_grad()
    def export(self, modules: dict[str, nn.Module]) -> Path:
        """Write the EMA autoencoder to ``toy-sd/vae`` and to every sibling carrying a copy of
        the VAE this stage started from.

        The scaling factor is kept: the encoder, and so the latents' spread, did not change.
        The encoder's weights are written back bit for bit (the EMA's blend of a frozen
        weight with itself may round). A sibling whose VAE differs in any weight (another
        encoder, or a decoder fine-tuned for its own domain) is left alone.
        """
        vae = modules["vae"].eval()
        vae.load_state_dict(self.base_encoder, strict=False)
        targets = [self.folder / "vae"]
        targets += [s / "vae" for s in self.siblings if self._carries_base_vae(s / "vae")]
        for dest in targets:
            export_folder(dest, lambda tmp: vae.save_pretrained(tmp, safe_serialization=True))
        return self.folder / "vae"

    def _carries_base_vae(self, vae_dir: Path) -> bool:
        state = vae_state(vae_dir)
        return bool(state) and same_weights(state, self.base_vae)
