"""A multi-view diffusion prior: MVDream's design (Shi et al., arXiv 2308.16512, Sec. 3.1).

The V views of a group (V = 4) are denoised together by one UNet:

* **3D self-attention.** Every self-attention layer (diffusers' ``attn1``) attends over the
  tokens of all V views of its group at once; cross-attention to the text stays per view.
  MVDream reshapes ``(b·V, L, C) → (b, V·L, C)`` around ``attn1`` (its
  ``BasicTransformerBlock3D``); :class:`MultiViewAttnProcessor` does the same inside a
  stock diffusers ``Attention``, so the weights keep diffusers' (and SD's) names.
* **Camera embedding.** Each view's camera — its cam2world matrix in OpenGL axes with the
  translation scaled onto the unit sphere, flattened row by row (16 values; MVDream's
  ``normalize_camera``) — goes through a 2-layer MLP whose output is added to the timestep
  embedding. A stock ``UNet2DConditionModel`` with ``class_embed_type="projection"`` and
  ``projection_class_embeddings_input_dim=16`` is exactly that: ``linear_1 (16 → 4C)``,
  SiLU, ``linear_2 (4C → 4C)``, added to the time embedding (MVDream's ``camera_embed``
  is ``Linear``, ``SiLU``, ``Linear`` of the same shapes, also added to ``emb``).

:class:`MultiViewPrior` is a :class:`~dreamlift.priors.DiffusionPrior` over such a UNet:
every UNet call made inside ``with prior.views(azimuths, elevations):`` is told those
cameras (tiled over the batch, so both CFG branches get them), and its batch is split into
groups of V consecutive views. A folder is multi-view when it holds ``multiview.json``
(the zoo's toy-mvdream) or MVDream's official checkpoint
(:mod:`dreamlift.priors.mvdream_checkpoint`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from dreamlift.cameras import opencv_to_opengl, orbit_cameras
from dreamlift.errors import ModelError
from dreamlift.priors.prior import DiffusionPrior

MULTIVIEW_FILE = "multiview.json"
NUM_VIEWS = 4
CAMERA_DIM = 16


# ---------------------------------------------------------------------- cameras
def mvdream_camera(c2w: Tensor) -> Tensor:
    """(B, 4, 4) OpenCV cam2world (this package's convention) → (B, 16) MVDream camera codes.

    MVDream's convention (its ``camera_utils.py``, and MVDream-threestudio's
    ``get_camera_cond``): the cam2world in OpenGL camera axes (x right, y up, looking along
    −z) in a z-up world, its translation normalised to unit length, flattened row-major.
    """
    gl = opencv_to_opengl(c2w.float()).clone()
    centre = gl[:, :3, 3]
    gl[:, :3, 3] = centre / (centre.norm(dim=-1, keepdim=True) + 1e-8)
    return gl.reshape(-1, 16)


def camera_codes(azimuth_deg: Tensor, elevation_deg: Tensor) -> Tensor:
    """(B,) orbit angles in degrees (``dreamlift.cameras`` convention) → (B, 16) codes.

    The code depends only on the camera's direction: orbit radius and field of view drop
    out in the normalisation."""
    az = torch.as_tensor(azimuth_deg, dtype=torch.float32).reshape(-1).cpu()
    el = torch.as_tensor(elevation_deg, dtype=torch.float32).reshape(-1).cpu()
    return mvdream_camera(orbit_cameras(az, el.expand_as(az), 1.0, 40.0, 8).c2w)


def group_azimuths(start_deg: Tensor, num_views: int = NUM_VIEWS) -> Tensor:
    """(G,) start azimuths → (G·V,) azimuths, each group V views evenly spaced (90° for 4)."""
    offsets = torch.arange(num_views, dtype=torch.float32) * (360.0 / num_views)
    return (start_deg.reshape(-1, 1).float() + offsets).reshape(-1)


# ---------------------------------------------------------------------- attention
class MultiViewAttnProcessor:
    """Self-attention over the tokens of all views of a group (MVDream's 3D self-attention).

    Cross-attention calls (``encoder_hidden_states`` given) run per view, as in MVDream.
    """

    def __init__(self, num_views: int = NUM_VIEWS) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.num_views = num_views
        self.inner = AttnProcessor2_0()

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        **kwargs: object,
    ) -> Tensor:
        if encoder_hidden_states is not None or hidden_states.ndim != 3:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        bv, length, channels = hidden_states.shape
        v = self.num_views
        if bv % v:
            raise ModelError(f"a multi-view UNet got {bv} views, not groups of {v}")
        grouped = hidden_states.reshape(bv // v, v * length, channels)
        out = self.inner(attn, grouped, None, attention_mask, temb)
        return out.reshape(bv, length, channels)


def install_multiview_attention(unet: nn.Module, num_views: int = NUM_VIEWS) -> nn.Module:
    """Make every ``attn1`` of a diffusers UNet span the ``num_views`` views of a group."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    processors = {
        name: MultiViewAttnProcessor(num_views)
        if name.endswith("attn1.processor")
        else AttnProcessor2_0()
        for name in unet.attn_processors
    }
    unet.set_attn_processor(processors)
    return unet


def add_camera_embedding(unet: nn.Module, camera_dim: int = CAMERA_DIM) -> nn.Module:
    """A copy of a text-to-image UNet with MVDream's camera MLP (``class_embed_type=
    "projection"``), its weights carried over; the MLP's last layer starts at zero, so the
    new UNet starts as the old one apart from the attention that now spans the views."""
    from diffusers import UNet2DConditionModel

    new = UNet2DConditionModel.from_config(
        unet.config, class_embed_type="projection", projection_class_embeddings_input_dim=camera_dim
    )
    missing, unexpected = new.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(not k.startswith("class_embedding.") for k in missing):
        raise ModelError(f"UNet weights do not carry over: {missing[:3]} {unexpected[:3]}")
    nn.init.zeros_(new.class_embedding.linear_2.weight)
    nn.init.zeros_(new.class_embedding.linear_2.bias)
    return new


# ---------------------------------------------------------------------- folder settings
@dataclass(frozen=True)
class MultiViewSettings:
    """``multiview.json``: how a folder's UNet is run as a multi-view model."""

    num_views: int = NUM_VIEWS
    checkpoint: str | None = None
    """MVDream's official UNet checkpoint, relative to the folder (None: the diffusers UNet
    in ``unet/``, or the official file name when present)."""
    head_channels: int = 64
    """Channels per attention head of an official checkpoint (``num_head_channels`` in
    MVDream's ``sd-v2-base.yaml``); the checkpoint's shapes do not give it."""
    sample_size: int = 32
    """Latent size of an official checkpoint: MVDream trains at 256 px (32² latents)."""

    def save(self, folder: Path) -> None:
        (Path(folder) / MULTIVIEW_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def read_settings(folder: Path) -> MultiViewSettings:
    """The folder's ``multiview.json`` (defaults when it has none); a malformed one is a
    one-line ModelError."""
    path = Path(folder) / MULTIVIEW_FILE
    if not path.is_file():
        return MultiViewSettings()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable {path}: {exc}") from None
    names = {f.name for f in fields(MultiViewSettings)}
    if not isinstance(data, dict) or not set(data) <= names:
        raise ModelError(f"malformed {path}", f"known keys: {', '.join(sorted(names))}")
    settings = MultiViewSettings(**data)
    ints = (settings.num_views, settings.head_channels, settings.sample_size)
    if not all(type(v) is int and v > 0 for v in ints):
        raise ModelError(f"malformed {path}: num_views, head_channels, sample_size must be > 0")
    return settings


def is_multiview_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a multi-view prior (toy-mvdream or an MVDream checkpoint)."""
    from dreamlift.priors.mvdream_checkpoint import find_checkpoint

    folder = Path(folder)
    return folder.is_dir() and (
        (folder / MULTIVIEW_FILE).is_file() or find_checkpoint(folder) is not None
    )


# ---------------------------------------------------------------------- the prior
class MultiViewPrior(DiffusionPrior):
    """A :class:`DiffusionPrior` whose UNet denoises groups of views told their cameras."""

    def __init__(self, parts, num_views: int = NUM_VIEWS) -> None:  # noqa: ANN001
        super().__init__(parts)
        cfg = self.unet.config
        if cfg.class_embed_type != "projection" or not cfg.projection_class_embeddings_input_dim:
            raise ModelError(
                f"the UNet in {self.folder} has no camera embedding",
                'a multi-view UNet needs class_embed_type "projection" (MVDream\'s camera_embed)',
            )
        self.num_views = num_views
        self.camera_dim = int(cfg.projection_class_embeddings_input_dim)
        self._camera: Tensor | None = None
        install_multiview_attention(self.unet, num_views)

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
    ) -> MultiViewPrior:
        """toy-mvdream's diffusers folder, or a folder with MVDream's official checkpoint
        beside SD 2.1's VAE, text encoder, tokenizer and scheduler (diffusers layout)."""
        from dreamlift.priors.loading import load_components, resolve_model
        from dreamlift.priors.mvdream_checkpoint import find_checkpoint, load_mvdream_unet

        folder = resolve_model(name_or_path)
        settings = read_settings(folder)
        checkpoint = find_checkpoint(folder, settings.checkpoint)
        unet = None
        if checkpoint is not None:
            unet = load_mvdream_unet(checkpoint, settings.head_channels, settings.sample_size)
        return cls(load_components(folder, device, dtype, unet=unet), settings.num_views)

    @contextmanager
    def views(self, azimuth_deg: Tensor, elevation_deg: Tensor | None = None) -> Iterator[None]:
        """Tell every UNet call inside the cameras of its views: (N,) angles in degrees, N a
        multiple of ``num_views``; a call's batch must be a multiple of N (CFG doubles it)."""
        azimuth = torch.as_tensor(azimuth_deg, dtype=torch.float32).reshape(-1)
        if elevation_deg is None:
            elevation_deg = torch.zeros_like(azimuth)
        with self.camera_codes(camera_codes(azimuth, elevation_deg)):
            yield

    @contextmanager
    def camera_codes(self, codes: Tensor) -> Iterator[None]:
        """As :meth:`views`, with ready (N, 16) camera codes (:func:`mvdream_camera`)."""
        if codes.ndim != 2 or codes.shape[1] != self.camera_dim:
            raise ModelError(
                f"camera codes must be (N, {self.camera_dim}), got {tuple(codes.shape)}"
            )
        if codes.shape[0] % self.num_views:
            raise ModelError(
                f"{codes.shape[0]} cameras do not make groups of {self.num_views} views",
                f"render views in groups of {self.num_views}",
            )
        previous, self._camera = self._camera, codes.to(self.device)
        try:
            yield
        finally:
            self._camera = previous

    def _eps(self, latents: Tensor, t: Tensor, states: Tensor, depth: Tensor | None) -> Tensor:
        if self._camera is None:
            raise ModelError(
                "a multi-view prior needs its views' cameras",
                "call it inside `with prior.views(azimuths, elevations):`",
            )
        b, n = latents.shape[0], self._camera.shape[0]
        if b % n:
            raise ModelError(f"a batch of {b} latents for {n} cameras")
        camera = self._camera.repeat(b // n, 1).to(self.dtype)
        out = self.unet_call(latents.to(self.dtype), t, states.to(self.dtype), camera)
        return self.schedule.eps_from_output(out, latents, t)
