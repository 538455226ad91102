"""Recipes ``toy-sd/unet`` and ``toy-sd-depth/unet``: text encoder + UNet on cached latents.

The training renders are encoded ONCE with toy-sd's trained VAE into a latent cache (posterior
means, 16×16×4 — a few MB), so a step costs only the text encoder and the UNet. The recipe
is Stable Diffusion's noise setup with the settings a feasibility run made before this
project measured: DDPM 1000 steps, SD's scaled-linear betas 0.00085–0.012, ε-prediction,
10 % caption dropout for classifier-free guidance (Ho & Salimans, arXiv 2207.12598; the empty
caption is the unconditional branch, tokenised exactly as the stock pipeline tokenises a
negative prompt ""), AdamW 1e-3 with 200 warm-up steps, EMA 0.999, gradient clipping 1.
Attention runs only at 8×8 and 4×4: self-attention at 16×16 made each step 3–5× slower for
nothing measurable.

``toy-sd-depth`` is the same with SD2-depth's fifth input channel: disparity (1/z, 0 on the
background — what DPT/MiDaS estimators output, near is large) prepared exactly as
:func:`dreamlift.priors.depth.prepare_depth` (and the stock pipeline) prepares it. It is
trained on ground scenes and single objects, and reuses toy-sd's VAE, tokenizer and text
encoder (frozen), so the two models share a prompt space. Its ``refine`` stage
(:class:`SDRefineRecipe`) trains the exported depth UNet on with the rate annealed.

Time: measured 0.33 s/step at batch 32 on 1 thread (text encoder + UNet, CPU shared; the
depth UNet the same); 2 threads ≈ 0.2 s. toy-sd's 8,000 fast steps ≈ 44 min at 1 thread,
≈ 27 min at 2; toy-sd-depth's 7,000 ≈ 38 min at 1 thread, ≈ 24 min at 2, plus ≈ 5 min
rendering its own cache. Encoding a latent cache takes ~2 min once, evaluation ~30 s.
(The feasibility run had 30/30 samples right after 3,668 such steps.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dreamlift.errors import ModelError
from dreamlift.priors.depth import prepare_depth
from dreamlift.world.captions import parse
from dreamlift.world.datasets import DatasetConfig
from dreamlift.zoo.data import CacheSpec, RenderCache
from dreamlift.zoo.heldout import HELDOUT_PAIRS, eval_dataset, training_dataset
from dreamlift.zoo.recipes.common import (
    batch_indices,
    export_folder,
    load_exported_unet,
    renders,
    training_subset,
)
from dreamlift.zoo.tiny import SD_BETA_END, SD_BETA_START, TinySDConfig, sd_ddim_scheduler
from dreamlift.zoo.tokenizer import caption_words, reuse_or_build_tokenizer
from dreamlift.zoo.trainer import TrainerConfig

DEPTH_KINDS = {"single": 0.5, "scene": 0.5}


@dataclass(frozen=True)
class SDConfig:
    """Sizes, data and sampling settings of toy-sd (``depth=False``) or toy-sd-depth."""

    depth: bool = False
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_groups: int = 8
    attention_head_dim: int = 8
    # Text encoder (toy-sd only; toy-sd-depth loads toy-sd's, frozen). One pre-LN layer of
    # width 128 is enough for a 28-word grammar; the width is the UNet's cross-attention size.
    text_width: int = 128
    text_layers: int = 1
    text_heads: int = 4
    max_length: int = 20  # longest caption: 17 tokens with BOS/EOS
    caption_dropout: float = 0.1
    camera_dropout: float = 0.1  # toy-sd-camera's: a zero offset is "camera unknown"
    batch: int = 32
    renders: int = 16384
    dataset: DatasetConfig = field(default_factory=training_dataset)
    # Evaluation: samples judged by toy-clip (DDIM 50, CFG 6: the feasibility run's best setting).
    eval_samples: int = 72
    eval_steps: int = 50
    eval_guidance: float = 6.0
    train: TrainerConfig = TrainerConfig(steps=8000, lr=1e-3, warmup=200, checkpoint_every=250)

    @classmethod
    def fast(cls, depth: bool = False) -> SDConfig:
        if not depth:
            return cls()
        return cls(
            depth=True,
            renders=16384,
            dataset=training_dataset(kinds=DEPTH_KINDS),
            train=replace(cls.train, steps=7000),
        )

    @classmethod
    def depth_refined(cls, steps: int = 4_000) -> SDConfig:
        """toy-sd-depth's ``refine`` stage: ``steps`` more from the ``unet`` stage's export on
        the same renders, a fresh optimiser warmed up over 100 steps, the rate cosine-annealed
        from 5e-4 to 5 % (SGDR's schedule, arXiv:1608.03983), another batch seed. The shipped
        ``unet`` stage ran 4,000 steps (the recipe allows 7,000) at a constant rate; annealing is
        what raised toy-eg3d's fit in its own refine stages (docs/benchmarks.md)."""
        train = TrainerConfig(
            steps=steps,
            lr=5e-4,
            warmup=100,
            checkpoint_every=250,
            seed=1,
            schedule="cosine",
            final_lr=0.05,
        )
        return replace(cls.fast(depth=True), train=train)

    @classmethod
    def camera(cls) -> SDConfig:
        """toy-sd-camera: a fine-tune of the trained toy-sd at a low rate, while the new
        camera embedding learns 10x faster (at the UNet's rate it stayed at chance)."""
        train = TrainerConfig(
            steps=3000, lr=2e-4, warmup=100, checkpoint_every=250, lr_scale=(("camera", 10.0),)
        )
        return cls(train=train)

    @classmethod
    def tiny(cls, depth: bool = False, steps: int = 2) -> SDConfig:
        return cls(
            depth=depth,
            unet_channels=(8, 8, 8),
            unet_groups=4,
            attention_head_dim=4,
            text_width=16,
            text_heads=2,
            batch=4,
            renders=16,
            eval_samples=4,
            eval_steps=2,
            dataset=training_dataset(
                supersample=1,
                kinds=DEPTH_KINDS if depth else {"single": 0.6, "on_top": 0.2, "scene": 0.2},
            ),
            train=TrainerConfig.tiny(steps),
        )


def toy_unet(cfg: SDConfig, sample_size: int, latent_channels: int, cross_dim: int) -> nn.Module:
    """SD's UNet with attention only at the two coarsest levels (8×8 and 4×4 for 16×16)."""
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels + (1 if cfg.depth else 0),
        out_channels=latent_channels,
        block_out_channels=cfg.unet_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        layers_per_block=1,
        norm_num_groups=cfg.unet_groups,
        attention_head_dim=cfg.attention_head_dim,
        cross_attention_dim=cross_dim,
    )


def disparity(depth: Tensor) -> Tensor:
    """z-depth (0 = background) → disparity 1/z (0 on the background), the depth models' output."""
    d = depth.float()
    return torch.where(d > 0, 1.0 / d.clamp(min=1e-6), torch.zeros_like(d))


def training_alphas_cumprod() -> Tensor:
    """abar_t of SD's scaled-linear schedule (1000 steps), the one every toy-sd trains with."""
    betas = torch.linspace(SD_BETA_START**0.5, SD_BETA_END**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class SDRecipe:
    """Stage ``unet`` of toy-sd or toy-sd-depth. ``folder`` is the model's package folder;
    ``base`` is toy-sd's (where the VAE and, for depth, the text encoder come from)."""

    stage = "unet"
    tokenizer_cache = "tokenizer"
    """Name of the tokenizer's folder under the data root (models of one vocabulary share it)."""

    def __init__(
        self,
        config: SDConfig,
        folder: Path,
        data_root: Path,
        base: Path | None = None,
        clip_folder: Path | None = None,
        quiet: bool = False,
    ) -> None:
        self.config = config
        self.train = config.train
        self.model = "toy-sd-depth" if config.depth else "toy-sd"
        self.kind = f"zoo/{self.model}/unet"
        self.folder = Path(folder)
        self.base = Path(base) if base is not None else self.folder
        self.clip_folder = clip_folder
        self.data_root = Path(data_root)
        self.quiet = quiet
        self._setup()
        self.latents: Tensor | None = None
        self.depth: Tensor | None = None
        self.tokens: Tensor | None = None
        self.pool: Tensor | None = None

    # ------------------------------------------------------------------ components
    def _setup(self) -> None:
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel, CLIPTokenizer

        from dreamlift.zoo.tiny import tiny_text_encoder

        cfg = self.config
        vae_dir = self.base / "vae"
        if not (vae_dir / "diffusion_pytorch_model.safetensors").exists():
            raise ModelError(
                f"toy-sd's VAE is missing ({vae_dir})", "train it first: dreamlift zoo train toy-sd"
            )
        self.vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True).eval()
        self.vae.requires_grad_(False)
        self.vae_digest = file_digest(vae_dir / "diffusion_pytorch_model.safetensors")
        if cfg.depth:
            text_dir = self.base / "text_encoder"
            if not (text_dir / "model.safetensors").exists():
                raise ModelError(
                    f"toy-sd's text encoder is missing ({text_dir})",
                    "train toy-sd first: dreamlift zoo train toy-sd",
                )
            self.tokenizer = CLIPTokenizer.from_pretrained(self.base / "tokenizer")
            self.text_encoder = CLIPTextModel.from_pretrained(text_dir).eval()
            self.text_encoder.requires_grad_(False)
        else:
            tok_dir = self.data_root / f"{self.tokenizer_cache}-{cfg.max_length}"
            self.tokenizer = reuse_or_build_tokenizer(self.vocabulary(), tok_dir, cfg.max_length)
            text_cfg = TinySDConfig(
                text_width=cfg.text_width,
                text_layers=cfg.text_layers,
                text_heads=cfg.text_heads,
                max_length=cfg.max_length,
            )
            self.text_encoder = tiny_text_encoder(text_cfg, len(self.tokenizer))
        levels = len(self.vae.config.block_out_channels)
        self.latent_size = cfg.dataset.resolution // 2 ** (levels - 1)
        self.unet = toy_unet(
            cfg,
            self.latent_size,
            self.vae.config.latent_channels,
            self.text_encoder.config.hidden_size,
        )
        self.alphas_cumprod = training_alphas_cumprod()

    def vocabulary(self) -> list[str]:
        """The words the tokenizer holds, one token each."""
        return caption_words()

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"unet": self.unet}
        if not self.config.depth:
            mods["text_encoder"] = self.text_encoder
        return mods

    def tokenize(self, captions: list[str]) -> Tensor:
        return self.tokenizer(
            captions,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    # ------------------------------------------------------------------ data
    def prepare(self) -> None:
        """Render the cache, encode it once into latents (and disparity), tokenise captions."""
        cfg = self.config
        spec = CacheSpec(cfg.dataset, cfg.renders)
        cache = renders(spec, self.data_root, self.quiet)
        key = hashlib.sha256((spec.to_json() + self.vae_digest).encode()).hexdigest()[:12]
        path = self.data_root / f"latents-{key}.safetensors"
        if not path.exists():
            save_file(self._encode(cache), str(path))
        stored = load_file(str(path))
        self.latents = stored["latents"] * float(self.vae.config.scaling_factor)
        self.depth = stored.get("depth")
        self.azimuth, self.elevation = cache.azimuth.float(), cache.elevation.float()
        self.pool = training_subset(cache)
        unique = sorted(set(cache.captions))
        ids = self.tokenize(unique)
        where = {c: i for i, c in enumerate(unique)}
        self.tokens = ids[torch.tensor([where[c] for c in cache.captions])]
        self.empty = self.tokenize([""])[0]

    @torch.no_grad()
    def _encode(self, cache: RenderCache) -> dict[str, Tensor]:
        from rich.progress import track

        chunks = range(0, len(cache), 128)
        out = [
            self.vae.encode(cache.image[i : i + 128].float() / 127.5 - 1).latent_dist.mean
            for i in track(chunks, description="encoding latents", disable=self.quiet)
        ]
        tensors = {"latents": torch.cat(out).contiguous()}
        if self.config.depth:
            size = (self.latent_size, self.latent_size)
            tensors["depth"] = prepare_depth(disparity(cache.depth), size).contiguous()
        return tensors

    # ------------------------------------------------------------------ training
    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        assert self.latents is not None and self.pool is not None and self.tokens is not None
        cfg = self.config
        idx = batch_indices(self.pool, cfg.batch, gen)
        x0 = self.latents[idx]
        ids = self.tokens[idx].clone()
        drop = torch.rand(cfg.batch, generator=gen) < cfg.caption_dropout
        ids[drop] = self.empty
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, len(self.alphas_cumprod), (cfg.batch,), generator=gen)
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        if cfg.depth:
            assert self.depth is not None
            noisy = torch.cat([noisy, self.depth[idx]], dim=1)
        states = self.text_states(ids, idx, gen)
        eps = self.unet(noisy, t, encoder_hidden_states=states).sample
        loss = F.mse_loss(eps, noise)
        return loss, {"dropped": float(drop.float().mean())}

    def text_states(self, ids: Tensor, idx: Tensor, gen: torch.Generator) -> Tensor:
        """The UNet's cross-attention states for a batch (toy-sd-camera adds its offset)."""
        if "text_encoder" in self.modules():
            return self.text_encoder(ids)[0]
        with torch.no_grad():
            return self.text_encoder(ids)[0]

    # ------------------------------------------------------------------ export / evaluate
    def pipeline(self, modules: dict[str, nn.Module]):
        """A stock diffusers pipeline of the given (EMA) modules."""
        from diffusers import StableDiffusionDepth2ImgPipeline, StableDiffusionPipeline

        parts = {
            "vae": self.vae,
            "text_encoder": modules.get("text_encoder", self.text_encoder).eval(),
            "tokenizer": self.tokenizer,
            "unet": modules["unet"].eval(),
            "scheduler": sd_ddim_scheduler(),
        }
        if self.config.depth:
            from dreamlift.zoo.tiny import tiny_depth_estimator

            state = torch.random.get_rng_state()
            torch.manual_seed(0)
            try:
                estimator, processor = tiny_depth_estimator(
                    TinySDConfig(
                        sample_size=self.latent_size,
                        vae_channels=tuple(self.vae.config.block_out_channels),
                    )
                )
            finally:
                torch.random.set_rng_state(state)
            return StableDiffusionDepth2ImgPipeline(
                **parts, depth_estimator=estimator, feature_extractor=processor
            )
        return StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )

    def export(self, modules: dict[str, nn.Module]) -> Path:
        """Write the complete diffusers folder (safetensors) into the package folder."""
        pipe = self.pipeline(modules)
        return export_folder(
            self.folder, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True)
        )

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Shape / colour agreement of samples judged by toy-clip (bar: ≥ 85 %).

        Prompts: the colour–shape pairs once each (held-out pairs first, reported apart) with
        a view word; for the depth model, the captions and disparity of held-out single-object
        renders. Without toy-clip weights, nothing is measured.
        """
        from dreamlift.zoo.recipes.clip import load_clip, zero_shot

        if self.clip_folder is None or not (self.clip_folder / "model.safetensors").exists():
            return {}
        model, clip_tok = load_clip(self.clip_folder)
        if self.config.depth:
            held_out = DepthEval(self, self.config.eval_samples)
            prompts = held_out.captions
            truth = [(o.colour, o.shape) for o in (parse(c).objects[0] for c in prompts)]
            images = self.sample(prompts, held_out.depth)
        else:
            prompts, truth = self._eval_prompts()
            images = self.sample(prompts)
        found = {a: zero_shot(model, clip_tok, images, a) for a in ("colour", "shape")}
        shape_ok = torch.tensor([f == t[1] for f, t in zip(found["shape"], truth, strict=True)])
        colour_ok = torch.tensor([f == t[0] for f, t in zip(found["colour"], truth, strict=True)])
        held = torch.tensor([t in HELDOUT_PAIRS for t in truth])
        both = shape_ok & colour_ok
        figures = {
            "shape_agreement": float(shape_ok.float().mean()),
            "colour_agreement": float(colour_ok.float().mean()),
            "shape_colour_agreement": float(both.float().mean()),
        }
        if held.any():
            figures["heldout_shape_colour_agreement"] = float(both[held].float().mean())
        return {k: round(v, 4) for k, v in figures.items()}

    def _eval_prompts(self) -> tuple[list[str], list[tuple[str, str]]]:
        from dreamlift.world.assets import COLOURS, Description, ObjectSpec
        from dreamlift.world.captions import caption
        from dreamlift.world.shapes import SHAPES

        gen = torch.Generator().manual_seed(1)
        pairs = [(c, s) for c in COLOURS for s in SHAPES]
        order = torch.randperm(len(pairs), generator=gen).tolist()
        held = [p for p in pairs if p in HELDOUT_PAIRS]
        rest = [pairs[i] for i in order if pairs[i] not in HELDOUT_PAIRS]
        chosen = (held + rest)[: self.config.eval_samples]
        views = ("front", "side", "back")
        prompts = [
            caption(Description((ObjectSpec(c, s),)), views[i % 3])
            for i, (c, s) in enumerate(chosen)
        ]
        return prompts, chosen

    def sample(self, prompts: list[str], depth: Tensor | None = None) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] from the exported folder (stock pipeline, DDIM, CFG)."""
        from diffusers import StableDiffusionDepth2ImgPipeline

        cfg = self.config
        if not cfg.depth:
            return sample_text_to_image(
                self.folder, prompts, cfg.eval_steps, cfg.eval_guidance, cfg.dataset.resolution
            )
        assert depth is not None
        pipe = StableDiffusionDepth2ImgPipeline.from_pretrained(self.folder, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        gen = torch.Generator().manual_seed(0)
        out = []
        for i in range(0, len(prompts), 64):
            chunk = prompts[i : i + 64]
            size = cfg.dataset.resolution
            images = pipe(
                chunk,
                image=torch.full((len(chunk), 3, size, size), 0.5),
                depth_map=depth[i : i + 64],
                strength=1.0,
                num_inference_steps=cfg.eval_steps,
                guidance_scale=cfg.eval_guidance,
                generator=gen,
                output_type="pt",
            ).images
            out.append(images.float().cpu())
        return torch.cat(out)


class SDRefineRecipe(SDRecipe):
    """Stage ``refine`` of toy-sd-depth: the ``unet`` stage's exported UNet trained on with an
    annealed rate (:meth:`SDConfig.depth_refined`), exported over it. Its data, evaluation and
    export are the ``unet`` stage's."""

    stage = "refine"

    def _setup(self) -> None:
        super()._setup()
        self.kind = f"zoo/{self.model}/refine"
        load_exported_unet(self.unet, self.folder, self.model)


@torch.no_grad()
def sample_text_to_image(
    folder: Path, prompts: list[str], steps: int, guidance: float, resolution: int
) -> Tensor:
    """Images (B, 3, H, W) in [0, 1] of a saved text-to-image folder (stock pipeline, DDIM,
    CFG, seed 0, 64 prompts a batch): how toy-sd's and toy-sd-heads' samples are judged."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        folder, safety_checker=None, requires_safety_checker=False, local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(0, len(prompts), 64):
        images = pipe(
            prompts[i : i + 64],
            num_inference_steps=steps,
            generator=gen,
            guidance_scale=guidance,
            output_type="pt",
            height=resolution,
            width=resolution,
        ).images
        out.append(images.float().cpu())
    return torch.cat(out)


class DepthEval:
    """Evaluation data of toy-sd-depth: single-object renders with their disparity maps."""

    def __init__(self, recipe: SDRecipe, count: int) -> None:
        spec = CacheSpec(eval_dataset(recipe.config.dataset, kinds={"single": 1.0}), count)
        cache = renders(spec, recipe.data_root, recipe.quiet)
        self.captions = cache.captions
        self.depth = disparity(cache.depth)[:, 0]
