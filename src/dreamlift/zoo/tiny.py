"""Tiny, randomly initialised diffusers pipelines of the real Stable Diffusion architectures.

They serve two purposes: tests exercise the exact loading and sampling code that real SD
1.x / 2.x / 2-depth weights go through (same classes, same folder layout, safetensors), and
the toy models of the zoo start from these architectures before training on the world.

A folder written by :func:`save_tiny_sd` loads with stock ``StableDiffusionPipeline`` (or
``StableDiffusionDepth2ImgPipeline`` when ``depth=True``) ``.from_pretrained(folder,
local_files_only=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dreamlift.zoo.tokenizer import build_tokenizer, caption_words

SD_BETA_START = 0.00085
SD_BETA_END = 0.012


@dataclass(frozen=True)
class TinySDConfig:
    """Sizes of a tiny SD pipeline. The block layout mirrors SD's, only narrower and shallower.

    ``sample_size`` is the UNet's latent size, as in diffusers' own configs; images are
    ``vae_scale_factor`` (2 ** (len(vae_channels) - 1)) times larger. ``unet_out_scale``
    shrinks the UNet's last convolution at initialisation: a random UNet's eps is far less
    smooth in the latents than a trained one's, and DDIM inversion only closes when eps is
    smooth, so tests of inversion use a small value.
    """

    sample_size: int = 32
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_groups: int = 8
    attention_head_dim: int = 8
    cross_attention_dim: int = 32
    vae_channels: tuple[int, ...] = (16, 32)
    vae_groups: int = 8
    latent_channels: int = 4
    scaling_factor: float = 0.18215
    text_width: int = 32
    text_layers: int = 2
    text_heads: int = 4
    max_length: int = 20
    depth_width: int = 16
    unet_out_scale: float = 1.0
    words: tuple[str, ...] = field(default_factory=lambda: tuple(caption_words()))

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def image_size(self) -> int:
        return self.sample_size * self.vae_scale_factor


def tiny_unet(cfg: TinySDConfig, *, depth: bool = False):
    """SD's UNet layout (cross-attention in all but the deepest down / first up block).

    With three blocks, ``up_blocks.1`` and ``up_blocks.2`` are the cross-attention decoder
    blocks, the ones Diffusion Handles reads features from. ``depth`` adds SD2-depth's
    fifth input channel.
    """
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    unet = UNet2DConditionModel(
        sample_size=cfg.sample_size,
        in_channels=cfg.latent_channels + (1 if depth else 0),
        out_channels=cfg.latent_channels,
        block_out_channels=cfg.unet_channels,
        down_block_types=down,
        up_block_types=up,
        layers_per_block=1,
        norm_num_groups=cfg.unet_groups,
        attention_head_dim=cfg.attention_head_dim,
        cross_attention_dim=cfg.cross_attention_dim,
    )
    if cfg.unet_out_scale != 1.0:
        with torch.no_grad():
            unet.conv_out.weight.mul_(cfg.unet_out_scale)
            unet.conv_out.bias.mul_(cfg.unet_out_scale)
    return unet


def tiny_vae(cfg: TinySDConfig):
    """An ``AutoencoderKL`` with SD's structure and ``len(vae_channels)`` resolution levels."""
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.vae_groups,
        sample_size=cfg.image_size,
        scaling_factor=cfg.scaling_factor,
    )


def clip_text_config(
    vocab_size: int, width: int, layers: int, heads: int, max_length: int, projection: int
):
    """A ``CLIPTextConfig`` over the zoo's tokenizer: special-token ids follow
    :func:`build_tokenizer` (BOS 0, EOS and padding 1), the MLP is 4× the width."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_length,
        projection_dim=projection,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def tiny_text_encoder(cfg: TinySDConfig, vocab_size: int):
    """A ``CLIPTextModel`` over the zoo's tokenizer (:func:`clip_text_config`)."""
    from transformers import CLIPTextModel

    text = clip_text_config(
        vocab_size, cfg.text_width, cfg.text_layers, cfg.text_heads, cfg.max_length, cfg.text_width
    )
    return CLIPTextModel(text)


def sd_ddim_scheduler(prediction_type: str = "epsilon", num_train_timesteps: int = 1000):
    """The DDIM scheduler SD 2.x ships: scaled-linear betas, no clipping, no alpha-one end."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=SD_BETA_START,
        beta_end=SD_BETA_END,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )


def tiny_depth_estimator(cfg: TinySDConfig):
    """A ViT-backed ``DPTForDepthEstimation`` and the image processor that needs no torchvision."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessorPil

    w = cfg.depth_width
    model = DPTForDepthEstimation(
        DPTConfig(
            hidden_size=w,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=2 * w,
            image_size=cfg.image_size,
            patch_size=8,
            is_hybrid=False,
            backbone_out_indices=[0, 1, 2, 3],
            neck_hidden_sizes=[w // 2] * 4,
            fusion_hidden_size=w // 2,
            reassemble_factors=[4, 2, 1, 0.5],
        )
    )
    size = {"height": cfg.image_size, "width": cfg.image_size}
    return model, DPTImageProcessorPil(size=size)


def save_tiny_sd(
    folder: Path,
    *,
    depth: bool = False,
    prediction_type: str = "epsilon",
    sample_size: int = 32,
    seed: int = 0,
    config: TinySDConfig | None = None,
    words: Sequence[str] | None = None,
) -> Path:
    """Write a complete tiny SD (or SD2-depth with ``depth=True``) pipeline into ``folder``.

    ``sample_size`` overrides ``config.sample_size``; ``words`` the tokenizer vocabulary
    (default: the world's caption words and punctuation). All weights are safetensors.
    """
    from diffusers import StableDiffusionDepth2ImgPipeline, StableDiffusionPipeline

    base = config or TinySDConfig()
    cfg = TinySDConfig(
        **{**base.__dict__, "sample_size": sample_size, "words": tuple(words or base.words)}
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(cfg.words, folder / "tokenizer", cfg.max_length)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        parts = {
            "vae": tiny_vae(cfg),
            "text_encoder": tiny_text_encoder(cfg, len(tokenizer)),
            "tokenizer": tokenizer,
            "unet": tiny_unet(cfg, depth=depth),
            "scheduler": sd_ddim_scheduler(prediction_type),
        }
        if depth:
            estimator, processor = tiny_depth_estimator(cfg)
            pipe = StableDiffusionDepth2ImgPipeline(
                **parts, depth_estimator=estimator, feature_extractor=processor
            )
        else:
            pipe = StableDiffusionPipeline(
                **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
    finally:
        torch.random.set_rng_state(gen_state)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
