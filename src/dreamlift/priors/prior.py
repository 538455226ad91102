"""``DiffusionPrior``: the one interface guidance losses and methods use to ask a 2D model.

It wraps a latent text-to-image diffusion model (SD 1.x / 2.x / 2-depth or a zoo model in the
same diffusers layout) and exposes what the methods ask of it: VAE encode/decode, prompt
embeddings, epsilon with classifier-free guidance (Ho & Salimans, arXiv 2207.12598), the
noise schedule, DDIM steps and sampling (Song et al., arXiv 2010.02502), DDIM and null-text
inversion (Mokady et al., arXiv 2211.09794), depth conditioning, and feature capture /
energy guidance for Diffusion Handles (arXiv 2312.02190, Sec. 5).

Public tensors (latents, eps, images) are float32 on the prior's device; the models may run
in fp16, and each call casts its inputs. Model parameters are frozen: gradients flow to
inputs (latents, images, embeddings) only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dreamlift.errors import ModelError
from dreamlift.priors import guided, inversion
from dreamlift.priors.depth import prepare_depth
from dreamlift.priors.features import FeatureCapture
from dreamlift.priors.loading import PriorComponents, load_components, resolve_model
from dreamlift.priors.schedule import NoiseSchedule, Timestep
from dreamlift.priors.text import TextEmbeddings, encode_prompts, view_prompts
from dreamlift.priors.unet_call import UNetCall

StepCallback = Callable[[int, Tensor, Tensor], None]


@dataclass
class EpsParts:
    """The guided epsilon and the two branches it was combined from (float32)."""

    guided: Tensor
    cond: Tensor
    uncond: Tensor


class DiffusionPrior:
    """A frozen latent diffusion model with the operations 3D lifting methods need."""

    num_views: int = 1
    """Views denoised together (a multi-view prior's group size; 1: each image alone)."""

    def __init__(self, parts: PriorComponents) -> None:
        self.folder = parts.folder
        self.unet = parts.unet
        self.unet_call = UNetCall(self.unet, trace=torch.device(parts.device).type == "cpu")
        """Every UNet forward goes through this (traced without autograd on CPU; see
        :mod:`dreamlift.priors.unet_call`); time the UNet by hooks on it."""
        self.vae = parts.vae
        self.text_encoder = parts.text_encoder
        self.tokenizer = parts.tokenizer
        self.camera = parts.camera
        self.device = parts.device
        self.dtype = parts.dtype
        self.schedule = NoiseSchedule.from_scheduler_config(parts.scheduler_config, parts.device)
        unet_cfg = self.unet.config
        self.latent_channels = int(unet_cfg.out_channels)
        extra = int(unet_cfg.in_channels) - self.latent_channels
        if extra not in (0, 1):
            raise ModelError(
                f"unsupported UNet in {self.folder}: {unet_cfg.in_channels} input channels "
                f"for {self.latent_channels} latent channels"
            )
        self.depth_conditioned = extra == 1
        self.latent_size = int(unet_cfg.sample_size)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.shift_factor = float(getattr(self.vae.config, "shift_factor", None) or 0.0)
        self._prompt_cache: dict[str, Tensor] = {}

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
    ) -> DiffusionPrior:
        """Load a local diffusers folder or a zoo name, offline and from safetensors only.

        Depth conditioning is detected from the UNet (5 input channels), v-prediction from
        the scheduler config. ``device="auto"`` picks CUDA when present; ``dtype`` defaults to
        fp16 on CUDA and fp32 on CPU. A multi-view folder (``multiview.json`` or MVDream's
        checkpoint) loads as a :class:`~dreamlift.priors.multiview.MultiViewPrior`.
        """
        folder = resolve_model(name_or_path)
        if cls is DiffusionPrior:
            from dreamlift.priors.multiview import MultiViewPrior, is_multiview_folder

            if is_multiview_folder(folder):
                return MultiViewPrior.load(folder, device, dtype)
        return cls(load_components(folder, device, dtype))

    # ------------------------------------------------------------------ schedule
    @property
    def prediction_type(self) -> str:
        return self.schedule.prediction_type

    @property
    def alphas_cumprod(self) -> Tensor:
        """abar_t for t = 0 … T-1 (float32, on the prior's device)."""
        return self.schedule.alphas_cumprod

    @property
    def num_train_timesteps(self) -> int:
        return self.schedule.num_train_timesteps

    @property
    def image_size(self) -> int:
        """The training resolution in pixels (the UNet's latent size times the VAE factor)."""
        return self.latent_size * self.vae_scale_factor

    def timesteps(self, num_steps: int) -> Tensor:
        """The descending DDIM grid of ``DDIMScheduler.set_timesteps(num_steps)``."""
        return self.schedule.timesteps(num_steps)

    def previous_timestep(self, t: Timestep, num_steps: int) -> Timestep:
        """Where one DDIM step of an ``num_steps`` grid lands from ``t`` (may be negative)."""
        return self.schedule.previous_timestep(t, num_steps)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Timestep) -> Tensor:
        return self.schedule.add_noise(x0, noise, t)

    def predict_x0(self, latents: Tensor, t: Timestep, eps: Tensor) -> Tensor:
        return self.schedule.predict_x0(latents, t, eps)

    def ddim_step(self, latents: Tensor, t: Timestep, t_next: Timestep, eps: Tensor) -> Tensor:
        """Deterministic DDIM from ``t`` to ``t_next``; see :meth:`NoiseSchedule.ddim_step`."""
        return self.schedule.ddim_step(latents, t, t_next, eps)

    # ------------------------------------------------------------------ text
    def embed_prompts(self, prompts: Sequence[str]) -> Tensor:
        """(B, L, D) text-encoder states; each distinct prompt is encoded once and cached."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if todo:
            states = encode_prompts(self.tokenizer, self.text_encoder, todo)
            self._prompt_cache.update({p: s[None] for p, s in zip(todo, states, strict=True)})
        return torch.cat([self._prompt_cache[p] for p in prompts])

    def embed_text(
        self, prompts: str | Sequence[str], negative: str | Sequence[str] | None = None
    ) -> TextEmbeddings:
        """Both CFG branches: the prompts and the negative prompts (default the empty one)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if negative is None:
            negative = [""] * len(prompts)
        elif isinstance(negative, str):
            negative = [negative] * len(prompts)
        if len(negative) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(negative)} negative prompts")
        return TextEmbeddings(self.embed_prompts(prompts), self.embed_prompts(list(negative)))

    @property
    def camera_conditioned(self) -> bool:
        """Whether the folder carries a camera embedding (``priors.camera``), as toy-sd-camera."""
        return self.camera is not None

    def with_camera(
        self, text: TextEmbeddings, azimuth_deg: Tensor, elevation_deg: Tensor
    ) -> TextEmbeddings:
        """``text`` told the cameras it is seen from; unchanged for a prior without cameras."""
        if self.camera is None:
            return text
        with torch.no_grad():
            offset = self.camera(azimuth_deg.to(self.device), elevation_deg.to(self.device))
        return text.with_camera(offset.to(self.dtype))

    view_prompts = staticmethod(view_prompts)  # :func:`dreamlift.priors.text.view_prompts`

    # ------------------------------------------------------------------ VAE
    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) images in [0, 1] → scaled latents (posterior mean), differentiable."""
        x = (2.0 * images - 1.0).to(self.device, self.dtype)
        out = self.vae.encode(x)
        dist = getattr(out, "latent_dist", None)
        if dist is None and isinstance(out, tuple):
            dist = out[0]
        mean = dist.mean if hasattr(dist, "mean") else dist
        return (mean.float() - self.shift_factor) * self.scaling_factor

    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents → (B, 3, H, W) images in [0, 1], differentiable inside the range."""
        z = latents.float() / self.scaling_factor + self.shift_factor
        images = self.vae.decode(z.to(self.dtype)).sample.float()
        return (images / 2 + 0.5).clamp(0, 1)

    # ------------------------------------------------------------------ UNet
    def prepare_depth(self, depth: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Depth of any scale → (B, 1, h, w) in [-1, 1] at latent size (SD2-depth's input)."""
        return prepare_depth(depth.to(self.device), size or (self.latent_size, self.latent_size))

    def _timestep_batch(self, t: Timestep, batch: int) -> Tensor:
        t = torch.as_tensor(t, device=self.device).long().reshape(-1)
        return t.expand(batch) if t.numel() == 1 else t

    def _depth_channel(self, depth: Tensor | None, latents: Tensor) -> Tensor | None:
        if depth is None:
            if self.depth_conditioned:
                raise ModelError(f"the model in {self.folder} is depth-conditioned: pass depth")
            return None
        if not self.depth_conditioned:
            raise ModelError(f"the model in {self.folder} takes no depth conditioning")
        d = self.prepare_depth(depth, tuple(latents.shape[-2:]))
        if d.shape[0] == 1 and latents.shape[0] > 1:
            d = d.expand(latents.shape[0], -1, -1, -1)
        return d

    def unet_eps(
        self, latents: Tensor, t: Timestep, states: Tensor, depth: Tensor | None = None
    ) -> Tensor:
        """One UNet pass on one branch (``states`` (B or 1, L, D)) → epsilon, float32."""
        b = latents.shape[0]
        tt = self._timestep_batch(t, b)
        d = self._depth_channel(depth, latents)
        states = states.expand(b, -1, -1) if states.shape[0] == 1 else states
        return self._eps(latents, tt, states, d)

    def _eps(self, latents: Tensor, t: Tensor, states: Tensor, depth: Tensor | None) -> Tensor:
        x = latents if depth is None else torch.cat([latents, depth.to(latents)], dim=1)
        out = self.unet_call(x.to(self.dtype), t, states.to(self.dtype))
        return self.schedule.eps_from_output(out, latents, t)

    def predict_eps(
        self,
        latents: Tensor,
        t: Timestep,
        text: TextEmbeddings,
        guidance_scale: float = 7.5,
        depth: Tensor | None = None,
        return_parts: bool = False,
    ) -> Tensor | EpsParts:
        """eps_u + s (eps_c - eps_u), both branches in ONE batched UNet call.

        ``t`` is an int or a (B,) tensor; text of batch 1 broadcasts. v-prediction outputs are
        converted to eps. With ``guidance_scale == 1`` (and no ``return_parts``) only the
        conditional branch runs — the cond-only pass Diffusion Handles records features from.
        Gradients flow to ``latents`` (and embeddings) when the caller enables them.
        """
        b = latents.shape[0]
        tt = self._timestep_batch(t, b)
        text = text.expand(b)
        d = self._depth_channel(depth, latents)
        if guidance_scale == 1.0 and not return_parts:
            return self._eps(latents, tt, text.cond, d)
        both = self._eps(
            torch.cat([latents, latents]),
            torch.cat([tt, tt]),
            torch.cat([text.uncond, text.cond]),
            None if d is None else torch.cat([d, d]),
        )
        uncond, cond = both.chunk(2)
        guided_eps = uncond + guidance_scale * (cond - uncond)
        return EpsParts(guided_eps, cond, uncond) if return_parts else guided_eps

    # ------------------------------------------------------------------ sampling
    def initial_latents(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Standard normal latents (drawn on the generator's device, as diffusers does)."""
        h, w = size or (self.latent_size, self.latent_size)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn((batch, self.latent_channels, h, w), generator=generator, device=gen_device)
        return z.to(self.device)

    @torch.no_grad()
    def sample(
        self,
        text: TextEmbeddings,
        num_steps: int = 50,
        guidance_scale: float = 7.5,
        latents: Tensor | None = None,
        generator: torch.Generator | None = None,
        depth: Tensor | None = None,
        null_embeddings: Sequence[Tensor] | None = None,
        callback: StepCallback | None = None,
        start: int = 0,
    ) -> Tensor:
        """DDIM sampling (eta=0) from ``latents`` (default: fresh noise) to clean latents.

        ``null_embeddings`` (from :meth:`null_text_inversion`) replace the unconditional
        branch step by step; ``callback(i, t, latents)`` runs after each step. ``start``
        skips the grid's first steps: ``latents`` are then noised to ``timesteps(num_steps)
        [start]`` (SDEdit, arXiv:2108.01073: an image's latent noised part way, denoised).
        """
        z = self.initial_latents(len(text), generator) if latents is None else latents.float()
        ts = self.timesteps(num_steps)
        if null_embeddings is not None and len(null_embeddings) != len(ts):
            raise ValueError(f"{len(null_embeddings)} null embeddings for {len(ts)} steps")
        for i, t in enumerate(ts):
            if i < start:
                continue
            step_text = text if null_embeddings is None else text.with_uncond(null_embeddings[i])
            eps = self.predict_eps(z, t, step_text, guidance_scale, depth)
            z = self.ddim_step(z, t, self.previous_timestep(t, num_steps), eps)
            if callback is not None:
                callback(i, t, z)
        return z

    # DDIM and null-text inversion are functions of a prior (``priors/inversion.py``), bound
    # here as methods: ``prior.null_text_inversion(latents, text, …)``.
    ddim_invert = inversion.ddim_invert
    null_text_inversion = inversion.null_text_inversion

    # ------------------------------------------------------------------ features
    def capture(
        self, layers: Sequence[str], detach: bool = True, to_cpu: bool = False
    ) -> FeatureCapture:
        """Context manager recording the outputs of named UNet blocks for every UNet call."""
        return FeatureCapture(self.unet, layers, detach=detach, to_cpu=to_cpu)

    def features(
        self,
        latents: Tensor,
        t: Timestep,
        text: TextEmbeddings,
        layers: Sequence[str],
        depth: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Block outputs of one conditional-only pass; differentiable when grad is enabled."""
        with self.capture(layers, detach=not torch.is_grad_enabled()) as cap:
            self.predict_eps(latents, t, text, 1.0, depth)
        return cap.last

    def guided_step(
        self,
        latents: Tensor,
        t: Timestep,
        t_next: Timestep,
        text: TextEmbeddings,
        guidance_scale: float,
        energy_fn: guided.EnergyFn,
        layers: Sequence[str],
        weight: float = 0.1,
        depth: Tensor | None = None,
        opt_steps: int = 1,
        mode: str = "latent",
    ) -> guided.GuidedStep:
        """One DDIM step steered by an energy on UNet features; see :func:`guided.guided_step`."""
        config = guided.EnergyGuidance(weight=weight, opt_steps=opt_steps, mode=mode)
        return guided.guided_step(
            self, latents, t, t_next, text, guidance_scale, energy_fn, layers, config, depth
        )
