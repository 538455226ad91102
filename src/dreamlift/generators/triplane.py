"""``TriplaneGenerator``: EG3D's generator (arXiv:2112.07945, §4) at the size this CPU trains.

w (or W+, one w per synthesis layer) → a convolutional synthesis network whose layers are
modulated by their w (feature-wise scale and shift, StyleGAN's modulation in its simplest
form) → three axis-aligned feature planes → bilinear samples of the three planes at a point,
averaged (EG3D's aggregation) → a small MLP decoder → raw density and RGB → density
``density_scale · softplus(raw − 1)`` (EG3D's shifted softplus; the scale stands in for
EG3D's larger scene: our head fills a 0.9-unit cube, so a sample interval is ~60× shorter)
→ volume rendering with stratified then importance samples (EG3D's two passes).

The mapping network is affine: ``w = w_avg + L z`` with ``L`` the Cholesky factor of the
training latents' covariance. The generator is trained as a multi-view auto-decoder (one
learned w per training head, :mod:`dreamlift.zoo.recipes.eg3d`), so its latent distribution
is the one those latents form; an affine map from a unit Gaussian samples it exactly when it
is Gaussian, and truncation ``w_avg + ψ (w − w_avg)`` works as in StyleGAN. No image-space
super-resolution: the planes are rendered at the training resolution directly.

World conventions (see :mod:`dreamlift.cameras`): z up, the face looks along +x. The planes
are XY (seen from above), XZ (from the side) and YZ (from the front, where the face is).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamlift.cameras import Cameras
from dreamlift.fields.volume import composite_weights, ray_aabb, stratified_samples
from dreamlift.generators.base import GeneratorError, PlaneRender, RayWarp

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class TriplaneConfig:
    """Sizes of a tri-plane generator. ``channels[i]`` is the width at resolution 4·2^i, so
    the planes have resolution 4·2^(len(channels) − 1)."""

    z_dim: int = 64
    w_dim: int = 64
    channels: tuple[int, ...] = (128, 128, 128, 64, 32)
    plane_channels: int = 16
    decoder_hidden: int = 64
    box: float = 0.45
    """Half-size of the cube the planes cover, centred at the head's pivot (world units)."""
    density_scale: float = 10.0
    coarse_samples: int = 16
    fine_samples: int = 16
    background: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) < 2:
            raise GeneratorError("a tri-plane generator needs at least two resolutions")

    @property
    def plane_resolution(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    @property
    def num_ws(self) -> int:
        """One w for the 4×4 input, one per upsampling block, one for the plane output."""
        return len(self.channels) + 1

    def to_json(self) -> dict:
        return {"_class_name": "TriplaneGenerator", **asdict(self)}

    @classmethod
    def from_json(cls, values: dict) -> TriplaneConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names - {"_class_name"}
        if unknown:
            raise GeneratorError(f"unknown generator config key(s): {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def tiny(cls) -> TriplaneConfig:
        """Test size: 16×16 planes, few samples."""
        return cls(
            z_dim=8,
            w_dim=8,
            channels=(16, 16, 8),
            plane_channels=4,
            decoder_hidden=16,
            coarse_samples=8,
            fine_samples=8,
        )


class Modulation(nn.Module):
    """Feature-wise scale and shift from w, starting as the identity."""

    def __init__(self, w_dim: int, channels: int) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        scale, shift = self.affine(w)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class SynthesisBlock(nn.Module):
    """×2 bilinear upsampling, a 3×3 convolution, modulation by this layer's w, leaky ReLU."""

    def __init__(self, w_dim: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.mod = Modulation(w_dim, c_out)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.leaky_relu(self.mod(self.conv(x), w), 0.2)


class TriplaneSynthesis(nn.Module):
    """ws (B, num_ws, w_dim) → planes (B, 3, C, R, R)."""

    def __init__(self, cfg: TriplaneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0 = cfg.channels[0]
        self.input = nn.Linear(cfg.w_dim, c0 * 16)
        self.blocks = nn.ModuleList(
            SynthesisBlock(cfg.w_dim, a, b)
            for a, b in zip(cfg.channels, cfg.channels[1:], strict=False)
        )
        self.output = nn.Conv2d(cfg.channels[-1], 3 * cfg.plane_channels, 1)
        self.output_mod = Modulation(cfg.w_dim, 3 * cfg.plane_channels)

    def forward(self, ws: Tensor) -> Tensor:
        cfg = self.cfg
        if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
            raise GeneratorError(
                f"ws must be (B, {cfg.num_ws}, {cfg.w_dim}), got {tuple(ws.shape)}"
            )
        x = F.leaky_relu(self.input(ws[:, 0]).view(-1, cfg.channels[0], 4, 4), 0.2)
        for i, block in enumerate(self.blocks):
            x = block(x, ws[:, i + 1])
        x = self.output_mod(self.output(x), ws[:, -1])
        r = cfg.plane_resolution
        return x.view(-1, 3, cfg.plane_channels, r, r)


class TriplaneDecoder(nn.Module):
    """Aggregated plane features (…, C) → raw density (…, 1) and RGB logits (…, 3)."""

    def __init__(self, cfg: TriplaneConfig) -> None:
        super().__init__()
        h = cfg.decoder_hidden
        self.net = nn.Sequential(
            nn.Linear(cfg.plane_channels, h),
            nn.Softplus(),
            nn.Linear(h, h),
            nn.Softplus(),
            nn.Linear(h, 4),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


def sample_planes(planes: Tensor, points: Tensor, box: float) -> Tensor:
    """Mean of the three planes' bilinear features at points (B, N, 3) → (B, N, C)."""
    b, _, c, r, _ = planes.shape
    p = points / box
    # (u, v) per plane: XY seen from above, XZ from the side, YZ from the front.
    uv = torch.stack([p[..., [0, 1]], p[..., [0, 2]], p[..., [1, 2]]], dim=1)  # (B, 3, N, 2)
    feats = F.grid_sample(
        planes.reshape(b * 3, c, r, r),
        uv.reshape(b * 3, 1, -1, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # (B*3, C, 1, N)
    return feats.view(b, 3, c, -1).mean(dim=1).transpose(1, 2)


def importance_samples(bins: Tensor, weights: Tensor, n: int, u: Tensor) -> Tensor:
    """Inverse-CDF samples (R, n) of the piecewise-constant pdf ``weights`` (R, K) over the
    K + 1 edges ``bins`` (R, K + 1), at quantiles ``u`` (R, n) in [0, 1)."""
    pdf = (weights + 1e-5) / (weights + 1e-5).sum(dim=-1, keepdim=True)
    cdf = F.pad(torch.cumsum(pdf, dim=-1), (1, 0))
    cdf[:, -1] = 1.0
    idx = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(1, cdf.shape[-1] - 1)
    lo, hi = idx - 1, idx
    c_lo, c_hi = cdf.gather(1, lo), cdf.gather(1, hi)
    b_lo, b_hi = bins.gather(1, lo), bins.gather(1, hi)
    frac = ((u - c_lo) / (c_hi - c_lo).clamp(min=1e-8)).clamp(0, 1)
    return b_lo + frac * (b_hi - b_lo)


class TriplaneGenerator(nn.Module):
    """A :class:`~dreamlift.generators.base.Generator3D`: mapping, synthesis, decoder, renderer."""

    def __init__(self, cfg: TriplaneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.synthesis_net = TriplaneSynthesis(cfg)
        self.decoder = TriplaneDecoder(cfg)
        self.register_buffer("w_mean", torch.zeros(cfg.w_dim))
        self.register_buffer("w_chol", torch.eye(cfg.z_dim, cfg.w_dim).T.contiguous())

    # -------------------------------------------------------------- latent space
    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    @property
    def w_dim(self) -> int:
        return self.cfg.w_dim

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    def w_avg(self) -> Tensor:
        return self.w_mean

    def broadcast(self, w: Tensor) -> Tensor:
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def mapping(self, z: Tensor, truncation: float = 1.0) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise GeneratorError(f"z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        w = self.w_mean + truncation * (z @ self.w_chol.T)
        return self.broadcast(w)

    @torch.no_grad()
    def fit_latent_distribution(self, latents: Tensor, shrink: float = 1e-3) -> None:
        """Set w_avg and the mapping's covariance factor from trained latents (N, w_dim)."""
        mean = latents.mean(dim=0)
        centred = latents - mean
        cov = centred.T @ centred / max(1, latents.shape[0] - 1)
        cov = cov + shrink * cov.diagonal().mean() * torch.eye(self.w_dim)
        self.w_mean.copy_(mean)
        chol = torch.linalg.cholesky(cov)  # (w_dim, w_dim); z_dim columns of it are used
        self.w_chol.copy_(chol[:, : self.z_dim])

    # -------------------------------------------------------------- field
    def synthesis(self, ws: Tensor) -> Tensor:
        return self.synthesis_net(ws)

    def raw_sigma(self, planes: Tensor, points: Tensor) -> Tensor:
        """The decoder's density before its activation (B, N): what BlendNeRF's density term
        compares (arXiv:2302.06608 §3.3), since the softplus flattens differences in empty
        space."""
        return self.decoder(sample_planes(planes, points, self.cfg.box))[..., 0]

    def raw(self, planes: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """Density (B, N) and RGB (B, N, 3) at points (B, N, 3); zero density outside the box."""
        out = self.decoder(sample_planes(planes, points, self.cfg.box))
        inside = (points.abs() <= self.cfg.box).all(dim=-1)
        sigma = self.cfg.density_scale * F.softplus(out[..., 0] - 1.0) * inside
        rgb = torch.sigmoid(out[..., 1:]) * 1.002 - 0.001  # EG3D's widened sigmoid
        return sigma, rgb

    def sigma(self, planes: Tensor, points: Tensor) -> Tensor:
        return self.raw(planes, points)[0]

    def render_rays(
        self,
        planes: Tensor,
        origins: Tensor,
        dirs: Tensor,
        jitter: bool = False,
        gen: torch.Generator | None = None,
        samples: tuple[int, int] | None = None,
    ) -> dict[str, Tensor]:
        """Coarse stratified samples, then importance samples from their weights; the union
        is composited. The coarse samples' outputs are kept for the union rather than
        evaluated again (EG3D's renderer merges them the same way, ``unify_samples``): the
        decoder runs once per sample, 2/3 of the evaluations of a second pass over all of
        them. The fine samples' placement carries no gradient. ``samples`` (coarse,
        importance) overrides the config's counts."""
        cfg = self.cfg
        b, r, _ = origins.shape
        o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        near, far, _ = ray_aabb(o, d, -cfg.box, cfg.box)
        n_c, n_f = samples if samples else (cfg.coarse_samples, cfg.fine_samples)
        noise = torch.rand(o.shape[0], n_c, generator=gen, device=o.device) if jitter else None
        t_c, _ = stratified_samples(near, far, n_c, noise)

        def at(t: Tensor) -> tuple[Tensor, Tensor]:
            sig, rgb = self.raw(planes, (o[:, None] + t[..., None] * d[:, None]).view(b, -1, 3))
            return sig.view(-1, t.shape[1]), rgb.view(-1, t.shape[1], 3)

        sig, rgb = at(t_c)
        t = t_c
        if n_f:
            with torch.no_grad():
                edges = torch.cat([near[:, None], (t_c[:, 1:] + t_c[:, :-1]) / 2, far[:, None]], -1)
                w_c = composite_weights(sig.detach(), edges.diff(dim=-1))
                if jitter:
                    u = torch.rand(o.shape[0], n_f, generator=gen, device=o.device)
                else:
                    u = ((torch.arange(n_f, device=o.device) + 0.5) / n_f).expand(o.shape[0], n_f)
                t_f = importance_samples(edges, w_c, n_f, u)
            sig_f, rgb_f = at(t_f)
            t, order = torch.sort(torch.cat([t_c, t_f], dim=-1), dim=-1, stable=True)
            sig = torch.cat([sig, sig_f], dim=-1).gather(-1, order)
            rgb = torch.cat([rgb, rgb_f], dim=1).gather(1, order[..., None].expand(-1, -1, 3))
        n = n_c + n_f
        delta = torch.cat([t.diff(dim=-1), (far[:, None] - t[:, -1:]).clamp(min=0)], dim=-1)
        weights = composite_weights(sig.view(-1, n), delta)
        alpha = weights.sum(dim=-1, keepdim=True)
        colour = (weights[..., None] * rgb.view(-1, n, 3)).sum(dim=1) + (1 - alpha) * cfg.background
        depth_t = (weights * t).sum(dim=-1, keepdim=True) / alpha.clamp(min=1e-6)
        return {
            "rgb": colour.view(b, r, 3),
            "alpha": alpha.view(b, r, 1),
            "t": depth_t.view(b, r, 1),
        }

    def render(
        self,
        planes: Tensor,
        cameras: Cameras,
        chunk: int = 8192,
        samples: tuple[int, int] | None = None,
        warp: RayWarp | None = None,
    ) -> PlaneRender:
        if planes.shape[0] not in (1, len(cameras)):
            raise GeneratorError(
                f"{planes.shape[0]} latents for {len(cameras)} cameras: give one camera per "
                "latent or one latent"
            )
        if planes.shape[0] == 1 and len(cameras) > 1:
            planes = planes.expand(len(cameras), *planes.shape[1:])
        origins, dirs, z_per_t = cameras.rays()
        b, h, w, _ = origins.shape
        o, d = origins.reshape(b, -1, 3), dirs.reshape(b, -1, 3)
        if warp is not None:
            o, d = warp(o, d)
        parts = [
            self.render_rays(planes, o[:, i : i + chunk], d[:, i : i + chunk], samples=samples)
            for i in range(0, h * w, chunk)
        ]
        out = {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0]}

        def image(x: Tensor) -> Tensor:
            return x.view(b, h, w, -1).permute(0, 3, 1, 2)

        depth = out["t"] * z_per_t.reshape(b, -1, 1) * (out["alpha"] > 1e-3)
        return PlaneRender(image(out["rgb"]), image(out["alpha"]), image(depth))

    # -------------------------------------------------------------- growth
    @torch.no_grad()
    def widened(self, channels: tuple[int, ...], seed: int = 0) -> TriplaneGenerator:
        """This generator with a wider synthesis network that renders exactly the same
        (Net2Net's function-preserving widening, arXiv:1511.05641 §2.2, in its zero form).

        Each added channel gets random incoming weights and zero outgoing ones, and its
        modulation starts as the identity: the next layer ignores it until training gives it
        a use, so a stage that widens starts from the fit it had, not from scratch. Only the
        widths may change, never the number of resolutions."""
        old = self.cfg.channels
        channels = tuple(int(c) for c in channels)
        if len(channels) != len(old) or any(c < o for c, o in zip(channels, old, strict=True)):
            raise GeneratorError(
                f"cannot widen channels {old} to {channels}: same length, no narrower layer"
            )
        model = TriplaneGenerator(replace(self.cfg, channels=channels))
        gen = torch.Generator().manual_seed(seed)
        src, dst = self.synthesis_net, model.synthesis_net

        def grow_in(weight: Tensor, n_in: int) -> Tensor:
            """Zero weights from the added input channels (dim 1)."""
            pad = weight.new_zeros(weight.shape[0], n_in - weight.shape[1], *weight.shape[2:])
            return torch.cat([weight, pad], dim=1)

        def grow_out(new: nn.Module, old_w: Tensor, old_b: Tensor) -> None:
            """The old output channels' weights (``old_w`` already as wide as ``new``'s
            input), fresh random ones (the layer's own default scale) for the added channels,
            zero biases for them."""
            fan_in = new.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            fresh = (torch.rand(new.weight.shape, generator=gen) * 2 - 1) * bound
            fresh[: old_w.shape[0]] = old_w
            new.weight.copy_(fresh)
            new.bias.zero_()
            new.bias[: old_b.shape[0]] = old_b

        def grow_modulation(new: Modulation, old_mod: Modulation) -> None:
            """Scale and shift rows of the old channels kept; the added ones stay zero."""
            c_old, c_new = old_mod.affine.out_features // 2, new.affine.out_features // 2
            for half in (0, 1):
                rows_new = slice(half * c_new, half * c_new + c_old)
                rows_old = slice(half * c_old, (half + 1) * c_old)
                new.affine.weight[rows_new] = old_mod.affine.weight[rows_old]
                new.affine.bias[rows_new] = old_mod.affine.bias[rows_old]

        # The input's rows are channel-major (channel, 4×4 position): the old channels' rows
        # come first, so the same rule applies.
        grow_out(dst.input, src.input.weight, src.input.bias)
        for s_block, d_block in zip(src.blocks, dst.blocks, strict=True):
            grown = grow_in(s_block.conv.weight, d_block.conv.in_channels)
            grow_out(d_block.conv, grown, s_block.conv.bias)
            grow_modulation(d_block.mod, s_block.mod)
        dst.output.weight.copy_(grow_in(src.output.weight, dst.output.in_channels))
        dst.output.bias.copy_(src.output.bias)
        dst.output_mod.load_state_dict(src.output_mod.state_dict())
        model.decoder.load_state_dict(self.decoder.state_dict())
        model.w_mean.copy_(self.w_mean)
        model.w_chol.copy_(self.w_chol)
        return model.train(self.training)

    # -------------------------------------------------------------- files
    def save_pretrained(self, folder: Path, half: bool = False) -> None:
        """``config.json`` + ``model.safetensors`` (diffusers' layout for one model)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(self.cfg.to_json(), indent=2) + "\n")
        state = {
            k: (
                v.half() if half and v.is_floating_point() and k not in ("w_mean", "w_chol") else v
            ).contiguous()
            for k, v in self.state_dict().items()
        }
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, folder: Path | str, device: str = "cpu") -> TriplaneGenerator:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
        if missing:
            raise GeneratorError(
                f"generator folder {folder} is missing {', '.join(missing)}",
                "a generator folder holds config.json and model.safetensors "
                "(dreamlift zoo list shows the installed ones)",
            )
        try:
            values = json.loads((folder / CONFIG_NAME).read_text())
        except ValueError as exc:
            raise GeneratorError(f"{folder / CONFIG_NAME} is not JSON ({exc})") from None
        kind = values.get("_class_name") if isinstance(values, dict) else None
        if kind not in (None, "TriplaneGenerator"):
            raise GeneratorError(
                f"{folder} holds a {kind}, not a tri-plane generator",
                "use toy-eg3d or a folder written by a tri-plane generator",
            )
        try:
            cfg = TriplaneConfig.from_json(values)
        except (ValueError, TypeError) as exc:
            raise GeneratorError(
                f"{folder / CONFIG_NAME} is not a generator config ({exc})"
            ) from None
        model = cls(cfg)
        try:
            state = load_file(str(folder / WEIGHTS_NAME))
            model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        except (SafetensorError, RuntimeError, OSError) as exc:
            first = (str(exc).strip().splitlines() or ["unreadable"])[0][:160]
            raise GeneratorError(
                f"{folder / WEIGHTS_NAME} does not match its config ({first})"
            ) from None
        return model.to(device).eval()
